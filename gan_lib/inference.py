"""Loading TF Hub handles and batch prediction.

A handle is a local folder holding a SavedModel, an ``hdfs://`` or ``webhdfs://`` folder
(copied once per machine into a local cache, then reused), or a tfhub.dev / Kaggle URL that
``tensorflow_hub`` resolves where the cluster has internet.

Two kinds of classifier are understood:

* the project's own reference classifier (``train-classifier``): signatures
  ``serving_default`` (images -> probabilities, logits), ``features`` (images -> the
  penultimate feature vector) and ``scores`` (both from one pass of the network), with
  ``class_names``, ``input_shape`` and ``value_range`` stored in the model;
* any image classifier from TF Hub, such as an ImageNet model: its input size and channels
  are read from the signature, inputs are scaled to [0, 1] (TF Hub's convention for image
  models), and its outputs are taken as logits unless they already sum to one.

Models are cached per Python process (``_MODELS``), so a Spark Python worker loads a model
once and reuses it for every batch; nothing heavy is captured in a task's closure.
"""

import gc
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

METADATA_FILE = "hdp_gan_classifier.json"
_MODELS = {}


class HandleError(ValueError):
    """The handle cannot be opened or its model does not fit; the message says why."""


@dataclass
class Classifier:
    handle: str
    version: str
    class_names: list
    input_shape: tuple       # (height, width, channels)
    value_range: tuple       # (low, high) the model expects
    predict_fn: object
    features_fn: object
    scores_fn: object = None  # images -> (probabilities, features) in one pass, if it has one

    def prepare(self, images_uint8: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> float32 in the model's size, channels and value range."""
        import tensorflow as tf
        height, width, channels = self.input_shape
        images = tf.convert_to_tensor(images_uint8)
        if images.shape[-1] == 1 and channels == 3:
            images = tf.image.grayscale_to_rgb(images)
        elif images.shape[-1] == 3 and channels == 1:
            images = tf.image.rgb_to_grayscale(images)
        images = tf.cast(images, tf.float32) / 255.0
        if tuple(images.shape[1:3]) != (height, width):
            images = tf.image.resize(images, (height, width))
        low, high = self.value_range
        return (images * (high - low) + low).numpy()

    def predict(self, images_uint8: np.ndarray, with_features: bool = True):
        """Probabilities (N, K) and, when the model has them, features (N, D)."""
        prepared = self.prepare(images_uint8)
        if with_features and self.scores_fn:
            return self.scores_fn(prepared)
        probabilities = self.predict_fn(prepared)
        features = self.features_fn(prepared) if with_features and self.features_fn else None
        return probabilities, features

    def label_name(self, index: int) -> str:
        return self.class_names[index] if index < len(self.class_names) else f"class_{index}"


def local_copy(handle: str, settings=None, cache_dir: str | None = None) -> str:
    """A local folder for a remote handle, downloaded once per version (atomically) into the
    cache. The version is the folder's listing (each file's path, size and modification
    time), so a model retrained or resumed at the same handle is fetched again; copies of
    the handle's older versions that no process has used for an hour are removed."""
    from gan_lib import storage
    if not handle.startswith(("hdfs://", "webhdfs://")):
        return handle[len("file://"):] if handle.startswith("file://") else handle
    cache = Path(cache_dir or os.environ.get("TFHUB_CACHE_DIR")
                 or Path(tempfile.gettempdir()) / "hdp-gan-models")
    store = storage.open_storage(handle, settings)
    name = hashlib.sha256(handle.encode()).hexdigest()[:20]
    version = hashlib.sha256(json.dumps(store.tree_status(handle)).encode()).hexdigest()[:12]
    target = cache / f"{name}-{version}"
    if (target / "saved_model.pb").exists():
        os.utime(target)  # in use: not an old version to remove
        return str(target)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        store.download_dir(handle, staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process finished the same download first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_old_versions(cache, name, keep=target)
    return str(target)


OLD_VERSION_AGE_S = 3600


def _remove_old_versions(cache: Path, name: str, keep: Path) -> None:
    now = time.time()
    for folder in cache.glob(f"{name}*"):
        try:
            idle = now - folder.stat().st_mtime
        except OSError:
            continue
        if folder != keep and idle > OLD_VERSION_AGE_S:
            shutil.rmtree(folder, ignore_errors=True)


def stored_class_names(handle: str, settings=None) -> list | None:
    """The class names stored with a project classifier on storage, read without loading it;
    None for another kind of handle or when they cannot be read."""
    from gan_lib import storage
    folder = _storage_uri(handle)
    if folder is None:
        return None
    uri = storage.join(folder, "assets", METADATA_FILE)
    try:
        names = json.loads(storage.open_storage(uri, settings).read_bytes(uri)).get("class_names")
    except (storage.StorageError, OSError, ValueError, AttributeError):
        return None
    return names if isinstance(names, list) else None


def _storage_uri(handle: str) -> str | None:
    """A handle on storage as a URI (a plain path taken from the current folder); None for a
    hub or Kaggle URL."""
    from gan_lib import storage
    if "://" not in handle and not handle.startswith("file:"):
        return storage.file_uri(os.path.abspath(handle))
    return handle if handle.startswith(("file:", "hdfs://", "webhdfs://")) else None


def check_handle_present(handle: str, settings=None) -> None:
    """A quick look, without loading anything: a handle on storage (a local, hdfs:// or
    webhdfs:// folder) holds a SavedModel. A hub or Kaggle URL is taken as it is."""
    from gan_lib import storage
    folder = _storage_uri(handle)
    if folder is None:
        return
    model = storage.join(folder, "saved_model.pb")
    if not storage.open_storage(model, settings).exists(model):
        raise HandleError(_NOT_A_SAVED_MODEL.format(handle=handle))


_NOT_A_SAVED_MODEL = ("classifier handle {handle!r} is not a SavedModel folder (no "
                      "saved_model.pb); give the folder written by train-classifier or a TF "
                      "Hub handle")


def load_classifier(handle: str, settings=None) -> Classifier:
    """Open a classifier handle (cached per process)."""
    if handle in _MODELS:
        return _MODELS[handle]
    import tensorflow as tf
    import tensorflow_hub as hub

    path = local_copy(handle, settings)
    if "://" not in path and not Path(path, "saved_model.pb").exists():
        raise HandleError(_NOT_A_SAVED_MODEL.format(handle=handle))
    try:
        module = hub.load(path)
    except Exception as error:
        raise HandleError(f"classifier handle {handle!r} could not be loaded: "
                          f"{str(error).splitlines()[0]}") from error
    metadata_path = Path(path, "assets", METADATA_FILE)
    if metadata_path.exists():
        classifier = _own_classifier(handle, module, _metadata(handle, metadata_path))
    else:
        classifier = _hub_classifier(handle, module, tf)
    _MODELS[handle] = classifier
    keep_out_of_collections()
    return classifier


def keep_out_of_collections() -> None:
    """Move every object alive now (TensorFlow's modules and a loaded model: some 340,000)
    out of the garbage collector's reach. They live as long as the process, and Spark's
    Python workers run a full collection after every task, which would walk them each time
    (about 0.12 s per task). Reference cycles among them are never freed after this: the
    process keeps them anyway."""
    gc.collect()
    gc.freeze()


def _metadata(handle: str, path: Path) -> dict:
    """The class names, input shape and value range stored with a classifier, checked."""
    problem = None
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        metadata, problem = None, f"it cannot be read: {error}"
    if problem is None:
        if not isinstance(metadata, dict):
            problem = "it is not a JSON object"
        elif not (isinstance(metadata.get("class_names"), list) and metadata["class_names"]
                  and all(isinstance(name, str) for name in metadata["class_names"])):
            problem = "its class_names is not a list of names"
        elif not _whole_numbers(metadata.get("input_shape"), 3):
            problem = "its input_shape is not [height, width, channels]"
        elif not (_numbers(metadata.get("value_range"), 2)
                  and metadata["value_range"][0] < metadata["value_range"][1]):
            problem = "its value_range is not [low, high]"
    if problem:
        raise HandleError(f"classifier handle {handle!r} has a damaged {path.name} ({problem}); "
                          "export the classifier again with train-classifier")
    return metadata


def _whole_numbers(value, length: int) -> bool:
    return (isinstance(value, list) and len(value) == length
            and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in value))


def _numbers(value, length: int) -> bool:
    return (isinstance(value, list) and len(value) == length
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value))


def _own_classifier(handle, module, metadata) -> Classifier:
    serving = module.signatures["serving_default"]
    features = module.signatures.get("features")
    scores = module.signatures.get("scores")  # absent from models exported before it existed

    def both(x):
        outputs = scores(images=x)
        return outputs["probabilities"].numpy(), outputs["features"].numpy()

    return Classifier(
        handle=handle, version=metadata.get("version", "unknown"),
        class_names=list(metadata["class_names"]), input_shape=tuple(metadata["input_shape"]),
        value_range=tuple(metadata["value_range"]),
        predict_fn=lambda x: serving(images=x)["probabilities"].numpy(),
        features_fn=(lambda x: features(images=x)["features"].numpy()) if features else None,
        scores_fn=both if scores is not None and features is not None else None)


def _hub_classifier(handle, module, tf) -> Classifier:
    signature = getattr(module, "signatures", {}).get("serving_default")
    if signature is not None:
        spec = list(signature.structured_input_signature[1].values())[0]
        call = lambda x: list(signature(tf.constant(x)).values())[0].numpy()  # noqa: E731
    elif callable(module):
        spec = None
        call = lambda x: module(tf.constant(x)).numpy()  # noqa: E731
    else:
        raise HandleError(f"classifier handle {handle!r} has no serving signature and is not "
                          "callable")
    if spec is not None and spec.shape.rank not in (None, 4):
        raise HandleError(f"classifier handle {handle!r} takes inputs of shape "
                          f"{tuple(spec.shape)}, not a batch of images (N, height, width, "
                          "channels): is it an image classifier?")
    shape = tuple(spec.shape[1:]) if spec is not None and spec.shape.rank == 4 else (224, 224, 3)
    if shape[0] is None or shape[1] is None:
        shape = (224, 224, shape[2] or 3)

    def probabilities(x):
        outputs = np.asarray(call(x), dtype=np.float64)
        if outputs.ndim != 2:
            raise HandleError(f"classifier {handle!r} returned shape {outputs.shape}; expected "
                              "(batch, classes)")
        sums = outputs.sum(axis=1)
        if np.all(outputs >= 0) and np.allclose(sums, 1.0, atol=1e-3):
            return outputs
        shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    return Classifier(handle=handle, version="tfhub", class_names=[],
                      input_shape=tuple(int(v) for v in shape), value_range=(0.0, 1.0),
                      predict_fn=probabilities, features_fn=None)


def check_classifier(handle: str, settings=None) -> Classifier:
    """Load a handle on the driver and run it on two blank images, so that a bad handle or a
    model whose signature does not fit fails before any Spark task starts."""
    classifier = load_classifier(handle, settings)
    height, width, channels = classifier.input_shape
    try:
        probabilities, _ = classifier.predict(np.zeros((2, height, width, channels), np.uint8))
    except HandleError:
        raise
    except Exception as error:
        reason = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise HandleError(f"classifier {handle!r} does not accept images of shape "
                          f"{(height, width, channels)}: {reason[-1] if reason else error!r}"
                          ) from error
    if probabilities.ndim != 2 or probabilities.shape[0] != 2:
        raise HandleError(f"classifier {handle!r} returned shape {probabilities.shape} for 2 "
                          "images; expected (2, classes)")
    return classifier
