"""evaluation/formulas.py against closed forms and hand-computed values: the Fréchet distance, KID, the
Inception score, precision/recall and the class statistics of generated samples; NumPy only."""

import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from evaluation import formulas

# --- Fréchet distance ------------------------------------------------------------------------------------


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.1, 3, size=5), rng.uniform(0.1, 3, size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert formulas.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)


def _random_covariance(rng, dim):
    a = rng.normal(size=(dim, dim))
    return a @ a.T + 0.1 * np.eye(dim)


def test_frechet_distance_matches_symmetric_form_for_full_covariances():
    # Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2): eigendecompositions only, no scipy.linalg.sqrtm.
    rng = np.random.default_rng(1)
    s1, s2 = _random_covariance(rng, 4), _random_covariance(rng, 4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    values, vectors = np.linalg.eigh(s1)
    root1 = vectors @ np.diag(np.sqrt(values)) @ vectors.T
    trace_sqrt = np.sum(np.sqrt(np.linalg.eigvalsh(root1 @ s2 @ root1)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert formulas.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_is_symmetric_and_zero_for_identical_statistics():
    rng = np.random.default_rng(2)
    mu1, s1 = formulas.feature_statistics(rng.normal(size=(50, 8)))
    mu2, s2 = formulas.feature_statistics(rng.normal(1.0, 2.0, size=(50, 8)))
    assert formulas.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-6)
    forward, backward = formulas.frechet_distance(mu1, s1, mu2, s2), formulas.frechet_distance(mu2, s2, mu1, s1)
    assert forward > 1
    assert forward == pytest.approx(backward, rel=1e-7)


def test_frechet_distance_rejects_a_significantly_complex_square_root():
    # sqrt(diag(1, -1)) has an imaginary diagonal entry: not a covariance, TTUR raises.
    with pytest.raises(ValueError, match="imaginary"):
        formulas.frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))


# --- KID -------------------------------------------------------------------------------------------------


def test_kid_matches_the_unbiased_estimator_written_out_pair_by_pair():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 3)), rng.normal(0.5, 1, size=(6, 3))

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    m = len(x)
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    mean, std = formulas.kernel_inception_distance(x, y, num_subsets=3, max_subset_size=m)
    assert mean == pytest.approx(within - 2 * cross, rel=1e-10)
    assert std == pytest.approx(0, abs=1e-12)  # every "subset" is the whole set


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same_mean, same_std = formulas.kernel_inception_distance(a, b, num_subsets=20, max_subset_size=200)
    shifted_mean, _ = formulas.kernel_inception_distance(a, b + 1.0, num_subsets=20, max_subset_size=200)
    assert abs(same_mean) < 0.05
    assert same_std > 0
    assert shifted_mean > 20 * max(abs(same_mean), same_std)


def test_kid_is_unbiased_on_average_unlike_the_diagonal_including_estimate():
    rng = np.random.default_rng(5)
    estimates, diagonal_terms = [], []
    for _ in range(40):
        x, y = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
        estimates.append(formulas.kernel_inception_distance(x, y, num_subsets=1)[0])
        # What the biased V-statistic would add: the k(x, x) terms the unbiased estimator leaves out.
        diagonal_terms.append(((np.sum(x * x, 1) / 4 + 1) ** 3 + (np.sum(y * y, 1) / 4 + 1) ** 3).mean() / 20)
    assert abs(np.mean(estimates)) < 0.2 * np.mean(diagonal_terms)
    assert min(estimates) < 0 < max(estimates)  # an unbiased estimate of 0 must be able to go negative


# --- Inception score -------------------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [1.0, 0.999])
def test_inception_score_is_the_class_count_for_confident_balanced_predictions(confidence):
    classes = 4
    probs = np.full((40, classes), (1 - confidence) / (classes - 1))
    probs[np.arange(40), np.arange(40) % classes] = confidence
    mean, std = formulas.inception_score(probs, splits=5)
    assert mean == pytest.approx(classes, rel=0.02 if confidence < 1 else 1e-12)
    assert std == pytest.approx(0, abs=1e-9)


def test_inception_score_is_one_when_every_prediction_is_the_same():
    probs = np.tile([0.7, 0.2, 0.1], (30, 1))
    assert formulas.inception_score(probs, splits=3) == pytest.approx((1.0, 0.0))


# --- Precision / recall ----------------------------------------------------------------------------------


def test_precision_recall_is_one_for_identical_sets_and_zero_for_far_fakes():
    rng = np.random.default_rng(6)
    real = rng.normal(size=(60, 5))
    assert formulas.precision_recall(real, real.copy()) == (1.0, 1.0)
    precision, recall = formulas.precision_recall(real, rng.normal(size=(60, 5)) + 100.0)
    assert precision == 0.0
    assert recall == 0.0


def test_precision_recall_counts_the_fraction_on_the_manifold_and_ignores_batching():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(80, 4))
    fake = np.concatenate([real[:40] + 1e-3, rng.normal(size=(40, 4)) + 50.0])
    precision, recall = formulas.precision_recall(real, fake)
    assert precision == pytest.approx(0.5)
    assert 0 < recall < 1
    assert formulas.precision_recall(real, fake, batch_size=7) == (precision, recall)


# --- Class statistics of generated samples ---------------------------------------------------------------


def test_kl_to_uniform_of_hand_made_histograms():
    assert formulas.kl_to_uniform([5] * 10) == 0.0
    assert formulas.kl_to_uniform([7, 0, 0, 0, 0, 0, 0, 0, 0, 0]) == pytest.approx(math.log(10), abs=1e-12)
    assert formulas.kl_to_uniform([4, 4, 0, 0]) == pytest.approx(math.log(2), abs=1e-12)
    # p = (3/4, 1/4) against (1/2, 1/2): 3/4 ln(3/2) + 1/4 ln(1/2)
    assert formulas.kl_to_uniform([3, 1]) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-12)
    for bad in ([0, 0], [-1, 2], [[1, 2]]):
        with pytest.raises(ValueError, match="histogram"):
            formulas.kl_to_uniform(bad)


def one_hot_probabilities(predicted, classes):
    """Softmax-like rows whose argmax is `predicted`."""
    probabilities = np.full((len(predicted), classes), 0.5 / (classes - 1))
    probabilities[np.arange(len(predicted)), predicted] = 0.5
    return probabilities


def test_class_statistics_count_classes_and_requested_accuracy():
    probabilities = one_hot_probabilities([0, 0, 1, 3], classes=5)  # histogram (2, 1, 0, 1, 0)
    unconditional = formulas.class_statistics(probabilities)
    assert unconditional["classes_present"] == 3 and "class_accuracy" not in unconditional
    # p = (1/2, 1/4, 0, 1/4, 0) against 1/5 each
    expected_kl = 0.5 * math.log(0.5 * 5) + 2 * 0.25 * math.log(0.25 * 5)
    assert unconditional["class_kl_uniform"] == pytest.approx(expected_kl, abs=1e-12)
    conditional = formulas.class_statistics(probabilities, requested_labels=[0, 1, 1, 3])
    assert conditional["class_accuracy"] == 0.75
    assert conditional["classes_present"] == 3 and conditional["class_kl_uniform"] == unconditional["class_kl_uniform"]


def test_format_class_statistics_names_the_classifier():
    results = {"class_accuracy": 0.5, "classes_present": 7, "class_kl_uniform": 0.25, "n_samples": 64,
               "class_classifier": "MNIST classifier"}
    assert formulas.format_class_statistics(results) == (
        "requested-class accuracy 0.5000, classes present 7, KL(class histogram || uniform) 0.2500 nats "
        "[MNIST classifier, n=64]")


def test_the_formulas_import_no_tensorflow():
    """evaluation/formulas.py promises NumPy only, so saved features can be scored where TensorFlow is absent."""
    code = "import sys, evaluation.formulas; print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
