"""Bringing the project to YARN: the Python environment archive, the spark-submit command of
scripts/submit_yarn.sh, the upload of the Oozie folder, and a rehearsal of the workflow's
Spark actions on local-cluster with the archive unpacked as YARN would.

The archive took 78 s the first time here (pip install and compression to a 771 MB archive)
and seconds afterwards: its dependency part is cached under HDP_GAN_ENV_CACHE
(~/.cache/hdp-gan/env). The rehearsal carries the ``rehearsal`` mark and is left out of the
default run (pytest.ini); ``scripts/rehearse.sh`` runs it, and CI runs that after the suite.
It took 7 min 21 s on 2 cores with the archive's dependencies cached, a good part of it
spent unpacking the archive for the driver and each executor of each of the five actions.
"""

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gan_lib import deploy
from services import free_port

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
REHEARSAL_MASTER = "local-cluster[2,1,2048]"
# a gzip file, as an env.tar.gz is, that is not worth building for a test of the upload
STAND_IN_ARCHIVE = gzip.compress(b"stand-in archive")


def run_script(*args, env=None, timeout=120):
    environment = {**os.environ, **(env or {})}
    return subprocess.run(["bash", *map(str, args)], capture_output=True, text=True,
                          env=environment, timeout=timeout, cwd=REPO)


def container_environment(**extra) -> dict:
    """An environment with nothing of this checkout's virtualenv in it."""
    keep = {name: value for name, value in os.environ.items()
            if name not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    keep["PATH"] = "/usr/bin:/bin"
    keep.update(extra)
    return keep


# --- the environment archive -----------------------------------------------------------------

@pytest.fixture(scope="session")
def env_archive(tmp_path_factory):
    """env.tar.gz from scripts/package_env.sh, and its JSON summary."""
    output = tmp_path_factory.mktemp("env-archive") / "env.tar.gz"
    result = run_script(SCRIPTS / "package_env.sh", output, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    yield output, json.loads(result.stdout.strip().splitlines()[-1])
    output.unlink(missing_ok=True)  # 770 MB that pytest would otherwise keep


@pytest.fixture(scope="session")
def unpacked_env(env_archive, tmp_path_factory):
    """The archive unpacked with gunzip and tar in another folder, as a NodeManager does."""
    folder = tmp_path_factory.mktemp("container") / "env"
    folder.mkdir()
    subprocess.run(["tar", "-xzf", str(env_archive[0]), "-C", str(folder)], check=True,
                   timeout=600)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_unpacked_env_interpreter_imports_the_project_and_its_dependencies(unpacked_env):
    code = ("import gan_lib, jobs.label, tensorflow, tensorflowonspark, pyspark, hdfs; "
            "print(gan_lib.__file__)")
    result = subprocess.run(["./env/bin/python", "-c", code], cwd=unpacked_env.parent,
                            capture_output=True, text=True, timeout=300,
                            env=container_environment(TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith(str(unpacked_env / "lib")), result.stdout


def test_env_scripts_run_with_the_interpreter_beside_them(unpacked_env):
    result = subprocess.run([str(unpacked_env / "bin" / "hdp-gan"), "--help"],
                            capture_output=True, text=True, timeout=120,
                            env=container_environment())
    assert result.returncode == 0, result.stderr[-2000:]
    assert "subcommands:" in result.stdout


def test_env_archive_leaves_out_spark_jars_and_tensorflow_headers(unpacked_env):
    site_packages = next(unpacked_env.glob("lib/python3*/site-packages"))
    assert (site_packages / "pyspark" / "__init__.py").is_file()
    assert not (site_packages / "pyspark" / "jars").exists()
    assert not (site_packages / "tensorflow" / "include").exists()
    assert (site_packages / "tensorflow" / "__init__.py").is_file()


def test_code_change_is_packed_without_rebuilding_the_dependencies(env_archive, tmp_path):
    """A copy of the project with one more module: the cached dependency part is reused and
    the new module is in the archive."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("setup.py", "constraints.txt", "README.md"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, copy / name)
    for name in ("gan_lib", "jobs"):
        shutil.copytree(REPO / name, copy / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "gan_lib" / "rehearsal_marker.py").write_text("MARK = 1\n")

    started = time.monotonic()
    summary = deploy.package_env(tmp_path / "env.tar.gz", shutil.which("python3"), repo=copy)
    assert summary["dependency_key"] == env_archive[1]["dependency_key"]
    assert summary["dependencies_rebuilt"] is False
    assert time.monotonic() - started < 120
    listing = subprocess.run(["tar", "-tzf", str(tmp_path / "env.tar.gz")], capture_output=True,
                             text=True, check=True, timeout=600).stdout.splitlines()
    assert any(name.endswith("site-packages/gan_lib/rehearsal_marker.py") for name in listing)
    assert any(name.endswith("site-packages/tensorflow/__init__.py") for name in listing)
    (tmp_path / "env.tar.gz").unlink()


def test_dependency_key_follows_the_pinned_versions(tmp_path):
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy2(REPO / "setup.py", copy / "setup.py")
    (copy / "constraints.txt").write_text("numpy==2.4.6\n")
    first = deploy.dependency_key(copy, sys.executable)
    (copy / "constraints.txt").write_text("numpy==2.4.7\n")
    assert deploy.dependency_key(copy, sys.executable) != first


def test_assembling_into_a_file_is_one_line(tmp_path):
    target = tmp_path / "app"
    target.write_text("a file")
    result = run_script(SCRIPTS / "deploy_oozie.sh", "--local-only", target)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(
        f"error: {target} is a file; give a new or empty folder")


def test_an_env_archive_that_is_not_gzip_is_refused_before_anything_is_laid_out(tmp_path):
    archive = tmp_path / "env.tar.gz"
    archive.write_text("hi")
    result = run_script(SCRIPTS / "deploy_oozie.sh", "--local-only", tmp_path / "app",
                        "--env-archive", archive)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(
        f"error: --env-archive {archive} is not a gzip archive; give the env.tar.gz that "
        "scripts/package_env.sh builds")
    assert not (tmp_path / "app").exists()


def test_an_upload_to_a_namenode_that_does_not_answer_is_one_line(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "workflow.xml").write_text("<workflow-app/>")
    result = subprocess.run([sys.executable, "-m", "gan_lib.deploy", "upload",
                             str(tmp_path / "app"),
                             f"webhdfs://127.0.0.1:{free_port()}/apps/hdp-gan"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        "python -m gan_lib.deploy upload: failed: cannot check webhdfs://127.0.0.1:")
    assert "Traceback" not in result.stderr and "Fetching status" not in result.stderr


# --- scripts/submit_yarn.sh --------------------------------------------------------------------

def dry_run(*job_and_args, **env):
    result = run_script(SCRIPTS / "submit_yarn.sh", "--dry-run", *job_and_args, env=env)
    assert result.returncode == 0, result.stderr
    import shlex
    return shlex.split(result.stdout)


def conf_of(command: list[str]) -> dict:
    return dict(command[index + 1].split("=", 1) for index, token in enumerate(command)
                if token == "--conf")


def test_submit_yarn_dry_run_runs_in_cluster_mode_with_the_shipped_interpreter():
    command = dry_run("preprocess", "--root", "hdfs://nn:8020/gan",
                      HDP_GAN_ENV_ARCHIVE="hdfs://nn:8020/apps/env.tar.gz")
    assert command[command.index("--master") + 1] == "yarn"
    assert command[command.index("--deploy-mode") + 1] == "cluster"
    assert command[command.index("--archives") + 1] == "hdfs://nn:8020/apps/env.tar.gz#env"
    conf = conf_of(command)
    assert conf["spark.pyspark.python"] == "./env/bin/python"
    assert conf["spark.yarn.appMasterEnv.PYSPARK_PYTHON"] == "./env/bin/python"
    assert conf["spark.executor.memoryOverhead"] == deploy.YARN_MEMORY[
        "spark.executor.memoryOverhead"]
    assert "--py-files" not in command
    job = command.index(str(REPO / "jobs" / "preprocess.py"))
    assert command[job + 1:] == ["--master=yarn", "--root", "hdfs://nn:8020/gan"]


def test_submit_yarn_takes_dry_run_wherever_it_stands_among_the_arguments():
    first = dry_run("preprocess", "--root", "hdfs://nn:8020/gan")
    result = run_script(SCRIPTS / "submit_yarn.sh", "preprocess", "--root", "hdfs://nn:8020/gan",
                        "--dry-run")
    assert result.returncode == 0, result.stderr
    import shlex
    assert shlex.split(result.stdout) == first


def test_submit_yarn_help_prints_its_usage_and_environment_without_submitting():
    result = run_script(SCRIPTS / "submit_yarn.sh", "--help")
    assert result.returncode == 0, result.stderr
    assert "  scripts/submit_yarn.sh [--dry-run] JOB [JOB OPTIONS...]" in result.stdout
    assert "  HDP_GAN_ENV_ARCHIVE   env.tar.gz from scripts/package_env.sh" in result.stdout
    assert "set -euo" not in result.stdout and "spark-submit --master" not in result.stdout


def test_submit_yarn_dry_run_for_train_carries_the_training_settings():
    conf = conf_of(dry_run("train", "--epochs", "1", HDP_GAN_EXECUTORS="3"))
    assert conf["spark.task.maxFailures"] == "1"
    assert conf["spark.yarn.maxAppAttempts"] == "1"
    assert conf["spark.dynamicAllocation.enabled"] == "false"
    assert conf["spark.executor.instances"] == "3"
    assert conf["spark.task.cpus"] == conf["spark.executor.cores"]
    assert "spark.task.maxFailures" not in conf_of(dry_run("generate", "--generator-run", "x"))


def test_submit_yarn_master_and_deploy_mode_can_be_overridden():
    command = dry_run("label", "--split", "test", SPARK_MASTER=REHEARSAL_MASTER,
                      SPARK_DEPLOY_MODE="client")
    assert command[command.index("--master") + 1] == REHEARSAL_MASTER
    assert f"--master={REHEARSAL_MASTER}" in command


def test_submit_yarn_forwards_webhdfs_and_user_to_driver_and_executors():
    conf = conf_of(dry_run("generate", "--generator-run", "x",
                           HDP_GAN_WEBHDFS_URL="http://nn:50070", HADOOP_USER_NAME="gan"))
    for prefix in ("spark.yarn.appMasterEnv.", "spark.executorEnv."):
        assert conf[prefix + "HDP_GAN_WEBHDFS_URL"] == "http://nn:50070"
        assert conf[prefix + "HADOOP_USER_NAME"] == "gan"


def test_submit_yarn_passes_the_keytab_path_but_never_its_content(tmp_path):
    keytab = tmp_path / "gan.keytab"
    keytab.write_text("KEYTAB-CONTENT-MUST-NOT-SHOW")
    result = run_script(SCRIPTS / "submit_yarn.sh", "--dry-run", "preprocess",
                        env={"HDP_GAN_PRINCIPAL": "gan@EXAMPLE.COM", "HDP_GAN_KEYTAB": str(keytab)})
    assert result.returncode == 0, result.stderr
    assert f"--principal gan@EXAMPLE.COM --keytab {keytab}" in result.stdout
    assert "KEYTAB-CONTENT" not in result.stdout + result.stderr


def test_submit_yarn_refuses_a_principal_without_a_keytab():
    result = run_script(SCRIPTS / "submit_yarn.sh", "--dry-run", "preprocess",
                        env={"HDP_GAN_PRINCIPAL": "gan@EXAMPLE.COM", "HDP_GAN_KEYTAB": ""})
    assert result.returncode == 2
    assert "HDP_GAN_PRINCIPAL and HDP_GAN_KEYTAB" in result.stderr


def test_submit_yarn_refuses_an_unknown_job():
    result = run_script(SCRIPTS / "submit_yarn.sh", "--dry-run", "train_gan")
    assert result.returncode == 2
    assert "'train_gan' is not one of jobs/*.py" in result.stderr


def test_submit_yarn_refuses_a_missing_local_archive(tmp_path):
    result = run_script(SCRIPTS / "submit_yarn.sh", "preprocess",
                        env={"HDP_GAN_ENV_ARCHIVE": str(tmp_path / "none.tar.gz")})
    assert result.returncode == 2
    assert "build it with scripts/package_env.sh" in result.stderr


# --- scripts/deploy_oozie.sh -------------------------------------------------------------------

def test_deploy_oozie_uploads_the_whole_folder_and_prints_the_run_command(tmp_path):
    archive = tmp_path / "env.tar.gz"
    archive.write_bytes(STAND_IN_ARCHIVE)
    target = tmp_path / "hdfs" / "apps" / "hdp-gan"
    result = run_script(SCRIPTS / "deploy_oozie.sh", "--env-archive", archive,
                        "--app-path", target.as_uri(), "--oozie-schema", "0.5")
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in target.iterdir()) == [
        "coordinator.xml", "env.tar.gz", "lib", "workflow.xml"]
    assert (target / "env.tar.gz").read_bytes() == STAND_IN_ARCHIVE
    assert 'xmlns="uri:oozie:workflow:0.5"' in (target / "workflow.xml").read_text()
    assert f"-config {REPO}/oozie/job.properties -run" in result.stdout


def test_deploy_oozie_uploads_to_hdfs_through_webhdfs(tmp_path):
    """An hdfs:// application path, reached through HDP_GAN_WEBHDFS_URL as on the sandbox,
    against the loopback WebHDFS server of tests/webhdfs_server.py."""
    from webhdfs_server import WebHdfsServer

    archive = tmp_path / "env.tar.gz"
    archive.write_bytes(STAND_IN_ARCHIVE)
    namespace = tmp_path / "namespace"
    namespace.mkdir()
    with WebHdfsServer(namespace) as server:
        result = run_script(SCRIPTS / "deploy_oozie.sh", "--env-archive", archive,
                            env={"HDP_GAN_WEBHDFS_URL": server.url, "HADOOP_USER_NAME": "gan"})
        operations = {op for _, op, _ in server.requests}
    assert result.returncode == 0, result.stderr
    uploaded = namespace / "user" / "gan" / "apps" / "hdp-gan"
    assert (uploaded / "lib" / "train_dcgan.py").read_bytes() == \
        (REPO / "jobs" / "train_dcgan.py").read_bytes()
    assert (uploaded / "env.tar.gz").read_bytes() == STAND_IN_ARCHIVE
    assert {"CREATE", "RENAME"} <= operations
    assert "deployed to hdfs://sandbox-hdp.hortonworks.com:8020/user/gan/apps/hdp-gan" \
        in result.stdout


def test_deploy_oozie_refuses_to_upload_without_an_archive(tmp_path):
    result = run_script(SCRIPTS / "deploy_oozie.sh", "--env-archive", tmp_path / "none.tar.gz",
                        "--app-path", (tmp_path / "app").as_uri())
    assert result.returncode == 2
    assert "build it with scripts/package_env.sh" in result.stderr
    assert not (tmp_path / "app").exists()


def test_assembling_into_a_folder_in_use_is_refused(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "notes.txt").write_text("mine")
    result = run_script(SCRIPTS / "deploy_oozie.sh", "--local-only", tmp_path / "app")
    assert result.returncode == 2
    assert "is not empty" in result.stderr
    assert (tmp_path / "app" / "notes.txt").read_text() == "mine"


# --- rehearsal of the workflow ------------------------------------------------------------------

def spark_home_for(folder: Path) -> Path:
    """A Spark home whose entries link to the pyspark package's, with its own work folder:
    local-cluster unpacks the archive for each executor under SPARK_HOME/work."""
    import pyspark

    package = Path(pyspark.__file__).resolve().parent
    home = folder / "spark-home"
    (home / "work").mkdir(parents=True)
    for entry in package.iterdir():
        if entry.name != "work":
            (home / entry.name).symlink_to(entry)
    return home


def run_action(command, env, log: Path, timeout_s: float) -> tuple[int, dict | None]:
    """Run one spark-submit in its own process group, its output in ``log`` (spark-submit
    prints the Python driver's output, errors included, on standard output); kill the group
    on timeout. Returns the exit code and the job's JSON line."""
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True,
                                   env=env, start_new_session=True)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return -1, None
    lines = [line for line in log.read_text(errors="replace").splitlines()
             if line.startswith("{")]
    return process.returncode, (json.loads(lines[-1]) if lines else None)


@pytest.mark.rehearsal
def test_rehearsal_runs_every_workflow_action_in_order_on_local_cluster(
        env_archive, unpacked_env, tmp_path, request):
    """Every Spark action of the assembled workflow, in workflow order, with its own
    spark-opts and arguments. Two things differ from YARN: the master is local-cluster, and
    the driver runs in client mode (Spark's standalone master cannot run Python drivers in
    cluster mode) with the unpacked archive's interpreter standing in for the application
    master's ./env/bin/python."""
    from test_oozie import evaluate_decision, sample_values, spark_opts

    app = deploy.assemble_app(tmp_path / "app", env_archive[0])
    request.addfinalizer(lambda: (app / deploy.ENV_ARCHIVE_NAME).unlink(missing_ok=True))
    root = tmp_path / "root"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    ingest = subprocess.run([sys.executable, "-m", "jobs.cli", "ingest", "--root", str(root),
                             "--limit", "300"], capture_output=True, text=True, env=env,
                            timeout=600)
    assert ingest.returncode == 0, ingest.stderr[-3000:]

    values = sample_values(
        root=root.as_uri(), envArchive=str(app / deploy.ENV_ARCHIVE_NAME), webhdfsUrl="",
        metastoreUri="", runTag="rehearsal", trainEpochs="1", trainMaxImages="256",
        classifierEpochs="1", classifierMaxImages="0", generateCount="32",
        inputDir=(root / "raw" / "fashion-mnist").as_uri(), **{"wf:appPath()": str(app)})
    spark_home = spark_home_for(tmp_path)
    env.update(SPARK_HOME=str(spark_home), PYSPARK_PYTHON=deploy.SHIPPED_PYTHON)
    start, nodes = deploy.read_workflow(app / "workflow.xml")

    summaries, timings, name = {}, {}, start
    while nodes[name].kind != "end":
        node = nodes[name]
        if node.kind == "decision":
            existing = {uri for uri in [deploy.expand("${classifierDefaultHandle}", values)]
                        if Path(uri.removeprefix("file://")).exists()}
            name = evaluate_decision(node, values, existing)
            continue
        conf, options = spark_opts(node, values)
        assert set(options) <= {"--archives", "--queue"}, options
        conf["spark.pyspark.driver.python"] = str(unpacked_env / "bin" / "python")
        command = [str(spark_home / "bin" / "spark-submit"), "--master", REHEARSAL_MASTER,
                   "--deploy-mode", "client", "--name", deploy.expand(node.spark["name"], values),
                   "--archives", options["--archives"]]
        for key, value in conf.items():
            command += ["--conf", f"{key}={value}"]
        command.append(deploy.expand(node.spark["jar"], values))
        command += [f"--master={REHEARSAL_MASTER}" if arg == "--master=yarn"
                    else deploy.expand(arg, values) for arg in node.spark["args"]]

        started = time.monotonic()
        log = tmp_path / f"{name}.log"
        code, summary = run_action(command, env, log, timeout_s=900)
        timings[name] = round(time.monotonic() - started)
        for work in (spark_home / "work").iterdir():
            shutil.rmtree(work, ignore_errors=True)
        errors = [line for line in log.read_text(errors="replace").splitlines()
                  if "error" in line.lower() or "failed" in line.lower()]
        assert code == 0 and summary and summary["status"] == "succeeded", \
            f"{name} failed with exit code {code} (log: {log}):\n" + "\n".join(errors[-15:])
        summaries[name] = summary
        name = node.ok

    print(f"rehearsal timings in seconds: {timings}")
    assert list(summaries) == ["preprocess", "train", "train-classifier", "generate", "label"]
    assert summaries["train"]["run_id"] == "train-rehearsal"
    assert summaries["generate"]["lineage"]["generator_run"] == "train-rehearsal"
    assert summaries["label"]["run_id"] == "generate-rehearsal"
