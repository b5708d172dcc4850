"""Everyday commands: `hdp-gan runs` lists what ran, `hdp-gan config` shows what a stage would
use, and the example configuration file documents every option truthfully."""

import datetime as dt
import json
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pyarrow.parquet as parquet
import pytest

from gan_lib import report
from gan_lib.report import RunRow

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "hdp-gan.example.toml"
# Per-run choices, not defaults: the example file leaves them out on purpose.
NOT_IN_EXAMPLE = {("generate", "generator_run"), ("label", "generated"), ("label", "images"),
                  ("label", "split"), ("train", "resume")}


def _recorded_runs(root: Path) -> list[dict]:
    folder = root / "warehouse" / "hdp_gan.db" / "runs"
    return parquet.read_table(folder).to_pylist()


# --- hdp-gan runs --------------------------------------------------------------------------

def test_runs_lists_every_recorded_run_newest_first_and_filters_by_stage(fashion_root, job):
    recorded = _recorded_runs(fashion_root)
    assert any(row["stage"] == "preprocess" for row in recorded)

    listing = job("runs", "--root", fashion_root)
    assert listing.code == 0, listing.stderr[-3000:]
    header, *lines = listing.stdout.strip().splitlines()
    assert header.split() == ["stage", "run", "id", "status", "started", "(UTC)", "duration",
                              "key", "figures"]
    listed = [tuple(line.split()[:2]) for line in lines]
    newest_first = sorted(recorded, key=lambda row: row["started_at"], reverse=True)
    assert listed == [(row["stage"], row["run_id"]) for row in newest_first]
    preprocess = next(line for line in lines if line.startswith("preprocess "))
    assert "succeeded" in preprocess and "accepted 1200" in preprocess

    only = job("runs", "--root", fashion_root, "--stage", "preprocess", "--json")
    assert only.code == 0, only.stderr[-3000:]
    runs = [json.loads(line) for line in only.stdout.splitlines()]
    assert runs and {run["stage"] for run in runs} == {"preprocess"}
    assert {run["run_id"] for run in runs} == {row["run_id"] for row in recorded
                                              if row["stage"] == "preprocess"}
    assert all(run["counts"]["accepted"] == 1200 for run in runs)


def test_runs_refuses_an_unknown_stage_in_one_line(job):
    result = job("runs", "--stage", "trian")
    assert result.code == 2
    assert "trian" in result.last_error_line and "Traceback" not in result.stderr


def _run(stage, run_id, started, seconds, counts, status="succeeded", message=""):
    return RunRow(stage=stage, run_id=run_id, status=status, started_at=started,
                  finished_at=None, duration_s=seconds, counts=counts, parameters={},
                  outputs={}, lineage={}, code_version="0.1.0", message=message)


def test_run_table_columns_line_up_and_failed_runs_show_their_message():
    start = dt.datetime(2026, 1, 1, 12, 0, 0)
    rows = [_run("generate", "generate-1", start, 46.6, {"images": 500}),
            _run("train", "train-long-run-id", start, 3725, {"epochs": 2},
                 status="failed", message="diverged three times")]
    lines = report.runs_table(rows).splitlines()
    starts = [line.index("2026-01-01") for line in lines[1:]]
    assert len(set(starts)) == 1 and lines[0].index("started") == starts[0]
    assert "46.6s" in lines[1] and "1h 02m" in lines[2]
    assert lines[2].endswith("epochs 2; diverged three times")


def test_a_runs_row_its_log_line_and_its_json_line_give_one_duration(monkeypatch, caplog):
    """The runs table's write takes seconds on a real metastore: the duration stops when the
    row is made, so the row, the log line and the final JSON line agree."""
    from gan_lib import runs, tables
    from gan_lib.config import Settings

    rows = []
    monkeypatch.setattr(tables, "rows_frame", lambda spark, table, made: rows.extend(made))
    monkeypatch.setattr(tables, "write_partitions",
                        lambda spark, settings, table, frame: time.sleep(0.3))
    run = runs.StageRun("preprocess", "preprocess-1")
    with caplog.at_level("INFO", logger="gan_lib.runs"):
        run.record(None, Settings(root="file:///nowhere"))
    time.sleep(0.1)
    assert rows[0]["duration_s"] == run.summary()["duration_s"] < 0.3
    assert f"succeeded in {rows[0]['duration_s']:.1f} s" in caplog.text


# --- hdp-gan config ------------------------------------------------------------------------

def _config_json(job, *args) -> dict:
    result = job("config", "--json", *args)
    assert result.code == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_config_file_values_override_defaults_and_command_line_overrides_the_file(job,
                                                                                  tmp_path):
    path = tmp_path / "hdp-gan.toml"
    path.write_text('database = "from_file"\nexecutors = 3\n[train]\nepochs = 7\n')
    shown = _config_json(job, "--config", path, "--database", "from_command_line")
    settings = shown["settings"]
    assert settings["database"] == {"value": "from_command_line", "source": "command line"}
    assert settings["executors"] == {"value": 3, "source": "file"}
    assert settings["log_level"] == {"value": "INFO", "source": "default"}
    assert shown["stages"]["train"]["epochs"] == {"value": 7, "source": "file"}
    assert shown["stages"]["train"]["seed"] == {"value": 1234, "source": "default"}

    text = job("config", "--config", path, "--database", "from_command_line", "--stage",
               "train")
    assert re.search(r'^database = "from_command_line" +# command line$', text.stdout, re.M)
    assert re.search(r"^executors = 3 +# file$", text.stdout, re.M)
    assert re.search(r"^epochs = 7 +# file$", text.stdout, re.M)


def test_config_masks_passwords_in_spark_options_and_credentials_in_urls(job, tmp_path):
    path = tmp_path / "secret.toml"
    path.write_text(
        'webhdfs_url = "http://alice:webhdfs-secret@namenode:9870"\n'
        'metastore_jdbc_url = "jdbc:postgresql://hive:jdbc-secret@db:5432/metastore"\n'
        '[spark]\n"spark.hadoop.javax.jdo.option.ConnectionPassword" = "spark-secret"\n'
        '"spark.executor.memory" = "3g"\n')
    for output in (job("config", "--config", path), job("config", "--config", path, "--json")):
        assert output.code == 0, output.stderr[-2000:]
        for secret in ("webhdfs-secret", "jdbc-secret", "spark-secret", "alice", "hive:"):
            assert secret not in output.stdout + output.stderr, secret
    shown = _config_json(job, "--config", path)
    assert shown["settings"]["webhdfs_url"]["value"] == "http://***@namenode:9870"
    assert shown["settings"]["metastore_jdbc_url"]["value"] == (
        "jdbc:postgresql://***@db:5432/metastore")
    spark = shown["spark"]
    assert spark["spark.hadoop.javax.jdo.option.ConnectionPassword"]["value"] == "***"
    assert spark["spark.executor.memory"]["value"] == "3g"


def test_config_says_what_an_unset_value_stands_for(job, tmp_path):
    path = tmp_path / "hdp-gan.toml"
    path.write_text(f'root = "{tmp_path / "root"}"\n[train]\nrecipe = "tutorial"\n')
    shown = _config_json(job, "--config", path)
    assert shown["settings"]["state_dir"] == {
        "value": "", "source": "default", "means": str(tmp_path / "root" / "_local")}
    assert shown["settings"]["master"]["means"] == (
        "local-cluster[2,1,2048] on this machine (local[2] inside the driver for sql, "
        "sql-server, runs, report)")
    assert shown["stages"]["train"]["batch_size"]["means"] == "the tutorial recipe's 256"
    assert shown["stages"]["train"]["learning_rate"]["means"] == "the tutorial recipe's 0.0001"
    assert shown["stages"]["label"]["classifier"]["means"] == "<root>/models/<dataset>-classifier"
    assert "means" not in shown["stages"]["train"]["resume"]  # its help names no default

    text = job("config", "--config", path, "--stage", "train").stdout
    assert re.search(r"^# batch_size = +# not set \(default\): the tutorial recipe's 256$",
                     text, re.M)
    assert re.search(r'^state_dir = "" +# default: .*/root/_local$', text, re.M)


@pytest.mark.parametrize("table, line", [
    ("[train]\nrecipe = \"foo\"\n", "[train] recipe = 'foo' in the configuration file is not "
                                    "one of dcgan, tutorial"),
    ("[train]\nepochs = 0\n", "[train] epochs = 0 in the configuration file: '0' must be "
                            "greater than 0"),
    ("[train]\nxla = 1\n", "[train] xla = 1 in the configuration file must be true or false"),
    ("[train]\nepochs = true\n", "[train] epochs = True in the configuration file must be a "
                               "single value, as on the command line"),
])
@pytest.mark.parametrize("stage", ["config", "train"])
def test_a_configuration_files_value_is_checked_as_the_command_line_checks_it(
        job, tmp_path, table, line, stage):
    path = tmp_path / "hdp-gan.toml"
    path.write_text(table)
    result = job(stage, "--root", tmp_path, "--config", path)
    assert result.code == 2
    assert result.last_error_line == f"hdp-gan {stage}: error: {line}"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind, line", [
    ("folder", "cannot be read: Is a directory"),
    ("latin-1", "is not UTF-8 text (byte 16); save it as UTF-8")])
def test_a_configuration_file_that_cannot_be_read_as_text_is_one_line(job, tmp_path, kind,
                                                                      line):
    path = tmp_path / "hdp-gan.toml"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes('root = "/tmp/caf\u00e9"\n'.encode("latin-1"))
    result = job("runs", "--config", path)
    assert result.code == 2
    assert result.last_error_line == f"hdp-gan runs: error: --config '{path}' {line}"


def test_a_shared_number_in_a_configuration_file_stops_where_the_command_lines_does(
        job, tmp_path):
    path = tmp_path / "hdp-gan.toml"
    path.write_text("executor_memory_mb = 99999999999\n")
    result = job("config", "--config", path)
    assert result.code == 2
    assert result.last_error_line == (
        "hdp-gan config: error: --executor-memory-mb 99999999999 must be at most 2,147,483,647")


def test_a_configuration_file_with_a_byte_order_mark_reads_as_without_one(job, tmp_path):
    path = tmp_path / "hdp-gan.toml"
    path.write_bytes(b"\xef\xbb\xbf[train]\nepochs = 7\n")
    assert _config_json(job, "--config", path)["stages"]["train"]["epochs"] == {
        "value": 7, "source": "file"}


def test_config_output_keeps_characters_beyond_the_basic_plane_as_toml_reads_them(job,
                                                                                   tmp_path):
    root = tmp_path / "r\U0001F600 \u00e9"
    path = tmp_path / "hdp-gan.toml"
    path.write_text(f'root = "{root}"\n[spark]\n"spark.x" = "a\U0001F600\\u007F"\n',
                    encoding="utf-8")
    result = job("config", "--config", path)
    assert result.code == 0, result.stderr[-2000:]
    document = tomllib.loads(result.stdout)
    assert document["root"] == f"file://{root}"
    assert document["spark"]["spark.x"] == "a\U0001F600\x7f"


@pytest.mark.parametrize("args", [["config"], ["--help"]], ids=["config", "usage"])
def test_output_read_by_a_reader_that_stops_early_ends_quietly(args):
    import os
    import subprocess
    import sys

    reader, writer = os.pipe()
    os.close(reader)  # as `hdp-gan config | head -1` once head has its line
    result = subprocess.run([sys.executable, "-m", "jobs.cli", *args], stdout=writer,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=120)
    os.close(writer)
    assert result.returncode == 141
    assert result.stderr == ""


def test_config_output_is_toml_that_reads_back_to_the_same_values(job, tmp_path):
    path = tmp_path / "hdp-gan.toml"
    path.write_text('executors = 3\n[generate]\ncount = 50\n')
    result = job("config", "--config", path)
    assert result.code == 0, result.stderr[-2000:]
    document = tomllib.loads(result.stdout)
    assert document["executors"] == 3 and document["generate"]["count"] == 50


def test_config_refuses_a_key_its_stage_does_not_have(job, tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("[train]\nepoch = 3\n")
    result = job("config", "--config", path)
    assert result.code == 2
    assert "[train]" in result.last_error_line and "epoch" in result.last_error_line


def test_config_warns_about_keys_no_stage_reads(job, tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('databse = "x"\n[trian]\nepochs = 3\n')
    result = job("config", "--config", path)
    assert result.code == 0
    assert "'databse' is not a setting" in result.stderr
    assert "[trian] is not a stage" in result.stderr


def _uncommented_example() -> str:
    """The example file with every commented setting and table header switched on."""
    setting = re.compile(r'^# ((?:[A-Za-z_][A-Za-z0-9_]*|"[^"]+") = .*)$')
    table = re.compile(r"^# (\[[a-z-]+\])$")
    lines = []
    for line in EXAMPLE.read_text().splitlines():
        match = setting.match(line) or table.match(line)
        lines.append(match.group(1) if match else line)
    return "\n".join(lines) + "\n"


def test_example_configuration_changes_nothing_as_it_is():
    assert tomllib.loads(EXAMPLE.read_text()) == {}


def test_example_configuration_documents_every_option_with_its_default(job, tmp_path):
    path = tmp_path / "example.toml"
    text = _uncommented_example()
    path.write_text(text)
    document = tomllib.loads(text)
    result = job("config", "--config", path, "--json")
    assert result.code == 0, result.stderr[-2000:]
    assert "warning" not in result.stderr, result.stderr
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    defaults = _config_json(job, "--config", empty)

    for key, shown in defaults["settings"].items():
        assert key in document, f"shared setting {key} is missing from the example"
        if shown["value"] is not None and key != "root":
            assert document[key] == shown["value"], key
    for stage, options in defaults["stages"].items():
        for key, shown in options.items():
            if (stage, key) in NOT_IN_EXAMPLE:
                continue
            assert key in document.get(stage, {}), f"[{stage}] {key} is missing"
            if shown["value"] is not None:
                assert document[stage][key] == shown["value"], f"[{stage}] {key}"


def test_log_level_error_quiets_sparks_start_up_warnings_as_well_as_the_stages_lines(job,
                                                                                     tmp_path):
    """Spark's JVM warns at every start that Hadoop's native library is missing and that
    spark.local.dir could be overridden by a cluster manager; under --log-level ERROR a
    query prints its rows and nothing else."""
    result = job("sql", "--root", tmp_path, "--log-level", "ERROR", "SELECT 1 AS x")
    assert result.code == 0, result.stderr[-2000:]
    assert (result.stdout, result.stderr) == ("x\n1\n", "")


def test_sparks_note_of_a_one_way_message_to_a_stopped_endpoint_is_kept_out_of_the_log(
        tmp_path):
    """When a local-cluster session stops, its worker may still report an executor to the
    application client that has just stopped; Spark logs that as an ERROR with a 35-line
    stack trace after a run that succeeded. The JVM's logging drops that one message and
    keeps the logger's others."""
    logged = ("from gan_lib import session; from gan_lib.config import Settings\n"
              f"settings = Settings(root={tmp_path.as_uri()!r}, master='local[1]')\n"
              "spark = session.build_session(settings, 'log-test')\n"
              "jvm_logger = spark._jvm.org.apache.logging.log4j.LogManager.getLogger(\n"
              "    'org.apache.spark.network.server.TransportRequestHandler')\n"
              "jvm_logger.error('Error while invoking RpcHandler#receive() for one-way "
              "message.')\n"
              "jvm_logger.error('Error while invoking RpcHandler#receive() for RPC id 7')\n"
              "spark.stop()\n")
    result = subprocess.run([sys.executable, "-c", logged], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "for RPC id 7" in result.stderr
    assert "for one-way message" not in result.stderr


def test_runs_and_report_on_a_folder_no_stage_has_used_write_nothing_there(job, tmp_path):
    """Without a metastore there is no table to read: the commands answer without starting
    Spark, which would make the embedded metastore and the state folder in any folder given
    as --root."""
    listed = job("runs", "--root", tmp_path)
    assert listed.code == 0, listed.stderr[-2000:]
    assert listed.last_error_line == (
        f"no runs recorded under {tmp_path.as_uri()} (database hdp_gan)")
    reported = job("report", "--root", tmp_path, "train-1")
    assert reported.code == 2
    assert reported.last_error_line.startswith(
        "hdp-gan report: error: run 'train-1' is not in the runs table")
    assert list(tmp_path.iterdir()) == []
