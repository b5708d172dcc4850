"""The hdp-gan command: subcommands, help, and argument errors in one clear line."""

import pytest

from jobs import cli


def test_every_subcommand_has_help_that_explains_its_options(job):
    result = job("train", "--help")
    assert result.code == 0
    assert "--epochs" in result.stdout and "--root" in result.stdout


def test_unknown_subcommand_is_one_line_with_exit_code_2(job):
    result = job("bogus")
    assert result.code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown subcommand 'bogus'" in result.stderr


@pytest.mark.parametrize("args, wanted", [
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--epochs", "many"], "--epochs"),
    (["generate"], "--generator-run"),
    (["preprocess", "--image-size", "-3"], "--image-size"),
    (["train", "--learning-rate", "-1e-3"], "'-1e-3' must be a finite number greater than 0"),
])
def test_bad_arguments_give_one_line_without_traceback(job, args, wanted):
    result = job(*args)
    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert wanted in result.stderr


@pytest.mark.parametrize("args, typed, meant", [
    (["sql", "--databse", "x", "SELECT 1"], "--databse", "--database"),
    (["train", "--epoch-count", "3"], "--epoch-count", "--epochs"),
    (["sql-server", "--prot", "20001"], "--prot", "--port"),
    (["generate", "--generator-rn", "train-1"], "--generator-rn", "--generator-run"),
    (["train", "--epoch", "3"], "--epoch", "--epochs"),  # no option is taken shortened
    (["sql", "--lim", "2", "SELECT 1"], "--lim", "--limit"),
])
def test_a_mistyped_option_is_named_with_the_option_it_is_closest_to(job, tmp_path, args,
                                                                      typed, meant):
    """Also when the stage has a required option the typo was meant to give."""
    result = job(*args[:1], "--root", tmp_path, *args[1:])
    assert result.code == 2
    assert result.last_error_line == (
        f"hdp-gan {args[0]}: error: unknown option {typed}; did you mean {meant}? (see --help)")


def test_a_value_starting_with_a_dash_is_shown_how_to_give_it(job, tmp_path):
    result = job("preprocess", "--root", tmp_path, "--input", "-odd-folder")
    assert result.code == 2
    assert result.last_error_line == (
        "hdp-gan preprocess: error: unknown option -odd-folder; if it is the value of --input, "
        "write --input=-odd-folder (see --help)")


def test_a_value_given_with_an_equals_sign_may_start_with_a_dash(job, tmp_path):
    result = job("preprocess", "--root", tmp_path, "--input=-odd-folder")
    assert result.code == 2
    assert "-odd-folder does not exist" in result.last_error_line


def test_missing_input_folder_fails_before_spark_with_one_line(job, tmp_path):
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "nowhere")
    assert result.code == 2
    assert "does not exist" in result.last_error_line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "root" / "_local" / "metastore_db").exists()


def test_unsupported_channel_count_fails_before_spark(job, tmp_path):
    (tmp_path / "images").mkdir()
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "images",
                 "--channels", "2")
    assert result.code == 2
    assert "--channels 2" in result.last_error_line


def test_root_with_unknown_scheme_fails_in_one_line(job):
    result = job("ingest", "--root", "s3://bucket/x")
    assert result.code == 2
    assert "s3" in result.last_error_line and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["runs"], ["sql", "SELECT 1"], ["train"], ["report", "x"]])
def test_stages_that_read_the_root_refuse_one_that_does_not_exist(job, tmp_path, command):
    missing = tmp_path / "no-such-root"
    result = job(*command[:1], "--root", missing, *command[1:])
    assert result.code == 2
    assert f"--root {missing.as_uri()} does not exist" in result.last_error_line
    assert len(result.stderr.strip().splitlines()) == 1
    assert not missing.exists()


def test_a_new_root_is_created_only_under_an_existing_parent(job, tmp_path):
    typo = tmp_path / "no-such-parent" / "root"
    result = job("ingest", "--root", typo, "--limit", "1")
    assert result.code == 2
    assert "neither does its parent" in result.last_error_line
    assert not typo.parent.exists()


def test_a_root_that_is_a_file_is_refused(job, tmp_path):
    (tmp_path / "file").write_text("x")
    result = job("runs", "--root", tmp_path / "file")
    assert result.code == 2
    assert "is a file; give a folder" in result.last_error_line


def test_no_subcommand_prints_the_usage_on_standard_error_with_exit_code_2(capsys):
    assert cli.main([]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == cli.usage() + "\n"


def test_usage_lists_every_subcommand():
    text = cli.usage()
    for name in cli.SUBCOMMANDS:
        assert name in text


@pytest.mark.parametrize("run_id", ["a;b", "../escape", "x" * 300])
def test_a_bad_run_id_fails_before_spark_starts(job, tmp_path, run_id):
    result = job("runs", "--root", tmp_path, "--run-id", run_id)
    assert result.code == 2
    assert "--run-id" in result.last_error_line and "is not a valid name" in result.last_error_line
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "_local").exists()


def test_an_unusable_state_folder_is_named_in_one_line(job, tmp_path):
    result = job("runs", "--root", tmp_path, "--state-dir", "/proc/no-such/state")
    assert result.code == 2
    assert "/proc/no-such/state (--state-dir) cannot be created" in result.last_error_line
    assert "Traceback" not in result.stderr


def test_a_state_folder_whose_path_spark_would_split_is_refused_before_spark(job, tmp_path):
    """Spark splits its list of local folders at commas and Java its class path at colons:
    a state folder "st,ate" made a folder "ate" in the working folder."""
    result = job("sql", "--root", tmp_path, "--state-dir", tmp_path / "st,ate", "SELECT 1")
    assert result.code == 2
    assert result.last_error_line.startswith(
        f"hdp-gan sql: error: --state-dir '{tmp_path / 'st,ate'}' holds ',', which Spark")
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_a_root_whose_name_the_file_system_cannot_hold_is_one_line(job, tmp_path):
    root = tmp_path / ("a" * 300)
    result = job("ingest", "--root", root)
    assert result.code == 2
    assert result.last_error_line == (
        f"hdp-gan ingest: error: --root {root.as_uri()} cannot be used: File name too long")


def test_an_empty_sql_query_is_refused_before_spark(job, tmp_path):
    result = job("sql", "--root", tmp_path, "  ")
    assert result.code == 2
    assert "the query is empty" in result.last_error_line
    assert len(result.stderr.strip().splitlines()) == 1


def test_sql_without_a_master_runs_spark_inside_the_driver(job, tmp_path):
    result = job("sql", "--root", tmp_path, "SET spark.master", master=None)
    assert result.code == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[1:] == ["spark.master\tlocal[2]"]


def test_sql_prints_arrays_structs_and_maps_as_json_and_binary_in_base64(job, tmp_path):
    query = ("SELECT array(named_struct('label', 'coat', 'score', 0.5D)) AS top_k, "
             "map('coat', 2) AS shares, binary('ab') AS raw, 'plain' AS text")
    result = job("sql", "--root", tmp_path, query, master=None)
    assert result.code == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[1:] == [
        '[{"label":"coat","score":0.5}]\t{"coat":2}\tYWI=\tplain']


def test_sql_json_lines_keep_struct_field_names_inside_arrays():
    from pyspark.sql import Row

    from jobs import sql

    row = Row(top_k=[Row(label="coat", score=0.5)], raw=bytearray(b"ab"), missing=None)
    assert sql._json(row) == '{"top_k":[{"label":"coat","score":0.5}],"raw":"YWI=","missing":null}'


@pytest.mark.parametrize("master", ["local", "local[2]"])
def test_training_on_a_master_without_executors_is_refused_before_spark(job, tmp_path, master):
    result = job("train", "--root", tmp_path, "--master", master)
    assert result.code == 2
    assert f"--master {master} runs no executors" in result.last_error_line


def test_options_without_a_default_do_not_claim_one_in_help(job):
    result = job("runs", "--help")
    assert "(default: None)" not in result.stdout
    assert "(default: runs/default)" in " ".join(result.stdout.split())


def test_every_shared_option_says_in_help_what_it_is_when_left_out():
    from jobs import common
    parser = common.new_parser("any", "any")
    shared = next(group for group in parser._action_groups if group.title == "shared options")
    assert shared._group_actions
    silent = [action.option_strings[0] for action in shared._group_actions
              if "(default" not in action.help]
    assert silent == []


def test_the_default_root_is_made_with_its_parent_on_first_use(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "ingest", "--limit", "3"], cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(repo)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "runs" / "default" / "raw" / "fashion-mnist" / "train").is_dir()


@pytest.mark.parametrize("option, hint", [
    ("--images", "a folder of images"), ("--generated", "the id of a generate run")],
    ids=["images", "generated"])
def test_an_empty_label_source_is_refused_before_spark_instead_of_read_as_not_given(
        job, tmp_path, option, hint):
    """An empty --images used to label nothing from a table."""
    result = job("label", "--root", tmp_path, option, "")
    assert result.code == 2
    assert result.last_error_line.startswith(
        f"hdp-gan label: error: {option} is empty; give {hint}")
    assert not (tmp_path / "_local" / "metastore_db").exists()


def test_a_label_folder_that_does_not_exist_is_refused_before_spark(job, tmp_path):
    result = job("label", "--root", tmp_path, "--images", tmp_path / "nowhere")
    assert result.code == 2
    assert result.last_error_line == (
        f"hdp-gan label: error: --images {tmp_path / 'nowhere'} does not exist")
    assert not (tmp_path / "_local" / "metastore_db").exists()


@pytest.mark.parametrize("args, line", [
    (["label", "--generated", "generate-nosuch"],
     "hdp-gan label: error: --generated generate-nosuch: no images at "
     "{root}/runs/generate-nosuch/images (`hdp-gan runs --stage generate` lists the generate "
     "runs)"),
    (["generate", "--generator-run", "train-nosuch"],
     "hdp-gan generate: error: --generator-run train-nosuch: there is no run train-nosuch under "
     "{root}/runs (`hdp-gan runs --stage train` lists the training runs)")],
    ids=["label", "generate"])
def test_a_run_that_is_not_there_is_refused_before_spark_and_records_no_run(job, tmp_path,
                                                                           args, line):
    result = job(args[0], "--root", tmp_path, *args[1:])
    assert result.code == 2
    assert result.last_error_line == line.format(root=tmp_path.as_uri())
    assert not (tmp_path / "_local" / "metastore_db").exists()
    assert "tensorflow" not in result.stderr.lower()


@pytest.mark.parametrize("args, message", [
    (["sql", "--limit", "2147483648", "SELECT 1"], "'2147483648' must be at most 2,147,483,647"),
    (["generate", "--generator-run", "t", "--seed", str(2**63)],
     f"'{2**63}' must be at most 9,223,372,036,854,775,807"),
    (["generate", "--generator-run", "t", "--count", "10", "--partitions", "1000000"],
     "--partitions 1000000 is more than --count 10")], ids=["limit", "seed", "partitions"])
def test_a_number_beyond_what_the_stage_can_hold_is_refused_in_one_line(job, tmp_path, args,
                                                                       message):
    result = job(*args[:1], "--root", tmp_path, *args[1:])
    assert result.code == 2
    assert message in result.last_error_line
    assert "Traceback" not in result.stderr
