"""Training and exporting the reference classifier in TF Hub's SavedModel format.

The reference classifier is what answers "how real are the generated images?": its labels
and confidences describe the images, and its penultimate features feed the Frechet and
kernel distances. It trains on the real train split of a preprocessed dataset in one
process (it is small; the data is already clean), and is exported with:

* signature ``serving_default``: ``images`` float32 (N, H, W, C) in [0, 1] ->
  ``probabilities`` (N, K) and ``logits`` (N, K);
* signature ``features``: ``images`` -> ``features`` (N, 128);
* signature ``scores``: ``images`` -> ``probabilities``, ``logits`` and ``features`` from one
  pass of the network (batch inference needs both and would otherwise run it twice);
* ``assets/hdp_gan_classifier.json``: class names, input shape, value range, version, test
  accuracy; the same facts are also variables of the module (``class_names`` and so on).
"""

import json
import logging
import os
import tempfile
import time

import numpy as np

from gan_lib import models, storage
from gan_lib.inference import METADATA_FILE

logger = logging.getLogger(__name__)


def train(train_images, train_labels, test_images, test_labels, num_classes: int,
          epochs: int = 5, batch_size: int = 128, seed: int = 7, threads: int = 0):
    """Train the classifier; returns (model, test accuracy)."""
    import keras
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    keras.utils.set_random_seed(seed)
    height, width, channels = train_images.shape[1:]
    model = models.build_classifier(height, channels, num_classes)
    trainer = keras.Model(model.input, model.outputs[1])
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    started = time.monotonic()
    trainer.fit(train_images.astype(np.float32) / 255.0, train_labels, epochs=epochs,
                batch_size=batch_size, verbose=0, shuffle=True, callbacks=[_EpochLog(epochs)])
    _, accuracy = trainer.evaluate(test_images.astype(np.float32) / 255.0, test_labels,
                                   batch_size=512, verbose=0)
    logger.info("classifier trained in %.0f s: test accuracy %.4f on %d images",
                time.monotonic() - started, accuracy, len(test_images))
    return model, float(accuracy)


def _EpochLog(epochs):
    import keras

    class EpochLog(keras.callbacks.Callback):
        """One log line per epoch (Keras' own progress goes to standard output, which is
        kept for the stage's JSON line)."""

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            logger.info("classifier epoch %d/%d: loss %.4f, train accuracy %.4f", epoch + 1,
                        epochs, logs.get("loss", float("nan")),
                        logs.get("accuracy", float("nan")))

    return EpochLog()


def export(model, class_names, destination: str, version: str, accuracy: float,
           settings=None) -> None:
    """Write the classifier as a TF Hub SavedModel at ``destination`` (any storage URI)."""
    import tensorflow as tf

    height, width, channels = model.input_shape[1:]
    metadata = {"class_names": list(class_names), "input_shape": [height, width, channels],
                "value_range": [0.0, 1.0], "version": version, "test_accuracy": accuracy}
    module = _module(model, metadata, tf)
    with tempfile.TemporaryDirectory(prefix="classifier-") as folder:
        path = os.path.join(folder, "classifier")
        tf.saved_model.save(module, path, signatures={"serving_default": module.classify,
                                                       "features": module.features,
                                                       "scores": module.scores})
        os.makedirs(os.path.join(path, "assets"), exist_ok=True)
        with open(os.path.join(path, "assets", METADATA_FILE), "w") as handle:
            json.dump(metadata, handle, indent=2)
        storage.open_storage(destination, settings).upload_dir(
            path, destination, progress="export: classifier")
    logger.info("exported the classifier to %s", destination)


def _module(model, metadata, tf):
    height, width, channels = metadata["input_shape"]
    spec = tf.TensorSpec([None, height, width, channels], tf.float32, name="images")

    class ClassifierModule(tf.Module):
        def __init__(self):
            super().__init__(name="classifier")
            self.model = model
            self.class_names = tf.Variable(metadata["class_names"], trainable=False)
            self.input_shape = tf.Variable(metadata["input_shape"], trainable=False)
            self.value_range = tf.Variable(metadata["value_range"], trainable=False)

        @tf.function(input_signature=[spec])
        def classify(self, images):
            _, logits = self.model(images, training=False)
            return {"probabilities": tf.nn.softmax(logits), "logits": logits}

        @tf.function(input_signature=[spec])
        def features(self, images):
            features, _ = self.model(images, training=False)
            return {"features": features}

        @tf.function(input_signature=[spec])
        def scores(self, images):
            features, logits = self.model(images, training=False)
            return {"probabilities": tf.nn.softmax(logits), "logits": logits,
                    "features": features}

        @tf.function(input_signature=[spec])
        def __call__(self, images):
            _, logits = self.model(images, training=False)
            return tf.nn.softmax(logits)

    return ClassifierModule()
