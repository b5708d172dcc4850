"""The training loop's pieces in one process: sharding, checkpoints, the divergence guard,
the generator export."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from gan_lib import models, storage, training


def test_nodes_get_disjoint_equal_shards_that_cover_the_data():
    shards = [training.shard_indices(1000, rank, 2, epoch=3, seed=1) for rank in range(2)]
    assert len(shards[0]) == len(shards[1]) == 500
    assert not set(shards[0]) & set(shards[1])
    assert set(shards[0]) | set(shards[1]) == set(range(1000))


def test_shuffle_order_changes_between_epochs():
    first = training.shard_indices(100, 0, 1, epoch=0, seed=1)
    second = training.shard_indices(100, 0, 1, epoch=1, seed=1)
    assert not np.array_equal(first, second)


TWO_HOSTS = {"chief": ["a:1"], "worker": ["a:2", "b:1", "a:3"]}


def test_nodes_on_one_host_take_consecutive_cores_in_rank_order():
    allowed = [0, 1, 2, 3, 4, 5, 6, 7]
    assert [training.node_cores(rank, 2, TWO_HOSTS, allowed) for rank in range(4)] == [
        [0, 1], [2, 3], [0, 1], [4, 5]]


def test_a_node_beyond_its_hosts_cores_is_left_unpinned():
    assert training.node_cores(3, 1, TWO_HOSTS, [4, 9]) is None
    assert training.node_cores(1, 1, TWO_HOSTS, [4, 9]) == [9]


def test_model_range_round_trips_to_uint8():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    assert np.array_equal(training.to_uint8(training.to_model_range(pixels)), pixels)


@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3), (64, 3)])
def test_networks_have_the_requested_image_shape(size, channels):
    recipe = models.RECIPES["dcgan"]
    generator = models.build_generator(16, size, channels, recipe)
    discriminator = models.build_discriminator(size, channels, recipe)
    assert generator.output_shape == (None, size, size, channels)
    assert discriminator.output_shape == (None, 1)


def test_class_of_noise_gives_each_class_an_equal_share_of_normal_noise():
    noise = np.random.default_rng(0).standard_normal((50_000, 4)).astype(np.float32)
    shares = np.bincount(np.asarray(models.class_of_noise(noise, 10)), minlength=10) / 50_000
    np.testing.assert_allclose(shares, 0.1, atol=0.005)


def test_noise_for_classes_makes_class_of_noise_return_the_requested_classes():
    noise = np.random.default_rng(1).standard_normal((30, 4)).astype(np.float32)
    wanted = np.random.default_rng(2).integers(0, 7, 30)
    moved = models.noise_for_classes(noise, wanted, 7)
    assert np.array_equal(np.asarray(models.class_of_noise(moved, 7)), wanted)
    assert np.array_equal(moved[:, 1:], noise[:, 1:])


@pytest.mark.parametrize("labels, classes", [([1], 6), ([1, 2, 6], 6), ([0, -1, 2], 6),
                                             ([0.5, 1, 2], 6)])
def test_noise_for_classes_refuses_labels_that_do_not_fit_the_noise_or_the_classes(
        labels, classes):
    with pytest.raises(ValueError, match="label"):
        models.noise_for_classes(np.zeros((3, 4), np.float32), np.array(labels), classes)


def test_conditional_discriminator_judges_one_image_differently_under_each_label():
    discriminator = models.build_discriminator(28, 1, models.RECIPES["dcgan"], classes=10)
    images = np.repeat(np.random.default_rng(0).uniform(-1, 1, (1, 28, 28, 1)), 10, axis=0)
    logits = discriminator([images, np.arange(10, dtype=np.int32)], training=False)
    assert len(np.unique(np.round(np.asarray(logits), 6))) == 10


@pytest.mark.parametrize("recipe, labels, conditional, classes", [
    ("dcgan", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], True, 10),
    ("dcgan", [0, 1, -1, 2], True, 0),     # an image without a label
    ("dcgan", [0, 0, 0, 0], True, 0),      # a single class
    ("dcgan", [0, 5, 5, 0], True, 0),      # classes 1 to 4 without an image
    ("dcgan", [0, 1, 2, 3], False, 0),     # --no-conditional
    ("tutorial", [0, 1, 2, 3], True, 0)])  # the tutorial's networks never are
def test_networks_are_conditioned_only_when_every_image_has_a_label_and_every_class_an_image(
        recipe, labels, conditional, classes):
    import tensorflow as tf
    options = training.TrainOptions(run_id="u", run_uri="file:///tmp/u", dataset="u",
                                    settings=None, recipe=recipe, batch_size=4, latent_dim=8,
                                    conditional=conditional)
    trainer = training.GanTrainer(tf.distribute.MultiWorkerMirroredStrategy(), options,
                                  (28, 28, 1), models.RECIPES[recipe],
                                  training.class_count(np.array(labels)))
    assert trainer.classes == classes
    assert len(trainer.discriminator.inputs) == (2 if classes else 1)


def test_a_conditional_step_without_the_batchs_labels_is_refused():
    import tensorflow as tf
    options = training.TrainOptions(run_id="u", run_uri="file:///tmp/u", dataset="u",
                                    settings=None, batch_size=4, latent_dim=8)
    trainer = training.GanTrainer(tf.distribute.MultiWorkerMirroredStrategy(), options,
                                  (28, 28, 1), models.RECIPES["dcgan"], classes=10)
    with pytest.raises(ValueError, match="labels"):
        trainer.step(tf.zeros((4, 28, 28, 1)))


def test_a_conditional_checkpoint_does_not_load_into_unconditional_networks():
    import tensorflow as tf
    trainers = {}
    for conditional in (True, False):
        options = training.TrainOptions(run_id="u", run_uri="file:///tmp/u", dataset="u",
                                        settings=None, batch_size=4, latent_dim=8,
                                        conditional=conditional)
        trainers[conditional] = training.GanTrainer(
            tf.distribute.MultiWorkerMirroredStrategy(), options, (28, 28, 1),
            models.RECIPES["dcgan"], classes=10)
    with pytest.raises(ValueError, match=r"variable 0 has shape \(18, .*--no-conditional"):
        trainers[False].load_state(trainers[True].state())


def test_sample_grid_noise_draws_the_classes_in_order_along_each_row():
    options = training.TrainOptions(run_id="u", run_uri="file:///tmp/u", dataset="u",
                                    settings=None, sample_count=25, latent_dim=8)
    noise = training.grid_noise(options, 10)
    assert noise.shape == (25, 8)
    assert np.array_equal(np.asarray(models.class_of_noise(noise, 10)), np.arange(25) % 10)


def test_unsupported_image_size_names_the_supported_ones():
    with pytest.raises(ValueError, match=r"\[28, 32, 64\]"):
        models.build_generator(16, 48, 1, models.RECIPES["dcgan"])


def _loop(tmp_path, **overrides):
    """A one-node loop on random 28x28 images written as a dataset under tmp_path."""
    import tensorflow as tf
    from gan_lib.config import Settings

    values = dict(epochs=1, batch_size=32, latent_dim=8, sample_count=6, log_every=1000,
                  check_every=1, export=False)
    values.update(overrides)
    options = training.TrainOptions(
        run_id="unit", run_uri=storage.join(Settings(root=str(tmp_path)).root, "runs", "unit"),
        dataset="unit", settings=Settings(root=str(tmp_path)), **values)
    images = np.random.default_rng(0).integers(0, 255, (128, 28, 28, 1), dtype=np.uint8)
    loop = training._Loop.__new__(training._Loop)
    loop.options, loop.rank, loop.nodes, loop.is_chief, loop.cores = options, 0, 1, True, None
    loop.strategy = tf.distribute.MultiWorkerMirroredStrategy()
    loop.store = storage.open_storage(options.run_uri)
    loop.images, loop.labels = images, np.arange(len(images), dtype=np.int32) % 10
    loop.recipe = models.RECIPES["dcgan"]
    loop.trainer = training.GanTrainer(loop.strategy, options, images.shape[1:], loop.recipe,
                                       training.class_count(loop.labels))
    loop.steps_per_epoch = len(images) // loop.trainer.global_batch
    loop.per_node_batch = loop.trainer.global_batch
    loop.fixed_noise = np.zeros((6, 8), np.float32)
    loop.progress = {"epoch": 0, "step": 0, "seed": 1, "rollbacks": 0,
                     "learning_rate": loop.trainer.learning_rate}
    loop.history = []
    loop.step_points = []
    loop.published = []
    loop._remember_good_state()
    return loop


@pytest.mark.parametrize("recipe", sorted(models.RECIPES))
def test_averaging_the_moving_statistics_of_one_node_keeps_them_and_every_other_variable(
        recipe):
    import tensorflow as tf
    options = training.TrainOptions(run_id="u", run_uri="file:///tmp/u", dataset="u",
                                    settings=None, recipe=recipe, batch_size=8, latent_dim=8)
    trainer = training.GanTrainer(tf.distribute.MultiWorkerMirroredStrategy(), options,
                                  (28, 28, 1), models.RECIPES[recipe])
    trainer.step(tf.constant(np.zeros((8, 28, 28, 1), np.float32)))
    before = trainer.state()
    trainer.average_statistics()
    after = trainer.state()
    assert all(np.array_equal(before[key], after[key]) for key in before)


def test_xla_compiled_steps_give_the_losses_and_weights_of_tensorflows_own_kernels():
    """Same weights, batch and seeds: three steps compiled by XLA give the losses, weights and
    optimiser slots of three steps on TensorFlow's own kernels. Both run in float64: in
    float32 the two orders of summation differ by rounding that, on some CPUs, puts a
    pre-activation on the other side of a ReLU's bend or flips a near-zero Adam step, so a
    float32 comparison tests the CPU more than the compiled step. (The tutorial recipe's
    dropout draws other masks under XLA, whose random generator differs, so the default
    recipe is compared.)"""
    import keras
    import tensorflow as tf
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        real = tf.constant(np.random.default_rng(3).uniform(-1, 1, (16, 28, 28, 1)), tf.float64)
        labels = tf.constant(np.arange(16) % 10, tf.int32)
        results = {}
        for xla in (True, False):
            tf.random.set_seed(7)
            options = training.TrainOptions(run_id="u", run_uri="file:///tmp/u", dataset="u",
                                            settings=None, batch_size=16, latent_dim=8,
                                            xla=xla)
            trainer = training.GanTrainer(tf.distribute.MultiWorkerMirroredStrategy(), options,
                                          (28, 28, 1), models.RECIPES["dcgan"], classes=10)
            if xla:
                start = trainer.state()
            else:
                trainer.load_state(start)
            losses = [trainer.step(real, labels) for _ in range(3)]
            results[xla] = losses, trainer.state()
    finally:
        keras.config.set_dtype_policy(policy)
    assert results[True][1]["generator/0000"].dtype == np.float64
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-9)
    assert results[True][1].keys() == results[False][1].keys()
    for key, compiled in results[True][1].items():
        plain = results[False][1][key]
        np.testing.assert_allclose(compiled, plain, rtol=1e-9, atol=1e-12, err_msg=key)
    moved = start["generator/0000"] - results[True][1]["generator/0000"]
    assert np.abs(moved).max() > 1e-4  # the steps trained


def test_a_node_that_lost_contact_names_the_node_that_stopped_and_its_address(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"chief": ["127.0.0.1:4001"], "worker": ["127.0.0.1:4002"]},
        "task": {"type": "chief", "index": 0}}))
    # the message of the UnavailableError a surviving node raised when the other was killed
    message = (
        "Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at (most recent "
        "call last):\n  File \"<frozen runpy>\", line 198, in _run_module_as_main\n\n"
        "Collective ops is aborted by: Socket closed\nAdditional GRPC error information from "
        "remote target /job:worker/replica:0/task:0 while calling "
        "/tensorflow.WorkerService/RecvBuf:\n:UNKNOWN:Error received from peer  "
        "{grpc_message:\"Socket closed\", grpc_status:14}\n")
    assert str(training.lost_contact(0, message)) == (
        "node 0 lost contact with node 1 at 127.0.0.1:4002 in a collective step (Socket "
        "closed): that node stopped first, and its executor's log says why; --resume "
        "continues the run from its last checkpoint")


def test_non_finite_loss_rolls_back_and_halves_the_learning_rate(tmp_path):
    loop = _loop(tmp_path, inject_nan_at_step=2)
    rate = loop.trainer.learning_rate
    before = loop.trainer.state()["generator/0000"].copy()
    assert loop._train_epoch(0.0, 4, 0) is None
    assert loop.progress["rollbacks"] == 1
    assert loop.trainer.learning_rate == pytest.approx(rate / 2)
    assert np.array_equal(loop.trainer.state()["generator/0000"], before)
    assert loop.progress["step"] == 0


def test_training_stops_with_a_message_after_the_last_roll_back(tmp_path):
    loop = _loop(tmp_path, inject_nan_at_step=1, max_rollbacks=0)
    with pytest.raises(training.TrainingDiverged, match="non-finite"):
        loop._train_epoch(0.0, 4, 0)


def test_checkpoint_restores_networks_optimisers_and_progress(tmp_path):
    loop = _loop(tmp_path)
    loop.run()
    uri = training.latest_checkpoint(loop.store, loop.options.run_uri)
    saved = loop.trainer.state()
    fresh = _loop(tmp_path)
    arrays, progress, history, noise, _ = training._read_checkpoint(
        loop.store.read_bytes(uri))
    assert progress["epoch"] == 1 and progress["step"] == 4
    fresh.trainer.load_state(arrays)
    restored = fresh.trainer.state()
    assert set(saved) == set(restored)
    assert all(np.array_equal(saved[key], restored[key]) for key in saved)
    assert any(key.startswith("g_optimizer/") for key in saved)
    assert len(history) == 1 and noise.shape == (6, 8)


def test_a_resume_keeps_the_rate_training_reached_unless_it_gives_one(tmp_path):
    loop = _loop(tmp_path)
    loop.trainer.set_learning_rate(2e-4)  # as a roll-back would have lowered it
    loop.run()
    kept = _loop(tmp_path, resume=True)
    kept._resume()
    assert kept.trainer.learning_rate == pytest.approx(2e-4)
    given = _loop(tmp_path, resume=True, new_learning_rate=1e-5)
    given._resume()
    assert given.trainer.learning_rate == pytest.approx(1e-5)
    assert given.progress["learning_rate"] == pytest.approx(1e-5)


def test_a_run_whose_checkpoint_pointer_was_lost_resumes_from_its_newest_checkpoint(
        tmp_path):
    loop = _loop(tmp_path, epochs=2)
    loop.run()
    run_uri = loop.options.run_uri
    loop.store.delete(storage.join(run_uri, "checkpoints", "latest.json"))

    uri = training.latest_checkpoint(loop.store, run_uri)

    assert uri.endswith("/checkpoints/epoch-0002.npz")
    progress = training._read_checkpoint(loop.store.read_bytes(uri))[1]
    assert progress["epoch"] == 2 and progress["step"] == 8


def test_each_epoch_writes_a_sample_grid_and_the_run_a_gif_and_loss_curve(tmp_path):
    loop = _loop(tmp_path, epochs=2)
    loop.run()
    run = storage.local_path(loop.options.run_uri)
    assert (run / "samples" / "epoch-0001.png").exists()
    assert (run / "samples" / "epoch-0002.png").exists()
    assert (run / "samples" / "progress.gif").exists()
    assert (run / "loss_curve.png").exists()
    assert len(training.read_history(loop.store, loop.options.run_uri)) == 2


def test_a_sample_grid_with_fewer_samples_than_classes_is_one_row_of_them(tmp_path):
    from PIL import Image
    loop = _loop(tmp_path)  # 6 samples, 10 classes
    loop.run()
    grid = Image.open(storage.local_path(loop.options.run_uri) / "samples" / "epoch-0001.png")
    assert grid.size == (6 * 28 + 7 * 2, 28 + 2 * 2)


def test_loss_curve_follows_every_logged_step_and_survives_a_resume(tmp_path):
    loop = _loop(tmp_path, epochs=1, log_every=1)
    loop.run()
    uri = training.latest_checkpoint(loop.store, loop.options.run_uri)
    *_, step_points = training._read_checkpoint(loop.store.read_bytes(uri))
    assert [point["step"] for point in step_points] == [1, 2, 3, 4]

    resumed = _loop(tmp_path, epochs=2, log_every=1, resume=True)
    resumed._resume()
    resumed.run()
    assert [point["step"] for point in resumed.step_points] == list(range(1, 9))


def test_driver_shows_every_progress_line_once_even_when_several_arrive_between_polls(
        tmp_path, caplog):
    loop = _loop(tmp_path)
    report = training.progress_reporter(loop.store, loop.options.run_uri)
    caplog.set_level("INFO", logger="gan_lib.training")

    loop._publish_progress("epoch 1 done in 9 s")
    loop._publish_progress("epoch 2/2 step 50/937")
    report()
    loop._publish_progress("epoch 2/2 step 100/937")
    report()
    report()

    shown = [record.getMessage() for record in caplog.records
             if record.name == "gan_lib.training"]
    assert shown == ["epoch 1 done in 9 s", "epoch 2/2 step 50/937", "epoch 2/2 step 100/937"]


def test_exported_generator_opens_with_hub_load_and_returns_uint8_images(tmp_path):
    import tensorflow as tf
    import tensorflow_hub as hub

    loop = _loop(tmp_path)
    training.export_generator(loop.trainer, loop.options, loop.store)
    module = hub.load(str(storage.local_path(loop.options.run_uri) / "generator"))
    images = module.signatures["serving_default"](noise=tf.zeros((3, 8)))["images"]
    assert images.dtype == tf.uint8 and tuple(images.shape) == (3, 28, 28, 1)


def test_exported_conditional_generator_draws_the_requested_classes_with_generate_class(
        tmp_path):
    import tensorflow as tf
    import tensorflow_hub as hub

    loop = _loop(tmp_path)
    training.export_generator(loop.trainer, loop.options, loop.store)
    module = hub.load(str(storage.local_path(loop.options.run_uri) / "generator"))
    noise = np.random.default_rng(5).standard_normal((6, 8)).astype(np.float32)
    labels = np.array([3, 0, 9, 3, 5, 1], np.int32)
    chosen = module.signatures["generate_class"](noise=tf.constant(noise),
                                                 labels=tf.constant(labels))["images"]
    moved = models.noise_for_classes(noise, labels, 10)
    expected = module.signatures["serving_default"](noise=tf.constant(moved))["images"]
    assert int(module.class_count.numpy()) == 10
    assert np.abs(chosen.numpy().astype(int) - expected.numpy().astype(int)).max() <= 1
    with pytest.raises(tf.errors.InvalidArgumentError, match="below the class count"):
        module.signatures["generate_class"](noise=tf.constant(noise[:1]),
                                            labels=tf.constant([10], tf.int32))


def test_exported_generator_refuses_non_finite_noise_and_a_label_count_that_differs(tmp_path):
    import tensorflow as tf
    import tensorflow_hub as hub

    loop = _loop(tmp_path)
    training.export_generator(loop.trainer, loop.options, loop.store)
    module = hub.load(str(storage.local_path(loop.options.run_uri) / "generator"))
    noise = np.zeros((2, 8), np.float32)
    noise[1, 3] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="noise must be finite"):
        module.signatures["serving_default"](noise=tf.constant(noise))
    for _ in range(20):  # the check must run before the ops that meet the bad shape
        with pytest.raises(tf.errors.InvalidArgumentError, match="one label per noise vector"):
            module.signatures["generate_class"](noise=tf.zeros((3, 8)),
                                                labels=tf.constant([1, 2], tf.int32))


def test_a_nodes_autograph_files_go_to_its_own_temporary_folder_which_is_removed(tmp_path):
    import tempfile

    import tensorflow as tf

    def clipped(x):
        if tf.reduce_sum(x) > 0:  # autograph turns this into graph code, written to a file
            return x
        return -x

    before = tempfile.tempdir
    with training.own_temporary_folder() as folder:
        tf.function(clipped)(tf.constant([1.0, -3.0]))
        written = [p.name for p in Path(folder).iterdir()]
    assert any(name.startswith("__autograph_generated_file") for name in written)
    assert not Path(folder).exists()
    assert tempfile.tempdir == before


def test_a_node_removes_the_temporary_folders_of_nodes_whose_process_ended(tmp_path,
                                                                           monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed = tmp_path / f"hdp-gan-node-{_pid_of_ended_process()}-abc123"
    running = tmp_path / f"hdp-gan-node-{os.getppid()}-def456"
    unnamed = tmp_path / "hdp-gan-node-x1y2z3"  # no process id: not ours to judge
    for folder in (killed, running, unnamed):
        folder.mkdir()
        (folder / "__autograph_generated_file1.py").write_text("pass\n")

    with training.own_temporary_folder() as folder:
        assert Path(folder).name.startswith(f"hdp-gan-node-{os.getpid()}-")

    assert not killed.exists()
    assert running.exists() and unnamed.exists()


def test_a_node_removes_manager_folders_whose_sockets_no_one_listens_on(tmp_path):
    import socket

    def listener_folder(name):
        folder = tmp_path / name
        folder.mkdir()
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(folder / "listener-abc"))
        server.listen()
        return folder, server

    dead, closed = listener_folder("pymp-dead")
    closed.close()  # as a killed node's manager leaves it: the socket file, no listener
    live, serving = listener_folder("pymp-live")
    other = tmp_path / "pymp-other"
    other.mkdir()
    (other / "notes.txt").write_text("not a manager's")
    try:
        removed = training.remove_dead_manager_folders(str(tmp_path))
    finally:
        serving.close()
    assert removed == [str(dead)]
    assert live.exists() and other.exists()


def _pid_of_ended_process():
    import subprocess
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_runs_stored_options_leave_out_the_test_hooks_it_did_not_use(tmp_path):
    from gan_lib.config import Settings

    def stored(**hooks):
        return training.options_dict(training.TrainOptions(
            run_id="unit", run_uri="file:///x", dataset="unit",
            settings=Settings(root=str(tmp_path)), **hooks))

    assert not {"fail_at_step", "inject_nan_at_step"} & set(stored())
    assert stored(fail_at_step=3)["fail_at_step"] == 3


@pytest.mark.parametrize("samples, classes, columns", [
    (64, 10, 10), (64, 2, 8), (64, 3, 9), (6, 10, 6), (64, 0, None)])
def test_a_conditional_sample_grid_has_columns_of_one_class_near_a_square(samples, classes,
                                                                           columns):
    assert training.grid_columns(samples, classes) == columns


def test_pruning_never_deletes_the_checkpoint_latest_json_names(tmp_path):
    run_uri = storage.join(storage.local_path(str(tmp_path)).as_uri(), "runs", "unit")
    store = storage.open_storage(run_uri)
    for epoch in (1, 8, 9, 10):
        store.write_bytes(storage.join(run_uri, "checkpoints", f"epoch-{epoch:04d}.npz"), b"x")

    training._prune_checkpoints(store, run_uri, keep=3, latest="epoch-0001.npz")

    assert training._checkpoint_names(store, run_uri) == [
        "epoch-0001.npz", "epoch-0008.npz", "epoch-0009.npz", "epoch-0010.npz"]


def test_each_checkpoint_records_the_runs_options(tmp_path):
    loop = _loop(tmp_path, max_images=100, seed=7)
    loop.run()

    name, progress, options = training.readable_checkpoint(loop.store, loop.options.run_uri)

    assert name == "epoch-0001.npz" and progress["epoch"] == 1
    assert options["max_images"] == 100 and options["seed"] == 7
    assert options["batch_size"] == 32 and options["recipe"] == "dcgan"


def test_an_unreadable_checkpoint_pointer_gives_way_to_the_newest_checkpoint_file(
        tmp_path, caplog):
    loop = _loop(tmp_path, epochs=2)
    loop.run()
    pointer = storage.local_path(loop.options.run_uri) / "checkpoints" / "latest.json"
    pointer.write_text(pointer.read_text()[:10])

    name, progress, _ = training.readable_checkpoint(loop.store, loop.options.run_uri)

    assert name == "epoch-0002.npz" and progress["epoch"] == 2
    assert any("latest.json" in record.getMessage() and "JSONDecodeError" in record.getMessage()
               for record in caplog.records if record.levelname == "WARNING")


def test_a_resume_fails_naming_the_checkpoint_when_none_reads(tmp_path):
    from gan_lib.runs import StageError
    loop = _loop(tmp_path, epochs=2)
    loop.run()
    for path in (storage.local_path(loop.options.run_uri) / "checkpoints").glob("epoch-*.npz"):
        path.write_bytes(path.read_bytes()[:100])

    with pytest.raises(StageError, match=r"checkpoint \S+/epoch-0002\.npz: it cannot be read "
                                         r"\(BadZipFile"):
        training.readable_checkpoint(loop.store, loop.options.run_uri)
