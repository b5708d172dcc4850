"""Shared fixtures: running jobs as separate processes (as spark-submit and Oozie do), and a
small real Fashion-MNIST root prepared once per test session."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
TRAIN_ARGS = ["--max-images", "512", "--batch-size", "64", "--log-every", "4",
              "--sample-count", "10"]

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass
class JobResult:
    code: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict:
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        assert lines, f"no JSON line on stdout; stderr ends with:\n{self.stderr[-3000:]}"
        return json.loads(lines[-1])

    @property
    def last_error_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


# Jobs run on local[2] here: real Spark in one JVM with two task threads, where a small job
# takes about two thirds of its time on the default local-cluster (two executor JVMs).
# Training needs executor JVMs (each TensorFlow node is one), so it keeps the default, and so
# do the jobs that the fault tests kill or run side by side, and the preprocess stage of
# the pipeline over WebHDFS (``master=None``).
ONE_JVM_STAGES = {"ingest", "preprocess", "train-classifier", "generate", "label", "report",
                  "sql", "runs"}
ONE_JVM_MASTER = "local[2]"


def job_command(*args, master=ONE_JVM_MASTER) -> list[str]:
    """The command line of ``hdp-gan ARGS``, on ``master`` for the stages above unless the
    arguments name a master themselves."""
    args = [str(a) for a in args]
    if master and args and args[0] in ONE_JVM_STAGES and "--master" not in args:
        args = [args[0], "--master", master, *args[1:]]
    return [sys.executable, "-m", "jobs.cli", *args]


def run_job(*args, timeout=900, env=None, master=ONE_JVM_MASTER) -> JobResult:
    """Run ``hdp-gan ARGS`` in a child process and capture its output."""
    process = subprocess.run(
        job_command(*args, master=master), cwd=REPO,
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return JobResult(process.returncode, process.stdout, process.stderr)


@pytest.fixture(scope="session")
def job():
    return run_job


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory):
    """A root with 600 real training and 600 test Fashion-MNIST images, preprocessed."""
    if not FASHION_MNIST.exists():
        pytest.fail("Fashion-MNIST is missing: scripts/test.sh installs the Debian package "
                    "dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("fashion-root")
    ingest = run_job("ingest", "--root", root, "--limit", 600)
    assert ingest.code == 0, ingest.stderr[-3000:]
    preprocess = run_job("preprocess", "--root", root)
    assert preprocess.code == 0, preprocess.stderr[-3000:]
    return root


@pytest.fixture(scope="session")
def trained(fashion_root):
    """A two-epoch, two-worker training run on the small root: (root, its JSON summary)."""
    result = run_job("train", "--root", fashion_root, "--epochs", "2", *TRAIN_ARGS)
    assert result.code == 0, result.stderr[-4000:]
    return fashion_root, result.summary


@pytest.fixture(scope="session")
def classifier_handle(fashion_root):
    """The reference classifier trained on the small root; returns its handle."""
    result = run_job("train-classifier", "--root", fashion_root, "--epochs", "3")
    assert result.code == 0, result.stderr[-4000:]
    return result.summary["outputs"]["handle"]


@pytest.fixture(scope="session")
def generated(trained):
    """60 images drawn from the trained generator as run 'generate-test': (root, summary)."""
    root, summary = trained
    result = run_job("generate", "--root", root, "--generator-run", summary["run_id"],
                     "--count", "60", "--run-id", "generate-test", "--seed", "5")
    assert result.code == 0, result.stderr[-4000:]
    return root, result.summary


@pytest.fixture(scope="session")
def labelled(generated, classifier_handle):
    """The generated run labelled by the reference classifier: (root, label summary)."""
    root, summary = generated
    result = run_job("label", "--root", root, "--generated", summary["run_id"])
    assert result.code == 0, result.stderr[-4000:]
    return root, result.summary
