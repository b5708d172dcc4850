"""Run a query against the project's Hive metastore and print the rows.

    spark-submit jobs/sql.py --root /data/gan "SELECT label, count(*) FROM labels GROUP BY label"

The project's database is the current one, so table names need no prefix. The command
creates no database: when the one named by --database does not exist it fails, naming those
that do, except on a root where no stage has run yet (the metastore holds only Spark's
``default``), where queries run in ``default``.

Rows are printed tab-separated with a header; inside a value, a backslash, tab, newline or
carriage return is written as ``\\\\``, ``\\t``, ``\\n`` or ``\\r`` (in JSON values too), so
that each row is one line; booleans and doubles that are not numbers read as beeline prints
them (``true``, ``NaN``, ``-Infinity``). --json prints one JSON object per row instead. In
both, arrays, structs and maps are written as JSON and binary values in base64, as Spark's
``to_json`` writes them; in JSON, so are doubles that are not numbers (``"NaN"``, ``"Infinity"``,
``"-Infinity"``, as strings) and decimals (as exact numbers). At most --limit rows are
printed; a line on standard error says when the query has more.
"""

import base64
import decimal
import json
import math
import re
import sys

from gan_lib import config, report, session, tables
from gan_lib.config import ConfigError, validate_identifier
from gan_lib.runs import StageError
from jobs import common

TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
# doubles that are not numbers, as Spark casts them to strings and beeline prints them
_NOT_FINITE = ("NaN", "Infinity", "-Infinity")


def build_parser():
    parser = common.new_parser("sql", __doc__.splitlines()[0])
    parser.add_argument("query", help="the SQL statement")
    parser.add_argument("--json", action="store_true", help="print rows as JSON lines")
    parser.add_argument("--limit", type=common.positive_int, default=1000,
                        help="print at most this many rows")
    return parser


# comments and blanks before a statement's first word
LEADING_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
DROPS_A_DATABASE = re.compile(r"DROP\s+(?:DATABASE|SCHEMA|NAMESPACE)\b", re.IGNORECASE)


def run(args, settings):
    if not args.query.strip():
        raise ConfigError("the query is empty; give one SQL statement, e.g. \"SHOW TABLES\"")
    database = validate_identifier(settings.database, "--database")
    if DROPS_A_DATABASE.match(args.query, LEADING_COMMENTS.match(args.query).end()):
        raise ConfigError(
            "hdp-gan sql drops no database: the metastore deletes a database's folder, with "
            f"the files of every table under it, EXTERNAL ones too ({database}'s is "
            f"{tables.database_location(settings, database)}); drop tables one by one with "
            "DROP TABLE, which keeps their files")
    # queries over the project's tables need no executor JVMs of their own on this machine
    spark = session.build_session(report.table_reader_settings(settings), "hdp-gan sql")
    try:
        use_database(spark, database)
        answer(spark, args.query, args.limit, args.json)
    finally:
        spark.stop()
    return None


def answer(spark, query: str, limit: int, as_json: bool) -> None:
    """Print the query's rows, at most ``limit`` of them: a header and tab-separated text, or
    JSON lines; a note on standard error says when the query has more."""
    # one row more than printed tells whether the query has more
    columns, rows = run_query(spark, query, min(limit + 1, common.JAVA_INT_MAX))
    shown = rows[:limit]
    if as_json:
        for row in shown:
            print(_json(row))
    else:
        print("\t".join(column.translate(TEXT_ESCAPES) for column in columns))
        for row in shown:
            print("\t".join(cell(value) for value in row))
    sys.stdout.flush()
    if len(rows) > len(shown):
        print(f"hdp-gan sql: printed the first {limit} rows and the query has more; "
              "--limit N prints up to N", file=sys.stderr)


def use_database(spark, database: str) -> None:
    """Make ``database`` the current one, or fail naming the databases that exist. On a
    root where no stage has run yet there is only ``default``, and queries run there."""
    if spark.catalog.databaseExists(database):
        spark.catalog.setCurrentDatabase(database)
        return
    existing = sorted(found.name for found in spark.catalog.listDatabases())
    if existing != ["default"]:
        raise ConfigError(f"the database {database} (--database) does not exist; the "
                          f"metastore has {', '.join(existing)}: give one of those")


def run_query(spark, query: str, limit: int):
    """The query's column names and at most ``limit`` rows; an error from Spark, when the
    query is parsed or while it runs, becomes one line with Spark's own message."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    # a task that fails logs its Java stack trace; the one line of the error says enough
    spark.sparkContext.setLogLevel("FATAL")
    try:
        result = spark.sql(query)
        return result.columns, result.limit(limit).collect()
    except PySparkException as error:
        raise StageError(f"the query failed: {common.first_line(error)}") from None
    except Py4JJavaError as error:
        raise StageError("the query failed: "
                         f"{config.error_line(error, innermost=True)}") from None
    finally:
        spark.sparkContext.setLogLevel("WARN")


def cell(value) -> str:
    """One value as text: NULL, nested values as JSON, binary in base64, the rest as str(),
    with backslash, tab, newline and carriage return escaped."""
    if value is None:
        return "NULL"
    if isinstance(value, (list, dict, tuple)):  # a struct comes as a Row, a tuple
        return _json(value).translate(TEXT_ESCAPES)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return _NOT_FINITE[0 if math.isnan(value) else 1 if value > 0 else 2]
    return str(_plain(value)).translate(TEXT_ESCAPES)


def _json(value) -> str:
    """``value`` as strict JSON, written as Spark's ``to_json`` writes it."""
    return _json_text(_plain(value))


def _json_text(value) -> str:
    """A value as ``_plain`` returns it, as JSON text."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_text(key)}:{_json_text(item)}"
                              for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json_text(item) for item in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(cell(value))
    if isinstance(value, decimal.Decimal):
        return str(value)  # exact, in the form Java's BigDecimal.toString writes
    if value is None or isinstance(value, (bool, int, float, str)):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(str(value), ensure_ascii=False)  # dates and times as Python writes them


def _plain(value):
    """``value`` with rows as objects, binary in base64, for _json."""
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
