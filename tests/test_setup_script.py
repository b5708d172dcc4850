"""The set-up script and ingest name a missing or wrong prerequisite in one line with its fix."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_setup_refuses_a_java_that_spark_cannot_run_on(tmp_path):
    fake_java = tmp_path / "bin" / "java"
    fake_java.parent.mkdir()
    fake_java.write_text('#!/bin/sh\necho \'openjdk version "21.0.2" 2024-01-16\' >&2\n')
    fake_java.chmod(0o755)

    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "setup_env.sh")], capture_output=True, text=True,
        env={**os.environ, "PATH": f"{fake_java.parent}:{os.environ['PATH']}",
             "HDP_GAN_VENV": str(tmp_path / "venv")}, timeout=60)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "[setup] error: Java 21 found; Spark 3.5 needs Java 8, 11 or 17 (apt-get install "
        "openjdk-17-jre-headless, then set JAVA_HOME)"]
    assert not (tmp_path / "venv").exists()


def test_ingest_without_the_dataset_package_names_the_package_to_install(job, tmp_path):
    result = job("ingest", "--root", tmp_path, "--source", tmp_path / "empty")
    assert result.code == 1
    assert "Fashion-MNIST is not in" in result.last_error_line
    assert "apt-get install dataset-fashion-mnist" in result.last_error_line
    assert "Traceback" not in result.stderr
