"""Generation, the reference classifier, labelling into Hive and the quality scores."""

import io

import numpy as np
import pyarrow.parquet as parquet
import pytest
from PIL import Image

from gan_lib import storage


def _table(root, table, run_id):
    folder = root / "warehouse" / "hdp_gan.db" / table / f"run_id={run_id}"
    return parquet.read_table(folder).to_pylist() if folder.exists() else []


def test_exported_classifier_has_both_signatures_and_its_class_names(classifier_handle):
    import tensorflow as tf
    import tensorflow_hub as hub

    module = hub.load(str(storage.local_path(classifier_handle)))
    images = tf.zeros((2, 28, 28, 1))
    outputs = module.signatures["serving_default"](images=images)
    assert tuple(outputs["probabilities"].shape) == (2, 10)
    assert tuple(outputs["logits"].shape) == (2, 10)
    assert tuple(module.signatures["features"](images=images)["features"].shape) == (2, 128)
    names = [name.decode() for name in module.class_names.numpy()]
    assert names[0] == "ankle_boot" and len(names) == 10


def test_the_scores_signature_gives_what_the_two_separate_signatures_give(classifier_handle):
    from gan_lib import inference

    classifier = inference.load_classifier(classifier_handle)
    images = np.random.default_rng(3).integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    prepared = classifier.prepare(images)

    probabilities, features = classifier.predict(images)

    assert classifier.scores_fn is not None
    assert np.allclose(probabilities, classifier.predict_fn(prepared), atol=1e-6)
    assert np.allclose(features, classifier.features_fn(prepared), atol=1e-5)


def test_a_classifier_without_the_scores_signature_predicts_the_same_in_two_passes(
        classifier_handle):
    import dataclasses

    from gan_lib import inference

    classifier = inference.load_classifier(classifier_handle)
    older = dataclasses.replace(classifier, scores_fn=None)  # as exported before it existed
    images = np.random.default_rng(5).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)

    probabilities, features = older.predict(images)

    expected_probabilities, expected_features = classifier.predict(images)
    assert np.allclose(probabilities, expected_probabilities, atol=1e-6)
    assert np.allclose(features, expected_features, atol=1e-5)


def test_contact_sheet_leaves_out_an_image_that_cannot_be_read_again(tmp_path, caplog):
    from gan_lib import labelling

    (tmp_path / "kept.png").write_bytes(_png(np.full((28, 28), 90, np.uint8)))
    paths = [(tmp_path / "kept.png").as_uri(), (tmp_path / "moved.png").as_uri()]

    found = labelling._read_images(paths, None)

    assert list(found) == [paths[0]] and found[paths[0]].shape == (28, 28, 1)
    assert "moved.png" in caplog.text


def _png(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("vectors", [True, False])
def test_scored_batches_keep_every_row_with_labels_ranked_and_vectors_only_when_asked(
        classifier_handle, vectors):
    import pyarrow as pa
    from gan_lib import labelling

    rng = np.random.default_rng(4)
    contents = [_png(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(3)]
    batch = pa.RecordBatch.from_pydict({"path": ["a.png", "b.png", "c.png", "bad.png"],
                                        "content": contents + [contents[0][:40]]})

    rows = [row for out in labelling.score_batches([batch], classifier_handle, None, "files",
                                                   3, 1, vectors)
            for row in out.to_pylist()]

    by_path = {row["path"]: row for row in rows}
    assert sorted(by_path) == ["a.png", "b.png", "bad.png", "c.png"]
    assert by_path["bad.png"]["status"].startswith("unreadable")
    for path in ("a.png", "b.png", "c.png"):
        row = by_path[path]
        scores = [entry["score"] for entry in row["top_k"]]
        assert row["status"] == "ok" and row["top_k"][0]["label"] == row["label"]
        assert scores == sorted(scores, reverse=True) and scores[0] == row["confidence"]
        if vectors:
            assert len(row["probabilities"]) == 10 and len(row["features"]) == 128
            assert max(row["probabilities"]) == pytest.approx(row["confidence"])
        else:
            assert row["probabilities"] is None and row["features"] is None


def test_generate_writes_the_requested_images_and_table_rows(generated):
    root, summary = generated
    rows = _table(root, "generated", summary["run_id"])
    assert len(rows) == summary["counts"]["images"] == 60
    assert sorted(row["sample_index"] for row in rows) == list(range(60))
    files = sorted((root / "runs" / summary["run_id"] / "images").glob("*.png"))
    assert len(files) == 60
    assert Image.open(files[0]).size == (28, 28)


def test_generate_rerun_with_the_same_seed_reproduces_the_same_images(generated, job):
    root, summary = generated
    before = {row["sample_index"]: row["image_id"] for row in _table(root, "generated",
                                                                     summary["run_id"])}
    result = job("generate", "--root", root, "--generator-run",
                 summary["lineage"]["generator_run"], "--count", "60", "--run-id",
                 summary["run_id"], "--seed", "5")
    assert result.code == 0, result.stderr[-3000:]
    after = {row["sample_index"]: row["image_id"] for row in _table(root, "generated",
                                                                    summary["run_id"])}
    assert after == before


def test_every_generated_image_gets_a_label_row_with_top_k(labelled):
    root, summary = labelled
    rows = _table(root, "labels", summary["run_id"])
    assert len(rows) == 60
    assert all(row["status"] == "ok" and 0 <= row["confidence"] <= 1 for row in rows)
    assert all(len(row["top_k"]) == 3 for row in rows)
    assert all(row["top_k"][0]["label"] == row["label"] for row in rows)
    assert {row["classifier_handle"] for row in rows} == {summary["lineage"]["classifier"]}


def test_a_generated_image_has_the_same_path_in_the_generated_and_labels_tables(labelled):
    root, summary = labelled
    generated = {row["path"] for row in _table(root, "generated", summary["run_id"])}
    labels = {row["path"] for row in _table(root, "labels", summary["run_id"])}
    assert len(generated) == 60 and generated == labels


def test_a_generator_run_gets_one_quality_row_beside_the_real_split_score(labelled):
    root, summary = labelled
    rows = _table(root, "quality", summary["run_id"])
    assert len(rows) == 1
    quality = rows[0]
    assert quality["fake_count"] == 60 and quality["real_count"] == 600
    assert quality["frechet_distance"] > 0
    assert 1 <= quality["real_classifier_score"] <= 10
    assert abs(sum(dict(quality["class_shares"]).values()) - 1) < 1e-6
    assert (root / "runs" / summary["run_id"] / "contact_sheet.png").exists()


def test_relabelling_a_run_replaces_its_partition_and_keeps_the_others(labelled, job):
    root, summary = labelled
    real = job("label", "--root", root, "--split", "test", "--run-id", "real-test")
    assert real.code == 0, real.stderr[-3000:]
    again = job("label", "--root", root, "--generated", summary["run_id"])
    assert again.code == 0, again.stderr[-3000:]
    assert len(_table(root, "labels", summary["run_id"])) == 60
    assert len(_table(root, "labels", "real-test")) == 600
    assert len(_table(root, "quality", summary["run_id"])) == 1


def test_a_generate_run_without_a_real_split_to_score_against_keeps_its_labels(
        labelled, classifier_handle, job):
    root, summary = labelled
    before = _table(root, "labels", summary["run_id"])
    result = job("label", "--root", root, "--generated", summary["run_id"], "--dataset", "nosuch",
                 "--classifier", classifier_handle)
    assert result.code == 1
    assert "dataset 'nosuch' has no test split to score against" in result.last_error_line
    after = _table(root, "labels", summary["run_id"])
    assert {row["labelled_at"] for row in after} == {row["labelled_at"] for row in before}
    assert len(after) == len(before)


def test_a_generate_run_of_one_image_is_labelled_without_a_quality_row(trained,
                                                                         classifier_handle, job):
    root, summary = trained
    made = job("generate", "--root", root, "--generator-run", summary["run_id"], "--count", "1",
               "--run-id", "generate-one")
    assert made.code == 0, made.stderr[-3000:]
    result = job("label", "--root", root, "--generated", "generate-one", "--classifier",
                 classifier_handle)
    assert result.code == 0, result.stderr[-3000:]
    assert result.summary["outputs"]["quality"] == (
        "skipped: 1 labelled image (at least 2 are needed)")
    assert len(_table(root, "labels", "generate-one")) == 1
    assert not (root / "warehouse" / "hdp_gan.db" / "quality" / "run_id=generate-one").exists()


def test_a_generate_rerun_removes_the_labels_and_scores_of_the_images_it_replaced(
        trained, classifier_handle, job):
    """A rerun of a generate run id draws other images: the labels, quality row, label run
    row, contact sheet and report of the earlier ones would pair each new image with another
    image's label."""
    root, summary = trained
    draw = ["generate", "--root", root, "--generator-run", summary["run_id"],
            "--run-id", "generate-redrawn"]
    assert job(*draw, "--count", "6").code == 0
    labelled = job("label", "--root", root, "--generated", "generate-redrawn",
                   "--classifier", classifier_handle)
    assert labelled.code == 0, labelled.stderr[-3000:]
    run = root / "runs" / "generate-redrawn"
    (run / "report").mkdir()  # as `hdp-gan report` leaves it
    assert len(_table(root, "labels", "generate-redrawn")) == 6
    assert len(_table(root, "quality", "generate-redrawn")) == 1

    redrawn = job(*draw, "--count", "4", "--seed", "9")

    assert redrawn.code == 0, redrawn.stderr[-3000:]
    assert "removed what described the earlier images of run generate-redrawn (labels, " \
        "quality row, label run row, contact_sheet.png, report)" in redrawn.stderr
    assert _table(root, "labels", "generate-redrawn") == []
    assert _table(root, "quality", "generate-redrawn") == []
    runs = root / "warehouse" / "hdp_gan.db" / "runs"
    assert not (runs / "stage=label" / "run_id=generate-redrawn").exists()
    assert (runs / "stage=generate" / "run_id=generate-redrawn").exists()
    assert not (run / "contact_sheet.png").exists() and not (run / "report").exists()


def test_a_damaged_generator_fails_generate_naming_the_generator(trained, job):
    """TensorFlow's own line for a variables file cut short names no file."""
    import shutil
    root, summary = trained
    copy = root / "runs" / "train-damaged-generator"
    shutil.copytree(root / "runs" / summary["run_id"] / "generator", copy / "generator")
    variables = next((copy / "generator" / "variables").glob("variables.data-*"))
    variables.write_bytes(variables.read_bytes()[:1000])

    result = job("generate", "--root", root, "--generator-run", "train-damaged-generator",
                 "--count", "4", "--run-id", "generate-from-damaged")

    assert result.code == 1
    assert (f"GeneratorUnreadableError: the generator at {(copy / 'generator').as_uri()} "
            "cannot be loaded (") in result.last_error_line
    assert "hdp-gan train --resume with more --epochs exports it again" in result.last_error_line


def test_a_generate_runs_folder_that_no_longer_matches_its_rows_is_refused(trained,
                                                                            classifier_handle,
                                                                            job):
    """As a rerun of the generate run, killed midway, leaves it: some files redrawn, one cut
    short, some beyond the rows."""
    root, summary = trained
    made = job("generate", "--root", root, "--generator-run", summary["run_id"], "--count", "6",
               "--run-id", "generate-stopped")
    assert made.code == 0, made.stderr[-3000:]
    images = root / "runs" / "generate-stopped" / "images"
    Image.new("L", (28, 28), 7).save(images / "0000002.png")
    (images / "0000003.png").write_bytes((images / "0000003.png").read_bytes()[:100])
    Image.new("L", (28, 28), 9).save(images / "0000006.png")
    result = job("label", "--root", root, "--generated", "generate-stopped", "--classifier",
                 classifier_handle)
    assert result.code == 1
    assert result.last_error_line == (
        "hdp-gan label: failed: "
        "generate run generate-stopped's images do not match its rows in the "
        "generated table (1 files without a row, 0 rows without a file, 2 files that cannot "
        "be read or whose pixels differ from their row's; a rerun of it was stopped midway?): "
        "generate it again, then label it (its labels were left as they were)")
    assert _table(root, "labels", "generate-stopped") == []


def test_a_folder_label_run_may_not_take_a_generate_runs_id(labelled, classifier_handle, job,
                                                            tmp_path):
    root, summary = labelled
    before = _table(root, "labels", summary["run_id"])
    (tmp_path / "good.png").write_bytes(_png(np.full((28, 28), 200, np.uint8)))
    result = job("label", "--root", root, "--images", tmp_path, "--run-id", summary["run_id"],
                 "--classifier", classifier_handle)
    assert result.code == 2
    assert (f"--run-id {summary['run_id']} is a generate run's id" in result.last_error_line)
    assert _table(root, "labels", summary["run_id"]) == before


@pytest.fixture(scope="module")
def photos_labelled(fashion_root, classifier_handle, job, tmp_path_factory):
    """A folder of two good images of different sizes, a broken and an empty file, labelled
    as run 'photos'."""
    folder = tmp_path_factory.mktemp("photos") / "my photos #1"  # names are kept as written
    folder.mkdir()
    good = _png(np.full((28, 28), 200, np.uint8))
    (folder / "good.png").write_bytes(good)
    (folder / "big.png").write_bytes(_png(np.full((64, 64, 3), 90, np.uint8)))
    (folder / "broken.png").write_bytes(good[:40])
    (folder / "empty.png").write_bytes(b"")
    result = job("label", "--root", fashion_root, "--images", folder, "--run-id", "photos")
    assert result.code == 0, result.stderr[-3000:]
    return fashion_root, result.summary


def test_unreadable_image_gets_a_row_saying_so(photos_labelled):
    root, summary = photos_labelled
    rows = {row["path"].rsplit("/", 1)[-1]: row for row in _table(root, "labels", "photos")}
    assert rows["good.png"]["status"] == "ok"
    assert rows["broken.png"]["status"].startswith("unreadable")
    assert summary["counts"] == {"labelled": 2, "unreadable": 2}


def test_an_empty_file_gets_a_row_although_spark_skips_reading_it(photos_labelled):
    root, _ = photos_labelled
    rows = {row["path"].rsplit("/", 1)[-1]: row for row in _table(root, "labels", "photos")}
    assert rows["empty.png"]["status"] == "unreadable: empty"
    assert len(rows) == 4


def test_a_single_image_file_given_as_images_gets_its_label_row(
        fashion_root, classifier_handle, job, tmp_path):
    (tmp_path / "good.png").write_bytes(_png(np.full((28, 28), 200, np.uint8)))
    (tmp_path / "other.png").write_bytes(_png(np.full((28, 28), 50, np.uint8)))
    result = job("label", "--root", fashion_root, "--images", tmp_path / "good.png",
                 "--run-id", "one-file")
    assert result.code == 0, result.stderr[-3000:]
    rows = _table(fashion_root, "labels", "one-file")
    assert [(row["path"].rsplit("/", 1)[-1], row["status"]) for row in rows] == \
        [("good.png", "ok")]


def test_a_folder_run_gets_a_contact_sheet_of_its_readable_images_at_one_size(
        photos_labelled):
    root, summary = photos_labelled
    sheet = Image.open(storage.local_path(summary["outputs"]["contact_sheet"])).convert("RGB")
    cell = 64 * 3  # big.png comes first by path and sets the size: 64, enlarged 3 times
    assert sheet.width == 2 * cell + 3 * 4
    assert sheet.getpixel((4 + 10, 4 + 10)) == (90, 90, 90)
    assert sheet.getpixel((4 + cell + 4 + 10, 4 + 10)) == (200, 200, 200)


def test_a_run_without_any_readable_image_fails_and_writes_no_labels(
        fashion_root, classifier_handle, job, tmp_path):
    (tmp_path / "broken.png").write_bytes(_png(np.zeros((28, 28), np.uint8))[:40])
    result = job("label", "--root", fashion_root, "--images", tmp_path, "--run-id",
                 "all-broken")
    assert result.code == 1
    assert "no image could be labelled" in result.last_error_line
    assert _table(fashion_root, "labels", "all-broken") == []
    assert not (fashion_root / "runs" / "all-broken" / "staging").exists()


def test_a_split_the_dataset_does_not_have_is_named_with_those_it_has(fashion_root,
                                                                       classifier_handle, job):
    result = job("label", "--root", fashion_root, "--split", "validation",
                 "--classifier", classifier_handle)
    assert result.code == 1
    assert result.last_error_line == (
        "hdp-gan label: failed: dataset 'fashion-mnist' has no split 'validation': it has the "
        "splits test, train")
    assert _table(fashion_root, "labels", "fashion-mnist-validation") == []


def test_a_model_that_does_not_take_images_is_refused_in_one_line(fashion_root, trained, job):
    _, summary = trained
    generator = fashion_root / "runs" / summary["run_id"] / "generator"
    result = job("label", "--root", fashion_root, "--split", "test", "--classifier", generator)
    assert result.code == 2
    assert "not a batch of images" in result.last_error_line
    assert "Traceback" not in result.stderr


def test_a_bad_handle_fails_before_any_spark_task_in_one_line(fashion_root, job, tmp_path):
    result = job("label", "--root", fashion_root, "--split", "test", "--classifier",
                 tmp_path / "no-model")
    assert result.code == 2
    assert "not a SavedModel" in result.last_error_line
    assert "Traceback" not in result.stderr


def test_images_given_as_a_file_uri_naming_a_host_fail_in_one_line(job, tmp_path):
    result = job("label", "--root", tmp_path, "--images", "file://photos/2026")
    assert result.code == 2
    assert "--images file://photos/2026 names the host 'photos'" in result.last_error_line


def test_root_inside_the_images_folder_fails_before_anything_is_made_there(job, tmp_path):
    (tmp_path / "photos").mkdir()
    root = tmp_path / "photos" / "outputs"
    result = job("label", "--root", root, "--images", tmp_path / "photos")
    assert result.code == 2
    assert f"--root {root.as_uri()} is inside --images" in result.last_error_line
    assert not root.exists()


def test_a_generate_runs_labels_refuse_another_run_id_before_the_root_is_made(job, tmp_path):
    root = tmp_path / "new-root"
    result = job("label", "--root", root, "--generated", "generate-1", "--run-id", "mine")
    assert result.code == 2
    assert ("--run-id mine: the labels and quality scores of a generate run are kept under its "
            "own id (generate-1)") in result.last_error_line
    assert not root.exists()


def test_a_smaller_generate_rerun_deletes_only_the_images_numbered_beyond_its_count(tmp_path):
    from gan_lib import generation

    names = [f"{index:07d}.png" for index in range(5)] + ["notes.txt", ".0000009.png.tmp"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert generation.remove_stale_images(tmp_path.as_uri(), 3) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["0000000.png", "0000001.png", "0000002.png", "notes.txt", ".0000009.png.tmp"])
