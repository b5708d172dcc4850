"""Generator, discriminator and reference classifier builders (Keras 3).

Two DCGAN recipes are built here:

``dcgan`` (the default): the DCGAN paper's settings, but for a higher learning rate. Weights
drawn from N(0, 0.02), 4x4 kernels with stride 2 (no checkerboard from kernels that stride
does not divide), batch normalisation in both networks except the discriminator's input and
the generator's output, ReLU in the generator, LeakyReLU(0.2) in the discriminator, Adam
with beta_1 = 0.5, one-sided label smoothing (real = 0.9), batch 64. The networks are half
the usual width (32 filters in the discriminator's first and the generator's last block):
for a fixed CPU budget on Fashion-MNIST, width 32 reached a lower Frechet distance than 64
or 16, and batches 32 and 64 at width 32 could not be told apart in one run each. Adam's
learning rate is 5e-4 for both networks instead of the paper's 2e-4: for the same budget
the Frechet distance fell by about a third, and 1e-3 or 2e-3 gave no more
(``scripts/bench/recipe_search.py``, docs/BENCHMARKS.md). Networks this small, trained for
minutes, are far from converged, and a larger step gets further in the same time; of the
rates that did as well, the smallest is the safest for longer runs.

When every training image has a label and there are two classes or more, each with images,
``dcgan`` conditions both networks on the class (a class-conditional DCGAN): the generator
reads the class from its noise (``class_of_noise``: the first value's normal quantile, so
classes are equally likely and noise alone still determines an image) and gets it as a
one-hot vector beside the noise; the discriminator adds to its logit the projection of the image's
features on a learned embedding of the class (Miyato and Koyama, "cGANs with projection
discriminator", 2018). For the same CPU budget on Fashion-MNIST this took the Frechet
distance from 8.06 to 2.36 and the classifier score from 0.75 to 1.00 of the real images'
(one run each, docs/BENCHMARKS.md). The unconditional networks are what
``--no-conditional`` and unlabelled datasets get.

``tutorial``: TensorFlow's DCGAN tutorial, kept as the baseline the default must beat:
5x5 kernels, Keras' default initialisation, dropout in the discriminator, Adam 1e-4 for
both networks, batch 256.

Batch normalisation uses each worker's own batch, as data-parallel training usually does:
synchronizing the statistics would cost one small collective per layer and call, forward
and backward, each a round trip between the workers. The moving averages (used only when
drawing samples and exporting) drift apart between workers, so the training loop averages
them over all workers at the end of every epoch (``GanTrainer.average_statistics``) and
every node then holds the same networks.

Image sizes 28x28, 32x32 and 64x64 are supported, with 1 or 3 channels. Images enter the
discriminator scaled to [-1, 1]; the generator ends in tanh.
"""

import functools
import math
import statistics
from dataclasses import dataclass

import numpy as np

SUPPORTED_SIZES = {28: (7, 2), 32: (4, 3), 64: (4, 4)}  # size -> (start size, upsamplings)


@dataclass(frozen=True)
class Recipe:
    name: str
    learning_rate: float
    beta_1: float
    batch_size: int
    real_label: float
    kernel_size: int
    width: int = 64  # filters of the discriminator's first and the generator's last block
    conditional: bool = False  # condition both networks on the class when there are labels


RECIPES = {
    "dcgan": Recipe("dcgan", learning_rate=5e-4, beta_1=0.5, batch_size=64, real_label=0.9,
                    kernel_size=4, width=32, conditional=True),
    "tutorial": Recipe("tutorial", learning_rate=1e-4, beta_1=0.9, batch_size=256,
                       real_label=1.0, kernel_size=5),
}


def check_shape(image_size: int, channels: int) -> None:
    if image_size not in SUPPORTED_SIZES:
        raise ValueError(f"image size {image_size} is not supported by the DCGAN; use one of "
                         f"{sorted(SUPPORTED_SIZES)} (preprocess with --image-size)")
    if channels not in (1, 3):
        raise ValueError(f"{channels} channels are not supported; use 1 or 3")


def class_of_noise(noise, classes: int):
    """The class a conditional generator draws for each noise vector: the first value's
    normal quantile cut into ``classes`` equal parts, so classes are equally likely under
    normal noise and one noise vector always gives the same class."""
    from keras import ops

    uniform = 0.5 * (1.0 + ops.erf(noise[:, 0] / math.sqrt(2.0)))
    return ops.minimum(ops.cast(ops.floor(uniform * classes), "int32"), classes - 1)


def noise_for_classes(noise: np.ndarray, labels, classes: int) -> np.ndarray:
    """``noise`` with its first value moved to the middle of each label's part, so that a
    conditional generator draws that class (the inverse of ``class_of_noise``)."""
    moved = np.array(noise, dtype=np.float32, copy=True)
    labels = np.asarray(labels)
    if labels.shape != moved.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"need one whole-number label per noise vector: {moved.shape[0]} "
                         f"noise vectors, labels of shape {labels.shape} ({labels.dtype})")
    if classes < 1 or len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in 0..{classes - 1}")
    normal = statistics.NormalDist()
    moved[:, 0] = [normal.inv_cdf((int(label) + 0.5) / classes) for label in labels]
    return moved


@functools.cache
def _class_one_hot_layer():
    import keras

    class ClassOneHot(keras.layers.Layer):
        """Noise (N, latent_dim) -> one-hot (N, classes) of ``class_of_noise``."""

        def __init__(self, classes, **kwargs):
            super().__init__(**kwargs)
            self.classes = classes

        def call(self, noise):
            from keras import ops
            return ops.one_hot(class_of_noise(noise, self.classes), self.classes)

        def get_config(self):
            return {**super().get_config(), "classes": self.classes}

    return ClassOneHot


def _initializer(recipe: Recipe):
    import keras
    if recipe.name == "tutorial":
        return "glorot_uniform"
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def is_conditional(recipe: Recipe, classes: int) -> bool:
    return recipe.conditional and classes > 1


def build_generator(latent_dim: int, image_size: int, channels: int, recipe: Recipe,
                    classes: int = 0):
    """Noise (N, latent_dim) -> images (N, size, size, channels) in [-1, 1].

    Conditional (a conditional recipe and ``classes`` > 1): the class ``class_of_noise``
    reads from the noise enters as a one-hot vector beside the noise, so the model still
    maps noise alone to images."""
    import keras
    from keras import layers

    check_shape(image_size, channels)
    if recipe.name == "tutorial":
        return _tutorial_generator(latent_dim, image_size, channels)
    start, upsamplings = SUPPORTED_SIZES[image_size]
    init = _initializer(recipe)
    filters = recipe.width * 2 ** (upsamplings - 1)
    noise = keras.Input((latent_dim,), name="noise")
    x = noise
    if is_conditional(recipe, classes):
        x = layers.Concatenate()([noise, _class_one_hot_layer()(classes)(noise)])
        # state: latent_dim + classes
    x = layers.Dense(start * start * filters, use_bias=False, kernel_initializer=init)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.Reshape((start, start, filters))(x)
    # state: start x start x (width * 2^(upsamplings-1)), e.g. 7 x 7 x 64 for 28x28
    for block in range(upsamplings - 1):
        filters //= 2
        x = layers.Conv2DTranspose(filters, recipe.kernel_size, strides=2, padding="same",
                                   use_bias=False, kernel_initializer=init)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        # state: doubled side x filters, e.g. 14 x 14 x 32 for 28x28
    images = layers.Conv2DTranspose(channels, recipe.kernel_size, strides=2, padding="same",
                                    activation="tanh", kernel_initializer=init)(x)
    # state: size x size x channels
    return keras.Model(noise, images, name="generator")


def build_discriminator(image_size: int, channels: int, recipe: Recipe, classes: int = 0):
    """Images (N, size, size, channels) in [-1, 1] -> logits (N, 1) that the image is real.

    Conditional: inputs [images, class indices (N,)], and the logit gains the projection of
    the image's features on a learned embedding of its class (Miyato and Koyama's
    projection discriminator), one dot product per image."""
    import keras
    from keras import layers

    check_shape(image_size, channels)
    if recipe.name == "tutorial":
        return _tutorial_discriminator(image_size, channels)
    _, downsamplings = SUPPORTED_SIZES[image_size]
    init = _initializer(recipe)
    images = keras.Input((image_size, image_size, channels), name="images")
    x = layers.Conv2D(recipe.width, recipe.kernel_size, strides=2, padding="same",
                      kernel_initializer=init)(images)
    x = layers.LeakyReLU(0.2)(x)
    # state: size/2 x size/2 x width, e.g. 14 x 14 x 32 for 28x28
    filters = recipe.width
    for block in range(downsamplings - 1):
        filters *= 2
        x = layers.Conv2D(filters, recipe.kernel_size, strides=2, padding="same",
                          use_bias=False, kernel_initializer=init)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.LeakyReLU(0.2)(x)
        # state: halved side x filters, e.g. 7 x 7 x 64 for 28x28
    features = layers.Flatten()(x)
    logits = layers.Dense(1, kernel_initializer=init)(features)
    if not is_conditional(recipe, classes):
        return keras.Model(images, logits, name="discriminator")
    labels = keras.Input((), dtype="int32", name="labels")
    embedded = layers.Embedding(classes, features.shape[-1], embeddings_initializer=init)(labels)
    projection = layers.Dot(axes=1)([embedded, features])
    # state: (N, 1), added to the unconditional logit
    logits = layers.Add()([logits, projection])
    return keras.Model([images, labels], logits, name="discriminator")


def _tutorial_generator(latent_dim: int, image_size: int, channels: int):
    import keras
    from keras import layers

    start = image_size // 4
    noise = keras.Input((latent_dim,), name="noise")
    x = layers.Dense(start * start * 256, use_bias=False)(noise)
    x = layers.LeakyReLU()(layers.BatchNormalization()(x))
    x = layers.Reshape((start, start, 256))(x)
    # state: size/4 x size/4 x 256
    x = layers.Conv2DTranspose(128, 5, strides=1, padding="same", use_bias=False)(x)
    x = layers.LeakyReLU()(layers.BatchNormalization()(x))
    x = layers.Conv2DTranspose(64, 5, strides=2, padding="same", use_bias=False)(x)
    x = layers.LeakyReLU()(layers.BatchNormalization()(x))
    # state: size/2 x size/2 x 64
    images = layers.Conv2DTranspose(channels, 5, strides=2, padding="same", use_bias=False,
                                    activation="tanh")(x)
    return keras.Model(noise, images, name="generator")


def _tutorial_discriminator(image_size: int, channels: int):
    import keras
    from keras import layers

    images = keras.Input((image_size, image_size, channels), name="images")
    x = layers.Dropout(0.3)(layers.LeakyReLU()(
        layers.Conv2D(64, 5, strides=2, padding="same")(images)))
    x = layers.Dropout(0.3)(layers.LeakyReLU()(
        layers.Conv2D(128, 5, strides=2, padding="same")(x)))
    # state: size/4 x size/4 x 128
    logits = layers.Dense(1)(layers.Flatten()(x))
    return keras.Model(images, logits, name="discriminator")


def build_classifier(image_size: int, channels: int, num_classes: int):
    """Reference classifier: images (N, size, size, channels) in [0, 1] -> (features, logits).

    A small convolutional network (two convolution blocks, dropout), cheap enough to train on
    two cores in a few minutes. Its 128-wide penultimate layer is the feature vector used by
    the Frechet and kernel distances.
    """
    import keras
    from keras import layers

    images = keras.Input((image_size, image_size, channels), name="images")
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(images)
    x = layers.MaxPooling2D()(x)
    # state: size/2 x size/2 x 32, e.g. 14 x 14 x 32 for 28x28
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.25)(x)
    # state: size/4 x size/4 x 64, e.g. 7 x 7 x 64 for 28x28
    x = layers.Flatten()(x)
    features = layers.Dense(128, activation="relu", name="features")(x)
    logits = layers.Dense(num_classes, name="logits")(layers.Dropout(0.4)(features))
    return keras.Model(images, [features, logits], name="classifier")
