"""The distributed GAN training step and loop, checkpoints, and the divergence guard.

``train_worker`` runs inside every TensorFlowOnSpark node (one per executor). All nodes
build the same networks under ``MultiWorkerMirroredStrategy`` and step in lock step: each
reads the same preprocessed split, takes its own shard of a shuffled order, and every node
runs exactly ``steps_per_epoch`` synchronous steps, so no node waits for data another lacks.

State lives on the root's storage under ``runs/<run_id>/``:

* ``checkpoints/epoch-NNNN.npz``: both networks, both optimisers, epoch, step, learning
  rates, seed, the fixed sample noise and the loss history; ``checkpoints/latest.json`` names
  the newest. Checkpoints are plain NumPy archives written by the chief only (reading
  mirrored variables needs no collective operation), uploaded atomically. Each also holds
  the run's options, which a resumed run takes for those not given again.
* ``samples/epoch-NNNN.png``: a grid drawn from the fixed noise after every epoch.
* ``metrics.jsonl``: one line per epoch, turned into the training_metrics table by the driver.
* ``generator/``: the exported SavedModel (noise -> uint8 images), opened by ``hub.load``.

The divergence guard: when a reduced loss is not finite, or the discriminator has
collapsed (its loss near zero while D(G(z)) is near zero for a whole check interval), every
node restores the last good state and lowers both learning rates by ``rollback_factor``. All
nodes see the same all-reduced losses and so take the same decision. After
``max_rollbacks`` the run stops with a message saying so.
"""

import contextlib
import io
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from dataclasses import asdict, dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = re.compile(r"epoch-(\d{4,})\.npz")
# What training writes under runs/<run_id>/, and the report made of it (report.REPORT_FOLDER);
# a fresh run on an existing id removes them first.
TRAINING_OUTPUTS = ("checkpoints", "samples", "generator", "nodes", "metrics.jsonl",
                    "loss_curve.png", "progress.txt", "report")
# The options a run's checkpoints record, so that a resumed run can take them.
RUN_OPTIONS = ("dataset", "recipe", "epochs", "batch_size", "latent_dim", "learning_rate",
               "max_images", "sample_count", "log_every", "seed", "xla", "conditional")
COLLAPSE_D_LOSS = 1e-3
COLLAPSE_D_FAKE = 1e-3


@dataclass
class TrainOptions:
    """Everything a node needs; it travels to the executors pickled."""

    run_id: str
    run_uri: str
    dataset: str
    settings: object
    recipe: str = "dcgan"
    epochs: int = 2
    batch_size: int = 0          # global batch; 0 means the recipe's
    latent_dim: int = 100
    learning_rate: float = 0.0   # 0 means the recipe's
    max_images: int = 0          # 0 means the whole split
    sample_count: int = 64
    log_every: int = 50
    check_every: int = 50
    max_rollbacks: int = 3
    rollback_factor: float = 0.5
    seed: int = 1234
    resume: bool = False
    fail_at_step: int = -1       # for fault-injection tests: raise on the chief at this step
    inject_nan_at_step: int = -1  # for the guard's tests: poison the losses at this step
    threads: int = 1
    pin_cores: bool = False      # pin each node to its own cores of its host
    xla: bool = True             # compile each node's forward and backward pass with XLA
    conditional: bool = True     # condition on the dataset's classes when the recipe does
    checkpoint: str = ""         # on resume: the checkpoint file the driver found readable
    new_learning_rate: float = 0.0  # on resume: a rate given again, replacing the checkpoint's
    export: bool = True
    extra: dict = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        """TensorFlowOnSpark probes its arguments with ``in`` (as with argparse namespaces)."""
        return hasattr(self, name)


class TrainingDiverged(RuntimeError):
    pass


def node_rank() -> tuple[int, int]:
    """(rank, node count) from TF_CONFIG: the chief is rank 0, worker i is rank i + 1."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    cluster = config.get("cluster", {})
    count = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    task = config.get("task", {"type": "chief", "index": 0})
    rank = 0 if task["type"] == "chief" else task["index"] + len(cluster.get("chief", []))
    return rank, max(count, 1)


class LostContact(RuntimeError):
    """A node's collective step failed because another node stopped answering."""


def lost_contact(rank: int, message: str) -> LostContact:
    """What a node says when another stopped answering in a collective step: TensorFlow's
    UnavailableError starts with "Graph execution error" and names the peer as a task
    (/job:worker/replica:0/task:0); this names it as a node with its address. The node that
    stopped first may say nothing (a killed process), so this is often the job's last line."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    peer = "another node"
    target = re.search(r"remote target /job:(\w+)/replica:\d+/task:(\d+)", message)
    if target:
        job, index = target.group(1), int(target.group(2))
        addresses = cluster.get(job, [])
        peer_rank = index + (len(cluster.get("chief", [])) if job == "worker" else 0)
        peer = f"node {peer_rank}" + (f" at {addresses[index]}" if index < len(addresses)
                                       else "")
    cause = re.search(r"aborted by: ([^\n]+)", message)
    return LostContact(f"node {rank} lost contact with {peer} in a collective step"
                       + (f" ({cause.group(1).strip()})" if cause else "")
                       + ": that node stopped first, and its executor's log says why; "
                         "--resume continues the run from its last checkpoint")


def node_cores(rank: int, threads: int, cluster: dict, allowed: list[int]) -> list[int] | None:
    """The cores a node takes on its host: the nodes of one host, in rank order, take
    consecutive runs of ``threads`` cores from those the process may use; ``None`` when the
    host has too few for this node."""
    addresses = cluster.get("chief", []) + cluster.get("worker", [])
    hosts = [address.rsplit(":", 1)[0] for address in addresses] or ["localhost"]
    first = hosts[:rank].count(hosts[rank]) * threads
    if first + threads > len(allowed):
        return None
    return allowed[first:first + threads]


def pin_to_own_cores(threads: int, allowed) -> list[int] | None:
    """Pin every thread of this node's process to its own cores among ``allowed`` (see
    ``node_cores``).

    Two nodes on one host otherwise share all its cores: the operating system moves their
    compute and communication threads between cores, each node's steps slow down by turns,
    and in lock step every node waits for the slowest."""
    rank, _ = node_rank()
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    cores = node_cores(rank, threads, cluster, sorted(allowed))
    if cores is None:
        logger.warning("not pinning node %d: its host has too few cores for %d thread(s) per "
                       "node", rank, threads)
        return None
    _set_affinity(cores)
    logger.info("node %d pinned to cores %s", rank, cores)
    return cores


def _set_affinity(cores) -> None:
    """Set the cores every thread of this process may run on."""
    for thread_id in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(thread_id), cores)
        except OSError:
            pass  # the thread ended meanwhile


def shard_indices(count: int, rank: int, nodes: int, epoch: int, seed: int) -> np.ndarray:
    """This node's share of a shuffled order that every node computes identically."""
    order = np.random.default_rng(seed + epoch).permutation(count)
    return order[rank::nodes]


def to_model_range(images_uint8: np.ndarray) -> np.ndarray:
    return images_uint8.astype(np.float32) / 127.5 - 1.0


def to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.rint((np.asarray(images) + 1.0) * 127.5), 0, 255).astype(np.uint8)


class GanTrainer:
    """Networks, optimisers and the compiled distributed step of one node."""

    def __init__(self, strategy, options: TrainOptions, image_shape, recipe, classes=0):
        import keras
        import tensorflow as tf
        from gan_lib import models

        self.strategy, self.options, self.recipe = strategy, options, recipe
        self.image_shape = image_shape
        # The number of classes the networks are conditioned on; 0 when they are not.
        self.classes = classes if (options.conditional
                                   and models.is_conditional(recipe, classes)) else 0
        self.global_batch = options.batch_size or recipe.batch_size
        learning_rate = options.learning_rate or recipe.learning_rate
        with strategy.scope():
            self.generator = models.build_generator(
                options.latent_dim, image_shape[0], image_shape[2], recipe, self.classes)
            self.discriminator = models.build_discriminator(image_shape[0], image_shape[2],
                                                            recipe, self.classes)
            self.g_optimizer = keras.optimizers.Adam(learning_rate, beta_1=recipe.beta_1)
            self.d_optimizer = keras.optimizers.Adam(learning_rate, beta_1=recipe.beta_1)
            self.g_optimizer.build(self.generator.trainable_variables)
            self.d_optimizer.build(self.discriminator.trainable_variables)
        # The batch-normalisation moving means and variances of both networks (the other
        # non-trainable variables, such as dropout's seed state, are not statistics).
        self.statistics = [
            variable for model in (self.generator, self.discriminator) for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)
            for variable in (layer.moving_mean, layer.moving_variance)]
        # XLA fuses the many small operations of networks this size: on one core a step of
        # the default recipe took 44 ms of CPU time instead of 62 (docs/BENCHMARKS.md). The
        # all-reduce stays outside, in TensorFlow's collective operations.
        self._gradients = tf.function(self._losses_and_gradients,
                                      jit_compile=options.xla)
        self._step = tf.function(self._distributed_step)
        self._average = tf.function(
            lambda: strategy.run(self._replica_average_statistics))

    def _replica_step(self, real, labels, poison):
        """One node's half of a step: losses and gradients of its own batch, then a single
        all-reduce that sums both networks' gradients and the four logged values over every
        node (one collective per step instead of one per network and one per value)."""
        import tensorflow as tf

        # Drawn outside the compiled function with TensorFlow's own random kernels, so
        # under a TensorFlow seed a step draws the same noise with XLA as without it.
        noise = tf.random.normal((tf.shape(real)[0], self.options.latent_dim), dtype=real.dtype)
        *gradients, logged = self._gradients(real, labels, noise)
        # The poison (for the guard's tests) changes the logged losses only, as a constant
        # added to a loss leaves its gradients as they are.
        poison = tf.cast(poison, logged.dtype)
        logged = logged + tf.stack([poison, poison, tf.zeros_like(poison), tf.zeros_like(poison)])
        # Every value is divided by the global batch, so the sums are global means.
        return tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, gradients + [logged])

    def _losses_and_gradients(self, real, labels, noise):
        """Both networks' gradients and the logged values [D loss, G loss, D(x), D(G(z))] of
        one node's batch, each divided by the global batch. Conditional networks judge each
        real image with its own label and each generated one with the class its noise
        drew."""
        import tensorflow as tf
        from gan_lib import models

        def judge(images, classes):
            inputs = [images, classes] if self.classes else images
            return self.discriminator(inputs, training=True)

        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self.generator(noise, training=True)
            real_logits = judge(real, labels)
            fake_logits = judge(fake, models.class_of_noise(noise, self.classes)
                                if self.classes else None)
            real_targets = tf.fill(tf.shape(real_logits),
                                   tf.cast(self.recipe.real_label, real_logits.dtype))
            d_per_example = (
                tf.nn.sigmoid_cross_entropy_with_logits(real_targets, real_logits)
                + tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(fake_logits),
                                                          fake_logits))
            g_per_example = tf.nn.sigmoid_cross_entropy_with_logits(
                tf.ones_like(fake_logits), fake_logits)
            d_loss = tf.reduce_sum(d_per_example) / self.global_batch
            g_loss = tf.reduce_sum(g_per_example) / self.global_batch
        d_gradients = d_tape.gradient(d_loss, self.discriminator.trainable_variables)
        g_gradients = g_tape.gradient(g_loss, self.generator.trainable_variables)
        d_real = tf.reduce_sum(tf.sigmoid(real_logits)) / self.global_batch
        d_fake = tf.reduce_sum(tf.sigmoid(fake_logits)) / self.global_batch
        # The class embedding's gradient comes as IndexedSlices; dense, it is all-reduced
        # with the others in the one collective (it is only classes x features).
        gradients = [tf.convert_to_tensor(g) for g in d_gradients + g_gradients]
        return gradients + [tf.stack([d_loss, g_loss, d_real, d_fake])]

    def _distributed_step(self, real, labels, poison):
        reduced = self.strategy.run(self._replica_step, args=(real, labels, poison))
        d_count = len(self.discriminator.trainable_variables)
        # Applied outside strategy.run: there Keras' optimizer sees the default replica
        # context, whose all-reduce over its single replica leaves the gradients as they
        # are; they are already summed over all nodes.
        self.d_optimizer.apply_gradients(zip(reduced[:d_count],
                                             self.discriminator.trainable_variables))
        self.g_optimizer.apply_gradients(zip(reduced[d_count:-1],
                                             self.generator.trainable_variables))
        return self.strategy.experimental_local_results(reduced[-1])[0]

    def _replica_average_statistics(self):
        import tensorflow as tf

        averaged = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.MEAN, [tf.identity(v.value) for v in self.statistics])
        for variable, value in zip(self.statistics, averaged):
            variable.assign(value)

    def average_statistics(self) -> None:
        """Give every node the mean of the nodes' batch-normalisation moving statistics.

        Each node normalises with its own batch while training; the moving averages, used
        only when drawing samples and exporting, drift apart between nodes. Every node calls
        this at the end of every epoch, so all nodes then hold the same networks."""
        if self.statistics:
            self._average()

    def step(self, real_batch, labels=None, poison=0.0):
        """One training step on a node's batch (model range) and its label indices (needed
        when the networks are conditional; ignored otherwise)."""
        import tensorflow as tf
        if labels is None:
            if self.classes:
                raise ValueError("conditional networks need the batch's labels")
            labels = tf.zeros(tf.shape(real_batch)[:1], tf.int32)
        return [float(v) for v in self._step(real_batch, tf.cast(labels, tf.int32),
                                             tf.constant(poison, tf.float32))]

    # State in and out of plain arrays, so checkpoints need no collective operation.
    def state(self) -> dict:
        arrays = {}
        for prefix, variables in self._variable_groups().items():
            for index, variable in enumerate(variables):
                arrays[f"{prefix}/{index:04d}"] = np.asarray(variable.numpy())
        return arrays

    def load_state(self, arrays: dict) -> None:
        for prefix, variables in self._variable_groups().items():
            stored = sorted(key for key in arrays if key.startswith(prefix + "/"))
            shapes = [tuple(arrays[key].shape) for key in stored]
            wanted = [tuple(variable.shape) for variable in variables]
            if shapes != wanted:
                if len(shapes) != len(wanted):
                    misfit = f"{len(shapes)} variables where the network has {len(wanted)}"
                else:
                    index = next(i for i, pair in enumerate(zip(shapes, wanted))
                                 if pair[0] != pair[1])
                    misfit = (f"variable {index} has shape {shapes[index]} where the network's "
                              f"has {wanted[index]}")
                raise ValueError(
                    f"the checkpoint's {prefix} does not fit the network ({misfit}); was it "
                    "made with other options (image size, channels, latent size, recipe, "
                    "--no-conditional) or labels?")
            for key, variable in zip(stored, variables):
                variable.assign(arrays[key])

    def _variable_groups(self) -> dict:
        return {"generator": self.generator.weights,
                "discriminator": self.discriminator.weights,
                "g_optimizer": self.g_optimizer.variables,
                "d_optimizer": self.d_optimizer.variables}

    def set_learning_rate(self, value: float) -> None:
        self.g_optimizer.learning_rate.assign(value)
        self.d_optimizer.learning_rate.assign(value)

    @property
    def learning_rate(self) -> float:
        return float(self.g_optimizer.learning_rate.numpy())

    def samples(self, noise: np.ndarray) -> np.ndarray:
        return to_uint8(self.generator(noise, training=False).numpy())


def _checkpoint_bytes(trainer: GanTrainer, progress: dict, fixed_noise, history,
                      step_points=(), options: TrainOptions | None = None) -> bytes:
    buffer = io.BytesIO()
    meta = json.dumps({"progress": progress, "history": history,
                       "step_points": [_plain(point) for point in step_points],
                       "options": run_options(options) if options else None})
    np.savez(buffer, __meta__=np.frombuffer(meta.encode(), dtype=np.uint8),
             __fixed_noise__=fixed_noise, **trainer.state())
    return buffer.getvalue()


def _load_checkpoint(data: bytes):
    """(arrays, meta, fixed noise) of a checkpoint; every array is read, so a damaged file
    fails here (zipfile.BadZipFile, ValueError, ...)."""
    with np.load(io.BytesIO(data)) as archive:
        arrays = {key: archive[key] for key in archive.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    return arrays, meta, arrays.pop("__fixed_noise__")


def _read_checkpoint(data: bytes):
    arrays, meta, fixed_noise = _load_checkpoint(data)
    return arrays, meta["progress"], meta["history"], fixed_noise, meta.get("step_points", [])


def run_options(options: TrainOptions) -> dict:
    """The options a checkpoint records, with the recipe's values filled in."""
    values = options_dict(options)
    return {name: values[name] for name in RUN_OPTIONS}


def latest_checkpoint(store, run_uri: str) -> str | None:
    """The URI of a run's newest checkpoint, or None; the file itself is not read.

    ``checkpoints/latest.json`` names it. WebHDFS renames only onto a free name, so the
    pointer is deleted before its new copy is renamed into place; a run killed between the
    two has no pointer, and the newest checkpoint file is taken instead (each is written
    whole under a temporary name before it gets its own)."""
    from gan_lib import storage
    folder = storage.join(run_uri, "checkpoints")
    names = _checkpoint_names(store, run_uri)
    named = _pointed_checkpoint(store, folder) or (names[-1] if names else None)
    return storage.join(folder, named) if named else None


def readable_checkpoint(store, run_uri: str):
    """The checkpoint a resumed run starts from, read whole on the driver: ``(file name,
    progress, the run's options or None)``, or None when the run has no checkpoint.

    It is the one ``checkpoints/latest.json`` names; when the pointer cannot be read or
    names a file that is missing or damaged, the newest checkpoint file that reads whole,
    with a warning naming what was skipped and why. Raises StageError when none reads."""
    from gan_lib import storage
    from gan_lib.config import error_line, redact_url
    from gan_lib.runs import StageError

    folder = storage.join(run_uri, "checkpoints")
    names = list(reversed(_checkpoint_names(store, run_uri)))
    named = _pointed_checkpoint(store, folder)
    if named:
        names = [named] + [name for name in names if name != named]
    failures = []
    for name in names:
        uri = storage.join(folder, name)
        problem = None
        if not store.exists(uri):
            problem = "it does not exist"
        else:
            try:
                _, meta, _ = _load_checkpoint(store.read_bytes(uri))
                progress, options = meta["progress"], meta.get("options")
            except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile,
                    storage.StorageError) as error:
                problem = (f"it cannot be read ({type(error).__name__}: "
                           f"{error_line(error, 300)})")
        if problem is None:
            return name, progress, options
        failures.append((uri, problem))
        logger.warning("skipped the checkpoint %s: %s; trying the next newest",
                       redact_url(uri), problem)
    if failures:
        uri, problem = failures[0]
        raise StageError(f"cannot resume from the checkpoint {redact_url(uri)}: {problem}, "
                         "and no older checkpoint reads either; train the run again without "
                         "--resume")
    return None


def _pointed_checkpoint(store, folder: str) -> str | None:
    """The file name ``latest.json`` names, or None (with a warning when it is unreadable)."""
    from gan_lib import storage
    from gan_lib.config import error_line, redact_url

    pointer = storage.join(folder, "latest.json")
    if not store.exists(pointer):
        return None
    try:
        name = json.loads(store.read_text(pointer))["file"]
        if not isinstance(name, str) or not CHECKPOINT_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a checkpoint file name")
        return name
    except (OSError, KeyError, TypeError, ValueError, storage.StorageError) as error:
        logger.warning("skipped %s: it cannot be read (%s: %s); resuming from the newest "
                       "checkpoint file that reads", redact_url(pointer), type(error).__name__,
                       error_line(error, 300))
        return None


def remove_training_outputs(store, run_uri: str) -> list[str]:
    """Delete what an earlier training run left under ``run_uri`` (see TRAINING_OUTPUTS) and
    the temporary files of its interrupted writes; return the URIs removed."""
    from gan_lib import storage

    removed = storage.remove_temporaries(store, run_uri)
    for name in TRAINING_OUTPUTS:
        uri = storage.join(run_uri, name)
        if store.exists(uri):
            store.delete(uri)
            removed.append(uri)
    return removed


def _checkpoint_names(store, run_uri) -> list[str]:
    """The run's checkpoint files, oldest first."""
    from gan_lib import storage
    folder = storage.join(run_uri, "checkpoints")
    if not store.exists(folder):
        return []
    found = [n for n in store.list(folder) if CHECKPOINT_NAME.fullmatch(n)]
    return sorted(found, key=lambda n: int(CHECKPOINT_NAME.fullmatch(n).group(1)))


def train_worker(options: TrainOptions, ctx=None) -> None:
    """The TensorFlowOnSpark main function: runs on every node."""
    logging.basicConfig(level=os.environ.get("HDP_GAN_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(options.threads)
    tf.config.threading.set_inter_op_parallelism_threads(options.threads)
    cores = None
    if options.pin_cores:
        allowed = os.sched_getaffinity(0)
        cores = pin_to_own_cores(options.threads, allowed)
    rank, nodes = node_rank()
    try:
        with own_temporary_folder():
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
            _Loop(options, strategy, rank, nodes, cores).run()
    except tf.errors.UnavailableError as error:
        logger.error("node %d: a collective step failed: %s", rank, error)
        raise lost_contact(rank, str(error)) from None
    finally:
        if cores:  # Spark may reuse this Python worker for other tasks
            _set_affinity(allowed)


NODE_FOLDER_PREFIX = "hdp-gan-node-"


@contextlib.contextmanager
def own_temporary_folder():
    """Point Python's temporary files at a folder of their own, removed on the way out.

    TensorFlow's autograph writes the code it generates for each traced function to a
    temporary file that it deletes only when the interpreter exits normally; Spark ends its
    Python workers without that, so every training node used to leave a dozen such files in
    /tmp. The folder's name carries the node's process id: a node that was killed cannot
    remove its folder, so each node first removes those whose process has ended, and the
    folders of TensorFlowOnSpark's managers that no process listens on any more. The
    previous setting comes back for the next task of a reused worker."""
    parent = tempfile.gettempdir()
    remove_abandoned_node_folders(parent)
    remove_dead_manager_folders(parent)
    folder = tempfile.mkdtemp(prefix=f"{NODE_FOLDER_PREFIX}{os.getpid()}-", dir=parent)
    previous = tempfile.tempdir
    tempfile.tempdir = folder
    try:
        yield folder
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)


def remove_dead_manager_folders(parent: str) -> list[str]:
    """Remove this user's ``pymp-*`` folders under parent whose every entry is a socket that
    no process listens on. TensorFlowOnSpark's node managers (multiprocessing managers)
    make one per node, which multiprocessing removes only when the interpreter exits
    normally; Spark ends its Python workers without that."""
    import socket

    removed = []
    for folder in Path(parent).glob("pymp-*"):
        try:
            if folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            entries = list(folder.iterdir())
        except OSError:
            continue
        if not entries or not all(entry.is_socket() for entry in entries):
            continue
        listening = False
        for entry in entries:
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(str(entry))
                    listening = True
                except OSError:
                    pass
        if not listening:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


def remove_abandoned_node_folders(parent: str) -> list[str]:
    """Remove this user's node folders under parent whose process no longer runs."""
    from gan_lib.runs import process_ended

    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = re.fullmatch(rf"{NODE_FOLDER_PREFIX}(\d+)-\w+", entry.name)
        if not match or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not process_ended(int(match.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


class _Loop:
    """One node's training loop; the chief (rank 0) also writes every output."""

    def __init__(self, options, strategy, rank, nodes, cores=None):
        from gan_lib import datasets, models, storage

        self.options, self.strategy, self.rank, self.nodes = options, strategy, rank, nodes
        self.cores = cores
        self.is_chief = rank == 0
        self.store = storage.open_storage(options.run_uri, options.settings)
        images, labels = datasets.load_split(options.settings, options.dataset, "train")
        if options.max_images:
            images, labels = images[:options.max_images], labels[:options.max_images]
        self.images, self.labels = images, labels
        self.recipe = models.RECIPES[options.recipe]
        self.trainer = GanTrainer(strategy, options, images.shape[1:], self.recipe,
                                  class_count(labels))
        self.steps_per_epoch = len(images) // self.trainer.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"the dataset has {len(images)} images, fewer than one global "
                             f"batch of {self.trainer.global_batch}; lower --batch-size")
        self.per_node_batch = self.trainer.global_batch // nodes
        self.fixed_noise = grid_noise(options, self.trainer.classes)
        self.progress = {"epoch": 0, "step": 0, "seed": options.seed, "rollbacks": 0,
                         "learning_rate": self.trainer.learning_rate}
        self.history = []
        self.step_points = []  # the losses at every logged step, for the loss curve
        self.published = []    # the last progress lines, numbered, for the driver
        self.good_state = None
        if options.resume:
            self._resume()
        self._remember_good_state()

    def _resume(self):
        from gan_lib import storage
        if self.options.checkpoint:
            uri = storage.join(self.options.run_uri, "checkpoints", self.options.checkpoint)
        else:
            uri = latest_checkpoint(self.store, self.options.run_uri)
        if uri is None:
            raise ValueError(f"run {self.options.run_id} has no checkpoint to resume from")
        arrays, progress, history, fixed_noise, step_points = _read_checkpoint(
            self.store.read_bytes(uri))
        self.trainer.load_state(arrays)
        self.progress, self.history, self.fixed_noise = progress, history, fixed_noise
        self.step_points = [point for point in step_points if point["step"] <= progress["step"]]
        # The checkpoint's rate is the one training ended with (halved by any roll-back),
        # unless the resume gives a rate of its own.
        rate = self.options.new_learning_rate or progress["learning_rate"]
        self.progress["learning_rate"] = rate
        self.trainer.set_learning_rate(rate)
        logger.info("resumed run %s at epoch %d, step %d, learning rate %g",
                    self.options.run_id, progress["epoch"], progress["step"], rate)

    def _remember_good_state(self):
        self.good_state = (self.trainer.state(), dict(self.progress), list(self.history))

    def run(self):
        options = self.options
        started_epoch = self.progress["epoch"]
        total_steps = (options.epochs - started_epoch) * self.steps_per_epoch
        clock = time.monotonic()
        while self.progress["epoch"] < options.epochs:
            epoch_row = self._train_epoch(clock, total_steps, started_epoch)
            if epoch_row is None:
                continue  # rolled back: the epoch is trained again
            self.trainer.average_statistics()
            self.history.append(epoch_row)
            self.progress["epoch"] += 1
            self._remember_good_state()
            if self.is_chief:
                self._write_epoch_outputs(epoch_row)
        self._write_node_report()
        if self.is_chief:
            self._write_final_outputs()

    def _write_node_report(self):
        """Each node's final step count and weight fingerprint: equal on every node when
        the nodes trained in lock step."""
        from gan_lib import storage
        report = {"rank": self.rank, "nodes": self.nodes, "step": self.progress["step"],
                  "generator_checksum": weights_checksum(self.trainer), "cores": self.cores,
                  "classes": self.trainer.classes}
        self.store.write_text(storage.join(self.options.run_uri, "nodes",
                                           f"rank-{self.rank}.json"), json.dumps(report))

    def _epoch_batches(self, epoch):
        indices = shard_indices(len(self.images), self.rank, self.nodes, epoch,
                                self.options.seed)
        for step in range(self.steps_per_epoch):
            chosen = np.sort(indices[step * self.per_node_batch:(step + 1) * self.per_node_batch])
            yield to_model_range(self.images[chosen]), self.labels[chosen]

    def _train_epoch(self, clock, total_steps, started_epoch):
        options, epoch = self.options, self.progress["epoch"]
        sums = np.zeros(4)
        window = np.zeros(4)
        epoch_clock = time.monotonic()
        for index, (batch, labels) in enumerate(self._epoch_batches(epoch)):
            step = self.progress["step"] + 1
            if step == options.fail_at_step and self.is_chief:
                raise RuntimeError(f"injected failure at step {step} (--fail-at-step)")
            poison = float("nan") if step == options.inject_nan_at_step else 0.0
            values = np.array(self.trainer.step(self._distribute(batch),
                                                self._distribute(labels), poison))
            self.progress["step"] = step
            sums += values
            window += values
            if step % options.check_every == 0 or not np.all(np.isfinite(values)):
                problem = self._problem(values, window / max(1, (step - 1) % options.check_every
                                                           + 1))
                window[:] = 0
                if problem:
                    self._roll_back(problem)
                    return None
            if self.is_chief and step % options.log_every == 0:
                self._log_step(epoch, index + 1, values, clock, total_steps, started_epoch)
                self.step_points.append({"step": step, "d_loss": values[0], "g_loss": values[1],
                                         "d_real": values[2], "d_fake": values[3]})
        duration = time.monotonic() - epoch_clock
        means = sums / self.steps_per_epoch
        return {"epoch": epoch + 1, "step": self.progress["step"], "d_loss": means[0],
                "g_loss": means[1], "d_real": means[2], "d_fake": means[3],
                "images_per_second": self.steps_per_epoch * self.trainer.global_batch / duration,
                "learning_rate": self.trainer.learning_rate, "duration_s": duration}

    def _distribute(self, batch):
        import tensorflow as tf
        return tf.constant(batch)

    def _problem(self, values, window_means):
        if not np.all(np.isfinite(values)):
            return f"non-finite losses (D {values[0]}, G {values[1]})"
        if window_means[0] < COLLAPSE_D_LOSS and window_means[3] < COLLAPSE_D_FAKE:
            return (f"the discriminator has collapsed (D loss {window_means[0]:.2e}, "
                    f"D(G(z)) {window_means[3]:.2e}): the generator gets no gradient")
        return None

    def _roll_back(self, problem):
        options = self.options
        if self.progress["rollbacks"] >= options.max_rollbacks:
            raise TrainingDiverged(
                f"training diverged: {problem}, still after {options.max_rollbacks} roll-backs "
                "with lower learning rates; try --learning-rate lower or another --recipe")
        arrays, progress, history = self.good_state
        self.trainer.load_state(arrays)
        rollbacks = self.progress["rollbacks"] + 1
        new_rate = self.trainer.learning_rate * options.rollback_factor
        self.progress, self.history = dict(progress), list(history)
        self.step_points = [point for point in self.step_points
                            if point["step"] <= progress["step"]]
        self.progress.update(rollbacks=rollbacks, learning_rate=new_rate)
        self.trainer.set_learning_rate(new_rate)
        logger.warning("%s at epoch %d; rolled back to step %d, learning rate now %.2e "
                       "(roll-back %d of %d)", problem, progress["epoch"] + 1, progress["step"],
                       new_rate, rollbacks, options.max_rollbacks)

    def _log_step(self, epoch, index, values, clock, total_steps, started_epoch):
        done = (epoch - started_epoch) * self.steps_per_epoch + index
        elapsed = time.monotonic() - clock
        rate = done * self.trainer.global_batch / max(elapsed, 1e-9)
        left = (total_steps - done) * elapsed / max(done, 1)
        line = (f"epoch {epoch + 1}/{self.options.epochs} step {index}/{self.steps_per_epoch}  "
                f"D loss {values[0]:.3f}  G loss {values[1]:.3f}  D(x) {values[2]:.3f}  "
                f"D(G(z)) {values[3]:.3f}  {rate:.0f} images/s  about {_duration(left)} left")
        logger.info(line)
        self._publish_progress(line)

    def _publish_progress(self, line):
        """The latest progress lines, numbered, for the driver to echo (executor logs are far
        away). The file keeps the last few, so that a line the driver has not polled yet, such
        as an epoch's summary, is not overwritten before it is shown."""
        from gan_lib import storage
        number = (self.published[-1][0] if self.published else 0) + 1
        self.published = (self.published + [(number, line)])[-PROGRESS_LINES_KEPT:]
        self.store.write_text(storage.join(self.options.run_uri, "progress.txt"),
                              "".join(f"{n}\t{text}\n" for n, text in self.published))

    def _write_epoch_outputs(self, row):
        from gan_lib import storage, visuals
        options = self.options
        epoch = row["epoch"]
        grid = visuals.image_grid(self.trainer.samples(self.fixed_noise),
                                  columns=grid_columns(len(self.fixed_noise),
                                                       self.trainer.classes))
        self.store.write_bytes(storage.join(options.run_uri, "samples", f"epoch-{epoch:04d}.png"),
                               visuals.to_png_bytes(grid))
        name = f"epoch-{epoch:04d}.npz"
        self.progress["learning_rate"] = self.trainer.learning_rate
        self.store.write_bytes(storage.join(options.run_uri, "checkpoints", name),
                               _checkpoint_bytes(self.trainer, self.progress, self.fixed_noise,
                                                 self.history, self.step_points, options))
        self.store.write_text(storage.join(options.run_uri, "checkpoints", "latest.json"),
                              json.dumps({"file": name, "progress": self.progress}))
        self.store.write_text(storage.join(options.run_uri, "metrics.jsonl"),
                              "".join(json.dumps(_plain(r)) + "\n" for r in self.history))
        _prune_checkpoints(self.store, options.run_uri, keep=3, latest=name)
        line = (f"epoch {epoch} done in {row['duration_s']:.0f} s: D loss {row['d_loss']:.3f}, "
                f"G loss {row['g_loss']:.3f}, D(x) {row['d_real']:.3f}, D(G(z)) "
                f"{row['d_fake']:.3f}, {row['images_per_second']:.0f} images/s; checkpoint {name}")
        logger.info(line)
        self._publish_progress(line)

    def _write_final_outputs(self):
        from gan_lib import storage, visuals
        options = self.options
        frames = []
        sample_dir = storage.join(options.run_uri, "samples")
        from PIL import Image
        for name in self.store.list(sample_dir) if self.store.exists(sample_dir) else []:
            if name.startswith("epoch-") and name.endswith(".png"):
                frames.append(Image.open(io.BytesIO(self.store.read_bytes(
                    storage.join(sample_dir, name)))))
        if frames:
            self.store.write_bytes(storage.join(options.run_uri, "samples", "progress.gif"),
                                   visuals.gif_bytes(frames))
        points = self.step_points if len(self.step_points) >= 2 else self.history
        self.store.write_bytes(storage.join(options.run_uri, "loss_curve.png"),
                               visuals.to_png_bytes(visuals.loss_curve(
                                   [_plain(point) for point in points])))
        if options.export:
            export_generator(self.trainer, options, self.store)


def class_count(labels: np.ndarray) -> int:
    """The number of classes to condition on: one more than the largest label index when
    every index from 0 to it labels some image; 0 when an image has no label or a class has
    no image (a generator would draw classes it never saw)."""
    if len(labels) == 0 or labels.min() < 0:
        return 0
    present = np.unique(labels)
    return len(present) if present[-1] == len(present) - 1 else 0


def grid_noise(options: TrainOptions, classes: int) -> np.ndarray:
    """The noise of every sample grid, drawn from the run's seed. With conditional networks
    sample i shows class i modulo the class count, so each row of a grid as wide as the
    class count shows one of each class."""
    from gan_lib import models

    noise = np.random.default_rng(options.seed).standard_normal(
        (options.sample_count, options.latent_dim)).astype(np.float32)
    if not classes:
        return noise
    return models.noise_for_classes(noise, np.arange(options.sample_count) % classes, classes)


def grid_columns(samples: int, classes: int) -> int | None:
    """Columns of a sample grid: with conditional networks a multiple of the class count
    (each column then shows one class), as near a square as that allows; else None, for
    the grid's own square layout."""
    if not classes:
        return None
    return min(samples, classes * max(1, round(math.sqrt(samples) / classes)))


def weights_checksum(trainer: GanTrainer) -> str:
    """A short fingerprint of the generator's weights (equal on every node in lock step)."""
    total = sum(float(np.sum(np.asarray(w.numpy(), dtype=np.float64)))
                for w in trainer.generator.weights)
    return f"{total:.10e}"


def export_generator(trainer: GanTrainer, options: TrainOptions, store) -> None:
    """Save the generator as a SavedModel that ``hub.load`` opens.

    Signature ``serving_default``: ``noise`` float32 (N, latent_dim) -> ``images`` uint8
    (N, H, W, C) in 0..255, the preprocessed dataset's range. A conditional generator also
    has ``generate_class``: ``noise`` and ``labels`` int32 (N,) -> ``images`` of those
    classes, and ``class_count`` holds its number of classes (0 when unconditional). The
    model is rebuilt outside the distribution strategy so that the export holds plain
    variables.
    """
    import tensorflow as tf
    from gan_lib import models, storage

    plain = models.build_generator(options.latent_dim, trainer.image_shape[0],
                                   trainer.image_shape[2], trainer.recipe, trainer.classes)
    plain.set_weights([np.asarray(w.numpy()) for w in trainer.generator.weights])
    module = GeneratorModule(plain, options.latent_dim, trainer.image_shape, trainer.classes)
    signatures = {"serving_default": module.generate}
    if trainer.classes:
        signatures["generate_class"] = module.generate_class
    with tempfile.TemporaryDirectory(prefix="export-") as folder:
        path = os.path.join(folder, "generator")
        tf.saved_model.save(module, path, signatures=signatures)
        store.upload_dir(path, storage.join(options.run_uri, "generator"),
                         progress="export: generator")
    logger.info("exported the generator to %s", storage.join(options.run_uri, "generator"))


def _generator_module_class():
    import tensorflow as tf

    class GeneratorModule(tf.Module):
        def __init__(self, generator, latent_dim, image_shape, classes):
            super().__init__(name="generator")
            self.generator = generator
            self.latent_dim = tf.Variable(latent_dim, trainable=False, dtype=tf.int32)
            self.image_shape = tf.Variable(list(image_shape), trainable=False, dtype=tf.int32)
            self.class_count = tf.Variable(classes, trainable=False, dtype=tf.int32)
            self.classes = classes
            noise_spec = tf.TensorSpec([None, latent_dim], tf.float32, name="noise")
            self.generate = tf.function(self._generate, input_signature=[noise_spec])
            if classes:
                self.generate_class = tf.function(
                    self._generate_class,
                    input_signature=[noise_spec, tf.TensorSpec([None], tf.int32, name="labels")])

        def _generate_class(self, noise, labels):
            """The noise's first value moved to the middle of each label's share of the
            normal distribution (the inverse of models.class_of_noise)."""
            # The checks run before the values they guard are used, so a bad call fails with
            # its own message rather than whichever op met the bad shape first.
            checks = [
                tf.debugging.assert_equal(tf.shape(labels)[0], tf.shape(noise)[0],
                                          message="give one label per noise vector"),
                tf.debugging.assert_non_negative(labels, message="labels must be at least 0"),
                tf.debugging.assert_less(labels, self.classes,
                                         message="labels must be below the class count")]
            with tf.control_dependencies(checks):
                middle = (tf.cast(labels, tf.float32) + 0.5) / self.classes
                first = tf.math.ndtri(middle)[:, None]
                return self._generate(tf.concat([first, noise[:, 1:]], axis=1))

        def _generate(self, noise):
            noise = tf.debugging.assert_all_finite(
                noise, "noise must be finite (no NaN or infinity)")
            images = self.generator(noise, training=False)
            pixels = tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0.0, 255.0)
            return {"images": tf.cast(pixels, tf.uint8)}

    return GeneratorModule


def GeneratorModule(generator, latent_dim, image_shape, classes=0):
    return _generator_module_class()(generator, latent_dim, image_shape, classes)


def _prune_checkpoints(store, run_uri, keep, latest):
    """Delete all but the ``keep`` newest checkpoints, never ``latest`` (the one just written
    and named by latest.json)."""
    from gan_lib import storage
    for name in _checkpoint_names(store, run_uri)[:-keep]:
        if name != latest:
            store.delete(storage.join(run_uri, "checkpoints", name))


PROGRESS_LINES_KEPT = 20


def _plain(row: dict) -> dict:
    return {key: (float(value) if isinstance(value, (np.floating, float)) else value)
            for key, value in row.items()}


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def progress_reporter(store, run_uri: str):
    """A function that logs on the driver the chief's progress lines it has not shown yet."""
    from gan_lib import storage
    path = storage.join(run_uri, "progress.txt")
    if store.exists(path):
        store.delete(path)  # a resumed run numbers its lines from 1 again
    shown = {"number": 0}

    def report():
        try:
            text = store.read_text(path) if store.exists(path) else ""
        except Exception:  # progress is a courtesy: never let it fail training
            return
        for entry in text.splitlines():
            number, _, line = entry.partition("\t")
            if number.isdigit() and int(number) > shown["number"]:
                shown["number"] = int(number)
                logger.info("%s", line)
    return report


def read_history(store, run_uri: str) -> list[dict]:
    from gan_lib import storage
    path = storage.join(run_uri, "metrics.jsonl")
    if not store.exists(path):
        return []
    return [json.loads(line) for line in store.read_text(path).splitlines() if line.strip()]


def options_dict(options: TrainOptions) -> dict:
    """The options as stored with the run, with the recipe's values filled in where the
    command line left them to the recipe (a batch size or learning rate of 0)."""
    from gan_lib import models

    values = asdict(options)
    values.pop("settings")
    for hook in ("fail_at_step", "inject_nan_at_step"):  # the tests' hooks, when unused
        if values[hook] == -1:
            values.pop(hook)
    recipe = models.RECIPES.get(options.recipe)
    if recipe is not None:
        values["batch_size"] = options.batch_size or recipe.batch_size
        values["learning_rate"] = options.learning_rate or recipe.learning_rate
    return values
