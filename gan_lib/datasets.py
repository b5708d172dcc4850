"""Dataset import (IDX files), where datasets live, and reading a dataset for training.

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist`` as IDX files. ``ingest``
turns it into an ordinary image folder under the root, ``raw/<dataset>/<split>/<label>/``,
so that it enters the pipeline exactly as a user's own images would: through preprocess.

A preprocessed dataset is a set of partitions of the ``images`` table
(``dataset=<name>/split=<split>``): uint8 pixels stored as raw bytes, row-major, with
height, width and channels beside them.
"""

import gzip
import json
import hashlib
import logging
import os
import shutil
import struct
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gan_lib import storage, tables
from gan_lib.config import Settings, validate_name
from gan_lib.progress import ProgressBar
from gan_lib.runs import StageError

logger = logging.getLogger(__name__)

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal",
                         "shirt", "sneaker", "bag", "ankle_boot")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


DEFAULT_DATASET = "fashion-mnist"


def raw_dir(settings: Settings, dataset: str) -> str:
    return storage.join(settings.root, "raw", validate_name(dataset, "--dataset"))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into an array of its declared shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise StageError(f"cannot read IDX file {path}: {error}") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise StageError(f"{path} is not an IDX file (bad magic number)")
    dimensions = data[3]
    shape = struct.unpack(f">{dimensions}I", data[4:4 + 4 * dimensions])
    array = np.frombuffer(data, dtype=IDX_TYPES[data[2]], offset=4 + 4 * dimensions)
    if array.size != int(np.prod(shape)):
        raise StageError(f"{path} holds {array.size} values but its header says {shape}")
    return array.reshape(shape)


def _idx_file(folder: str, name: str) -> Path | None:
    """The IDX file ``name`` (``....gz``) in the folder, compressed or unpacked; None if
    neither is there."""
    for candidate in (Path(folder, name), Path(folder, name.removesuffix(".gz"))):
        if candidate.is_file():
            return candidate
    return None


def fashion_mnist_files(source_dir: str, split: str) -> tuple[Path, Path]:
    """The images and labels IDX files of one Fashion-MNIST split in the folder, or a
    StageError naming the package to install."""
    images_path, labels_path = (_idx_file(source_dir, name) for name in FASHION_MNIST_FILES[split])
    if images_path is None or labels_path is None:
        names = ", ".join(name for pair in FASHION_MNIST_FILES.values() for name in pair)
        raise StageError(
            f"Fashion-MNIST is not in {source_dir}: install the Debian package "
            f"{FASHION_MNIST_PACKAGE} (apt-get install {FASHION_MNIST_PACKAGE}), or copy its four "
            f"IDX files there ({names}; unpacked without .gz too) and pass --source DIR")
    return images_path, labels_path


def check_fashion_mnist_source(source_dir: str) -> None:
    """Fail before anything is written when a split's files are missing from the folder."""
    for split in FASHION_MNIST_FILES:
        fashion_mnist_files(source_dir, split)


def load_fashion_mnist(source_dir: str = FASHION_MNIST_DIR, split: str = "train"):
    """Images (N, 28, 28) uint8 and labels (N,) of one Fashion-MNIST split."""
    images_path, labels_path = fashion_mnist_files(source_dir, split)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if len(images) != len(labels):
        raise StageError(f"{images_path} has {len(images)} images but {len(labels)} labels")
    return images, labels


def ingest_fashion_mnist(settings: Settings, dataset: str, source_dir: str,
                         limit_per_split: int | None = None) -> dict:
    """Write Fashion-MNIST as PNG files under ``raw/<dataset>/<split>/<label>/``.

    The folder is built locally and published in one step, so a killed ingest leaves either
    the previous folder or the new one, never half of one. Returns counts per split.
    """
    from gan_lib.images import encode_png

    target = raw_dir(settings, dataset)
    counts = {}
    with scratch_folder(settings, "ingest-") as scratch:
        for split in ("train", "test"):
            images, labels = load_fashion_mnist(source_dir, split)
            if limit_per_split:
                images, labels = images[:limit_per_split], labels[:limit_per_split]
            for name in FASHION_MNIST_CLASSES:
                Path(scratch, split, name).mkdir(parents=True, exist_ok=True)

            def write(index, split=split, images=images, labels=labels):
                name = FASHION_MNIST_CLASSES[int(labels[index])]
                path = Path(scratch, split, name, f"{split}-{index:05d}.png")
                path.write_bytes(encode_png(images[index][:, :, None]))

            with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool, \
                    ProgressBar(f"ingest: encoding {split}", len(images), unit="images") as bar:
                for _ in pool.map(write, range(len(images)), chunksize=512):
                    bar.advance()
            counts[split] = int(len(images))
            logger.info("ingest: wrote %d %s images", len(images), split)
        # what this ingest took, beside the images (Spark's listing leaves "_" names out)
        Path(scratch, INGEST_RECORD).write_text(json.dumps({"limit": limit_per_split,
                                                            "per_split": counts}))
        storage.open_storage(target, settings).upload_dir(scratch, target,
                                                          progress="ingest: publishing")
    return counts


INGEST_RECORD = "_ingest.json"


def ingest_record(settings: Settings, raw: str) -> dict | None:
    """What the ingest that wrote ``raw`` took ({"limit": N or None, "per_split": ...}); None
    when no ingest of this version wrote it."""
    uri = storage.join(raw, INGEST_RECORD)
    try:
        record = json.loads(storage.open_storage(uri, settings).read_bytes(uri))
    except (storage.StorageError, OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def scratch_folder(settings: Settings, prefix: str):
    """A temporary local folder under the state folder's ``scratch``, removed when the block
    ends; folders of the same kind that killed runs left there, untouched for
    ``storage.ABANDONED_AFTER_S``, are removed first."""
    parent = settings.local_state_dir / "scratch"
    parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for folder in parent.glob(f"{prefix}*"):
        try:
            if now - folder.stat().st_mtime > storage.ABANDONED_AFTER_S:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue
    return tempfile.TemporaryDirectory(prefix=prefix, dir=parent)


def dataset_location(settings: Settings, dataset: str, split: str | None = None) -> str:
    """Where a dataset's images are stored: its partition of the images table, or one
    split's."""
    location = storage.join(tables.table_location(settings, "images"),
                            f"dataset={validate_name(dataset, '--dataset')}")
    return storage.join(location, f"split={split}") if split else location


def load_split(settings: Settings, dataset: str, split: str = "train",
               scratch_dir: str | None = None):
    """Read one split of a preprocessed dataset without Spark, for TensorFlow workers.

    Returns ``(images, label_indices)``: images (N, H, W, C) uint8 in a fixed order (by image
    id), label indices (N,) int32 (-1 where the dataset has no labels). Files on remote
    storage are copied into ``scratch_dir`` first.
    """
    import pyarrow.parquet as parquet

    location = dataset_location(settings, dataset, split)
    store = storage.open_storage(location, settings)
    if not store.exists(location):
        if store.exists(dataset_location(settings, dataset)):
            change = "a higher" if split == "test" else "a lower"
            raise StageError(
                f"dataset {dataset!r} has no image in its {split} split: preprocessing put "
                "none there (when the input has no train and test folders, --test-percent of "
                f"the images go to test, chosen by content hash); preprocess it again with "
                f"{change} --test-percent, or with train and test folders")
        raise StageError(f"dataset {dataset!r} has no {split} split at "
                         f"{location}; run hdp-gan preprocess first")
    if location.startswith("file://"):
        folder = storage.local_path(location)
        cleanup = None
    else:
        cleanup = tempfile.mkdtemp(prefix="dataset-", dir=scratch_dir)
        store.download_dir(location, cleanup)
        folder = Path(cleanup)
    try:
        files = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith((".", "_")))
        if not files:
            raise StageError(f"dataset {dataset!r} split {split} at {location} holds no files")
        table = parquet.read_table(files, columns=["image_id", "label_index", "height", "width",
                                                   "channels", "pixels"])
    finally:
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)
    return _to_arrays(table)


def _to_arrays(table):
    order = np.argsort(np.asarray(table.column("image_id").to_pylist()))
    heights = np.unique(table.column("height").to_numpy())
    widths = np.unique(table.column("width").to_numpy())
    channels = np.unique(table.column("channels").to_numpy())
    if len(heights) != 1 or len(widths) != 1 or len(channels) != 1:
        raise StageError("dataset mixes image shapes; preprocess it again with one --image-size")
    shape = (int(heights[0]), int(widths[0]), int(channels[0]))
    pixels = table.column("pixels").to_pylist()
    images = np.frombuffer(b"".join(pixels[i] for i in order), dtype=np.uint8)
    images = images.reshape((len(order),) + shape)
    labels = table.column("label_index").to_numpy(zero_copy_only=False)
    labels = np.where(np.isnan(labels.astype(float)), -1, labels).astype(np.int32)[order]
    return images, labels


def class_names(spark, settings: Settings, dataset: str) -> list[str]:
    """The dataset's label names ordered by label index."""
    rows = spark.sql(
        f"SELECT DISTINCT label_index, label FROM {tables.qualified(settings, 'images')} "
        f"WHERE dataset = {tables.sql_string(validate_name(dataset, '--dataset'))} "
        "AND label IS NOT NULL ORDER BY label_index").collect()
    return [row.label for row in rows]


def pixel_id(pixels: np.ndarray) -> str:
    """Content id of an image: SHA-256 of its shape and uint8 pixels. Equal pixels, equal id,
    whatever file format they came from."""
    height, width, channels = pixels.shape
    return hashlib.sha256(f"{height}x{width}x{channels}:".encode() + pixels.tobytes()).hexdigest()
