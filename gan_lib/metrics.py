"""How real are the generated images? Scores computed from a reference classifier's outputs.

Every score here works on what a classifier returns for a set of images, never on pixels:

- ``features``: (N, D) activations of a layer near the classifier's output (its penultimate
  layer ranks degenerate sample sets more sensibly than its logits do);
- ``probabilities``: (N, K) class probabilities, each row summing to 1.

The scores, and which way is better:

- ``frechet_distance``: distance between Gaussians fitted to real and fake features
  (the FID formula, on whichever classifier the project uses). Lower is better; 0 means the
  two sets have the same mean and covariance.
- ``kernel_distance``: unbiased squared maximum mean discrepancy with a cubic polynomial
  kernel (the KID formula). Lower is better; it has no bias towards large sample counts,
  so small fake sets can be compared with each other.
- ``classifier_score``: exp of the mean KL divergence between each image's class
  distribution and the set's marginal one (the Inception Score formula). Higher is better,
  between 1 and K. The same classifier's score on real images is the reference, so it is
  reported next to ``real_classifier_score``; samples that are very clearly classified and
  evenly spread over the classes can pass it.

Everything is plain numpy in float64; nothing here needs TensorFlow or Spark.
"""

import logging
import math
import time

import numpy as np

logger = logging.getLogger(__name__)

# Guards logarithms of probabilities that are exactly 0.
EPSILON = 1e-12

# How far a probability row may sum from 1 before it is taken for logits, not probabilities.
ROW_SUM_TOLERANCE = 1e-3


def _as_feature_matrix(features, name: str) -> np.ndarray:
    """``features`` as a finite float64 (N, D) matrix, or a ValueError saying what is wrong."""
    matrix = np.asarray(features, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (images, features) array; got shape "
                         f"{matrix.shape}. Flatten each image's features into one row.")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name} (shape {matrix.shape}) holds NaN or infinite values; "
                         f"check the classifier's outputs for these images.")
    return matrix


def _check_feature_pair(features_a, features_b, minimum_rows: int):
    """Both feature sets as float64 matrices with the same width and enough rows."""
    a = _as_feature_matrix(features_a, "features_a")
    b = _as_feature_matrix(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must have the same width; got features_a {a.shape} "
                         f"and features_b {b.shape}. Use the same classifier layer for both.")
    if len(a) < minimum_rows or len(b) < minimum_rows:
        raise ValueError(f"each feature set needs at least {minimum_rows} rows; got "
                         f"features_a {a.shape} and features_b {b.shape}.")
    return a, b


def _symmetric_square_root(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix, via its eigenvalues.

    Eigenvalues that rounding pushed slightly below zero are treated as zero.
    """
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    roots = np.sqrt(np.clip(eigenvalues, 0.0, None))
    return (eigenvectors * roots) @ eigenvectors.T


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets.

    ``||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2))`` with sample means ``mu`` and
    covariances ``C`` (N - 1 in the denominator). The trace of the matrix square root is the
    sum of the square roots of the eigenvalues of ``C_a^(1/2) C_b C_a^(1/2)``, which is
    symmetric positive semi-definite and has the same eigenvalues as ``C_a C_b``; this stays
    real and stable when the covariances are singular (for example N < D).

    The result is symmetric in its arguments and never negative (rounding below zero is
    returned as 0.0). With fewer images than features the covariances are poorly estimated
    and the distance is biased upwards: compare distances computed from equal counts.

    Raises ValueError when either set is not 2-D, is not finite, has fewer than 2 rows, or
    when the widths differ.
    """
    a, b = _check_feature_pair(features_a, features_b, minimum_rows=2)

    mean_difference = a.mean(axis=0) - b.mean(axis=0)
    covariance_a = np.atleast_2d(np.cov(a, rowvar=False))
    covariance_b = np.atleast_2d(np.cov(b, rowvar=False))

    root_a = _symmetric_square_root(covariance_a)
    product = root_a @ covariance_b @ root_a
    product = (product + product.T) / 2.0
    trace_of_root = np.sqrt(np.clip(np.linalg.eigvalsh(product), 0.0, None)).sum()

    distance = (mean_difference @ mean_difference + np.trace(covariance_a)
                + np.trace(covariance_b) - 2.0 * trace_of_root)
    return max(float(distance), 0.0)


def _as_probability_matrix(probabilities, name: str = "probabilities") -> np.ndarray:
    """``probabilities`` as a float64 (N, K) matrix whose rows are distributions."""
    matrix = np.asarray(probabilities, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D (images, classes) array with at least one "
                         f"row; got shape {matrix.shape}.")
    if not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
        raise ValueError(f"{name} (shape {matrix.shape}) holds negative, NaN or infinite "
                         f"values; pass softmax outputs, not logits.")
    row_sums = matrix.sum(axis=1)
    if np.any(np.abs(row_sums - 1.0) > ROW_SUM_TOLERANCE):
        raise ValueError(f"each row of {name} (shape {matrix.shape}) must sum to 1; row sums "
                         f"range from {row_sums.min():.4g} to {row_sums.max():.4g}. "
                         f"Apply a softmax to the classifier's logits first.")
    return matrix / row_sums[:, None]


def _score_one_split(probabilities: np.ndarray) -> float:
    marginal = probabilities.mean(axis=0, keepdims=True)
    divergence = probabilities * (np.log(probabilities + EPSILON) - np.log(marginal + EPSILON))
    return float(np.exp(divergence.sum(axis=1).mean()))


def classifier_score(probabilities: np.ndarray, splits: int = 1) -> float:
    """``exp(E_x KL(p(y|x) || p(y)))`` over (N, K) class probabilities.

    The score is K when every image is classified confidently and the classes are equally
    used, and 1 when every image gets the same distribution (one class, or no confidence).
    With ``splits`` > 1 the images are cut into that many consecutive groups, each scored
    against its own marginal, and the mean of the group scores is returned (the usual way
    the Inception Score is reported; each group should hold many images per class).

    Rows are renormalised to sum exactly to 1; rows that sum further than 1e-3 from 1 are
    refused, since they are most likely logits.
    """
    matrix = _as_probability_matrix(probabilities)
    if not 1 <= int(splits) <= len(matrix):
        raise ValueError(f"splits must be between 1 and the number of images "
                         f"({len(matrix)}); got {splits}.")
    groups = np.array_split(matrix, int(splits))
    return float(np.mean([_score_one_split(group) for group in groups]))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x . y / d + 1)^3 for every pair of rows."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _unbiased_mmd_squared(x: np.ndarray, y: np.ndarray) -> float:
    m = len(x)
    kernel_xx = _polynomial_kernel(x, x)
    kernel_yy = _polynomial_kernel(y, y)
    kernel_xy = _polynomial_kernel(x, y)
    within_x = (kernel_xx.sum() - np.trace(kernel_xx)) / (m * (m - 1))
    within_y = (kernel_yy.sum() - np.trace(kernel_yy)) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * kernel_xy.mean())


def kernel_distance(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 10,
                    subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel distance (KID) between two (N, D) feature sets: ``(mean, standard error)``.

    For each of ``subsets`` rounds, ``subset_size`` rows are drawn without replacement from
    each set and the unbiased squared MMD with the kernel ``(x . y / D + 1)^3`` is computed;
    the mean over rounds and its standard error (standard deviation / sqrt(subsets)) are
    returned. ``subset_size`` is capped at the smaller set's row count. The estimate is
    unbiased, so identical distributions give values scattered around 0, slightly negative
    ones included.

    When the capped subset holds every row of both sets, every round sees the same images
    and the standard error is 0; it only measures sampling spread when the sets are larger
    than ``subset_size``. With ``subsets=1`` the standard error is NaN (it cannot be
    estimated from one value). The draws depend only on ``seed``.
    """
    a, b = _check_feature_pair(features_a, features_b, minimum_rows=2)
    if int(subsets) < 1:
        raise ValueError(f"subsets must be at least 1; got {subsets}.")
    if int(subset_size) < 2:
        raise ValueError(f"subset_size must be at least 2; got {subset_size}.")
    size = min(int(subset_size), len(a), len(b))

    generator = np.random.default_rng(seed)
    estimates = []
    for _ in range(int(subsets)):
        rows_a = generator.choice(len(a), size, replace=False)
        rows_b = generator.choice(len(b), size, replace=False)
        estimates.append(_unbiased_mmd_squared(a[rows_a], b[rows_b]))

    estimates = np.asarray(estimates)
    if len(estimates) == 1:
        return float(estimates[0]), math.nan
    standard_error = estimates.std(ddof=1) / math.sqrt(len(estimates))
    return float(estimates.mean()), float(standard_error)


def class_shares(label_indices: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of images given each class index, as a (num_classes,) float64 array.

    ``label_indices`` are integer class indices in ``[0, num_classes)``; the shares sum to 1.
    """
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be at least 1; got {num_classes}.")
    labels = np.asarray(label_indices)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"label_indices must be a non-empty 1-D array; got shape "
                         f"{labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label_indices must be integers; got dtype {labels.dtype}. "
                         f"Take the argmax of the class probabilities.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"label_indices must lie in [0, {num_classes}); got values from "
                         f"{labels.min()} to {labels.max()}.")
    counts = np.bincount(labels, minlength=int(num_classes)).astype(np.float64)
    return counts / counts.sum()


def is_mode_collapse(fake_shares: np.ndarray, real_shares: np.ndarray) -> bool:
    """Whether the fake images' class mix shows mode collapse against the real images' mix.

    Each class's expected share is its share among real images, but never less than the
    uniform share 1/K (so a class that is rare in the real data does not trip the rule on a
    few fake images). Collapse is flagged when either

    - one class takes more than twice its expected share among the fakes (on balanced data
      with 10 classes: more than 20%), or
    - at most half of the classes seen among real images appear among the fakes, where a
      class appears when it holds at least a quarter of its real share (a generator that
      draws only 5 of 10 classes is flagged even when those 5 are evenly used).

    Both rules rest on the classifier's labels, so a classifier that confuses two classes
    moves them together. With few fake images per class (under about 20) a balanced
    generator can trip the first rule by chance.
    """
    fake_shares = np.asarray(fake_shares, dtype=np.float64)
    real_shares = np.asarray(real_shares, dtype=np.float64)
    if fake_shares.shape != real_shares.shape or fake_shares.ndim != 1:
        raise ValueError(f"fake and real class shares must be 1-D arrays of the same length; "
                         f"got {fake_shares.shape} and {real_shares.shape}.")
    expected = np.maximum(real_shares, 1.0 / len(real_shares))
    dominant = bool(np.any(fake_shares > 2.0 * expected))

    seen_in_real = real_shares > 0
    appearing = np.count_nonzero(fake_shares[seen_in_real] >= real_shares[seen_in_real] / 4.0)
    too_few_classes = seen_in_real.sum() > 1 and 2 * appearing <= seen_in_real.sum()
    return dominant or bool(too_few_classes)


def quality_scores(fake_probabilities: np.ndarray, fake_features: np.ndarray,
                   real_probabilities: np.ndarray, real_features: np.ndarray,
                   class_names: list[str], seed: int = 0) -> dict:
    """Every quality score for one generator run, as one dict ready to become a Hive row.

    Inputs are the reference classifier's outputs on fake (generated) and real images:
    probabilities (N, K) with K == len(class_names), and features (N, D) from the same layer
    for both sets. Returned keys (plain Python types):

    - ``frechet_distance``, ``kernel_distance``, ``kernel_distance_stderr``: fake vs real
      features; lower is better. The kernel distance uses 10 subsets of up to 1000 images
      drawn with ``seed``.
    - ``classifier_score``, ``real_classifier_score``: on fake and on real probabilities;
      the real score is the reference to compare with (samples can match or pass it).
    - ``class_shares``: class name -> share of fakes whose most probable class it is.
    - ``largest_class_share``: the largest of those shares.
    - ``mode_collapse``: see ``is_mode_collapse``; the real images' shares are taken from
      the same classifier's labels, so its own biases do not count as collapse.
    - ``mean_confidence``: mean top-class probability over the fakes.
    - ``fake_count``, ``real_count``: the number of images behind the scores.
    """
    started = time.monotonic()
    fake = _as_probability_matrix(fake_probabilities, "fake_probabilities")
    real = _as_probability_matrix(real_probabilities, "real_probabilities")
    names = [str(name) for name in class_names]
    if fake.shape[1] != len(names) or real.shape[1] != len(names):
        raise ValueError(f"probabilities must have one column per class name "
                         f"({len(names)}); got fake_probabilities {fake.shape} and "
                         f"real_probabilities {real.shape}.")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be distinct; got {names}.")
    fake_feature_rows = np.shape(fake_features)[0] if np.ndim(fake_features) else 0
    real_feature_rows = np.shape(real_features)[0] if np.ndim(real_features) else 0
    if fake_feature_rows != len(fake) or real_feature_rows != len(real):
        raise ValueError(f"features and probabilities must describe the same images; got "
                         f"fake_features {np.shape(fake_features)} for fake_probabilities "
                         f"{fake.shape} and real_features {np.shape(real_features)} for "
                         f"real_probabilities {real.shape}.")

    fake_shares = class_shares(fake.argmax(axis=1), len(names))
    real_shares = class_shares(real.argmax(axis=1), len(names))
    kernel_mean, kernel_stderr = kernel_distance(fake_features, real_features, seed=seed)
    scores = {
        "frechet_distance": frechet_distance(fake_features, real_features),
        "classifier_score": classifier_score(fake),
        "real_classifier_score": classifier_score(real),
        "kernel_distance": kernel_mean,
        "kernel_distance_stderr": kernel_stderr,
        "class_shares": {name: float(share) for name, share in zip(names, fake_shares)},
        "largest_class_share": float(fake_shares.max()),
        "mode_collapse": is_mode_collapse(fake_shares, real_shares),
        "mean_confidence": float(fake.max(axis=1).mean()),
        "fake_count": int(len(fake)),
        "real_count": int(len(real)),
    }
    logger.info("scored %d fake against %d real images in %.1f s: frechet %.4g, kernel %.4g, "
                "classifier score %.2f (real %.2f), largest class share %.3f, mode collapse %s",
                scores["fake_count"], scores["real_count"], time.monotonic() - started,
                scores["frechet_distance"], scores["kernel_distance"],
                scores["classifier_score"], scores["real_classifier_score"],
                scores["largest_class_share"], scores["mode_collapse"])
    return scores
