"""Batch inference with a TF Hub classifier over an image table or folder, and quality scores.

Sources: the images of a ``generate`` run, a split of a preprocessed dataset, or any folder
of image files. Executors decode (files) or unpack (tables) the images, run the classifier
in Arrow batches and return, per image, the label, confidence, top-k, and the probability
and feature vectors. The classifier is loaded once per Python worker (``inference._MODELS``)
and TensorFlow's thread pools are sized to the executor's cores.

Results are staged once as Parquet under the run folder (a rerun replaces them, so a killed
run leaves nothing behind in the tables); the labels table partition is written from there.
Only for a generator run do the results carry the probability and feature vectors: those of
the generated and of the real test images are gathered on the driver (10,000 of each at
most: about 5 MB each) for the quality scores.
"""

import datetime as dt
import io
import logging

import numpy as np

from gan_lib import storage, tables
from gan_lib.images import (DecodeSettings, ImageRejected, decode_image, is_greyscale,
                             pixels_to_array)

logger = logging.getLogger(__name__)

SCORED_SCHEMA = (
    "image_id STRING, path STRING, status STRING, label STRING, label_index INT, "
    "confidence DOUBLE, top_k ARRAY<STRUCT<label:STRING,score:DOUBLE>>, "
    "probabilities ARRAY<FLOAT>, features ARRAY<FLOAT>")
MAX_SCORED_IMAGES = 10_000


def _arrow_schema():
    import pyarrow as pa
    return pa.schema([
        ("image_id", pa.string()), ("path", pa.string()), ("status", pa.string()),
        ("label", pa.string()), ("label_index", pa.int32()), ("confidence", pa.float64()),
        ("top_k", pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))),
        ("probabilities", pa.list_(pa.float32())), ("features", pa.list_(pa.float32()))])


def _set_threads(threads: int) -> None:
    import tensorflow as tf
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # already initialised in this worker: the first setting holds
        pass


def score_batches(batches, handle: str, settings, source: str, top: int, threads: int,
                  vectors: bool = True):
    """Arrow batches in (files: path, content; tables: image_id, path, pixels, height, width,
    channels), Arrow batches of SCORED_SCHEMA out. Without ``vectors`` the probability and
    feature columns stay empty (only the quality scores need them)."""
    import pyarrow as pa
    from gan_lib import datasets, inference

    _set_threads(threads)
    classifier = inference.load_classifier(handle, settings)
    height, width, channels = classifier.input_shape
    decode = DecodeSettings(image_size=height, channels=channels, min_size=1)
    schema = _arrow_schema()
    for batch in batches:
        columns = batch.to_pydict()
        images, ids, paths, unreadable = [], [], [], []
        for index, path in enumerate(columns["path"]):
            try:
                if source == "files":
                    pixels = decode_image(columns["content"][index] or b"", decode)
                    image_id = datasets.pixel_id(pixels)
                else:
                    pixels = pixels_to_array(columns["pixels"][index], columns["height"][index],
                                             columns["width"][index], columns["channels"][index])
                    image_id = columns["image_id"][index]
            except ImageRejected as rejection:
                unreadable.append(_unreadable(path, f"unreadable: {rejection.reason}"))
                continue
            images.append(pixels)
            ids.append(image_id)
            paths.append(path)
        if images:
            probabilities, features = classifier.predict(np.stack(images), with_features=vectors)
            yield _predictions_batch(classifier, ids, paths, probabilities, features, top,
                                     vectors, schema)
        if unreadable:
            yield pa.RecordBatch.from_pylist(unreadable, schema=schema)


def _predictions_batch(classifier, ids, paths, probabilities, features, top, vectors, schema):
    """One Arrow batch for a batch of predictions, built column by column from the arrays."""
    import pyarrow as pa
    count, classes = probabilities.shape
    ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    kept = ranked.shape[1]
    names = np.array([classifier.label_name(index) for index in range(classes)], dtype=object)
    best = ranked[:, 0]
    top_scores = np.take_along_axis(probabilities, ranked, axis=1).astype(np.float64)
    top_k = pa.ListArray.from_arrays(
        pa.array(np.arange(0, count * kept + 1, kept, dtype=np.int32)),
        pa.StructArray.from_arrays([pa.array(names[ranked].ravel(), pa.string()),
                                    pa.array(top_scores.ravel())], names=["label", "score"]))
    columns = [pa.array(ids, pa.string()), pa.array(paths, pa.string()),
               pa.array(["ok"] * count, pa.string()), pa.array(names[best], pa.string()),
               pa.array(best.astype(np.int32)), pa.array(top_scores[:, 0]), top_k,
               _vectors(probabilities if vectors else None, count),
               _vectors(features, count)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _vectors(values, count):
    """Rows of a (count, D) array as an Arrow list column; all null without an array."""
    import pyarrow as pa
    if values is None:
        return pa.nulls(count, pa.list_(pa.float32()))
    width = values.shape[1]
    return pa.ListArray.from_arrays(
        pa.array(np.arange(0, count * width + 1, width, dtype=np.int32)),
        pa.array(np.ascontiguousarray(values, dtype=np.float32).ravel()))


def _unreadable(path, status):
    return {"image_id": None, "path": path, "status": status, "label": None,
            "label_index": None, "confidence": None, "top_k": None, "probabilities": None,
            "features": None}


def score(spark, frame, source: str, handle: str, settings, staging_uri: str, top: int,
          vectors: bool = True):
    """Run the classifier over ``frame`` and stage the results as Parquet; returns them."""
    threads = int(spark.sparkContext.getConf().get("spark.executor.cores", "1"))
    scored = frame.mapInArrow(
        lambda batches: score_batches(batches, handle, settings, source, top, threads, vectors),
        SCORED_SCHEMA)
    scored.write.mode("overwrite").parquet(staging_uri)
    if source == "files":
        _stage_unread_files(spark, settings, frame, staging_uri)
    return spark.read.parquet(staging_uri)


def _stage_unread_files(spark, settings, files, staging_uri) -> None:
    """A row saying so for every file listed in ``files`` that Spark did not read (zero
    bytes, over the size limit, or a name Spark never reads)."""
    from gan_lib import preprocessing
    from pyspark.sql import functions as F
    staged = spark.read.parquet(staging_uri)
    unread = preprocessing.unread_files(spark, preprocessing.listed_files(files), staged)
    if unread is not None:
        unread = preprocessing.with_skip_reasons(unread, settings,
                                                 preprocessing.DEFAULT_MAX_FILE_BYTES)
        status = F.concat(F.lit("unreadable: "), F.when(F.col("reason") == "empty", "empty")
                          .otherwise(F.col("detail")))
        unread.select(*[
            F.col("path") if field.name == "path"
            else status.alias("status") if field.name == "status"
            else F.lit(None).cast(field.dataType).alias(field.name)
            for field in staged.schema.fields]).write.mode("append").parquet(staging_uri)


def count_statuses(scored) -> dict:
    counts = {row.status: row["count"] for row in scored.groupBy("status").count().collect()}
    return {"labelled": counts.get("ok", 0),
            "unreadable": sum(v for k, v in counts.items() if k != "ok")}


def files_frame(spark, folder_uri: str):
    from gan_lib import preprocessing
    return preprocessing.readable_files(spark, folder_uri, preprocessing.DEFAULT_MAX_FILE_BYTES)


def table_frame(spark, settings, dataset: str, split: str):
    return spark.sql(
        f"SELECT image_id, source_path AS path, pixels, height, width, channels "
        f"FROM {tables.qualified(settings, 'images')} "
        f"WHERE dataset = {tables.sql_string(dataset)} AND split = {tables.sql_string(split)}")


def write_labels(spark, settings, scored, run_id: str, classifier) -> None:
    from pyspark.sql import functions as F
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    frame = scored.select(
        "image_id", "path", "status", "label", "label_index", "confidence", "top_k",
        F.lit(classifier.handle).alias("classifier_handle"),
        F.lit(classifier.version).alias("classifier_version"),
        F.lit(now).cast("timestamp").alias("labelled_at"), F.lit(run_id).alias("run_id"))
    tables.write_partitions(spark, settings, "labels", frame)


def gather_vectors(scored, limit: int = MAX_SCORED_IMAGES):
    """Probabilities and features of up to ``limit`` readable images, in image-id order."""
    from pyspark.sql import functions as F
    rows = (scored.where(F.col("status") == "ok").orderBy("image_id").limit(limit)
            .select("probabilities", "features").toPandas())
    probabilities = np.array(rows["probabilities"].tolist(), dtype=np.float64)
    features = (np.array(rows["features"].tolist(), dtype=np.float64)
                if len(rows) and rows["features"].iloc[0] is not None else None)
    return probabilities, features


def contact_sheet_png(spark, settings, scored, frame, count: int = 64) -> bytes:
    """A grid of the first ``count`` labelled images (by path) with label and confidence under
    each; ``frame`` is the source the images were scored from. Only the chosen images are
    read again: image files one by one from storage, table rows by their paths. An image that
    cannot be read again (moved since it was scored) is left out with a warning."""
    from gan_lib import visuals
    from pyspark.sql import functions as F
    chosen = (scored.where(F.col("status") == "ok").orderBy("path").limit(count)
              .select("path", "label", "confidence").collect())
    if "content" in frame.columns:
        found = _read_images([row.path for row in chosen], settings)
    else:
        found = {row.path: pixels_to_array(row.pixels, row.height, row.width, row.channels)
                 for row in frame.where(F.col("path").isin([r.path for r in chosen])).collect()}
    kept = [row for row in chosen if row.path in found]
    images = [found[row.path] for row in kept]
    if not images or len({image.shape for image in images}) != 1:
        return b""
    captions = [f"{row.label} {row.confidence:.2f}" for row in kept]
    # cells at least 112 pixels wide, room for a caption such as "ankle_boot 0.93"
    scale = max(3, -(-112 // images[0].shape[1]))
    return visuals.to_png_bytes(visuals.contact_sheet(np.stack(images), captions, scale=scale))


def _read_images(paths, settings) -> dict:
    """Pixels of the image files at ``paths`` (one folder's files, so one storage), all at
    the size of the first (images in a folder may differ) and in colour if any one is."""
    from PIL import Image
    if not paths:
        return {}
    store, found, shapes = storage.open_storage(paths[0], settings), {}, {}
    for path in paths:
        try:
            found[path] = store.read_bytes(path)
            with Image.open(io.BytesIO(found[path])) as image:
                shapes[path] = (min(image.size), is_greyscale(image.mode))
        except (storage.StorageError, OSError) as error:
            logger.warning("contact sheet: left out %s, which cannot be read again: %s", path,
                           error)
            found.pop(path, None)
    if not found:
        return {}
    decode = DecodeSettings(image_size=shapes[next(iter(found))][0], min_size=1,
                            channels=1 if all(grey for _, grey in shapes.values()) else 3)
    pixels = {}
    for path, data in found.items():
        try:
            pixels[path] = decode_image(data, decode)
        except ImageRejected as error:
            logger.warning("contact sheet: left out %s: %s", path, error)
    return pixels
