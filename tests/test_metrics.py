"""Quality metrics on synthetic classifier outputs whose right answers are known."""

import math

import numpy as np
import pytest

from gan_lib import metrics

CLASSES = [f"class{index}" for index in range(10)]


def clustered_features(labels: np.ndarray, seed: int, width: int = 16) -> np.ndarray:
    """Features as a classifier's penultimate layer might give them: one cluster per class."""
    centres = np.random.default_rng(1234).normal(0.0, 3.0, size=(len(CLASSES), width))
    noise = np.random.default_rng(seed).normal(0.0, 1.0, size=(len(labels), width))
    return centres[labels] + noise


def confident_probabilities(labels: np.ndarray, confidence: float = 0.91) -> np.ndarray:
    """Each row gives ``confidence`` to its label and spreads the rest over the others."""
    rest = (1.0 - confidence) / (len(CLASSES) - 1)
    probabilities = np.full((len(labels), len(CLASSES)), rest)
    probabilities[np.arange(len(labels)), labels] = confidence
    return probabilities


def balanced_labels(count: int) -> np.ndarray:
    return np.arange(count) % len(CLASSES)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(0).normal(size=(500, 12))

    assert metrics.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(1)
    variances_a, variances_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 1.0])
    mean_a, mean_b = np.array([0.0, 1.0, -2.0]), np.array([3.0, 1.0, 0.0])
    # Whitened samples make the sample means and covariances exactly the chosen ones.
    base = rng.normal(size=(4000, 3))
    base -= base.mean(axis=0)
    base = base @ np.linalg.inv(np.linalg.cholesky(np.cov(base, rowvar=False))).T
    features_a = mean_a + base * np.sqrt(variances_a)
    features_b = mean_b + base[::-1] * np.sqrt(variances_b)

    expected = (np.sum((mean_a - mean_b) ** 2)
                + np.sum((np.sqrt(variances_a) - np.sqrt(variances_b)) ** 2))
    assert metrics.frechet_distance(features_a, features_b) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_is_symmetric():
    rng = np.random.default_rng(2)
    features_a = rng.normal(size=(300, 8))
    features_b = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8)) + 1.5

    forward = metrics.frechet_distance(features_a, features_b)
    backward = metrics.frechet_distance(features_b, features_a)
    assert forward == pytest.approx(backward, rel=1e-9)


def test_frechet_distance_stays_finite_with_fewer_images_than_features():
    rng = np.random.default_rng(3)

    distance = metrics.frechet_distance(rng.normal(size=(20, 64)), rng.normal(size=(30, 64)))
    assert math.isfinite(distance) and distance > 0


@pytest.mark.parametrize("metric", [metrics.frechet_distance, metrics.kernel_distance])
def test_degenerate_sample_sets_score_clearly_worse_than_real_like_ones(metric):
    real = clustered_features(balanced_labels(600), seed=10)
    real_like = clustered_features(balanced_labels(600), seed=11)
    one_repeated_vector = np.repeat(real_like[:1], 600, axis=0)
    half_of_the_classes = clustered_features(balanced_labels(600) % 5, seed=12)
    noise = np.random.default_rng(13).normal(0.0, 3.0, size=real.shape)
    shifted = real_like + 2.0

    def score(fake):
        result = metric(fake, real)
        return result[0] if isinstance(result, tuple) else result

    baseline = score(real_like)
    for degenerate in (one_repeated_vector, half_of_the_classes, noise, shifted):
        assert score(degenerate) > 5 * max(baseline, 1e-3)


def test_feature_sets_of_different_widths_raise_error_naming_both_shapes():
    with pytest.raises(ValueError, match=r"\(10, 4\).*\(10, 5\)"):
        metrics.frechet_distance(np.zeros((10, 4)), np.zeros((10, 5)))


def test_frechet_distance_refuses_a_single_image():
    with pytest.raises(ValueError, match=r"\(1, 3\)"):
        metrics.frechet_distance(np.zeros((1, 3)), np.zeros((10, 3)))


def test_flat_feature_vector_raises_error_naming_its_shape():
    with pytest.raises(ValueError, match=r"\(12,\)"):
        metrics.kernel_distance(np.zeros(12), np.zeros((12, 1)))


def test_classifier_score_of_confident_uniform_classes_is_the_class_count():
    probabilities = np.eye(len(CLASSES))[balanced_labels(200)]

    assert metrics.classifier_score(probabilities) == pytest.approx(len(CLASSES), rel=1e-6)


def test_classifier_score_of_a_single_class_is_one():
    probabilities = confident_probabilities(np.full(50, 3))

    assert metrics.classifier_score(probabilities) == pytest.approx(1.0, abs=1e-9)


def test_classifier_score_with_splits_averages_each_split():
    # First half all class 0, second half all class 1: each split alone scores 1.
    probabilities = np.eye(2)[np.repeat([0, 1], 50)]

    assert metrics.classifier_score(probabilities, splits=1) == pytest.approx(2.0)
    assert metrics.classifier_score(probabilities, splits=2) == pytest.approx(1.0)


def test_classifier_score_refuses_logits():
    logits = np.random.default_rng(4).normal(size=(8, 10))

    with pytest.raises(ValueError, match="softmax"):
        metrics.classifier_score(logits)


def test_kernel_distance_of_a_set_with_itself_is_near_zero():
    features = np.random.default_rng(20).normal(size=(1000, 8))
    shifted = features + 1.0

    same, _ = metrics.kernel_distance(features, features, subset_size=500)
    different, _ = metrics.kernel_distance(shifted, features, subset_size=500)
    assert abs(same) < 0.01 * different


def test_kernel_distance_standard_error_is_positive_when_subsets_differ():
    rng = np.random.default_rng(21)

    _, standard_error = metrics.kernel_distance(rng.normal(size=(300, 8)),
                                                rng.normal(0.5, 1.0, size=(300, 8)),
                                                subsets=5, subset_size=100)
    assert standard_error > 0


def test_kernel_distance_caps_subset_size_at_the_smaller_set():
    rng = np.random.default_rng(22)

    mean, standard_error = metrics.kernel_distance(rng.normal(size=(30, 4)),
                                                   rng.normal(size=(50, 4)), subset_size=1000)
    assert math.isfinite(mean) and math.isfinite(standard_error)


def test_kernel_distance_is_reproducible_for_one_seed():
    rng = np.random.default_rng(23)
    features_a, features_b = rng.normal(size=(200, 6)), rng.normal(size=(200, 6))

    first = metrics.kernel_distance(features_a, features_b, subset_size=50, seed=7)
    again = metrics.kernel_distance(features_a, features_b, subset_size=50, seed=7)
    assert first == again


def test_class_shares_sum_to_one_and_count_each_class():
    shares = metrics.class_shares(np.array([0, 0, 1, 3]), num_classes=5)

    assert shares.sum() == pytest.approx(1.0)
    assert shares.tolist() == [0.5, 0.25, 0.0, 0.25, 0.0]


def test_class_shares_refuses_an_index_outside_the_classes():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        metrics.class_shares(np.array([0, 3]), num_classes=3)


def quality(fake_labels: np.ndarray, real_count: int = 500) -> dict:
    real_labels = balanced_labels(real_count)
    return metrics.quality_scores(
        confident_probabilities(fake_labels), clustered_features(fake_labels, seed=30),
        confident_probabilities(real_labels), clustered_features(real_labels, seed=31),
        CLASSES)


def test_mode_collapse_is_flagged_for_a_single_class():
    scores = quality(np.full(200, 7))

    assert scores["mode_collapse"] is True
    assert scores["largest_class_share"] == pytest.approx(1.0)


def test_mode_collapse_is_flagged_for_half_of_the_classes_evenly_drawn():
    assert quality(balanced_labels(200) % 5)["mode_collapse"] is True


def test_mode_collapse_is_not_flagged_for_a_balanced_set():
    scores = quality(balanced_labels(200))

    assert scores["mode_collapse"] is False
    assert scores["largest_class_share"] == pytest.approx(0.1)


def test_mode_collapse_allows_a_class_that_is_common_among_real_images():
    # A class holding 30% of the real images may hold 30% of the fakes too.
    real_shares = np.array([0.3] + [0.7 / 9] * 9)

    assert metrics.is_mode_collapse(real_shares, real_shares) is False


def test_quality_scores_gives_every_quality_table_column_as_plain_python_values():
    scores = quality(balanced_labels(100), real_count=300)

    assert set(scores) == {
        "frechet_distance", "classifier_score", "real_classifier_score", "kernel_distance",
        "kernel_distance_stderr", "class_shares", "largest_class_share", "mode_collapse",
        "mean_confidence", "fake_count", "real_count"}
    assert list(scores["class_shares"]) == CLASSES
    assert sum(scores["class_shares"].values()) == pytest.approx(1.0)
    assert scores["mean_confidence"] == pytest.approx(0.91)
    assert (scores["fake_count"], scores["real_count"]) == (100, 300)
    assert all(type(value) in (float, int, bool, dict) for value in scores.values())


def test_quality_scores_refuses_features_for_other_images_than_the_probabilities():
    labels = balanced_labels(40)

    with pytest.raises(ValueError, match=r"fake_features \(39, 16\)"):
        metrics.quality_scores(confident_probabilities(labels),
                               clustered_features(labels, seed=1)[:39],
                               confident_probabilities(labels),
                               clustered_features(labels, seed=2), CLASSES)
