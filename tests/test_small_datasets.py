"""A few dozen images of one's own: what a first user of a small folder meets is refused
before the work starts, in one line that says what to change."""

import re

import pytest
from PIL import Image

from gan_lib import datasets


def _fashion_images(count, keep=lambda image: True):
    images, _ = datasets.load_fashion_mnist(split="test")
    chosen = [image for image in images if keep(image)][:count]
    assert len(chosen) == count
    return chosen


def _save(images, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for number, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{folder.name}-{number}.png")


def _hashed_to_train(image) -> bool:
    """Whether preprocessing's content hash puts this image in train at --test-percent 10."""
    return int(datasets.pixel_id(image[..., None])[:8], 16) % 100 >= 10


@pytest.fixture(scope="module")
def small_root(tmp_path_factory, job):
    """Dataset "few": train and test folders, each with two labelled sub-folders and loose
    images without a label; dataset "notest": 24 images in label folders, every one of them
    hashed to train. Returns (root, the notest run's result, the few run's result)."""
    base = tmp_path_factory.mktemp("small")
    images = iter(_fashion_images(36))
    for split, per_label in (("train", 8), ("test", 4)):
        for label in ("shoes", "shirts"):
            _save([next(images) for _ in range(per_label)], base / "few" / split / label)
        for number in range(2):  # at the split folder's top level: no label
            Image.fromarray(next(images)).save(base / "few" / split / f"loose-{number}.png")
    few = job("preprocess", "--root", base / "root", "--input", base / "few", "--dataset", "few")
    assert few.code == 0, few.stderr[-3000:]

    hashed = iter(_fashion_images(24, _hashed_to_train))
    for label in ("shoes", "shirts"):
        _save([next(hashed) for _ in range(12)], base / "notest" / label)
    notest = job("preprocess", "--root", base / "root", "--input", base / "notest",
                 "--dataset", "notest")
    assert notest.code == 0, notest.stderr[-3000:]
    return base / "root", notest, few


def test_the_classifier_leaves_out_images_without_a_label(small_root, job):
    root = small_root[0]
    result = job("train-classifier", "--root", root, "--dataset", "few", "--epochs", "1",
                 "--batch-size", "8")
    assert result.code == 0, result.stderr[-3000:]
    assert result.summary["counts"]["train_images"] == 16
    assert result.summary["counts"]["test_images"] == 8
    assert "2 of the 18 images in its train split have no label" in result.stderr


def test_training_on_fewer_images_than_one_batch_is_refused_before_the_workers_start(
        small_root, job):
    root = small_root[0]
    result = job("train", "--root", root, "--dataset", "few", "--epochs", "1")
    assert result.code == 1
    assert result.last_error_line == (
        "hdp-gan train: failed: "
        "dataset 'few' has 18 training images, fewer than one batch (the dcgan "
        "recipe's batch size 64); give a --batch-size of at most 18 that is a multiple of the "
        "2 workers")
    assert "Traceback" not in result.stderr
    assert "a TensorFlow worker" not in result.stderr


def test_preprocessing_warns_when_the_content_hash_left_the_test_split_empty(small_root):
    notest = small_root[1]
    assert notest.summary["counts"]["per_split"] == {"train": 24}
    assert ("dataset notest has no image in its test split (24 images, --test-percent 10): "
            "the stages that need one will refuse it; preprocess it again with a higher "
            "--test-percent, or with train and test folders") in notest.stderr


def test_the_classifier_on_a_dataset_without_test_images_says_how_to_get_some(small_root,
                                                                               job):
    root = small_root[0]
    result = job("train-classifier", "--root", root, "--dataset", "notest", "--epochs", "1")
    assert result.code == 1
    assert result.last_error_line == (
        "hdp-gan train-classifier: failed: dataset 'notest' has no image in its test split: "
        "preprocessing put none there (when the input has no train and test folders, "
        "--test-percent of the images go to test, chosen by content hash); preprocess it again "
        "with a higher --test-percent, or with train and test folders")


def test_preprocess_names_the_location_of_each_split_it_wrote(small_root):
    root, notest, few = small_root
    images = (root / "warehouse" / "hdp_gan.db" / "images").as_uri()
    assert few.summary["outputs"] == {"dataset": "few", "label_names": ["shirts", "shoes"],
                                      "test": f"{images}/dataset=few/split=test",
                                      "train": f"{images}/dataset=few/split=train"}
    assert set(notest.summary["outputs"]) == {"dataset", "label_names", "train"}


def test_preprocessing_to_a_size_the_dcgan_does_not_train_on_warns_at_once(tmp_path, job):
    _save(_fashion_images(2), tmp_path / "in" / "shoes")
    result = job("preprocess", "--root", tmp_path / "root", "--input", tmp_path / "in",
                 "--dataset", "odd", "--image-size", "30")
    assert result.code == 0, result.stderr[-3000:]
    assert ("--image-size 30: the DCGAN trains on 28, 32, 64 pixels only; a dataset of this "
            "size can be labelled, not trained on") in result.stderr


def test_pipeline_passes_max_images_to_both_trainings_and_checks_the_batch_first(tmp_path,
                                                                                 monkeypatch):
    from gan_lib.config import ConfigError, Settings
    from jobs import pipeline

    ran = {}

    def stage(name, arguments):
        ran[name] = arguments
        return {"run_id": f"{name}-1", "outputs": {}, "counts": {}}
    monkeypatch.setattr(pipeline, "run_stage", stage)
    monkeypatch.setattr(pipeline, "_has_report_stage", lambda: False)
    (tmp_path / "raw" / "fashion-mnist").mkdir(parents=True)
    settings = Settings(root=tmp_path.as_uri())
    args = pipeline.build_parser().parse_args(["--max-images", "6", "--batch-size", "4"])
    pipeline.run(args, settings)
    for name in ("train", "train-classifier"):
        at = ran[name].index("--max-images")
        assert ran[name][at:at + 2] == ["--max-images", "6"], name

    ran.clear()
    odd = pipeline.build_parser().parse_args(["--batch-size", "7"])
    with pytest.raises(ConfigError, match="--batch-size 7 is not a multiple of the 2 workers"):
        pipeline.run(odd, settings)
    assert ran == {}


@pytest.mark.parametrize("argv, message", [
    (["--image-size", "30"], "--image-size 30: image size 30 is not supported by the DCGAN"),
    (["--max-images", "10"],
     "--max-images 10 is fewer than one training batch (the recipes' 64); give at least 64"),
    (["--classifier", "no-such-classifier"],
     "classifier handle 'no-such-classifier' is not a SavedModel folder")],
    ids=["image-size", "max-images", "classifier"])
def test_pipeline_refuses_what_train_or_label_would_refuse_before_any_stage_runs(
        tmp_path, monkeypatch, argv, message):
    """These used to fail only at train or label, after the stages before them had run."""
    from gan_lib.config import ConfigError, Settings
    from jobs import pipeline

    ran = []
    monkeypatch.setattr(pipeline, "run_stage", lambda name, arguments: ran.append(name))
    monkeypatch.chdir(tmp_path)
    args = pipeline.build_parser().parse_args(argv)
    with pytest.raises(ConfigError, match=re.escape(message)):
        pipeline.run(args, Settings(root=tmp_path.as_uri()))
    assert ran == []


def _pipeline_stages(monkeypatch, tmp_path, argv, label_names=("bag", "coat")):
    """The stages a pipeline run starts (each stage stubbed), on the root under tmp_path."""
    from gan_lib.config import Settings
    from jobs import pipeline

    ran = []

    def stage(name, arguments):
        ran.append(name)
        outputs = {"label_names": list(label_names)} if name == "preprocess" else {}
        return {"run_id": f"{name}-1", "outputs": outputs, "counts": {}}
    monkeypatch.setattr(pipeline, "run_stage", stage)
    monkeypatch.setattr(pipeline, "_has_report_stage", lambda: False)
    pipeline.run(pipeline.build_parser().parse_args(argv), Settings(root=tmp_path.as_uri()))
    return ran


def test_pipeline_ingests_again_when_the_raw_images_were_taken_with_another_limit(
        monkeypatch, tmp_path, caplog):
    """A demo run with --ingest-limit, then one without, used to preprocess the limited images
    again without a word."""
    from gan_lib.config import Settings
    caplog.set_level("INFO")
    datasets.ingest_fashion_mnist(Settings(root=tmp_path.as_uri()), "fashion-mnist",
                                  datasets.FASHION_MNIST_DIR, limit_per_split=3)
    assert "ingest" in _pipeline_stages(monkeypatch, tmp_path, [])
    assert "holds the first 3 of each split of an earlier ingest, every image was asked for" \
        in caplog.text
    assert "ingest" not in _pipeline_stages(monkeypatch, tmp_path, ["--ingest-limit", "3"])
    assert "stage ingest: skipped: " in caplog.text
    assert "holds the images of an earlier ingest with the same limit" in caplog.text


def test_pipeline_says_it_takes_raw_images_whose_ingest_record_it_cannot_read(
        monkeypatch, tmp_path, caplog):
    from gan_lib.config import Settings
    caplog.set_level("INFO")
    settings = Settings(root=tmp_path.as_uri())
    datasets.ingest_fashion_mnist(settings, "fashion-mnist", datasets.FASHION_MNIST_DIR,
                                  limit_per_split=3)
    raw = tmp_path / "raw" / "fashion-mnist"
    (raw / datasets.INGEST_RECORD).write_text("{not json")
    assert "ingest" not in _pipeline_stages(monkeypatch, tmp_path, ["--ingest-limit", "5"])
    assert (f"stage ingest: skipped: {raw.as_uri()} holds images without a readable "
            "_ingest.json, taken as they are whatever --ingest-limit says") in caplog.text
    assert "same limit" not in caplog.text


@pytest.mark.parametrize("argv, labels, trains", [
    ([], ("bag", "coat"), False), ([], ("bag", "coat", "dress"), True),
    (["--classifier-epochs", "2"], ("bag", "coat"), True)],
    ids=["same-classes", "a-new-class", "epochs-given"])
def test_pipeline_trains_the_classifier_again_when_asked_or_when_the_classes_changed(
        monkeypatch, tmp_path, caplog, argv, labels, trains):
    """A dataset given a new class folder used to be labelled by the published classifier of
    the old classes, without a word."""
    caplog.set_level("INFO")
    (tmp_path / "raw" / "fashion-mnist").mkdir(parents=True)
    published = tmp_path / "models" / "fashion-mnist-classifier" / "assets"
    published.mkdir(parents=True)
    (published / "hdp_gan_classifier.json").write_text('{"class_names": ["bag", "coat"]}')
    ran = _pipeline_stages(monkeypatch, tmp_path, argv, labels)
    assert ("train-classifier" in ran) is trains
    assert ("stage train-classifier: skipped" in caplog.text) is not trains
