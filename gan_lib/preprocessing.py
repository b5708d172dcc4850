"""The preprocessing stage: any image folder into a clean dataset, nothing lost.

Spark lists and reads the files (``binaryFile``, recursive); executors decode them in Arrow
batches with ``gan_lib.images``. No image reaches the driver: only counts, label and split
names, and the paths of duplicate files when there are some. Decoded rows are staged once as
Parquet under the run folder, then split three ways:

* accepted images, one row per distinct pixel content, into the ``images`` table
  (partitions ``dataset``/``split``);
* files that could not be used, with the reason, into the ``rejects`` table (partition
  ``dataset``);
* duplicates (same pixels as an accepted image), counted and dropped.

A rerun replaces the dataset's partitions and drops those it no longer has. Before it records
the run, the job checks that every listed file has exactly one row, accepted or rejected
(``files seen = accepted + rejected + duplicates``), and that the table holds one row per
distinct accepted image.
"""

import logging
import os
import posixpath
import stat
from dataclasses import asdict, dataclass
from urllib.parse import unquote, urlsplit

from gan_lib import datasets, storage, tables
from gan_lib.config import ConfigError, Settings, file_uri, local_file_path, validate_name
from gan_lib.datasets import pixel_id
from gan_lib.images import (REJECT_REASONS, DecodeSettings, ImageRejected, decode_image,
                            detect_format)
from gan_lib.runs import StageError, StageRun, staging_folder

logger = logging.getLogger(__name__)

SPLIT_FOLDERS = ("train", "test", "validation")
DECODED_SCHEMA = (
    "path STRING, status STRING, image_id STRING, label STRING, split STRING, height INT, "
    "width INT, channels INT, pixels BINARY, reason STRING, detail STRING, size_bytes BIGINT, "
    "detected_format STRING")


# Spark's binaryFile source reads files of at most 2 GiB - 1 bytes (and fails the job on a
# larger one). Files above the limit are left unread and rejected as file_too_large. An
# executor holds a file several times over while it reads it and hands it to Python: with the
# default executors (2,048 MB, 1,536 MB of it heap) a 128 MiB file went through and a 300 MiB
# one ran the executor out of memory, failing the job. So the default stops at 128 MiB (far
# above any compressed image within the default pixel limit); raise it together with
# --executor-memory-mb.
SPARK_MAX_FILE_BYTES = 2**31 - 1
DEFAULT_MAX_FILE_BYTES = 128 * 2**20


@dataclass(frozen=True)
class PreprocessOptions:
    input_uri: str
    dataset: str
    image_size: int = 28
    channels: int = 1
    max_pixels: int = 50_000_000
    min_size: int = 8
    test_percent: int = 10
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    def __post_init__(self):
        validate_name(self.dataset, "--dataset")
        for name in ("image_size", "channels", "max_pixels", "min_size", "test_percent",
                     "max_file_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"--{name.replace('_', '-')} {value!r} must be a whole number")
        if self.channels not in (1, 3):
            raise ConfigError(f"--channels {self.channels} is not supported; use 1 (grayscale) "
                              "or 3 (RGB)")
        if not 8 <= self.image_size <= 1024:
            raise ConfigError(f"--image-size {self.image_size} must be between 8 and 1024")
        if not 0 < self.max_file_bytes <= SPARK_MAX_FILE_BYTES:
            raise ConfigError(f"--max-file-bytes {self.max_file_bytes} must be between 1 and "
                              f"{SPARK_MAX_FILE_BYTES} (the largest file Spark reads)")
        if not 0 <= self.test_percent < 100:
            raise ConfigError(f"--test-percent {self.test_percent} must be between 0 and 99")

    @property
    def decode_settings(self) -> DecodeSettings:
        return DecodeSettings(image_size=self.image_size, channels=self.channels,
                              max_pixels=self.max_pixels, min_size=self.min_size)


# How many files the pre-flight check opens to see that the input holds images at all.
IMAGE_PROBE_FILES = 200


def check_before_spark(settings: Settings, options: PreprocessOptions) -> None:
    """Fail in one line, before any Spark work, on what would waste a cluster's time."""
    if not _valid_utf8(options.input_uri):
        shown = os.fsencode(options.input_uri).decode("utf-8", "backslashreplace")
        raise ConfigError(f"--input {shown} is not valid UTF-8; Spark cannot take such a path: "
                          "rename the folder")
    store = storage.open_storage(options.input_uri, settings)
    if not store.exists(options.input_uri):
        raise ConfigError(f"--input {options.input_uri} does not exist")
    if not store.is_dir(options.input_uri):
        raise ConfigError(f"--input {options.input_uri} is a file; give the folder that holds "
                          "the images")
    check_root_outside_input(settings, options.input_uri)
    if _is_local(options.input_uri):
        # Before the probe below opens any file: a named pipe would block it.
        _check_local_tree(options.input_uri, settings.root)
    copying = store.being_copied(options.input_uri)
    if copying:
        raise ConfigError(f"--input {options.input_uri} holds {copying}, a file still being "
                          "copied in (HDFS's shell writes a file under that name and renames it "
                          "when the copy is complete); Spark's listing leaves it out, so it "
                          "would not be counted: wait for the copy to finish, or remove the "
                          "file if the copy failed")
    sample = store.files(options.input_uri, limit=IMAGE_PROBE_FILES)
    if not sample:
        raise ConfigError(f"--input {options.input_uri} holds no files")
    if not any(detect_format(store.read_head(uri, 64)) for uri in sample):
        which = (f"its {len(sample)} files" if len(sample) < IMAGE_PROBE_FILES
                 else f"the first {len(sample)} files")
        raise ConfigError(f"--input {options.input_uri} holds no images: none of {which} "
                          "starts like a PNG, JPEG, GIF, BMP, WebP or TIFF image; point --input "
                          "at the folder of images")
    probe = storage.join(settings.root, "runs", ".write-probe")
    try:
        root_store = storage.open_storage(settings.root, settings)
        root_store.write_bytes(probe, b"ok")
        root_store.delete(probe)
    except storage.StorageError as error:
        raise ConfigError(f"--root {settings.root} is not writable: {error}") from error


def check_root_outside_input(settings: Settings, input_uri: str, option="--input") -> None:
    """Fail in one line when the root lies inside the input folder (also through a link)."""
    if _within(settings.root, input_uri):
        raise ConfigError(f"--root {settings.root} is inside {option} {input_uri}: the "
                          "job's own outputs would be read as images on the next run; put the "
                          "root outside the input folder")


def check_not_replaced_unnamed(settings: Settings, dataset: str, input_uri: str,
                               option: str = "--input") -> None:
    """Images from a folder other than the dataset's raw one may not replace an existing
    dataset the user did not name (preprocessing a dataset replaces what it held)."""
    raw = datasets.raw_dir(settings, dataset)
    if _within(input_uri, raw) and _within(raw, input_uri):
        return
    existing = datasets.dataset_location(settings, dataset)
    if storage.open_storage(existing, settings).exists(existing):
        raise ConfigError(f"{option} given without --dataset: the dataset {dataset!r} exists "
                          "and its images would be replaced by these; name the dataset they "
                          f"make with --dataset NAME (or --dataset {dataset} to replace it)")


def absolute_input(input_uri: str, option: str = "--input") -> str:
    """A plain input path made absolute and normal (relative, '..', doubled slashes), as Spark
    will print its files' paths; a ``file:`` URI in any of its forms becomes ``file:///path``
    (one naming another host, or no absolute path, is refused); other URIs are kept as they
    are."""
    split = urlsplit(input_uri)
    if split.scheme == "file":
        path = local_file_path(input_uri)
        if path is None:
            which = (f"names the host {split.netloc!r}" if split.netloc not in ("", "localhost")
                     else "has no absolute path")
            raise ConfigError(f"{option} {input_uri} {which}; a local folder is file:///path "
                              "(three slashes) or a plain path")
        return file_uri(path)
    if split.scheme and "://" in input_uri:
        return input_uri
    path = os.path.normpath(os.path.abspath(os.path.expanduser(input_uri)))
    return "/" + path.lstrip("/")  # POSIX keeps a leading '//', which Hadoop takes for a host


def _within(uri: str, folder_uri: str) -> bool:
    """Whether ``uri`` is ``folder_uri`` or lies below it: local paths compared with symbolic
    links resolved, remote ones by host and path (the port may differ between hdfs:// and
    webhdfs:// addresses of one cluster)."""
    if _is_local(uri) != _is_local(folder_uri):
        return False
    if _is_local(uri):
        path, folder = (os.path.realpath(storage.local_path(u)) for u in (uri, folder_uri))
    else:
        if urlsplit(uri).hostname != urlsplit(folder_uri).hostname:
            return False
        path, folder = (posixpath.normpath(storage.path_part(u)) for u in (uri, folder_uri))
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _is_local(input_uri: str) -> bool:
    return input_uri.startswith("file:") or not urlsplit(input_uri).scheme


def _check_local_tree(input_uri: str, root_uri: str) -> None:
    root = os.path.realpath(storage.local_path(root_uri)) if _is_local(root_uri) else None
    problems = _local_tree_problems(str(storage.local_path(input_uri)), root)
    if "root" in problems:
        raise ConfigError(f"--input {input_uri} holds {problems['root']}, a symbolic link into "
                          f"--root {root_uri}: the job's own outputs would be read as images; "
                          "remove the link or put the root elsewhere")
    if "loop" in problems:
        raise ConfigError(f"--input {input_uri} holds a symbolic link loop: {problems['loop']} "
                          "points to a folder that contains it, so the listing would never end; "
                          "remove the link")
    if "colon" in problems:
        raise ConfigError(f"--input {input_uri} holds {problems['colon']}, whose name has a ':'; "
                          "Hadoop's file systems cannot read such names (HDFS does not allow "
                          "them): rename the file")
    if "special" in problems:
        raise ConfigError(f"--input {input_uri} holds {problems['special']}, which is not a "
                          "regular file (a named pipe, socket or device); reading it would block "
                          "or never end: remove it")
    if "dangling" in problems:
        raise ConfigError(f"--input {input_uri} holds {problems['dangling']}, a symbolic link to "
                          "nothing (a missing file, a loop of links or a path through a file); "
                          "Hadoop's listing leaves it out, so it would not be counted: restore "
                          "its target or remove the link")
    if "encoding" in problems:
        shown = os.fsencode(problems["encoding"]).decode("utf-8", "backslashreplace")
        raise ConfigError(f"--input {input_uri} holds {shown}, whose name is not valid UTF-8; "
                          "Hadoop's listing leaves it out, so it would not be counted: rename "
                          "it")


_TREE_PROBLEMS = ("loop", "colon", "special", "dangling", "encoding", "root")


def _local_tree_problems(folder: str, root: str | None = None) -> dict:
    """In one walk of ``folder``, the first of each: a symbolic link that leads back to a
    folder on the path walked to it (``loop``), a file or folder whose name holds a ':'
    (``colon``), an entry that is neither a folder nor a regular file (``special``), a
    symbolic link to nothing (``dangling``), a name that is not valid UTF-8 (``encoding``),
    and a folder link out of the input into the local ``root`` (``root``: the job's outputs
    would be read as input).
    Hadoop's local listing leaves dangling links and such names out without a word, so they
    would be neither read nor counted."""
    found = {}
    folder = os.path.normpath(folder)
    # Followed through symbolic links, as Hadoop's listing is; each folder walked into is
    # kept with its real path, to tell a link that leads back up the path walked (a loop,
    # over any number of links) from one that leads elsewhere.
    real_of = {folder: os.path.realpath(folder)}
    for parent, names, files in os.walk(folder, followlinks=True):
        files = sorted(n for n in files if not storage.skipped_by_listing(n))
        walked = [real_of[ancestor] for ancestor in _up_to(parent, folder)]
        kept = []
        for name in sorted(n for n in names if not storage.skipped_by_listing(n)):
            path = os.path.join(parent, name)
            real = os.path.realpath(path)
            if os.path.islink(path) and any(os.path.commonpath([real, step]) == real
                                            for step in walked):
                found.setdefault("loop", path)  # not walked into
                continue
            if root and os.path.islink(path) and _leads_into(real, root, real_of[folder]):
                found.setdefault("root", path)
                continue
            real_of[path] = real
            kept.append(name)
        names[:] = kept
        for name in sorted(names + files):
            if "colon" not in found and ":" in name:
                found["colon"] = os.path.join(parent, name)
            if "encoding" not in found and not _valid_utf8(name):
                found["encoding"] = os.path.join(parent, name)
        for path in (os.path.join(parent, name) for name in files):
            if "special" not in found and _not_a_regular_file(path):
                found["special"] = path
            if "dangling" not in found and os.path.islink(path) and _broken(path):
                found["dangling"] = path
        if len(found) == len(_TREE_PROBLEMS):
            break
    return found


def _leads_into(target: str, root: str, input_folder: str) -> bool:
    """Whether a linked folder (its real path ``target``) holds the root or lies in it,
    outside the input folder (the usual layout keeps the input inside the root)."""
    def below(path, folder):
        return os.path.commonpath([path, folder]) == folder
    return not below(target, input_folder) and (below(target, root) or below(root, target))


def _up_to(path: str, top: str):
    """``path`` and the folders above it, up to and including ``top``."""
    while True:
        yield path
        if path == top or os.path.dirname(path) == path:
            return
        path = os.path.dirname(path)


def _valid_utf8(name: str) -> bool:
    """Whether a name from the file system decodes as UTF-8 (Python keeps bytes that do not
    as lone surrogates)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _broken(link: str) -> bool:
    """Whether a symbolic link leads to nothing: a missing target, a loop of links, or a path
    through a file."""
    try:
        os.stat(link)
        return False
    except OSError:
        return True


def _not_a_regular_file(path: str) -> bool:
    """A named pipe, socket or device (a broken symbolic link is none of these)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def relative_parts(input_uri: str, path: str) -> list[str]:
    """Folder names between the input folder and the file (the file name excluded)."""
    base = _input_path(input_uri).rstrip("/") + "/"
    file_path = storage.path_part(path)
    relative = file_path[len(base):] if file_path.startswith(base) else file_path.lstrip("/")
    return relative.split("/")[:-1]


def _input_path(input_uri: str) -> str:
    """The path part of the input as Spark prints file paths: a local input taken as written
    ('#' and '?' are part of its name), a remote one without its scheme and host."""
    if _is_local(input_uri):
        return str(storage.local_path(input_uri))
    return storage.path_part(input_uri)


def label_and_split(parts: list[str], image_id: str, test_percent: int):
    """Split from a train/test folder when there is one, otherwise from the content hash;
    the label is the innermost folder that is not a split folder."""
    split = next((p for p in parts if p.lower() in SPLIT_FOLDERS), None)
    labels = [p for p in parts if p.lower() not in SPLIT_FOLDERS]
    if split is None:
        split = "test" if int(image_id[:8], 16) % 100 < test_percent else "train"
    return (labels[-1] if labels else None), split.lower()


def decode_batches(batches, input_uri: str, decode: DecodeSettings, test_percent: int):
    """Arrow batches of ``binaryFile`` rows in, Arrow batches of DECODED_SCHEMA rows out."""
    import pyarrow as pa

    input_folder = _real_folder(input_uri)
    for batch in batches:
        columns = {name: [] for name in ("path", "status", "image_id", "label", "split",
                                         "height", "width", "channels", "pixels", "reason",
                                         "detail", "size_bytes", "detected_format")}
        paths = batch.column("path").to_pylist()
        contents = batch.column("content").to_pylist()
        for path, content in zip(paths, contents):
            row = _decode_one(path, content or b"", input_uri, input_folder, decode,
                              test_percent)
            for name, value in row.items():
                columns[name].append(value)
        yield pa.RecordBatch.from_pydict(columns, schema=_decoded_arrow_schema())


def _decode_one(path, content, input_uri, input_folder, decode, test_percent) -> dict:
    row = {"path": path, "size_bytes": len(content), "detected_format": detect_format(content),
           "status": "accepted", "image_id": None, "label": None, "split": None,
           "height": None, "width": None, "channels": None, "pixels": None,
           "reason": None, "detail": None}
    if _links_outside(path, input_folder):
        row.update(status="rejected", reason="outside_input", detected_format=None,
                   detail="a symbolic link in the input folder points to a file outside it, "
                          "which is not decoded; copy the file in, or give the folder it lives in "
                          "as --input")
        return row
    try:
        pixels = decode_image(content, decode)
    except ImageRejected as rejection:
        row.update(status="rejected", reason=rejection.reason, detail=rejection.detail)
        return row
    except Exception as error:  # a decoder bug must not fail the job: quarantine the file
        row.update(status="rejected", reason="corrupt",
                   detail=f"decoder failed: {type(error).__name__}: {error}"[:500])
        return row
    height, width, channels = pixels.shape
    raw = pixels.tobytes()
    image_id = pixel_id(pixels)
    label, split = label_and_split(relative_parts(input_uri, path), image_id, test_percent)
    row.update(image_id=image_id, label=label, split=split, height=height, width=width,
               channels=channels, pixels=raw)
    return row


def _real_folder(input_uri: str) -> str | None:
    """The input folder with symbolic links resolved, for a local input; None otherwise."""
    return os.path.realpath(storage.local_path(input_uri)) if _is_local(input_uri) else None


def _links_outside(path: str, input_folder: str | None) -> bool:
    """True when a local file reached through a symbolic link lies outside the input folder.
    (HDFS has no symbolic links enabled by default; its paths are never outside.)"""
    if input_folder is None or not path.startswith("file:"):
        return False
    target = os.path.realpath(storage.path_part(path))
    return os.path.commonpath([input_folder, target]) != input_folder


def _decoded_arrow_schema():
    import pyarrow as pa
    return pa.schema([
        ("path", pa.string()), ("status", pa.string()), ("image_id", pa.string()),
        ("label", pa.string()), ("split", pa.string()), ("height", pa.int32()),
        ("width", pa.int32()), ("channels", pa.int32()), ("pixels", pa.binary()),
        ("reason", pa.string()), ("detail", pa.string()), ("size_bytes", pa.int64()),
        ("detected_format", pa.string())])


def preprocess(spark, settings: Settings, options: PreprocessOptions,
               run: StageRun) -> tuple[dict, list[str]]:
    """Run the stage; returns the counts (also stored in the run row) and the dataset's label
    names, in the order of their label indexes."""
    with staging_folder(settings, run.run_id) as staging:
        return _decode_and_write(spark, settings, options, run,
                                 storage.join(staging, "decoded"))


def _decode_and_write(spark, settings, options, run, staging: str) -> tuple[dict, list[str]]:
    from pyspark.sql import functions as F

    files = readable_files(spark, options.input_uri, options.max_file_bytes)
    decode, input_uri, test_percent = (options.decode_settings, options.input_uri,
                                       options.test_percent)
    decoded = files.mapInArrow(
        lambda batches: decode_batches(batches, input_uri, decode, test_percent),
        DECODED_SCHEMA)
    logger.info("decoding the files under %s", options.input_uri)
    decoded.write.mode("overwrite").parquet(staging)
    listed = listed_files(files)
    _stage_skipped_files(spark, settings, listed, staging, options.max_file_bytes)
    decoded = spark.read.parquet(staging)
    logger.info("decoded; writing the dataset %s", options.dataset)

    by_status = {row["status"]: row["count"]
                 for row in decoded.groupBy("status").count().collect()}
    copies, found = _first_copies(decoded)
    if not found["unique"]:  # before the tables are touched: the dataset stays as it was
        raise StageError(f"no file under {options.input_uri} was accepted "
                         f"({_rejected_summary(decoded)}); the dataset {options.dataset} was "
                         "left as it was")
    names = found["labels"]
    label_index = F.create_map(*[F.lit(x) for pair in enumerate(names) for x in pair[::-1]]) \
        if names else None
    accepted = decoded.where(F.col("status") == "accepted")
    if found["copies"]:
        small = found["copies"] <= BROADCAST_DUPLICATES
        unique = accepted.join(F.broadcast(copies) if small else copies, "path", "left_anti")
    else:
        unique = accepted
    images = unique.select(
        "image_id", F.col("path").alias("source_path"), "label",
        (label_index[F.col("label")] if names else F.lit(None)).cast("int").alias("label_index"),
        "height", "width", "channels", "pixels", F.lit(run.run_id).alias("run_id"),
        F.lit(options.dataset).alias("dataset"), "split")
    tables.write_partitions(spark, settings, "images", images)

    rejects = decoded.where(F.col("status") == "rejected").select(
        "path", "reason", "detail", "size_bytes", "detected_format",
        F.lit(run.run_id).alias("run_id"), F.lit(options.dataset).alias("dataset"))
    tables.write_partitions(spark, settings, "rejects", rejects)
    mine = {"dataset": options.dataset}
    tables.drop_partitions_except(spark, settings, "images", mine,
                                  [{"split": split} for split in found["splits"]])
    tables.drop_partitions_except(spark, settings, "rejects", mine,
                                  [{}] if by_status.get("rejected") else [])
    logger.info("dataset and rejects written; reconciling the counts")

    counts = _reconcile(by_status, len(listed), found["unique"], options.dataset, spark,
                        settings)
    counts["labels"] = len(names)
    _warn_of_an_empty_split(counts["per_split"], options)
    return counts, names


def _warn_of_an_empty_split(per_split: dict, options: PreprocessOptions) -> None:
    """Training needs a train split, the classifier and the quality scores a test split: a
    small input can leave one empty."""
    for split, change in (("train", "a lower"), ("test", "a higher")):
        if per_split.get(split) or (split == "test" and options.test_percent == 0):
            continue
        logger.warning("dataset %s has no image in its %s split (%d images, --test-percent %d):"
                       " the stages that need one will refuse it; preprocess it again with %s "
                       "--test-percent, or with train and test folders", options.dataset, split,
                       sum(per_split.values()), options.test_percent, change)


def _rejected_summary(decoded, most: int = 3) -> str:
    """How many files were rejected, with the commonest reasons: '12 rejected: too_small 10,
    empty 2'."""
    from pyspark.sql import functions as F
    reasons = (decoded.where(F.col("status") == "rejected").groupBy("reason").count()
               .orderBy(F.desc("count"), "reason").collect())
    total = sum(row["count"] for row in reasons)
    shown = ", ".join(f"{row['reason']} {row['count']}" for row in reasons[:most])
    return f"{total} rejected: {shown}" if reasons else "the input holds no files Spark reads"


# Above this many duplicate files the paths to drop are joined without broadcasting them.
BROADCAST_DUPLICATES = 100_000


def _first_copies(decoded):
    """The paths of accepted files whose pixels an earlier path (in path order) already has,
    and, from the same pass, ``copies`` (how many), ``unique`` (distinct pixel contents),
    ``labels`` (the sorted label names of the images kept) and ``splits`` (the splits they
    fall in).

    Only ids, paths, labels and splits are shuffled to find them. The pixel bytes are then
    read once and filtered against the copies' paths, which are broadcast when there are up
    to BROADCAST_DUPLICATES of them (the usual case: no pixel row moves); beyond that Spark
    joins by path, shuffling the accepted rows once."""
    from pyspark.sql import Window, functions as F

    keys = decoded.where(F.col("status") == "accepted").select("image_id", "path", "label",
                                                                "split")
    by_path = Window.partitionBy("image_id").orderBy("path")
    ranked = keys.withColumn("_first", F.row_number().over(by_path) == 1) \
        .withColumn("_kept_label", F.first("label").over(by_path))
    found = ranked.agg(
        F.count_if(~F.col("_first")).alias("copies"), F.count_if("_first").alias("unique"),
        F.count_if(~F.col("_first") & ~F.col("label").eqNullSafe(F.col("_kept_label")))
        .alias("relabelled"),
        F.collect_set(F.when(F.col("_first"), F.col("label"))).alias("labels"),
        F.collect_set(F.when(F.col("_first"), F.col("split"))).alias("splits")).first()
    copies = ranked.where(~F.col("_first")).select("path")
    if found["relabelled"]:
        logger.warning("%d duplicate files are labelled otherwise than the first file with "
                       "the same pixels (in path order); each image keeps that first file's "
                       "label", found["relabelled"])
    return copies, {"copies": found["copies"], "unique": found["unique"],
                    "labels": sorted(found["labels"]), "splits": sorted(found["splits"])}



def readable_files(spark, folder_uri: str, max_bytes: int):
    """The files below a folder as Spark's ``binaryFile`` rows (path, content), leaving out
    files over ``max_bytes``: the length filter reaches the file source, which then does not
    open them (its reader fails the job on a file over 2 GiB). Such files stay in the
    listing, so ``unread_files`` finds them."""
    from pyspark.sql import functions as F
    # Spark takes a path with [ ] { } * ? for a pattern and would read whatever matches it
    # (folder "in[1]" would read "in1"); its internal __globPaths__ option turns that off.
    # A file deleted between the listing and its read is left out rather than failing the
    # job; as it is in the listing, unread_files then finds it (rejected as not_read).
    return (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
            .option("__globPaths__", "false").option("ignoreMissingFiles", "true")
            .load(folder_uri).where(F.col("length") <= max_bytes).select("path", "content"))


def _stage_skipped_files(spark, settings, listed, staging: str, max_bytes: int) -> None:
    """Spark's file sources skip zero-byte files without a word, and some names too, and
    files over ``max_bytes`` are not read; every listed file that did not come through is
    added to the staged rows as rejected, so that nothing is lost."""
    from pyspark.sql import functions as F

    skipped = unread_files(spark, listed, spark.read.parquet(staging))
    if skipped is None:
        return  # the usual case: every listed file has its row
    skipped = with_skip_reasons(skipped, settings, max_bytes)
    rows = skipped.select(
        "path", F.lit("rejected").alias("status"),
        *[F.lit(None).cast(kind).alias(name) for name, kind in (
            ("image_id", "string"), ("label", "string"), ("split", "string"),
            ("height", "int"), ("width", "int"), ("channels", "int"), ("pixels", "binary"))],
        "reason", "detail", "size_bytes", F.lit(None).cast("string").alias("detected_format"))
    rows.write.mode("append").parquet(staging)


def with_skip_reasons(skipped, settings, max_bytes: int):
    """Listed files Spark did not read (a ``path`` column), with why: ``size_bytes`` looked at
    once per file on the executors, then ``reason`` (empty, file_too_large or not_read; a file
    gone since the listing is not_read) and its ``detail``."""
    from pyspark.sql import functions as F
    size, reason = F.col("size_bytes"), F.col("reason")
    details = F.create_map(*[F.lit(x) for pair in REJECT_REASONS.items() for x in pair])
    over_limit = (f"the file is over this run's size limit of {max_bytes:,} bytes and was not "
                  "read (--max-file-bytes; Spark reads at most 2 GiB a file)")
    return (skipped.withColumn("size_bytes", file_size(settings)(F.col("path")))
            .withColumn("reason", F.when(size == 0, "empty")
                        .when(size > max_bytes, "file_too_large").otherwise("not_read"))
            .withColumn("detail", F.when(reason == "file_too_large", F.lit(over_limit))
                        .otherwise(details[reason])))


def file_size(settings):
    """A column function: the size in bytes of the file at a path, looked at on the executors
    through the storage layer; null when it is gone or cannot be looked at."""
    from pyspark.sql import functions as F

    def size(path):
        try:
            return storage.open_storage(path, settings).size(path)
        except storage.StorageError:
            return None
    # non-deterministic (a file can change), which also keeps Spark from copying the call
    # into each expression that uses its result
    return F.udf(size, "bigint").asNondeterministic()


def listed_files(frame):
    """The files a file-source frame lists, as the JVM's own array. Its length is one call to
    the JVM, but every name read from it costs calls of its own: ``DataFrame.inputFiles()``,
    which reads them all, takes seconds for 100,000 files. So names are read (at that cost)
    only when the count says a file is missing."""
    return frame._jdf.inputFiles()


def unread_files(spark, listed, rows):
    """The listed files (``listed_files()``) that have no row in ``rows`` (a frame with a
    ``path`` column), as a frame of paths; None when every one has its row. Spark's file
    sources skip zero-byte files without a word."""
    if rows.count() == len(listed):
        return None
    # inputFiles() gives URIs with names percent-encoded; the path column holds them decoded
    paths = spark.createDataFrame([(storage.spark_path(unquote(p)),) for p in listed],
                                  "path STRING")
    return paths.join(rows.select("path"), "path", "left_anti")


def _reconcile(by_status: dict, listed: int, unique: int, dataset: str, spark,
               settings: Settings) -> dict:
    """The stage's counts, checked: every listed file has one row, accepted or rejected, and
    the table holds one row per distinct accepted image."""
    seen = sum(by_status.values())
    rejected = by_status.get("rejected", 0)
    accepted_rows = by_status.get("accepted", 0)
    per_split = {row["split"]: row["count"] for row in spark.sql(
        f"SELECT split, count(*) AS count FROM {tables.qualified(settings, 'images')} "
        f"WHERE dataset = {tables.sql_string(dataset)} GROUP BY split").collect()}
    counts = {"files_seen": seen, "accepted": unique, "rejected": rejected,
              "duplicates": accepted_rows - unique, "per_split": per_split}
    stored = sum(per_split.values())
    if seen != listed or seen != accepted_rows + rejected or stored != unique:
        raise StageError(f"counts do not reconcile: {counts}, rows stored {stored}")
    return counts


def parameters(options: PreprocessOptions) -> dict:
    return asdict(options)
