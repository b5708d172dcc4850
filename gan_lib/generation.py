"""Drawing images from an exported generator, spread over Spark partitions.

Partition ``p`` of a run with seed ``s`` draws its noise from ``numpy.random.default_rng((s,
p))``, so a rerun with the same seed, count and partitions reproduces the same images. Each
partition loads the generator once (from a local cache when the run lives on HDFS), writes
its images as PNG files under ``runs/<run_id>/images/`` through the storage layer, and
returns one small row per image; the pixels never travel to the driver.
"""

import logging
import re

import numpy as np

from gan_lib import storage
from gan_lib.config import redact_url
from gan_lib.datasets import pixel_id
from gan_lib.inference import keep_out_of_collections, local_copy
from gan_lib.runs import run_dir

logger = logging.getLogger(__name__)

BATCH = 256
IMAGE_NAME = re.compile(r"(\d{7,})\.png")
_GENERATORS = {}


def load_generator(handle: str, settings=None):
    """The generator's ``serving_default`` signature and its latent size (cached)."""
    if handle not in _GENERATORS:
        import tensorflow as tf
        try:
            module = tf.saved_model.load(local_copy(handle, settings))
            signature = module.signatures["serving_default"]
            latent_dim = int(signature.structured_input_signature[1]["noise"].shape[1])
        except (OSError, ValueError, KeyError, IndexError, tf.errors.OpError) as error:
            # TensorFlow's own words name no file ("Read less bytes than requested")
            said = (str(error).strip().splitlines() or [""])[0]
            raise GeneratorUnreadableError(
                f"the generator at {redact_url(handle)} cannot be loaded "
                f"({type(error).__name__}: {said}); hdp-gan train --resume with more --epochs "
                "exports it again") from error
        _GENERATORS[handle] = (signature, latent_dim)
        keep_out_of_collections()
    return _GENERATORS[handle]


class GeneratorUnreadableError(Exception):
    """An exported generator whose files cannot be loaded (damaged, cut short)."""


def images_folder(settings, run_id: str) -> str:
    """Where a generate run's PNG files live: ``runs/<run_id>/images``."""
    return storage.join(run_dir(settings, run_id), "images")


def image_name(index: int) -> str:
    """The file name of a run's image ``index``; ``IMAGE_NAME`` reads it back."""
    return f"{index:07d}.png"


def remove_stale_images(images_uri: str, count: int, settings=None) -> int:
    """Delete the images numbered ``count`` and above that an earlier, larger run of the same
    id left in its folder (a rerun replaces the run's table rows, and a label run reads the
    folder); other files are left alone. Returns how many were deleted."""
    store = storage.open_storage(images_uri, settings)
    stale = [name for name in store.list(images_uri)
             if (match := IMAGE_NAME.fullmatch(name)) and int(match.group(1)) >= count]
    for name in stale:
        store.delete(storage.join(images_uri, name), recursive=False)
    if stale:
        logger.info("deleted %d images an earlier run of this id left beyond %d", len(stale),
                    count)
    return len(stale)


def partition_counts(count: int, partitions: int) -> list[int]:
    base, extra = divmod(count, partitions)
    return [base + (1 if p < extra else 0) for p in range(partitions)]


def generate_partition(partition: int, start: int, count: int, seed: int, generator_uri: str,
                       images_uri: str, settings=None):
    """Draw ``count`` images for one partition; yields (image_id, seed, index, path) rows, the
    path in the form Spark gives it when it reads the file back (as the labels table has it)."""
    import tensorflow as tf
    from gan_lib.images import encode_png

    signature, latent_dim = load_generator(generator_uri, settings)
    store = storage.open_storage(images_uri, settings)
    rng = np.random.default_rng((seed, partition))
    for offset in range(0, count, BATCH):  # drawn batch by batch: the same numbers as at once
        noise = rng.standard_normal((min(BATCH, count - offset), latent_dim)).astype(np.float32)
        pixels = signature(noise=tf.constant(noise))["images"].numpy()
        for position, image in enumerate(pixels):
            index = start + offset + position
            image_id = pixel_id(image)
            path = storage.join(images_uri, image_name(index))
            store.write_bytes(path, encode_png(image))
            yield image_id, int(seed), int(index), storage.spark_path(path)
