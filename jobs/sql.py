"""Run a query against the project's Hive metastore and print the rows.

    spark-submit jobs/sql.py --root /data/gan "SELECT label, count(*) FROM labels GROUP BY label"

The project's database is the current one, so table names need no prefix. Rows are printed
tab-separated with a header; --json prints one JSON object per row instead. In both, arrays,
structs and maps are written as JSON and binary values in base64, as Spark's ``to_json`` writes
them.
"""

import base64
import json
import sys

from gan_lib import report, session
from gan_lib.config import ConfigError, validate_identifier
from gan_lib.runs import StageError
from jobs import common


def build_parser():
    parser = common.new_parser("sql", __doc__.splitlines()[0])
    parser.add_argument("query", help="the SQL statement")
    parser.add_argument("--json", action="store_true", help="print rows as JSON lines")
    parser.add_argument("--limit", type=common.positive_int, default=1000,
                        help="print at most this many rows")
    return parser


def run(args, settings):
    from pyspark.errors import AnalysisException, ParseException

    if not args.query.strip():
        raise ConfigError("the query is empty; give one SQL statement, e.g. \"SHOW TABLES\"")
    database = validate_identifier(settings.database, "--database")
    # queries over the project's tables need no executor JVMs of their own on this machine
    spark = session.build_session(report.table_reader_settings(settings), "hdp-gan sql")
    try:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
        spark.sql(f"USE {database}")
        try:
            result = spark.sql(args.query)
        except (ParseException, AnalysisException) as error:
            raise StageError(f"the query failed: {common.first_line(error)}") from None
        rows = result.limit(args.limit).collect()
        if args.json:
            for row in rows:
                print(_json(row))
        else:
            print("\t".join(result.columns))
            for row in rows:
                print("\t".join(cell(value) for value in row))
        sys.stdout.flush()
    finally:
        spark.stop()
    return None


def cell(value) -> str:
    """One value as text: NULL, nested values as JSON, binary in base64, the rest as str()."""
    if value is None:
        return "NULL"
    if isinstance(value, (list, dict, tuple)):  # a struct comes as a Row, a tuple
        return _json(value)
    return str(_plain(value))


def _json(value) -> str:
    return json.dumps(_plain(value), default=str, separators=(",", ":"), ensure_ascii=False)


def _plain(value):
    """``value`` with rows as objects, binary in base64, for json.dumps."""
    from pyspark.sql import Row

    if isinstance(value, Row):
        return {key: _plain(item) for key, item in value.asDict().items()}
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def main(argv=None):
    return common.run_printing(build_parser(), "sql", run, argv)


if __name__ == "__main__":
    sys.exit(main())
