"""Distributed training with TensorFlowOnSpark: two workers in separate executor JVMs
(local-cluster), on real Fashion-MNIST images."""

import json
import os
import shutil
import subprocess
import time

import pyarrow.parquet as parquet
import pytest

from conftest import TRAIN_ARGS
from gan_lib import cluster
from gan_lib.config import Settings
from gan_lib.runs import StageError
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
    """The two-epoch run continued to a third epoch with a learning rate of its own: (first
    epochs' metrics, job result)."""
    root, summary = trained
    run = _run_folder(root, summary["run_id"])
    first_epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "report").mkdir(exist_ok=True)  # as `hdp-gan report` left it after two epochs
    (run / "report" / "index.html").write_text("2 epochs trained")
    result = job("train", "--root", root, "--resume", summary["run_id"], "--epochs", "3",
                 "--learning-rate", "0.0002", *TRAIN_ARGS)
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


def test_a_resumed_run_no_longer_has_the_report_of_its_earlier_epochs(trained, resumed):
    root, summary = trained
    assert not (_run_folder(root, summary["run_id"]) / "report").exists()
    assert "removed the run's report" in resumed[1].stderr


def test_a_learning_rate_given_on_resume_trains_the_new_epochs(trained, resumed):
    root, summary = trained
    run = _run_folder(root, summary["run_id"])
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["learning_rate"] for row in history] == pytest.approx([5e-4, 5e-4, 2e-4])


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
    assert result.code == 2
    assert "no checkpoint" in result.last_error_line
    assert "Traceback" not in result.stderr


def _copy_run(root, run_id, copy_id):
    """A copy of a run's folder under another run id; returns the copy's folder and the
    epochs its newest checkpoint holds."""
    copy = _run_folder(root, copy_id)
    shutil.copytree(_run_folder(root, run_id), copy)
    latest = json.loads((copy / "checkpoints" / "latest.json").read_text())
    return copy, latest["progress"]["epoch"]


def test_training_an_existing_run_id_afresh_replaces_its_earlier_outputs(trained, job):
    root, summary = trained
    run, _ = _copy_run(root, summary["run_id"], "train-afresh")
    (run / "report").mkdir(exist_ok=True)  # as `hdp-gan report` leaves it
    (run / "report" / "index.html").write_text("<p>the earlier networks</p>")

    result = job("train", "--root", root, "--run-id", "train-afresh", "--epochs", "1",
                 *TRAIN_ARGS)

    assert result.code == 0, result.stderr[-3000:]
    assert "removed them to train it afresh" in result.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "epoch-0001.npz", "latest.json"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "epoch-0001.png", "progress.gif"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (run / "report").exists()


def test_a_run_id_trained_afresh_but_refused_by_a_check_keeps_its_earlier_outputs(trained,
                                                                                   job):
    root, summary = trained
    run, _ = _copy_run(root, summary["run_id"], "train-afresh-refused")
    before = sorted(path.relative_to(run) for path in run.rglob("*"))

    result = job("train", "--root", root, "--run-id", "train-afresh-refused", "--dataset",
                 "nosuch", *TRAIN_ARGS)

    assert result.code == 1
    assert "dataset 'nosuch' is not in" in result.last_error_line
    assert sorted(path.relative_to(run) for path in run.rglob("*")) == before
    recorded = parquet.read_table(root / "warehouse" / "hdp_gan.db" / "runs").to_pylist()
    assert "train-afresh-refused" not in {row["run_id"] for row in recorded}


def test_a_resume_of_a_run_that_trains_now_is_refused_and_touches_none_of_its_files(trained,
                                                                                    job):
    from gan_lib import runs

    root, summary = trained
    run_id = summary["run_id"]
    in_flight = root / "runs" / run_id / "checkpoints" / ".epoch-0099.npz.0123456789ab.tmp"
    in_flight.write_bytes(b"a checkpoint being written")
    try:
        with runs.run_lease(Settings(root=root.as_uri()), run_id, "train"):
            result = job("train", "--root", root, "--resume", run_id, "--epochs", "99",
                         *TRAIN_ARGS)
        assert result.code == 1
        assert f"failed: run {run_id} is running now (train on " in result.last_error_line
        assert in_flight.exists()
    finally:
        in_flight.unlink(missing_ok=True)


def test_resume_without_more_epochs_than_the_run_trained_is_refused(trained, job):
    root, summary = trained
    _, epochs = _copy_run(root, summary["run_id"], "train-resume-no-epochs")

    result = job("train", "--root", root, "--resume", "train-resume-no-epochs")

    assert result.code == 2
    assert result.last_error_line == (
        f"hdp-gan train: error: "
        f"--resume train-resume-no-epochs: the run has already trained {epochs} "
        f"epochs; give --epochs above {epochs} to train more")


def test_a_run_stopped_after_its_last_epoch_is_finished_by_resume_without_training(trained,
                                                                                    job):
    """A stop between the last checkpoint and the export (SIGTERM as the nodes finished)
    leaves every epoch trained and no generator: --resume exports it."""
    root, summary = trained
    run, epochs = _copy_run(root, summary["run_id"], "train-resume-finish")
    shutil.rmtree(run / "generator")
    (run / "samples" / "progress.gif").unlink()
    steps = json.loads((run / "checkpoints" / "latest.json").read_text())["progress"]["step"]

    result = job("train", "--root", root, "--resume", "train-resume-finish")

    assert result.code == 0, result.stderr[-3000:]
    assert "finishing it without training" in result.stderr
    assert result.summary["counts"]["epochs"] == epochs
    assert result.summary["counts"]["steps"] == steps
    assert (run / "generator" / "saved_model.pb").is_file()
    assert (run / "samples" / "progress.gif").is_file()


def test_a_resume_that_fails_keeps_the_report_of_the_epochs_the_run_has(trained, job):
    root, summary = trained
    run, epochs = _copy_run(root, summary["run_id"], "train-resume-fails")
    (run / "report").mkdir(exist_ok=True)
    (run / "report" / "index.html").write_text(f"{epochs} epochs trained")
    steps = json.loads((run / "checkpoints" / "latest.json").read_text())["progress"]["step"]

    result = job("train", "--root", root, "--resume", "train-resume-fails", "--epochs",
                 epochs + 1, "--fail-at-step", steps + 1)

    assert result.code == 1
    assert "injected failure" in result.last_error_line
    assert (run / "report" / "index.html").read_text() == f"{epochs} epochs trained"


def test_resume_refuses_an_option_that_would_change_the_runs_networks(trained, job):
    root, summary = trained
    _, epochs = _copy_run(root, summary["run_id"], "train-resume-latent")

    result = job("train", "--root", root, "--resume", "train-resume-latent",
                 "--epochs", epochs + 1, "--latent-dim=64")

    assert result.code == 2
    assert "the run was trained with --latent-dim 100" in result.last_error_line
    assert "leave out --latent-dim 64" in result.last_error_line


@pytest.fixture(scope="module")
def resumed_damaged(trained, job):
    """A copy of the trained run whose newest checkpoint was cut in half, resumed for one
    more epoch with no option but --epochs: (epochs before, job result)."""
    root, summary = trained
    run, epochs = _copy_run(root, summary["run_id"], "train-resume-damaged")
    newest = run / "checkpoints" / f"epoch-{epochs:04d}.npz"
    os.truncate(newest, newest.stat().st_size // 2)
    result = job("train", "--root", root, "--resume", "train-resume-damaged",
                 "--epochs", epochs + 1)
    assert result.code == 0, result.stderr[-3000:]
    return epochs, result


def test_resume_skips_a_damaged_newest_checkpoint_for_the_newest_readable_one(
        resumed_damaged):
    epochs, result = resumed_damaged
    warnings = [line for line in result.stderr.splitlines()
                if "WARNING" in line and f"epoch-{epochs:04d}.npz" in line]
    assert len(warnings) == 1 and "BadZipFile" in warnings[0]
    assert result.summary["counts"]["epochs"] == epochs + 1


def test_a_resumed_run_says_which_checkpoint_it_starts_from(resumed_damaged):
    epochs, result = resumed_damaged
    assert f"resuming run train-resume-damaged from epoch-{epochs - 1:04d}.npz (epoch " \
        f"{epochs - 1}, step" in result.stderr


def test_a_dataset_of_a_size_the_dcgan_cannot_train_fails_before_the_workers_start(
        tmp_path, job):
    from PIL import Image

    folder = tmp_path / "images" / "shoes"
    folder.mkdir(parents=True)
    for index in range(4):
        Image.new("L", (40, 40), 40 * index).save(folder / f"{index}.png")
    root = tmp_path / "root"
    preprocessed = job("preprocess", "--root", root, "--input", tmp_path / "images",
                       "--dataset", "odd", "--image-size", "30")
    assert preprocessed.code == 0, preprocessed.stderr[-3000:]

    result = job("train", "--root", root, "--dataset", "odd", "--batch-size", "2",
                 master=None)
    assert result.code == 1
    assert result.last_error_line == (
        "hdp-gan train: failed: "
        "dataset 'odd' holds 30x30 images; the DCGAN trains on square images "
        "of 28, 32, 64 pixels: preprocess it again with one of them as --image-size")
    assert "Traceback" not in result.stderr


def test_resume_takes_the_options_not_given_from_the_run(resumed_damaged):
    epochs, result = resumed_damaged
    # the run's 512 images in batches of 64: 8 steps an epoch (the defaults would give 9)
    assert result.summary["counts"]["steps"] == (epochs + 1) * 8


def test_batch_size_that_the_workers_cannot_share_equally_is_refused(tmp_path, job):
    result = job("train", "--root", tmp_path, "--batch-size", "3")

    assert result.code == 2
    assert result.last_error_line == (
        "hdp-gan train: error: "
        "--batch-size 3 is not a multiple of the 2 workers (--executors): each "
        "worker takes an equal share of every batch; use 2, 4, ...")


def test_resume_with_another_run_id_is_refused(tmp_path, job):
    result = job("train", "--root", tmp_path, "--resume", "train-a", "--run-id", "train-b")

    assert result.code == 2
    assert "--run-id train-b differs from --resume train-a" in result.last_error_line


class _RunningJobs:
    """A Spark context whose job never ends, for the supervisor's time limit."""

    def statusTracker(self):
        return self

    def getActiveJobsIds(self):
        return [1]


@pytest.mark.parametrize("timeout_s, said", [(45, "0.75 minutes"), (60, "1 minute"),
                                             (14400, "240 minutes")])
def test_time_limit_message_gives_the_minutes_as_given(timeout_s, said):
    with pytest.raises(StageError, match=f"did not finish within {said} "):
        cluster._supervise(_RunningJobs(), {}, time.monotonic() - timeout_s - 1, timeout_s)


def test_worker_failure_names_an_exception_class_ending_in_neither_error_nor_exception():
    text = ("Job aborted due to stage failure: Lost task 1.0 in stage 3.0 (TID 7): "
            "org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
            '  File "/work/gan_lib/training.py", line 350, in _load_checkpoint\n'
            "    with np.load(io.BytesIO(data)) as archive:\n"
            "zipfile.BadZipFile: File is not a zip file\n"
            "\n\tat org.apache.spark.api.python.BasePythonRunner.handlePythonException\n")

    assert cluster._failure_message(text) == (
        "a TensorFlow worker failed: zipfile.BadZipFile: File is not a zip file")
