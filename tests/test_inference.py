"""Classifiers from TF Hub that are not the project's own: an ImageNet-style model (224x224
RGB in [0, 1], 1001 logits, no class names stored) is fed images in its own size, channels
and value range, and labels a dataset through the label job."""

import pyarrow.parquet as parquet
import pytest

from gan_lib import inference

CLASSES = 1001


@pytest.fixture(scope="module")
def imagenet_style_handle(tmp_path_factory):
    """A SavedModel shaped like TF Hub's ImageNet classifiers; it refuses inputs outside
    [0, 1], so a wrong value range fails the test instead of passing unnoticed."""
    import tensorflow as tf

    class ImageNetStyle(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights = tf.Variable(tf.random.stateless_normal([3, CLASSES], seed=[7, 11]))

        @tf.function(input_signature=[
            tf.TensorSpec([None, 224, 224, 3], tf.float32, name="inputs")])
        def serve(self, inputs):
            tf.debugging.assert_greater_equal(inputs, 0.0, message="input below 0")
            tf.debugging.assert_less_equal(inputs, 1.0, message="input above 1")
            pooled = tf.reduce_mean(inputs, axis=[1, 2])              # (N, 3)
            return {"logits": tf.matmul(pooled * 10.0, self.weights)}  # (N, 1001)

    path = tmp_path_factory.mktemp("hub") / "imagenet-style"
    model = ImageNetStyle()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})
    return str(path)


def test_imagenet_style_classifier_reads_its_input_size_from_the_signature(
        imagenet_style_handle):
    classifier = inference.load_classifier(imagenet_style_handle)
    assert classifier.input_shape == (224, 224, 3)
    assert classifier.value_range == (0.0, 1.0)
    assert classifier.features_fn is None


def test_a_loaded_classifier_is_out_of_reach_of_the_full_collection_after_each_task(
        imagenet_style_handle):
    """Spark's Python workers call gc.collect() after every task: it must not walk the
    model's objects, which live as long as the worker."""
    import gc
    inference._MODELS.pop(imagenet_style_handle, None)  # loaded afresh by this test
    frozen_before = gc.get_freeze_count()
    classifier = inference.load_classifier(imagenet_style_handle)
    assert gc.get_freeze_count() > frozen_before
    assert not any(tracked is classifier for tracked in gc.get_objects())


def test_grayscale_images_reach_an_imagenet_style_classifier_as_rgb_in_its_range(
        imagenet_style_handle):
    import numpy as np

    classifier = inference.load_classifier(imagenet_style_handle)
    images = np.stack([np.full((28, 28, 1), value, np.uint8) for value in (0, 90, 180, 255)])

    prepared = classifier.prepare(images)
    probabilities, features = classifier.predict(images)

    assert prepared.shape == (4, 224, 224, 3)
    assert prepared.min() == 0.0 and prepared.max() == 1.0
    assert probabilities.shape == (4, CLASSES) and features is None
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert len(set(probabilities.argmax(axis=1))) > 1  # the pixels reached the model


def test_label_job_labels_a_dataset_with_an_imagenet_style_classifier(
        fashion_root, imagenet_style_handle, job):
    result = job("label", "--root", fashion_root, "--classifier", imagenet_style_handle,
                 "--split", "test", "--run-id", "imagenet-style")
    assert result.code == 0, result.stderr[-3000:]

    rows = parquet.read_table(fashion_root / "warehouse" / "hdp_gan.db" / "labels" /
                              "run_id=imagenet-style").to_pylist()
    assert len(rows) == result.summary["counts"]["labelled"] > 0
    assert all(row["status"] == "ok" for row in rows)
    assert all(row["label"] == f"class_{row['label_index']}" for row in rows)
    assert all(0.0 < row["confidence"] <= 1.0 for row in rows)
    assert {row["classifier_handle"] for row in rows} == {imagenet_style_handle}


@pytest.mark.parametrize("stored, problem", [
    ('{"class_names": ["T-shirt/top", "Trou', "it cannot be read: Unterminated string"),
    ("{}", "its class_names is not a list of names"),
    ('{"class_names": ["a", "b"], "input_shape": [28, 28], "value_range": [0, 255]}',
     r"its input_shape is not \[height, width, channels\]"),
    ('{"class_names": ["a", "b"], "input_shape": [28, 28, 1], "value_range": [1, 0]}',
     r"its value_range is not \[low, high\]")], ids=["truncated", "empty", "shape", "range"])
def test_a_classifier_whose_stored_metadata_is_damaged_is_refused_naming_the_file(
        imagenet_style_handle, tmp_path, stored, problem):
    import shutil
    copy = tmp_path / "classifier"
    shutil.copytree(imagenet_style_handle, copy)
    (copy / "assets").mkdir(exist_ok=True)
    (copy / "assets" / inference.METADATA_FILE).write_text(stored)
    with pytest.raises(inference.HandleError,
                       match=f"has a damaged {inference.METADATA_FILE} \\({problem}"):
        inference.load_classifier(str(copy))
