"""The preprocessing job end to end on a folder of good and bad files: nothing lost."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as parquet
import pytest
from PIL import Image

from conftest import REPO
from gan_lib import datasets, preprocessing
from gan_lib.config import ConfigError

BAD_FILES = {
    "zero-byte.png": ("empty", lambda: b""),
    "truncated.png": ("truncated", lambda: _png(40, 40)[:-60]),
    "not-an-image.png": ("not_an_image", lambda: b"this is a text file, not a picture\n" * 4),
    "bomb.png": ("too_large", lambda: _png(400, 300)),
    "tiny.png": ("too_small", lambda: _png(4, 4)),
    "_metadata.png": ("not_read", lambda: _png(40, 40)),  # listed by Spark, never read
    "huge.tif": ("file_too_large", None),  # a sparse file over the 2 GiB Spark reads at most
}
HUGE_BYTES = 2**31 + 4096

# Real images under names that URLs would encode; each must be read once, under its own name.
ODD_NAMES = ["a b.png", "hash#1.png", "pct%41.png", "what?.png", "plus+1.png", "ü.png"]
OUTSIDE_SECRET = b"root:x:0:0:this line must never reach the rejects table\n"


def _png(width, height, colour=128, mode="L"):
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(width, height, colour=(200, 30, 30)):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _real_images(count):
    images, labels = datasets.load_fashion_mnist(split="test")
    return images[:count], labels[:count]


@pytest.fixture(scope="module")
def messy_folder(tmp_path_factory):
    """Real Fashion-MNIST images in label folders (no split folders), one exact duplicate
    under another name, one RGB JPEG, and one file of every bad kind."""
    folder = tmp_path_factory.mktemp("messy")
    images, labels = _real_images(40 + len(ODD_NAMES))
    (folder / "odd names").mkdir()
    for name, image in zip(ODD_NAMES, images[40:]):
        Image.fromarray(image).save(folder / "odd names" / name)
    images, labels = images[:40], labels[:40]
    for index, (image, label) in enumerate(zip(images, labels)):
        target = folder / datasets.FASHION_MNIST_CLASSES[label]
        target.mkdir(exist_ok=True)
        Image.fromarray(image).save(target / f"{index}.png")
    (folder / "bag" / "copy-of-0.png").write_bytes(
        (folder / datasets.FASHION_MNIST_CLASSES[labels[0]] / "0.png").read_bytes())
    (folder / "coat" / "colour.jpg").write_bytes(_jpeg(90, 60))
    (folder / "bad").mkdir()
    for name, (_, make) in BAD_FILES.items():
        if make is None:
            with open(folder / "bad" / name, "wb") as handle:
                handle.write(b"II*\x00")  # starts like a TIFF; the rest is a hole on disk
                handle.truncate(HUGE_BYTES)
        else:
            (folder / "bad" / name).write_bytes(make())
    outside = tmp_path_factory.mktemp("outside") / "passwd"
    outside.write_bytes(OUTSIDE_SECRET)
    (folder / "bad" / "outside.png").symlink_to(outside)
    return folder


def _read_partition(root, table, **partition):
    location = root / "warehouse" / "hdp_gan.db" / table
    for key, value in partition.items():
        location = location / f"{key}={value}"
    files = [p for p in location.rglob("*.parquet") if not p.name.startswith((".", "_"))]
    return parquet.read_table(files).to_pylist() if files else []


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, messy_folder, job):
    root = tmp_path_factory.mktemp("preprocess-root")
    result = job("preprocess", "--root", root, "--input", messy_folder, "--dataset", "messy",
                 "--max-pixels", "100000", "--test-percent", "25")
    assert result.code == 0, result.stderr[-3000:]
    return root, result.summary


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_is_quarantined_with_its_reason(first_run, name):
    root, _ = first_run
    rejects = {row["path"].rsplit("/", 1)[-1]: row
               for row in _read_partition(root, "rejects", dataset="messy")}
    assert rejects[name]["reason"] == BAD_FILES[name][0]
    assert rejects[name]["detail"]


def test_file_over_the_size_limit_is_rejected_unread_with_its_size(first_run):
    root, _ = first_run
    row = next(row for row in _read_partition(root, "rejects", dataset="messy")
               if row["path"].endswith("/huge.tif"))
    assert (row["reason"], row["size_bytes"]) == ("file_too_large", HUGE_BYTES)
    assert "--max-file-bytes" in row["detail"]


def test_file_over_a_chosen_size_limit_is_rejected_naming_that_limit(tmp_path, job):
    folder = _one_image_folder(tmp_path / "images")
    (folder / "big.png").write_bytes(bytes(5000))
    result = job("preprocess", "--root", tmp_path / "root", "--input", folder,
                 "--dataset", "limit", "--max-file-bytes", 4000)
    assert result.code == 0, result.stderr[-2000:]
    (row,) = _read_partition(tmp_path / "root", "rejects", dataset="limit")
    assert (row["reason"], row["size_bytes"]) == ("file_too_large", 5000)
    assert "size limit of 4,000 bytes" in row["detail"]


def test_counts_reconcile_files_seen_with_accepted_rejected_and_duplicates(first_run):
    _, summary = first_run
    counts = summary["counts"]
    assert counts["files_seen"] == 40 + len(ODD_NAMES) + 1 + 1 + len(BAD_FILES) + 1
    assert counts["rejected"] == len(BAD_FILES) + 1
    assert counts["duplicates"] == 1
    assert counts["accepted"] == 41 + len(ODD_NAMES)
    assert counts["files_seen"] == counts["accepted"] + counts["rejected"] + counts["duplicates"]


def test_duplicate_contents_are_stored_once(first_run):
    root, _ = first_run
    rows = _read_partition(root, "images", dataset="messy")
    ids = [row["image_id"] for row in rows]
    assert len(ids) == len(set(ids)) == 41 + len(ODD_NAMES)


def test_of_two_files_with_the_same_pixels_the_first_path_is_kept(first_run, messy_folder):
    root, _ = first_run
    copy = (messy_folder / "bag" / "copy-of-0.png").read_bytes()
    same = sorted(str(path) for path in messy_folder.rglob("*.png")
                  if not path.is_symlink() and path.read_bytes() == copy)
    names = [tuple(path.split("/")[-2:]) for path in same]
    stored = [tuple(row["source_path"].split("/")[-2:])
              for row in _read_partition(root, "images", dataset="messy")]
    assert len(names) == 2
    assert [name for name in stored if name in names] == names[:1]


def test_a_copy_under_another_label_is_warned_about_and_the_first_files_label_kept(
        tmp_path, job):
    for label in ("cats", "dogs"):
        _one_image_folder(tmp_path / "images" / label)  # the same pixels in both
    root = tmp_path / "root"
    result = job("preprocess", "--root", root, "--input", tmp_path / "images",
                 "--dataset", "pets")
    assert result.code == 0, result.stderr[-3000:]
    assert result.summary["counts"]["duplicates"] == 1
    assert "1 duplicate files are labelled otherwise than the first file" in result.stderr
    (row,) = parquet.read_table(root / "warehouse" / "hdp_gan.db" / "images" /
                                "dataset=pets").to_pylist()
    assert row["label"] == "cats"


def test_file_names_that_urls_would_encode_are_read_once_under_their_own_names(first_run):
    root, _ = first_run
    rows = _read_partition(root, "images", dataset="messy", split="train") + \
        _read_partition(root, "images", dataset="messy", split="test")
    odd = sorted(row["source_path"].rsplit("/", 1)[-1] for row in rows
                 if row["label"] == "odd names")
    assert odd == sorted(ODD_NAMES)
    rejected = [row["path"] for row in _read_partition(root, "rejects", dataset="messy")]
    assert not [path for path in rejected if "odd" in path]


def test_symlink_to_a_file_outside_the_input_is_rejected_without_reading_it(first_run):
    root, _ = first_run
    rejects = {row["path"].rsplit("/", 1)[-1]: row
               for row in _read_partition(root, "rejects", dataset="messy")}
    outside = rejects["outside.png"]
    assert outside["reason"] == "outside_input"
    assert "outside" in outside["detail"] and "root:x" not in outside["detail"]
    assert outside["detected_format"] is None


def test_labels_come_from_folder_names_and_split_from_the_content_hash(first_run):
    root, summary = first_run
    rows = (_read_partition(root, "images", dataset="messy", split="train")
            + _read_partition(root, "images", dataset="messy", split="test"))
    for row in rows:
        assert row["label"] == row["source_path"].rsplit("/", 2)[-2]
    for row in _read_partition(root, "images", dataset="messy", split="test"):
        assert int(row["image_id"][:8], 16) % 100 < 25
    assert set(summary["counts"]["per_split"]) == {"train", "test"}


def test_rgb_input_becomes_grayscale_of_the_requested_size(first_run):
    root, _ = first_run
    rows = _read_partition(root, "images", dataset="messy", split="train") + \
        _read_partition(root, "images", dataset="messy", split="test")
    colour = [row for row in rows if row["source_path"].endswith("colour.jpg")][0]
    assert (colour["height"], colour["width"], colour["channels"]) == (28, 28, 1)
    assert len(colour["pixels"]) == 28 * 28


def test_rerun_gives_the_same_dataset_without_duplicate_rows(first_run, messy_folder, job):
    root, summary = first_run
    before = sorted(row["image_id"] for row in _read_partition(root, "images", dataset="messy"))
    again = job("preprocess", "--root", root, "--input", messy_folder, "--dataset", "messy",
                "--max-pixels", "100000", "--test-percent", "25")
    assert again.code == 0, again.stderr[-2000:]
    after = sorted(row["image_id"] for row in _read_partition(root, "images", dataset="messy"))
    assert before == after
    assert len(_read_partition(root, "rejects", dataset="messy")) == len(BAD_FILES) + 1
    assert again.summary["counts"] == summary["counts"]


def test_the_run_row_in_hive_holds_the_reconciled_counts(first_run, job):
    root, summary = first_run
    result = job("sql", "--root", root, "--json",
                 f"SELECT counts FROM runs WHERE run_id = '{summary['run_id']}'")
    assert result.code == 0, result.stderr[-2000:]
    counts = json.loads(json.loads(result.stdout.strip().splitlines()[-1])["counts"])
    assert counts["files_seen"] == summary["counts"]["files_seen"]


def test_hive_session_folders_are_created_in_the_local_state_folder(first_run):
    root, _ = first_run
    assert (root / "_local" / "hive" / "resources").is_dir()


def _partitions(root, table, dataset):
    location = root / "warehouse" / "hdp_gan.db" / table / f"dataset={dataset}"
    return sorted(path.name for path in location.iterdir()) if location.exists() else None


def test_rerun_drops_the_splits_and_rejects_the_input_no_longer_has(tmp_path, job):
    images, _ = _real_images(8)
    for split, chosen in (("train", images[:5]), ("test", images[5:])):
        (tmp_path / "in" / split / "shirt").mkdir(parents=True)
        for index, image in enumerate(chosen):
            Image.fromarray(image).save(tmp_path / "in" / split / "shirt" / f"{index}.png")
    (tmp_path / "in" / "train" / "shirt" / "broken.png").write_bytes(b"")
    root = tmp_path / "root"
    arguments = ("preprocess", "--root", root, "--input", tmp_path / "in", "--dataset", "shrink")
    assert job(*arguments).code == 0
    assert _partitions(root, "images", "shrink") == ["split=test", "split=train"]
    assert _read_partition(root, "rejects", dataset="shrink")

    (tmp_path / "in" / "train" / "shirt" / "broken.png").unlink()
    for path in (tmp_path / "in" / "test" / "shirt").iterdir():
        path.unlink()
    rerun = job(*arguments)
    assert rerun.code == 0, rerun.stderr[-2000:]
    assert rerun.summary["counts"]["per_split"] == {"train": 5}
    assert _partitions(root, "images", "shrink") == ["split=train"]
    assert _partitions(root, "rejects", "shrink") is None
    shown = job("sql", "--root", root, "--json", "SHOW PARTITIONS images")
    assert [json.loads(line)["partition"] for line in shown.stdout.splitlines()
            if line.startswith("{")] == ["dataset=shrink/split=train"]


def test_copies_beyond_the_broadcast_limit_are_dropped_by_a_join_on_path(tmp_path):
    images, _ = _real_images(3)
    folder = tmp_path / "in" / "shirt"
    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        for copy in range(2):
            Image.fromarray(image).save(folder / f"{index}-{copy}.png")
    code = ("import sys; from gan_lib import preprocessing; "
            "preprocessing.BROADCAST_DUPLICATES = 0; from jobs import cli; "
            "sys.exit(cli.main(sys.argv[1:]))")
    process = subprocess.run(
        [sys.executable, "-c", code, "preprocess", "--root", str(tmp_path / "root"), "--input",
         str(tmp_path / "in"), "--dataset", "copies", "--test-percent", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert process.returncode == 0, process.stderr[-2000:]
    counts = json.loads(process.stdout.strip().splitlines()[-1])["counts"]
    assert (counts["accepted"], counts["duplicates"]) == (3, 3)
    rows = _read_partition(tmp_path / "root", "images", dataset="copies")
    assert sorted(row["source_path"].rsplit("/", 1)[-1] for row in rows) == [
        "0-0.png", "1-0.png", "2-0.png"]


def test_rgb_dataset_has_64_by_64_by_3_pixels(tmp_path, job):
    folder = tmp_path / "faces" / "person"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(6):
        pixels = rng.integers(0, 255, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.jpg", quality=90)
    root = tmp_path / "root"
    result = job("preprocess", "--root", root, "--input", tmp_path / "faces", "--dataset",
                 "faces", "--image-size", "64", "--channels", "3", "--test-percent", "0")
    assert result.code == 0, result.stderr[-2000:]
    rows = _read_partition(root, "images", dataset="faces", split="train")
    assert len(rows) == 6
    assert {(r["height"], r["width"], r["channels"]) for r in rows} == {(64, 64, 3)}
    assert all(len(r["pixels"]) == 64 * 64 * 3 for r in rows)


def test_folder_without_files_fails_before_any_spark_work(tmp_path, job):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "empty")
    assert result.code == 2
    assert "holds no files" in result.last_error_line
    assert not (tmp_path / "root" / "_local").exists()


def test_symlink_loop_in_the_input_fails_before_any_spark_work(tmp_path, job):
    folder = _one_image_folder(tmp_path / "images" / "shoes")
    (folder / "loop").symlink_to("..")
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "images")
    assert result.code == 2
    assert "symbolic link loop" in result.last_error_line
    assert str(folder / "loop") in result.last_error_line
    assert not (tmp_path / "root" / "_local" / "metastore_db").exists()


def _one_image_folder(folder):
    """A new ``folder`` holding one small image, one.png; returns the folder."""
    folder.mkdir(parents=True)
    (folder / "one.png").write_bytes(_png(32, 32))
    return folder


def _real_image_folder(folder, count):
    """``count`` real Fashion-MNIST images as 0.png, 1.png, ... in a new ``folder``."""
    folder.mkdir(parents=True)
    for index, image in enumerate(_real_images(count)[0]):
        Image.fromarray(image).save(folder / f"{index}.png")


def test_paths_with_spaces_and_url_characters_are_read_and_written_as_named(tmp_path, job):
    """An input with '#', '?', a space and doubled slashes; a root with a space and '%'."""
    _real_image_folder(tmp_path / "in#1 x?" / "shirt", 3)
    root = tmp_path / "out 100%"
    result = job("preprocess", "--root", root, "--input",
                 f"{tmp_path}//in#1 x?/", "--dataset", "odd", "--test-percent", "0")
    assert result.code == 0, result.stderr[-2000:]
    assert (result.summary["counts"]["accepted"], result.summary["counts"]["rejected"]) == (3, 0)
    rows = _read_partition(root, "images", dataset="odd", split="train")
    assert {row["label"] for row in rows} == {"shirt"}


def test_file_name_with_a_colon_fails_before_any_spark_work_naming_it(tmp_path, job):
    folder = _one_image_folder(tmp_path / "images" / "shoes")
    (folder / "12:30.png").write_bytes(_png(32, 32))
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "images")
    assert result.code == 2
    assert str(folder / "12:30.png") in result.last_error_line
    assert "rename the file" in result.last_error_line
    assert not (tmp_path / "root" / "_local" / "metastore_db").exists()


def test_root_inside_the_input_folder_fails_before_anything_is_made_there(tmp_path, job):
    _one_image_folder(tmp_path / "images" / "shoes")
    root = tmp_path / "images" / "outputs"
    result = job("preprocess", "--root", root, "--input", tmp_path / "images")
    assert result.code == 2
    assert (f"--root {root.as_uri()} is inside --input {tmp_path / 'images'}"
            in result.last_error_line)
    assert not root.exists()


@pytest.mark.parametrize("root, inside", [
    ("hdfs://nn:8020/data/images/out", True),   # the same cluster by another protocol
    ("webhdfs://nn:9870/data/images", True),
    ("hdfs://nn:8020/data/images-out", False),  # a sibling sharing the name's start
    ("hdfs://other:8020/data/images/out", False),
    ("file:///data/images/out", False),
])
def test_root_is_inside_a_remote_input_by_host_and_path(root, inside):
    assert preprocessing._within(root, "webhdfs://nn:9870/data/images/") is inside


def test_loop_of_two_symlinks_fails_before_any_spark_work_naming_one(tmp_path, job):
    (tmp_path / "images" / "a").mkdir(parents=True)
    (tmp_path / "images" / "b").mkdir()
    (tmp_path / "images" / "a" / "one.png").write_bytes(_png(32, 32))
    (tmp_path / "images" / "a" / "to-b").symlink_to("../b")
    (tmp_path / "images" / "b" / "to-a").symlink_to("../a")
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "images")
    assert result.code == 2
    assert "symbolic link loop" in result.last_error_line
    assert "to-a points to a folder" in result.last_error_line
    assert not (tmp_path / "root" / "_local" / "metastore_db").exists()


def test_named_pipe_behind_a_symlinked_folder_fails_before_any_spark_work(tmp_path, job):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.mkfifo(elsewhere / "pipe.png")
    folder = _one_image_folder(tmp_path / "images" / "shoes")
    (folder / "more").symlink_to(elsewhere)
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "images",
                 timeout=120)
    assert result.code == 2
    assert f"{folder / 'more' / 'pipe.png'}, which is not a regular file" in \
        result.last_error_line


def test_link_into_the_root_from_the_input_fails_before_any_spark_work(tmp_path, job):
    folder = _one_image_folder(tmp_path / "images" / "shoes")
    (tmp_path / "root").mkdir()
    (folder / "outputs").symlink_to(tmp_path / "root")
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "images")
    assert result.code == 2
    assert f"{folder / 'outputs'}, a symbolic link into --root" in result.last_error_line


def test_input_inside_the_root_with_a_link_to_a_folder_inside_the_input_runs(tmp_path, job):
    folder = tmp_path / "root" / "raw" / "shoes" / "store"
    _real_image_folder(folder, 3)
    (tmp_path / "root" / "raw" / "shoes" / "linked").symlink_to("store")
    result = job("preprocess", "--root", tmp_path / "root", "--input",
                 tmp_path / "root" / "raw", "--dataset", "inside", "--test-percent", "0")
    assert result.code == 0, result.stderr[-2000:]
    assert result.summary["counts"]["files_seen"] == 6


@pytest.mark.parametrize("target", ["self.png", "one.png/inner"])
def test_link_to_itself_or_through_a_file_is_refused_in_one_line(tmp_path, job, target):
    folder = _one_image_folder(tmp_path / "images" / "shoes")
    (folder / "self.png").symlink_to(target)
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "images")
    assert result.code == 2
    assert f"{folder / 'self.png'}, a symbolic link to nothing" in result.last_error_line


def test_input_path_that_is_not_utf8_fails_before_any_spark_work(tmp_path, job):
    folder = os.fsencode(tmp_path) + b"/caf\xe9"
    os.makedirs(folder + b"/shoes")
    with open(folder + b"/shoes/one.png", "wb") as handle:
        handle.write(_png(32, 32))
    result = job("preprocess", "--root", tmp_path / "root", "--input", os.fsdecode(folder))
    assert result.code == 2
    assert "caf\\xe9 is not valid UTF-8" in result.last_error_line


def test_folders_spark_reads_despite_a_leading_underscore_are_checked_too(tmp_path, job):
    folder = _one_image_folder(tmp_path / "images" / "_part=1")
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "images")
    assert result.code == 2
    assert str(folder / "gone.png") in result.last_error_line


def test_dangling_symlink_in_the_input_fails_before_any_spark_work_naming_it(tmp_path, job):
    folder = _one_image_folder(tmp_path / "images" / "shoes")
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "images")
    assert result.code == 2
    assert f"{folder / 'gone.png'}, a symbolic link to nothing" in \
        result.last_error_line
    assert not (tmp_path / "root" / "_local" / "metastore_db").exists()


def test_a_file_deleted_after_the_listing_is_found_unread_instead_of_failing_the_read(tmp_path):
    from pyspark.sql import SparkSession

    from gan_lib import storage

    folder = _one_image_folder(tmp_path / "images")
    (folder / "two.png").write_bytes(_png(32, 32))
    spark = (SparkSession.builder.master("local[1]").appName("test-deleted-file")
             .config("spark.ui.enabled", "false").getOrCreate())
    try:
        files = preprocessing.readable_files(spark, folder.as_uri(), 1 << 20)  # lists them
        (folder / "two.png").unlink()
        unread = preprocessing.unread_files(spark, preprocessing.listed_files(files), files)
        assert [row.path for row in unread.collect()] == \
            [storage.spark_path((folder / "two.png").as_uri())]
    finally:
        spark.stop()


def test_a_run_that_accepts_no_file_fails_and_leaves_the_dataset_as_it_was(tmp_path, job):
    folder = _one_image_folder(tmp_path / "images" / "shoes")
    (folder / "two.png").write_bytes(_png(20, 20, colour=60))
    root = tmp_path / "root"
    first = job("preprocess", "--root", root, "--input", tmp_path / "images",
                "--dataset", "small")
    assert first.code == 0, first.stderr[-3000:]
    again = job("preprocess", "--root", root, "--input", tmp_path / "images",
                "--dataset", "small", "--min-size", "64")
    assert again.code == 1
    assert "was accepted (2 rejected: too_small 2); the dataset small was left as it was" in \
        again.last_error_line
    kept = parquet.read_table(root / "warehouse" / "hdp_gan.db" / "images" / "dataset=small")
    assert kept.num_rows == 2


def test_a_file_still_being_copied_in_fails_before_any_spark_work_naming_it(tmp_path, job):
    folder = _one_image_folder(tmp_path / "images" / "shoes")
    (folder / "two.png._COPYING_").write_bytes(_png(32, 32)[:20])
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "images")
    assert result.code == 2
    assert f"{folder / 'two.png._COPYING_'}, a file still being copied in" in \
        result.last_error_line
    assert not (tmp_path / "root" / "_local" / "metastore_db").exists()


def test_an_input_whose_images_all_lie_behind_a_linked_folder_passes_the_image_check(tmp_path):
    from gan_lib.config import Settings

    _one_image_folder(tmp_path / "store" / "shoes")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "linked").symlink_to(tmp_path / "store")
    (tmp_path / "root").mkdir()
    options = preprocessing.PreprocessOptions(input_uri=(tmp_path / "images").as_uri(),
                                              dataset="linked")
    preprocessing.check_before_spark(Settings(root=str(tmp_path / "root")), options)


def test_name_that_is_not_utf8_fails_before_any_spark_work_naming_it(tmp_path, job):
    folder = _one_image_folder(tmp_path / "images" / "shoes")
    with open(os.fsencode(folder) + b"/caf\xe9.png", "wb") as handle:  # Latin-1, not UTF-8
        handle.write(_png(32, 32))
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "images")
    assert result.code == 2
    assert f"{folder}/caf\\xe9.png, whose name is not valid UTF-8" in result.last_error_line
    assert not (tmp_path / "root" / "_local" / "metastore_db").exists()


def test_folder_of_files_that_are_not_images_fails_before_any_spark_work(tmp_path, job):
    folder = tmp_path / "documents"
    folder.mkdir()
    for index in range(3):
        (folder / f"notes-{index}.txt").write_text("not a picture\n")
    (folder / "empty.png").write_bytes(b"")
    result = job("preprocess", "--root", tmp_path / "root", "--input", folder)
    assert result.code == 2
    assert "holds no images: none of its 4 files starts like a PNG" in result.last_error_line
    assert not (tmp_path / "root" / "_local" / "metastore_db").exists()


def test_named_pipe_in_the_input_fails_before_any_spark_work_naming_it(tmp_path, job):
    folder = tmp_path / "images" / "shoes"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "0-pipe.png")  # the first file the image probe would open
    (folder / "one.png").write_bytes(_png(32, 32))
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "images",
                 timeout=120)
    assert result.code == 2
    assert str(folder / "0-pipe.png") in result.last_error_line
    assert "not a regular file" in result.last_error_line
    assert not (tmp_path / "root" / "_local" / "metastore_db").exists()


def test_a_run_that_fails_after_decoding_leaves_no_staging_folder(tmp_path, job):
    _real_image_folder(tmp_path / "in" / "shirt", 3)
    root = tmp_path / "root"
    table_folder = root / "warehouse" / "hdp_gan.db" / "images"
    table_folder.parent.mkdir(parents=True)
    table_folder.write_text("a file where the images table's folder belongs\n")
    result = job("preprocess", "--root", root, "--input", tmp_path / "in", "--dataset", "x")
    assert result.code == 1
    assert "decoded; writing the dataset x" in result.stderr
    assert list((root / "runs").glob("*/staging")) == []


@pytest.mark.parametrize("value", [True, 500.5, [1], "500"])
def test_options_that_are_not_whole_numbers_are_a_configuration_error(value):
    with pytest.raises(ConfigError, match="--max-file-bytes .* must be a whole number"):
        preprocessing.PreprocessOptions(input_uri="/in", dataset="d", max_file_bytes=value)


def test_input_path_with_a_leading_double_slash_is_made_plain():
    assert preprocessing.absolute_input("//tmp//images/") == "/tmp/images"


@pytest.mark.parametrize("given", ["file:/tmp/images", "file://localhost/tmp/images",
                                   "file:///tmp/images"])
def test_file_input_in_any_of_spark_forms_becomes_one_uri(given):
    assert preprocessing.absolute_input(given) == "file:///tmp/images"


def test_relative_file_input_is_refused():
    with pytest.raises(ConfigError, match="--input file:images has no absolute path"):
        preprocessing.absolute_input("file:images")


def test_input_folder_named_like_a_pattern_is_read_as_named(tmp_path, job):
    """Spark would take "in[1]" for a pattern matching "in1"."""
    _real_image_folder(tmp_path / "in[1]" / "coat", 2)
    _real_image_folder(tmp_path / "in1" / "bag", 3)
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "in[1]",
                 "--dataset", "pattern", "--test-percent", "0")
    assert result.code == 0, result.stderr[-2000:]
    assert result.summary["counts"]["files_seen"] == 2
    rows = _read_partition(tmp_path / "root", "images", dataset="pattern", split="train")
    assert [row["label"] for row in rows] == ["coat", "coat"]


def test_pipeline_root_inside_its_data_folder_fails_before_anything_is_made_there(tmp_path,
                                                                                  job):
    _one_image_folder(tmp_path / "images" / "shoes")
    root = tmp_path / "images" / "outputs"
    result = job("pipeline", "--root", root, "--data", tmp_path / "images")
    assert result.code == 2
    assert f"--root {root.as_uri()} is inside --data" in result.last_error_line
    assert not root.exists()


def test_pipeline_with_a_missing_data_folder_fails_before_the_root_is_made(tmp_path, job):
    result = job("pipeline", "--root", tmp_path / "root", "--data", tmp_path / "nope")
    assert result.code == 2
    assert f"--data {tmp_path / 'nope'} does not exist" in result.last_error_line
    assert not (tmp_path / "root").exists()


def test_pipeline_data_given_as_a_file_uri_naming_a_host_is_named_as_data(tmp_path, job):
    result = job("pipeline", "--root", tmp_path / "root", "--data", "file://host/x")
    assert result.code == 2
    assert "--data file://host/x names the host 'host'" in result.last_error_line


def test_file_uri_naming_a_host_fails_in_one_line_before_the_root_is_made(tmp_path, job):
    result = job("preprocess", "--root", tmp_path / "root", "--input", "file://images/shoes")
    assert result.code == 2
    assert "--input file://images/shoes names the host 'images'" in result.last_error_line
    assert not (tmp_path / "root").exists()


def _existing_dataset(root, name="fashion-mnist"):
    """A root whose images table already holds a dataset (as a preprocess run leaves it)."""
    split = root / "warehouse" / "hdp_gan.db" / "images" / f"dataset={name}" / "split=train"
    split.mkdir(parents=True)
    (split / "part-00000.parquet").write_bytes(b"kept")
    return split


@pytest.mark.parametrize("stage, option", [("preprocess", "--input"), ("pipeline", "--data")])
def test_other_images_do_not_replace_an_existing_dataset_that_was_not_named(tmp_path, job,
                                                                             stage, option):
    _one_image_folder(tmp_path / "images" / "shoes")
    kept = _existing_dataset(tmp_path / "root")
    result = job(stage, "--root", tmp_path / "root", option, tmp_path / "images")
    assert result.code == 2
    assert result.last_error_line == (
        f"hdp-gan {stage}: error: "
        f"{option} given without --dataset: the dataset 'fashion-mnist' exists "
        "and its images would be replaced by these; name the dataset they make with --dataset "
        "NAME (or --dataset fashion-mnist to replace it)")
    assert (kept / "part-00000.parquet").read_bytes() == b"kept"
    assert not (tmp_path / "root" / "_local" / "metastore_db").exists()


def test_a_datasets_own_raw_folder_may_refresh_it_without_naming_it(tmp_path):
    from gan_lib.config import Settings

    settings = Settings(root=(tmp_path / "root").as_uri())
    _existing_dataset(tmp_path / "root")
    raw = tmp_path / "root" / "raw" / "fashion-mnist"
    raw.mkdir(parents=True)
    preprocessing.check_not_replaced_unnamed(settings, "fashion-mnist", str(raw))
    with pytest.raises(ConfigError, match="given without --dataset"):
        preprocessing.check_not_replaced_unnamed(settings, "fashion-mnist",
                                                 str(tmp_path / "elsewhere"))
