"""Faults injected into running jobs: the outcome is a fast, clear failure, and a rerun gives
what a clean run gives."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as parquet

from conftest import REPO, TRAIN_ARGS


def _start_job(*args):
    return subprocess.Popen([sys.executable, "-m", "jobs.cli", *[str(a) for a in args]],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")


def _executor_pids(root):
    """PIDs of the executor JVMs started from this root's Spark home."""
    listing = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True,
                             text=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines()
            if "CoarseGrainedExecutorBackend" in line and str(root) in line]


def test_killed_executor_fails_training_fast_and_resume_continues(fashion_root):
    run_id = "train-executor-kill"
    run = fashion_root / "runs" / run_id
    process = _start_job("train", "--root", fashion_root, "--run-id", run_id, "--epochs", "40",
                         *TRAIN_ARGS)
    try:
        _wait_for(lambda: (run / "checkpoints" / "latest.json").exists(), 600,
                  "a first checkpoint")
        pids = _executor_pids(fashion_root / "_local")
        assert len(pids) == 2
        os.kill(pids[-1], signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = process.communicate(timeout=300)
        surfaced = time.monotonic() - killed_at
    finally:
        if process.poll() is None:
            process.kill()
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


def test_killed_preprocess_driver_leaves_no_visible_partial_dataset(tmp_path, job):
    """A preprocess killed mid-way, then rerun, gives exactly the rows of a clean run."""
    from gan_lib import datasets
    from PIL import Image

    images, labels = datasets.load_fashion_mnist(split="test")
    folder = tmp_path / "input"
    for index in range(300):
        target = folder / datasets.FASHION_MNIST_CLASSES[labels[index]]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index]).save(target / f"{index}.png")
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
