"""Faults injected into running jobs: the outcome is a fast, clear failure, and a rerun gives
what a clean run gives."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pyarrow.parquet as parquet
import pytest

from conftest import REPO, TRAIN_ARGS, job_command


def _start_job(*args):
    """Start ``hdp-gan ARGS`` on the default local-cluster without waiting."""
    return subprocess.Popen(job_command(*args, master=None), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _killed_if_still_running(process):
    """Whatever the test asserts on the way, the job it started does not outlive it."""
    try:
        yield
    finally:
        if process.poll() is None:
            process.kill()


def _wait_for(predicate, timeout_s, what, poll_s=1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")


def _executor_pids(state_dir):
    """PIDs of the executor JVMs started from this state folder's Spark home."""
    return [int(line.split()[0]) for line in _processes_under(state_dir)
            if "CoarseGrainedExecutorBackend" in line]


def _start_long_training(root, run_id):
    """A 40-epoch training run, returned once its first checkpoint is written:
    (process, run folder). The process is killed if the checkpoint never comes."""
    run = root / "runs" / run_id
    process = _start_job("train", "--root", root, "--run-id", run_id, "--epochs", "40",
                         *TRAIN_ARGS)
    try:
        _wait_for(lambda: (run / "checkpoints" / "latest.json").exists(), 600,
                  "a first checkpoint")
    except BaseException:
        process.kill()
        raise
    return process, run


def test_killed_executor_fails_training_fast_and_resume_continues(fashion_root):
    run_id = "train-executor-kill"
    process, run = _start_long_training(fashion_root, run_id)
    with _killed_if_still_running(process):
        pids = _executor_pids(fashion_root / "_local")
        assert len(pids) == 2
        os.kill(pids[-1], signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = process.communicate(timeout=300)
        surfaced = time.monotonic() - killed_at
    assert process.returncode == 1
    last_line = [line for line in stderr.splitlines() if line.strip()][-1]
    assert "lost" in last_line or "failed" in last_line
    assert surfaced < 120, f"the lost executor took {surfaced:.0f} s to fail the job"
    assert _executor_pids(fashion_root / "_local") == []

    saved = json.loads((run / "checkpoints" / "latest.json").read_text())["progress"]
    resumed = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "train", "--root", str(fashion_root), "--resume",
         run_id, "--epochs", str(saved["epoch"] + 1), *TRAIN_ARGS],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["counts"]["epochs"] == saved["epoch"] + 1
    assert summary["counts"]["steps"] == saved["step"] + 8


def _training_python_process(executor_pid):
    """The PID of the Python process training under one executor JVM: of pyspark's daemon
    and the workers it forked, the one holding TensorFlow (the most memory)."""
    listing = subprocess.run(["ps", "-eo", "pid,ppid,rss"], capture_output=True,
                             text=True).stdout
    children, memory = {}, {}
    for line in listing.splitlines()[1:]:
        pid, parent, rss = map(int, line.split())
        children.setdefault(parent, []).append(pid)
        memory[pid] = rss
    found, queue = [], list(children.get(executor_pid, []))
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue += children.get(pid, [])
    return max(found, key=memory.get)


def test_a_killed_training_python_process_fails_the_job_naming_the_node_that_stopped(
        fashion_root):
    run_id = "train-python-kill"
    process, _ = _start_long_training(fashion_root, run_id)
    with _killed_if_still_running(process):
        executor = _executor_pids(fashion_root / "_local")[-1]
        os.kill(_training_python_process(executor), signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1
    last_line = [line for line in stderr.splitlines() if line.strip()][-1]
    assert re.fullmatch(
        r"hdp-gan train: failed: "
        r"(a TensorFlow worker failed: gan_lib\.training\.LostContact: node \d "
        r"lost contact with node \d at 127\.0\.0\.1:\d+ in a collective step .*"
        r"|.*Python worker exited unexpectedly.*)", last_line), last_line
    assert "Graph execution error" not in last_line
    assert _executor_pids(fashion_root / "_local") == []


def test_sigterm_stops_training_with_one_line_and_records_the_run_failed(fashion_root):
    run_id = "train-sigterm"
    process, _ = _start_long_training(fashion_root, run_id)
    with _killed_if_still_running(process):
        process.send_signal(signal.SIGTERM)  # as YARN and Oozie stop a job
        _, stderr = process.communicate(timeout=180)
    assert process.returncode == 143
    assert [line for line in stderr.splitlines() if line.strip()][-1] == \
        "hdp-gan train: terminated (SIGTERM)"
    runs = [row for row in parquet.read_table(
        fashion_root / "warehouse" / "hdp_gan.db" / "runs").to_pylist()
        if row["run_id"] == run_id]
    assert [row["status"] for row in runs] == ["failed"]
    assert _executor_pids(fashion_root / "_local") == []


@pytest.mark.parametrize("stop, code, last_line", [
    (signal.SIGINT, 130, "hdp-gan preprocess: interrupted"),
    (signal.SIGTERM, 143, "hdp-gan preprocess: terminated (SIGTERM)")], ids=["ctrl-c", "sigterm"])
def test_a_signal_while_spark_works_stops_the_stage_in_one_line_and_records_it_failed(
        tmp_path, stop, code, last_line):
    folder = _fashion_folder(tmp_path / "input", 300)
    root = tmp_path / "root"
    process = _start_job("preprocess", "--root", root, "--input", folder, "--dataset", "stop")
    with _killed_if_still_running(process):
        _wait_for(lambda: _python_workers(root / "_local"), 300, "decoding to start",
                  poll_s=0.2)  # an executor started its Python worker for a task
        process.send_signal(stop)  # the driver is in the middle of a call to the JVM
        _, stderr = process.communicate(timeout=180)
    assert process.returncode == code, stderr[-3000:]
    assert [line for line in stderr.splitlines() if line.strip()][-1] == last_line
    assert "Traceback" not in stderr
    # nor Spark's stack of the aborted write, nor its warning for each task killed
    assert "Aborting job" not in stderr and "TaskKilled" not in stderr, stderr[-3000:]
    runs = parquet.read_table(root / "warehouse" / "hdp_gan.db" / "runs").to_pylist()
    assert [row["status"] for row in runs] == ["failed"]
    assert _processes_under(root / "_local") == []


def test_sigterm_to_the_pipeline_stops_its_running_stage_which_records_its_run_failed(
        tmp_path):
    """As Oozie's or a scheduler's kill of the pipeline's process: the stage it runs gets the
    signal once and records its run as failed (it used to be killed outright, leaving no
    row)."""
    process, root = _start_pipeline_until_decoding(tmp_path)
    with _killed_if_still_running(process):
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1] == "hdp-gan pipeline: terminated (SIGTERM)"
    assert "hdp-gan preprocess: terminated (SIGTERM)" in lines
    runs = parquet.read_table(root / "warehouse" / "hdp_gan.db" / "runs").to_pylist()
    assert [(row["stage"], row["status"], row["message"]) for row in runs] == [
        ("preprocess", "failed", "terminated (SIGTERM)")]
    _wait_for(lambda: _processes_under(root / "_local") == [], 60, "Spark's processes to end")


def _start_pipeline_until_decoding(tmp_path):
    folder = _fashion_folder(tmp_path / "input", 300)
    root = tmp_path / "root"
    process = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys\n"  # Ctrl-C handled, as in a terminal
         "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
         "from jobs.cli import main; sys.exit(main(sys.argv[1:]))",
         *job_command("pipeline", "--root", root, "--data", folder, "--dataset", "stop",
                      "--master", "local[2]")[3:]],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any((root / "runs").glob("preprocess-*/staging")), 300,
              "decoding to start", poll_s=0.2)
    return process, root


def _stage_rows(root):
    runs = root / "warehouse" / "hdp_gan.db" / "runs"
    if not runs.exists():
        return []
    return [(row["stage"], row["status"], row["message"])
            for row in parquet.read_table(runs).to_pylist()]


def _stage_processes(root):
    return [line for line in _processes_under(root) if "jobs.cli preprocess" in line]


def test_a_pipeline_killed_outright_still_has_its_stage_stop_and_record_its_run(tmp_path):
    process, root = _start_pipeline_until_decoding(tmp_path)
    try:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        _wait_for(lambda: _stage_rows(root), 180, "the stage to record its run")
        _wait_for(lambda: not _stage_processes(root), 60, "the stage to end")
    finally:
        subprocess.run(["pkill", "-9", "-f", str(root)], check=False)
    assert _stage_rows(root) == [("preprocess", "failed", "terminated (SIGTERM)")]


def test_a_second_ctrl_c_to_the_pipeline_does_not_leave_its_stage_running(tmp_path):
    process, root = _start_pipeline_until_decoding(tmp_path)
    with _killed_if_still_running(process):
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    # it waited: the stage's own line came first
    assert lines[-1] == "hdp-gan pipeline: interrupted"
    assert "hdp-gan preprocess: interrupted" in lines[:-1]
    assert not _stage_processes(root)
    assert _stage_rows(root) == [("preprocess", "failed", "interrupted (Ctrl-C)")]


def test_sigterm_to_the_whole_process_group_ends_in_one_line_with_exit_143(tmp_path):
    """As `timeout`, systemd and YARN's container kill signal: the driver's JVM gets the
    signal too, so Spark cannot record the run, but the command still ends as terminated."""
    folder = _fashion_folder(tmp_path / "input", 300)
    root = tmp_path / "root"
    process = subprocess.Popen(job_command("preprocess", "--root", root, "--input", folder,
                                           "--dataset", "stop", master=None),
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        _wait_for(lambda: any((root / "runs").glob("preprocess-*/staging")), 300,
                  "decoding to start", poll_s=0.2)
        os.killpg(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143, stderr[-3000:]
    assert [line for line in stderr.splitlines() if line.strip()][-1] == \
        "hdp-gan preprocess: terminated (SIGTERM)"
    _wait_for(lambda: _processes_under(root / "_local") == [], 60, "Spark's processes to end")


def test_sigterm_while_sparks_jvm_starts_leaves_no_jvm_behind(tmp_path):
    """A JVM that pyspark launched ends with the Python process that reads it, but only once
    it has connected; stopped in the seconds before, it ran on with the embedded metastore
    and made every later job on the root wait and fail."""
    root = tmp_path / "root"
    root.mkdir()
    process = _start_job("sql", "--root", root, "SELECT 1")
    with _killed_if_still_running(process):
        _wait_for(lambda: any("org.apache.spark.deploy.SparkSubmit" in line
                              for line in _processes_under(root / "_local")), 60,
                  "Spark's JVM to start", poll_s=0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr[-3000:]
    assert stderr.splitlines()[-1] == "hdp-gan sql: terminated (SIGTERM)"
    assert "Exception in thread" not in stderr
    _wait_for(lambda: _processes_under(root / "_local") == [], 10, "Spark's JVM to end")


def test_a_jvm_failure_ends_with_the_java_message_and_says_when_memory_ran_out():
    from jobs import common

    class JavaException:  # what py4j hands over from the JVM: an object with toString()
        def toString(self):
            return ("org.apache.spark.SparkException: Job aborted due to stage failure: "
                    "ExecutorLostFailure (executor 3 exited caused by one of the running "
                    "tasks) Reason: Command exited with code 52\n\tat org.apache.spark...")

    error = Exception("An error occurred while calling o120.parquet.")
    error.java_exception = JavaException()
    line = common.first_line(error)
    assert line.startswith("org.apache.spark.SparkException: Job aborted")
    assert line.endswith("(52: the executor ran out of memory; give it more with "
                         "--executor-memory-mb)")


def test_a_failed_read_of_a_file_ends_with_the_file_and_the_reason_from_the_cause():
    """Spark's message for a file it could not read ends in "Details:"; the reason is on
    its cause's line below (text as Spark 3.5 gave it for a damaged Parquet file)."""
    from jobs import common

    path = "file:///data/images/part-00000-c000.parquet"

    class JavaException:
        def toString(self):
            return ("org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 "
                    "in stage 2.0 failed 1 times, most recent failure: Lost task 0.0 in stage "
                    "2.0 (TID 2) (localhost executor driver): org.apache.spark.SparkException: "
                    f"Encountered error while reading file {path}. Details: \n"
                    "\tat org.apache.spark.sql.errors.QueryExecutionErrors$."
                    "cannotReadFilesError(QueryExecutionErrors.scala:863)\n"
                    "Caused by: org.apache.hadoop.fs.ChecksumException: Checksum error: "
                    f"{path} at 1600000 exp: 919771706 got: -1115962465\n"
                    "\tat org.apache.hadoop.fs.FSInputChecker.verifySums(FSInputChecker.java:347)")

    error = Exception("An error occurred while calling o120.parquet.")
    error.java_exception = JavaException()
    line = common.first_line(error)
    assert f"Encountered error while reading file {path}. Details: " \
           "org.apache.hadoop.fs.ChecksumException: Checksum error:" in line


def _recorded_failure(monkeypatch, error) -> list:
    """(status, message) of the run rows a stage records when ``error`` ends it."""
    from gan_lib import session
    from gan_lib.runs import StageRun
    from jobs import common

    class Spark:
        stopped = False

        def stop(self):
            self.stopped = True

    spark, recorded = Spark(), []
    monkeypatch.setattr(session, "build_session", lambda *args, **kwargs: spark)
    run = StageRun("preprocess", "preprocess-1")
    monkeypatch.setattr(run, "record", lambda spark, settings, status, message:
                        recorded.append((status, message)))
    with pytest.raises(BaseException):
        with common.spark_stage(None, run, "test", lease=False):  # no root to hold it in
            raise error
    assert spark.stopped
    return recorded


def _py4j_error(java_text):
    class JavaException:  # what py4j hands over from the JVM: an object with toString()
        def toString(self):
            return java_text

    error = Exception("An error occurred while calling o120.parquet.\n: org.apache...")
    error.java_exception = JavaException()
    return error


def test_a_failed_runs_row_keeps_the_java_message_rather_than_py4js(monkeypatch):
    error = _py4j_error("org.apache.hadoop.security.AccessControlException: Permission denied")
    assert _recorded_failure(monkeypatch, error) == [
        ("failed", "org.apache.hadoop.security.AccessControlException: Permission denied")]


def test_a_failed_run_that_cannot_be_recorded_says_why_in_the_jvms_words(monkeypatch, caplog):
    from gan_lib import session
    from gan_lib.runs import StageError, StageRun
    from jobs import common

    class JavaException:
        def getCause(self):
            return None

        def getMessage(self):
            return "No space left on device"

    class Spark:
        def stop(self):
            pass
    full = Exception("An error occurred while calling o193.insertInto.")
    full.java_exception = JavaException()
    monkeypatch.setattr(session, "build_session", lambda *args, **kwargs: Spark())
    run = StageRun("generate", "generate-1")

    def record(spark, settings, status, message):
        raise full
    monkeypatch.setattr(run, "record", record)
    with pytest.raises(StageError):
        with common.spark_stage(None, run, "test", lease=False):
            raise StageError("cannot write the images")
    assert "could not record the failed run: No space left on device" in caplog.text


def test_a_python_task_failure_reads_as_the_python_exception_line(monkeypatch):
    error = _py4j_error(
        "org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 1.0 "
        "failed 1 times: org.apache.spark.api.python.PythonException: Traceback (most recent "
        "call last):\n  File \"/work/gan_lib/generation.py\", line 80, in draw\n    module = "
        "hub.load(handle)\nOSError: Cannot parse file /r/runs/g/generator/saved_model.pb\n\n"
        "\tat org.apache.spark.api.python.BasePythonRunner.handlePythonException\n")
    assert _recorded_failure(monkeypatch, error) == [
        ("failed", "OSError: Cannot parse file /r/runs/g/generator/saved_model.pb")]


def test_an_unexpected_jvm_error_ends_with_its_own_line_without_py4js_class(capsys):
    from jobs import common

    error = _py4j_error("org.apache.spark.SparkException: Job aborted due to stage failure: "
                        "... org.apache.spark.api.python.PythonException: Traceback (most "
                        "recent call last):\n  File \"x.py\", line 1, in f\nOSError: Cannot "
                        "parse file saved_model.pb\n\tat org.apache.spark...")

    def body():
        raise error
    assert common.run_body(common.new_parser("generate", "test"), body) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "hdp-gan generate: failed: OSError: Cannot parse file saved_model.pb")


def test_a_metastore_lost_during_a_run_ends_in_one_line_without_a_traceback(capsys, caplog):
    """What Spark raised when the metastore's Derby network server was killed while a
    preprocess run wrote its tables (measured once by hand; the message is Spark's own)."""
    from pyspark.errors import AnalysisException

    from jobs import common

    def body():
        raise AnalysisException(
            "org.apache.hadoop.hive.ql.metadata.HiveException: java.lang.RuntimeException: "
            "Unable to instantiate org.apache.hadoop.hive.ql.metadata.SessionHiveMetaStoreClient")
    assert common.run_body(common.new_parser("preprocess", "test"), body) == 1
    assert capsys.readouterr().err.splitlines() == [
        "hdp-gan preprocess: failed: "
        "the Hive metastore stopped answering during the run (Hive could "
        "not open a metastore client); check that the metastore or its database runs, then run "
        "the stage again"]
    assert "Traceback" not in caplog.text


def test_a_run_stopped_by_a_signal_says_so_in_its_row(monkeypatch):
    from jobs import common

    assert _recorded_failure(monkeypatch, common.Terminated()) == [
        ("failed", "terminated (SIGTERM)")]
    assert _recorded_failure(monkeypatch, KeyboardInterrupt()) == [
        ("failed", "interrupted (Ctrl-C)")]


def _fashion_folder(folder, count):
    """``count`` real Fashion-MNIST test images as PNG files in a folder per class."""
    from gan_lib import datasets
    from PIL import Image

    images, labels = datasets.load_fashion_mnist(split="test")
    for index in range(count):
        target = folder / datasets.FASHION_MNIST_CLASSES[labels[index]]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index]).save(target / f"{index}.png")
    return folder


def test_killed_preprocess_driver_leaves_no_visible_partial_dataset(tmp_path, job):
    """A preprocess killed mid-way, then rerun, gives exactly the rows of a clean run."""
    folder = _fashion_folder(tmp_path / "input", 300)
    root = tmp_path / "root"
    process = _start_job("preprocess", "--root", root, "--input", folder, "--dataset", "kill")
    staging = root / "runs"
    _wait_for(lambda: any(staging.glob("preprocess-*/staging")), 300, "decoding to start")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    subprocess.run(["pkill", "-9", "-f", str(root / "_local")], check=False)
    time.sleep(2)

    rerun = job("preprocess", "--root", root, "--input", folder, "--dataset", "kill")
    assert rerun.code == 0, rerun.stderr[-3000:]
    rows = parquet.read_table(root / "warehouse" / "hdp_gan.db" / "images" /
                              "dataset=kill").to_pylist()
    assert len(rows) == rerun.summary["counts"]["accepted"] == 300
    assert len({row["image_id"] for row in rows}) == 300


def test_two_runs_at_once_on_one_root_and_metastore_do_not_interfere(tmp_path):
    """Two preprocess runs of different datasets, started together, sharing the root and a
    metastore database (Derby's network server): both finish, both datasets are complete."""
    from gan_lib import datasets
    from PIL import Image
    from services import DerbyNetworkServer

    images, labels = datasets.load_fashion_mnist(split="test")
    for name, offset in (("left", 0), ("right", 200)):
        for index in range(offset, offset + 120):
            target = tmp_path / name / datasets.FASHION_MNIST_CLASSES[labels[index]]
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index]).save(target / f"{index}.png")
    derby = DerbyNetworkServer(tmp_path / "derby").start()
    try:
        shared = ["--root", tmp_path / "root", "--metastore-jdbc-url", derby.jdbc_url]
        processes = {name: _start_job("preprocess", *shared, "--input", tmp_path / name,
                                      "--dataset", name, "--state-dir", tmp_path / f"s-{name}")
                     for name in ("left", "right")}
        outputs = {name: process.communicate(timeout=900) for name, process in processes.items()}
    finally:
        derby.stop()
    for name, process in processes.items():
        assert process.returncode == 0, outputs[name][1][-3000:]
        summary = json.loads(outputs[name][0].strip().splitlines()[-1])
        assert summary["counts"]["accepted"] == 120
        rows = parquet.read_table(tmp_path / "root" / "warehouse" / "hdp_gan.db" / "images" /
                                  f"dataset={name}").to_pylist()
        assert len(rows) == 120
    assert _hidden_leftovers(tmp_path / "root") == []
    for name in ("left", "right"):  # a JVM may take a moment to exit after its job
        _wait_for(lambda: not _processes_under(tmp_path / f"s-{name}"), 30,
                  f"the {name} run's processes to exit")


def test_a_second_run_of_a_run_id_that_is_running_is_refused_and_the_first_completes(
        fashion_root, classifier_handle, job):
    run_id = "label-twice"
    first = _start_job("label", "--root", fashion_root, "--classifier", classifier_handle,
                       "--split", "test", "--run-id", run_id)
    try:
        _wait_for(lambda: (fashion_root / "runs" / run_id / ".running").exists(), 120,
                  "the first run to hold its run id", poll_s=0.2)
        second = job("label", "--root", fashion_root, "--classifier", classifier_handle,
                     "--split", "test", "--run-id", run_id)
        output, errors = first.communicate(timeout=900)
    finally:
        first.kill()
    assert second.code == 1
    assert second.last_error_line.startswith(f"hdp-gan label: failed: run {run_id} is running now "
                                             "(label on ")
    assert first.returncode == 0, errors[-3000:]
    labels = fashion_root / "warehouse" / "hdp_gan.db" / "labels" / f"run_id={run_id}"
    rows = parquet.read_table(labels).to_pylist()
    assert len(rows) == len({row["image_id"] for row in rows}) == 600
    assert not (fashion_root / "runs" / run_id / ".running").exists()


def _kill_driver(process, state_dir):
    """Kill a job's driver as a lost machine would: the Python process, then every JVM and
    executor started from its state folder, with no chance to clean up."""
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    subprocess.run(["pkill", "-9", "-f", str(state_dir)], check=False)
    _wait_for(lambda: not _processes_under(state_dir), 60, "the killed job's processes to go")


def _processes_under(state_dir):
    listing = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True,
                             text=True).stdout
    return [line for line in listing.splitlines()
            if str(state_dir) in line and "ps -ww" not in line]


def _python_workers(state_dir):
    """PIDs of the Python workers (pyspark.daemon) that this state folder's executors run."""
    executors = set(_executor_pids(state_dir))
    listing = subprocess.run(["ps", "-ww", "-eo", "pid,ppid,args"], capture_output=True,
                             text=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines()[1:]
            if "pyspark.daemon" in line and int(line.split()[1]) in executors]


def _hidden_leftovers(folder):
    """Temporary files and folders that readers could trip over."""
    return [path for path in folder.rglob("*") if path.name.endswith(".tmp")
            or path.name.startswith((".spark-staging", "_temporary"))]


def test_killed_training_driver_then_resume_gives_each_epoch_once(fashion_root, job):
    run_id = "train-driver-kill"
    process, run = _start_long_training(fashion_root, run_id)
    _kill_driver(process, fashion_root / "_local")
    # what a kill in the middle of writing the checkpoint pointer leaves, whenever it lands
    (run / "checkpoints" / ".latest.json.0123456789ab.tmp").write_text('{"file": ')

    saved = json.loads((run / "checkpoints" / "latest.json").read_text())["progress"]
    epochs = saved["epoch"] + 1
    resumed = job("train", "--root", fashion_root, "--resume", run_id, "--epochs", epochs,
                  *TRAIN_ARGS)
    assert resumed.code == 0, resumed.stderr[-3000:]

    warehouse = fashion_root / "warehouse" / "hdp_gan.db"
    metrics = parquet.read_table(warehouse / "training_metrics" / f"run_id={run_id}").to_pylist()
    assert sorted(row["epoch"] for row in metrics) == list(range(1, epochs + 1))
    runs = [row for row in parquet.read_table(warehouse / "runs").to_pylist()
            if row["run_id"] == run_id]
    assert [row["status"] for row in runs] == ["succeeded"]
    assert (run / "generator" / "saved_model.pb").exists()
    assert _hidden_leftovers(run) == [] and _hidden_leftovers(warehouse) == []


def test_killed_labelling_driver_then_rerun_gives_the_rows_of_a_clean_run(
        fashion_root, classifier_handle, job):
    run_id = "label-driver-kill"
    labels = fashion_root / "warehouse" / "hdp_gan.db" / "labels"
    process = _start_job("label", "--root", fashion_root, "--classifier", classifier_handle,
                         "--split", "train", "--run-id", run_id)
    try:
        _wait_for(lambda: (fashion_root / "runs" / run_id / "staging").exists(), 300,
                  "scoring to start", poll_s=0.2)
    finally:
        _kill_driver(process, fashion_root / "_local")

    rerun = job("label", "--root", fashion_root, "--classifier", classifier_handle, "--split",
                "train", "--run-id", run_id)
    assert rerun.code == 0, rerun.stderr[-3000:]
    clean = job("label", "--root", fashion_root, "--classifier", classifier_handle, "--split",
                "train", "--run-id", "label-clean")
    assert clean.code == 0, clean.stderr[-3000:]

    def rows(run):
        table = parquet.read_table(labels / f"run_id={run}").to_pylist()
        return sorted((row["image_id"], row["label"], round(row["confidence"], 5))
                      for row in table)
    after_kill, clean_rows = rows(run_id), rows("label-clean")
    assert after_kill == clean_rows
    assert len({row[0] for row in after_kill}) == len(after_kill) == rerun.summary["counts"][
        "labelled"]
    assert not (fashion_root / "runs" / run_id / "staging").exists()
    assert _hidden_leftovers(labels) == []
