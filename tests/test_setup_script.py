"""The set-up script and ingest name a missing or wrong prerequisite in one line with its fix."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _fake_java(home, version):
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2024-01-16\' >&2\n')
    java.chmod(0o755)
    return java


def _setup(tmp_path, **env):
    environment = {name: value for name, value in os.environ.items() if name != "JAVA_HOME"}
    environment.update(HDP_GAN_VENV=str(tmp_path / "venv"), HDP_GAN_APT="", **env)
    return subprocess.run(["bash", str(REPO / "scripts" / "setup_env.sh")],
                          capture_output=True, text=True, env=environment, timeout=60)


def test_setup_refuses_a_java_that_spark_cannot_run_on(tmp_path):
    fake_java = _fake_java(tmp_path, "21.0.2")
    result = _setup(tmp_path, PATH=f"{fake_java.parent}:{os.environ['PATH']}")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "[setup] error: Java 21 found; Spark 3.5 needs Java 8, 11 or 17 (apt-get install "
        "openjdk-17-jre-headless, then set JAVA_HOME)"]
    assert not (tmp_path / "venv").exists()


def test_setup_checks_the_java_of_java_home_which_spark_starts_not_the_one_on_path(tmp_path):
    """As its advice says: with Java 21 on PATH, a JAVA_HOME of Java 17 passes (here the next
    check, of Python, stops the set-up), and a JAVA_HOME of Java 21 is refused by name."""
    on_path = _fake_java(tmp_path / "path", "21.0.2")
    good, bad = _fake_java(tmp_path / "jdk17", "17.0.15"), _fake_java(tmp_path / "jdk21", "21.0.2")
    path = f"{on_path.parent}:{os.environ['PATH']}"
    no_python = tmp_path / "no-python"
    no_python.write_text("#!/bin/sh\nexit 1\n")
    no_python.chmod(0o755)
    passed = _setup(tmp_path, PATH=path, JAVA_HOME=str(good.parent.parent),
                    PYTHON=str(no_python))
    assert passed.returncode == 1
    assert passed.stderr.strip().splitlines()[-1].startswith(
        "[setup] error: Python 3.10 to 3.13 is needed")
    refused = _setup(tmp_path, PATH=path, JAVA_HOME=str(bad.parent.parent))
    assert refused.stderr.strip().splitlines() == [
        f"[setup] error: Java 21 found at JAVA_HOME ({bad.parent.parent}); Spark 3.5 needs "
        "Java 8, 11 or 17: point JAVA_HOME at one (apt-get install openjdk-17-jre-headless "
        "puts it in /usr/lib/jvm)"]


def test_ingest_without_the_dataset_package_names_the_package_to_install(job, tmp_path):
    result = job("ingest", "--root", tmp_path, "--source", tmp_path / "empty")
    assert result.code == 1
    assert "Fashion-MNIST is not in" in result.last_error_line
    assert "apt-get install dataset-fashion-mnist" in result.last_error_line
    assert "Traceback" not in result.stderr


def test_ingest_without_its_source_files_leaves_no_new_root_behind(job, tmp_path):
    """The source is checked before the root is made: a failed first ingest leaves the
    folder it was given as it was."""
    from gan_lib.datasets import FASHION_MNIST_DIR, FASHION_MNIST_FILES
    half = tmp_path / "train-only"
    half.mkdir()
    for name in FASHION_MNIST_FILES["train"]:  # the test split's files are missing
        (half / name).write_bytes(Path(FASHION_MNIST_DIR, name).read_bytes())
    result = job("ingest", "--root", tmp_path / "root", "--source", half, "--limit", "3")
    assert result.code == 1
    assert result.last_error_line.startswith(
        f"hdp-gan ingest: failed: Fashion-MNIST is not in {half}")
    assert not (tmp_path / "root").exists()


def test_ingest_takes_the_idx_files_unpacked_as_well_as_compressed(job, tmp_path):
    import gzip

    from gan_lib.datasets import FASHION_MNIST_DIR, FASHION_MNIST_FILES
    unpacked = tmp_path / "idx"
    unpacked.mkdir()
    for name in (name for pair in FASHION_MNIST_FILES.values() for name in pair):
        with gzip.open(f"{FASHION_MNIST_DIR}/{name}") as compressed:
            (unpacked / name.removesuffix(".gz")).write_bytes(compressed.read())
    result = job("ingest", "--root", tmp_path / "root", "--source", unpacked, "--limit", "3")
    assert result.code == 0, result.stderr[-2000:]
    assert result.summary["counts"]["per_split"] == {"train": 3, "test": 3}


def _demo_in_stand_in(tmp_path, *args, **env) -> tuple[subprocess.CompletedProcess, Path]:
    """Run scripts/demo.sh from a folder ``work`` in a stand-in repository whose set-up puts
    an ``hdp-gan`` on PATH that records each --root it is given (returned: the record file)
    and prints a stage's JSON line."""
    stand_in = tmp_path / "repo"
    (stand_in / "scripts").mkdir(parents=True)
    (stand_in / "scripts" / "demo.sh").write_text((REPO / "scripts" / "demo.sh").read_text())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorder = bin_dir / "hdp-gan"
    recorder.write_text(
        '#!/bin/sh\nwhile [ $# -gt 0 ]; do\n'
        '  if [ "$1" = --root ]; then echo "$2" >> "$HDP_GAN_CALLS"; fi\n'
        '  if [ "$1" = --help ]; then echo "usage: hdp-gan pipeline"; exit 0; fi; shift\n'
        'done\n'
        'echo \'{"runs": {"generate": "g"}, "counts": {}, "outputs": {}}\'\n')
    recorder.chmod(0o755)
    (stand_in / "scripts" / "setup_env.sh").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    started_in = tmp_path / "work"
    started_in.mkdir()
    calls = tmp_path / "calls"
    result = subprocess.run(["bash", str(stand_in / "scripts" / "demo.sh"), *args],
                            cwd=started_in, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "HDP_GAN_CALLS": str(calls), **env})
    return result, calls


def test_the_demo_takes_a_relative_root_from_the_folder_it_was_started_in(tmp_path):
    """The demo changes into the repository; a relative HDP_GAN_DEMO_ROOT still means the
    folder under the one the user started it from."""
    result, calls = _demo_in_stand_in(tmp_path, HDP_GAN_DEMO_ROOT="my-root")
    assert result.returncode == 0, result.stderr
    wanted = str(tmp_path / "work" / "my-root")
    assert calls.read_text().splitlines() == [wanted] * 2  # pipeline, then sql


def test_the_demos_help_shows_the_pipelines_options_and_runs_nothing(tmp_path):
    result, calls = _demo_in_stand_in(tmp_path, "--epochs", "3", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("usage: scripts/demo.sh [hdp-gan pipeline")
    assert "usage: hdp-gan pipeline" in result.stdout
    assert not calls.exists()
