"""The class-data archive of Spark's JVMs: built once per machine, mapped by the driver and
executor JVMs of every job on a local master, never installed when a JVM cannot start with
it."""

import subprocess

import pytest

from gan_lib import class_archive, session
from gan_lib.config import Settings


@pytest.fixture(scope="module")
def archive():
    """The machine's archive (scripts/setup_env.sh builds it; built here when it is not)."""
    path = class_archive.build()
    assert path is not None and path.is_file()
    return path


def _driver_jvm_with(options: str, state) -> subprocess.CompletedProcess:
    """A JVM started as a job's driver is (its Spark home's class path and the job's driver
    options), asked only for Spark's version."""
    home = state / "spark-home"
    command = [str(class_archive.java_executable()), *options.split(),
               "-cp", f"{home}/conf:{home}/jars/*", "org.apache.spark.deploy.SparkSubmit",
               "--version"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("jvm", ["driver", "executor"])
def test_a_local_jobs_jvms_map_the_archive_through_their_own_spark_home(archive, tmp_path, jvm):
    """-Xshare:on makes the JVM fail unless it maps the archive: each root has its own Spark
    home (links to pyspark's jars), which the archive, recorded from pyspark's, must accept;
    executors of one core also run another garbage collector than the recording driver."""
    settings = Settings(root=(tmp_path / "root").as_uri(), master="local-cluster[2,1,2048]")
    options = session.spark_conf(settings, "test")[f"spark.{jvm}.extraJavaOptions"]
    assert f"-XX:SharedArchiveFile={archive}" in options
    session.prepare_local_machine(settings)
    started = _driver_jvm_with(f"{options.replace('-Xlog:cds*=off', '')} -Xshare:on "
                               "-Xlog:class+load=info", settings.local_state_dir)
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    assert "source: shared objects file (top)" in started.stdout  # Spark's classes, mapped


def test_an_archive_a_jvm_cannot_start_with_is_not_taken(archive, tmp_path, monkeypatch):
    """A JVM given a partly written archive does not start at all; the build checks each one
    before it takes the archive's name, and the crashed JVM's report stays out of the
    caller's working folder."""
    partial = tmp_path / "partial.jsa"
    with open(archive, "rb") as whole, open(partial, "wb") as part:
        part.write(whole.read(archive.stat().st_size // 3))
    working = tmp_path / "working"
    working.mkdir()
    monkeypatch.chdir(working)
    assert not class_archive.starts_with(partial)
    assert class_archive.starts_with(archive)
    assert list(working.iterdir()) == []


def test_jobs_start_without_the_archive_when_it_is_off_or_not_built(monkeypatch, tmp_path):
    monkeypatch.setenv(class_archive.FOLDER_ENV, str(tmp_path / "empty"))
    settings = Settings(root=(tmp_path / "root").as_uri(), master="local[2]")
    assert "SharedArchiveFile" not in session.spark_conf(settings, "t")[
        "spark.driver.extraJavaOptions"]
    monkeypatch.delenv(class_archive.FOLDER_ENV)
    monkeypatch.setenv(class_archive.ENABLED_ENV, "off")
    assert class_archive.java_options() == ""


def test_the_built_check_tells_by_its_exit_code_whether_this_javas_archive_is_there(
        archive, monkeypatch, tmp_path):
    assert class_archive.main(["--built"]) == 0
    monkeypatch.setenv(class_archive.FOLDER_ENV, str(tmp_path / "empty"))
    assert class_archive.main(["--built"]) == 1


def test_a_new_archive_replaces_its_own_pysparks_old_ones_and_leaves_other_virtualenvs(
        tmp_path):
    """Two clones on one machine each keep their archive; a pyspark replaced under the same
    folder, or one whose folder is gone, loses its old archive."""
    other_venv_jars = tmp_path / "other-venv" / "jars"
    other_venv_jars.mkdir(parents=True)
    owners = {"new": class_archive._pyspark_jars(), "old-here": class_archive._pyspark_jars(),
              "other-venv": other_venv_jars, "gone-venv": tmp_path / "gone" / "jars"}
    for name, jars in owners.items():
        (tmp_path / f"spark-classes-{name}.jsa").write_bytes(b"archive")
        (tmp_path / f"spark-classes-{name}.jars").write_text(str(jars))
    class_archive._remove_replaced(tmp_path / "spark-classes-new.jsa")
    assert sorted(path.name for path in tmp_path.glob("spark-classes-*")) == [
        "spark-classes-new.jars", "spark-classes-new.jsa",
        "spark-classes-other-venv.jars", "spark-classes-other-venv.jsa"]
