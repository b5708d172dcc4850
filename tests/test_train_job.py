"""Distributed training with TensorFlowOnSpark: two workers in separate executor JVMs
(local-cluster), on real Fashion-MNIST images."""

import json
import subprocess
import time

import pyarrow.parquet as parquet
import pytest

from conftest import TRAIN_ARGS
from gan_lib.config import Settings
from jobs import train_dcgan


def _run_folder(root, run_id):
    return root / "runs" / run_id


def test_both_workers_step_in_lock_step_to_identical_weights(trained):
    root, summary = trained
    nodes = [json.loads(p.read_text()) for p in
             sorted((_run_folder(root, summary["run_id"]) / "nodes").glob("rank-*.json"))]
    assert [node["rank"] for node in nodes] == [0, 1]
    assert nodes[0]["step"] == nodes[1]["step"] == 16
    assert nodes[0]["generator_checksum"] == nodes[1]["generator_checksum"]


@pytest.mark.parametrize("master, requested, pinned", [
    (None, None, True), ("local-cluster[2,1,2048]", None, True), ("yarn", None, False),
    ("yarn", True, True), (None, False, False)])
def test_nodes_are_pinned_by_default_only_where_spark_runs_on_this_machine(
        master, requested, pinned):
    assert train_dcgan._pin_cores(requested, Settings(root="/tmp/r", master=master)) is pinned


def test_each_node_runs_pinned_to_its_own_core_on_this_machine(trained):
    root, summary = trained
    nodes = [json.loads(p.read_text()) for p in
             sorted((_run_folder(root, summary["run_id"]) / "nodes").glob("rank-*.json"))]
    cores = [node["cores"] for node in nodes]
    assert [len(node_cores) for node_cores in cores] == [1, 1]
    assert cores[0] != cores[1]


def test_each_epoch_leaves_a_sample_grid_checkpoint_and_metrics_row(trained):
    root, summary = trained
    run = _run_folder(root, summary["run_id"])
    assert sorted(p.name for p in (run / "samples").glob("epoch-*.png")) == [
        "epoch-0001.png", "epoch-0002.png"]
    assert (run / "samples" / "progress.gif").stat().st_size > 0
    assert (run / "loss_curve.png").stat().st_size > 0
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["progress"]["epoch"] == 2
    rows = parquet.read_table(
        root / "warehouse" / "hdp_gan.db" / "training_metrics" / f"run_id={summary['run_id']}"
    ).to_pylist()
    assert sorted(row["epoch"] for row in rows) == [1, 2]
    assert all(row["d_loss"] > 0 and row["images_per_second"] > 0 for row in rows)


def test_exported_generator_loads_with_hub_and_draws_dataset_range_images(trained):
    import tensorflow as tf
    import tensorflow_hub as hub

    root, summary = trained
    module = hub.load(str(_run_folder(root, summary["run_id"]) / "generator"))
    images = module.signatures["serving_default"](noise=tf.random.normal((5, 100)))["images"]
    assert images.dtype == tf.uint8
    assert tuple(images.shape) == (5, 28, 28, 1)


def test_labelled_fashion_mnist_conditions_the_networks_on_its_ten_classes(trained):
    import tensorflow_hub as hub

    root, summary = trained
    run = _run_folder(root, summary["run_id"])
    nodes = [json.loads(p.read_text()) for p in sorted((run / "nodes").glob("rank-*.json"))]
    assert [node["classes"] for node in nodes] == [10, 10]
    module = hub.load(str(run / "generator"))
    assert int(module.class_count.numpy()) == 10
    assert "generate_class" in module.signatures


@pytest.fixture(scope="module")
def resumed(trained, job):
    """The two-epoch run continued to a third epoch: (first epochs' metrics, job result)."""
    root, summary = trained
    run = _run_folder(root, summary["run_id"])
    first_epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    result = job("train", "--root", root, "--resume", summary["run_id"], "--epochs", "3",
                 *TRAIN_ARGS)
    assert result.code == 0, result.stderr[-4000:]
    return first_epochs, result


def test_resume_continues_from_the_last_checkpoint(trained, resumed):
    root, summary = trained
    run = _run_folder(root, summary["run_id"])
    first_epochs, result = resumed
    assert result.summary["run_id"] == summary["run_id"]
    assert result.summary["counts"]["epochs"] == 3
    assert result.summary["counts"]["steps"] == 24
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert history[:2] == first_epochs


def test_driver_log_shows_the_chiefs_epoch_summary(resumed):
    _, result = resumed
    summaries = [line for line in result.stderr.splitlines() if "epoch 3 done in" in line]
    assert len(summaries) == 1
    assert "D loss" in summaries[0] and "D(G(z))" in summaries[0]


def _leftover_processes(root):
    """Processes that still run from this root's Spark work folders."""
    listing = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True,
                             text=True).stdout
    return [line for line in listing.splitlines() if str(root) in line]


def test_a_worker_exception_fails_the_job_fast_with_its_own_message(fashion_root, job):
    started = time.monotonic()
    result = job("train", "--root", fashion_root, "--epochs", "1", "--fail-at-step", "3",
                 *TRAIN_ARGS)
    elapsed = time.monotonic() - started
    assert result.code == 1
    assert "injected failure at step 3" in result.last_error_line
    assert elapsed < 240, f"the failure took {elapsed:.0f} s to surface"
    time.sleep(3)
    assert _leftover_processes(fashion_root / "_local") == []


def test_too_few_executors_fails_before_training_starts(fashion_root, job):
    result = job("train", "--root", fashion_root, "--master", "local-cluster[1,1,2048]",
                 "--executors", "2", "--epochs", "1", *TRAIN_ARGS,
                 env={"HDP_GAN_EXECUTOR_WAIT_S": "5"})
    assert result.code == 1
    assert "only 1 registered" in result.last_error_line


def test_the_tutorial_recipe_trains_on_two_workers_to_identical_networks(fashion_root, job):
    result = job("train", "--root", fashion_root, "--recipe", "tutorial", "--epochs", "1",
                 "--max-images", "512", "--batch-size", "64", "--sample-count", "4",
                 "--run-id", "train-tutorial-two-workers")
    assert result.code == 0, result.stderr[-3000:]
    nodes = [json.loads(p.read_text()) for p in sorted(
        (_run_folder(fashion_root, "train-tutorial-two-workers") / "nodes").glob("rank-*.json"))]
    assert len(nodes) == 2
    assert nodes[0]["generator_checksum"] == nodes[1]["generator_checksum"]


def test_resume_of_an_unknown_run_fails_in_one_line(fashion_root, job):
    result = job("train", "--root", fashion_root, "--resume", "train-never-ran")
    assert result.code == 1
    assert "no checkpoint" in result.last_error_line
    assert "Traceback" not in result.stderr
