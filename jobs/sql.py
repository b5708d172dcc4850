"""Run a query against the project's Hive metastore and print the rows.

    spark-submit jobs/sql.py --root /data/gan "SELECT label, count(*) FROM labels GROUP BY label"

The project's database is the current one, so table names need no prefix. Rows are printed
tab-separated with a header; --json prints one JSON object per row instead.
"""

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
                print(json.dumps(row.asDict(recursive=True), default=str))
        else:
            print("\t".join(result.columns))
            for row in rows:
                print("\t".join("NULL" if v is None else str(v) for v in row))
        sys.stdout.flush()
    finally:
        spark.stop()
    return None


def main(argv=None):
    return common.run_printing(build_parser(), "sql", run, argv)


if __name__ == "__main__":
    sys.exit(main())
