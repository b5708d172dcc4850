"""hdp-gan sql: what it prints for rows people really have (many of them, tabs and newlines,
NaN and decimals), and errors in one line (a query failing while it runs, a mistyped
--database); a table dropped with it comes back whole when a job recreates it."""

import json
import subprocess
import sys

import pytest

from conftest import ONE_JVM_MASTER, REPO
from gan_lib.runs import StageError
from jobs import sql


@pytest.fixture(scope="module")
def spark():
    """One local Spark session for the tests of what the command prints: ``sql.answer`` is
    what `hdp-gan sql` runs once its session is open (tests/test_cli.py runs the command
    itself)."""
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]").appName("test-sql-answer")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.ui.enabled", "false").getOrCreate())
    yield session
    session.stop()


def test_a_query_that_fails_while_running_ends_in_one_line_with_sparks_message(job, tmp_path):
    result = job("sql", "--root", tmp_path, "SELECT raise_error('boom')")
    assert result.code == 1
    assert result.last_error_line.startswith("hdp-gan sql: failed: the query failed: boom")
    assert "Traceback" not in result.stderr and "\tat " not in result.stderr


def test_a_query_failing_under_ansi_rules_gives_sparks_error_class_and_message(spark):
    spark.conf.set("spark.sql.ansi.enabled", "true")
    try:
        with pytest.raises(StageError) as failed:
            sql.answer(spark, "SELECT id / 0 FROM range(1)", 10, as_json=False)
    finally:
        spark.conf.unset("spark.sql.ansi.enabled")
    assert str(failed.value).startswith(
        "the query failed: [DIVIDE_BY_ZERO] Division by zero.")


def test_sql_says_on_stderr_when_the_query_has_more_rows_than_it_printed(spark, capsys):
    sql.answer(spark, "SELECT id FROM range(5)", 3, as_json=False)
    printed = capsys.readouterr()
    assert printed.out.splitlines() == ["id", "0", "1", "2"]
    assert printed.err == (
        "hdp-gan sql: printed the first 3 rows and the query has more; --limit N prints up to N\n")


def test_the_largest_limit_accepted_prints_every_row(spark, capsys):
    """Spark's limit takes a Java int: one more than the limit, asked for to tell whether
    rows were left out, must not pass it."""
    from jobs import common
    sql.answer(spark, "SELECT id FROM range(2)", common.JAVA_INT_MAX, as_json=False)
    printed = capsys.readouterr()
    assert printed.out.splitlines() == ["id", "0", "1"] and printed.err == ""


def test_json_lines_write_special_doubles_and_decimals_as_spark_to_json_does(spark, capsys):
    query = ("WITH t AS (SELECT named_struct('nan', double('NaN'), 'inf', double('Infinity'), "
             "'minus_inf', -double('Infinity'), 'float_nan', float('NaN'), 'half', 0.5D, "
             "'price', 1.50BD, 'tiny', CAST(0 AS DECIMAL(20, 10))) AS v) "
             "SELECT v, to_json(v) AS spark FROM t")
    sql.answer(spark, query, 10, as_json=True)

    def not_strict_json(constant):
        pytest.fail(f"{constant} is not JSON")
    line = capsys.readouterr().out.strip()
    spark_json = json.loads(line, parse_constant=not_strict_json)["spark"]
    assert line == '{"v":' + spark_json + ',"spark":' + json.dumps(spark_json) + "}"


def test_text_rows_escape_backslash_tab_newline_and_carriage_return_inside_values(spark,
                                                                                 capsys):
    query = ("SELECT concat('a', char(9), 'b', char(10), 'c', char(13), 'd', char(92), 'e') "
             "AS s, 1 AS n")
    sql.answer(spark, query, 10, as_json=False)
    assert capsys.readouterr().out.splitlines() == ["s\tn", "a\\tb\\nc\\rd\\\\e\t1"]


def test_text_rows_print_booleans_and_special_doubles_as_spark_casts_them(spark, capsys):
    values = ["double('NaN')", "double('Infinity')", "-double('Infinity')", "true", "false"]
    query = ("SELECT " + ", ".join(f"{value} AS v{i}" for i, value in enumerate(values))
             + ", " + ", ".join(f"CAST({value} AS STRING) AS s{i}"
                                for i, value in enumerate(values)))
    sql.answer(spark, query, 10, as_json=False)
    row = capsys.readouterr().out.splitlines()[1].split("\t")
    assert row[:5] == row[5:] == ["NaN", "Infinity", "-Infinity", "true", "false"]


def test_a_database_that_does_not_exist_is_refused_naming_those_that_do(job, tmp_path):
    created = job("sql", "--root", tmp_path, "CREATE DATABASE hdp_gan")
    assert created.code == 0, created.stderr[-2000:]

    result = job("sql", "--root", tmp_path, "--database", "hdp_gn", "SELECT 1")
    assert result.code == 2
    assert result.last_error_line == (
        "hdp-gan sql: error: the database hdp_gn (--database) does not exist; the metastore "
        "has default, hdp_gan: give one of those")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "warehouse" / "hdp_gn.db").exists()


RECORD_A_RUN = (
    "import sys; from gan_lib import config, runs, session; "
    "settings = config.settings_from({'root': sys.argv[1], 'master': sys.argv[3]}); "
    "spark = session.build_session(settings, 'record a run'); "
    "runs.StageRun('ingest', sys.argv[2]).record(spark, settings); spark.stop()")


def _record_a_run(root, run_id):
    process = subprocess.run([sys.executable, "-c", RECORD_A_RUN, str(root), run_id,
                              ONE_JVM_MASTER], cwd=REPO, capture_output=True, text=True,
                             timeout=900)
    assert process.returncode == 0, process.stderr[-2000:]


def test_a_table_dropped_with_sql_gets_its_rows_back_when_a_job_recreates_it(job, tmp_path):
    _record_a_run(tmp_path, "ingest-before")
    dropped = job("sql", "--root", tmp_path, "DROP TABLE runs")
    assert dropped.code == 0, dropped.stderr[-2000:]

    _record_a_run(tmp_path, "ingest-after")
    listed = job("sql", "--root", tmp_path, "SELECT run_id FROM runs ORDER BY run_id")
    assert listed.code == 0, listed.stderr[-2000:]
    assert listed.stdout.splitlines() == ["run_id", "ingest-after", "ingest-before"]


@pytest.mark.parametrize("query", [
    "DROP DATABASE hdp_gan CASCADE",
    "/* all of it */\n-- every table\ndrop schema IF EXISTS hdp_gan"])
def test_a_statement_that_drops_a_database_is_refused_before_spark(job, tmp_path, query):
    """The metastore deletes a dropped database's folder, and the project's EXTERNAL tables'
    files live under it: one statement would lose every dataset, run and label."""
    result = job("sql", "--root", tmp_path, query)
    assert result.code == 2
    assert result.last_error_line == (
        "hdp-gan sql: error: hdp-gan sql drops no database: the metastore deletes a "
        "database's folder, with the files of every table under it, EXTERNAL ones too "
        f"(hdp_gan's is {tmp_path.as_uri()}/warehouse/hdp_gan.db); drop tables one by one "
        "with DROP TABLE, which keeps their files")
    assert not (tmp_path / "_local" / "metastore_db").exists()
