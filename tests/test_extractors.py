"""Tests of evaluation/formulas.py (closed forms) and extractors.py (the .pb loading path, the cache, the extractors).

Offline and small: the Inception graph is replaced by a stand-in with the
same tensor names, built and frozen here, and the classifier trains for a few
seconds on a slice of MNIST.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import EMBEDDED_MNIST, REPO, SHARED_DATA

from datasets import formats
from evaluation import classifier as classifier_training
from evaluation import extractors, formulas
from runtime.errors import UserError

v1 = tf.compat.v1

MNIST_DIRS = (SHARED_DATA / "mnist", EMBEDDED_MNIST)
STANDIN_FEATURES = 6
STANDIN_CLASSES = 5


# --- Fréchet distance -------------------------------------------------------------


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


# --- KID ------------------------------------------------------------------------


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


# --- Inception score ------------------------------------------------------------------


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


# --- Precision / recall ---------------------------------------------------------------


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


# --- Inception graph loading via a stand-in .pb ---------------------------------------


def _standin_graph():
    """A frozen graph with TTUR's tensor names and quirks: batch fixed to 1 at 'ExpandDims', in-graph
    ResizeBilinear, 'pool_3' shaped [N, 1, 1, D], a [1, D] Reshape before 'softmax/logits/MatMul'."""
    rng = np.random.default_rng(8)
    with tf.Graph().as_default() as graph:
        images = v1.placeholder(tf.float32, [1, None, None, 3], name="ExpandDims")
        resized = v1.image.resize_bilinear(images, [8, 8], name="ResizeBilinear")
        kernel = tf.constant(rng.normal(size=(3, 3, 3, STANDIN_FEATURES)).astype(np.float32))
        hidden = tf.nn.relu(tf.nn.conv2d((resized - 128.0) / 128.0, kernel, 1, "SAME"))
        pool3 = tf.reduce_mean(hidden, [1, 2], keepdims=True, name="pool_3")
        flat = tf.reshape(pool3, [1, STANDIN_FEATURES], name="pool_3/_reshape")
        weights = rng.normal(size=(STANDIN_FEATURES, STANDIN_CLASSES)).astype(np.float32)
        logits = tf.matmul(flat, tf.constant(weights), name="softmax/logits/MatMul") + 1.0
        tf.nn.softmax(logits, name="softmax")
    return graph, weights


@pytest.fixture(scope="module")
def standin_pb(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "classify_image_graph_def.pb"
    graph, weights = _standin_graph()
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path, graph, weights


def test_inception_extractor_reads_pool3_through_the_graph_resize_for_any_batch(standin_pb):
    path, graph, weights = standin_pb
    extractor = extractors.InceptionGraphExtractor(str(path))
    images = np.random.default_rng(9).integers(0, 256, size=(5, 12, 10, 3), dtype=np.uint8)
    features, probs = extractor.features_and_probabilities(images)

    with v1.Session(graph=graph) as session:  # the stand-in itself, one image at a time as its shape demands
        direct = np.concatenate([session.run("pool_3:0", {"ExpandDims:0": images[i:i + 1].astype(np.float32)})
                                 for i in range(len(images))]).reshape(len(images), -1)
    np.testing.assert_allclose(features, direct, rtol=1e-5, atol=1e-6)
    logits = direct @ weights  # improved-gan's IS softmax: pool_3 times the MatMul weights, no bias
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    assert extractor.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert extractor.name == "Inception pool_3 (TTUR graph)"
    assert extractor.resize == "inception/ResizeBilinear: ResizeBilinear to 8x8 " \
                               "(align_corners=False, half_pixel_centers=False)"


def test_inception_extractor_repeats_grayscale_to_three_channels(standin_pb):
    extractor = extractors.InceptionGraphExtractor(str(standin_pb[0]))
    gray = np.random.default_rng(10).integers(0, 256, size=(3, 9, 9, 1), dtype=np.uint8)
    np.testing.assert_array_equal(extractor.features(gray), extractor.features(np.repeat(gray, 3, axis=-1)))
    with pytest.raises(ValueError, match="uint8"):
        extractor.features(gray.astype(np.float32))


def test_inception_extractor_names_the_flag_for_missing_corrupt_or_foreign_graphs(tmp_path):
    with pytest.raises(UserError, match="--inception_graph .*cannot read"):
        extractors.load_extractor("celebA", inception_graph=str(tmp_path / "missing.pb"))
    corrupt = tmp_path / "corrupt.pb"
    corrupt.write_bytes(b"\xff" * 64)
    with pytest.raises(UserError, match="--inception_graph .*not a TensorFlow GraphDef"):
        extractors.InceptionGraphExtractor(str(corrupt))
    with tf.Graph().as_default() as graph:
        v1.placeholder(tf.float32, [None, 4], name="ExpandDims")
    foreign = tmp_path / "foreign.pb"
    foreign.write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(UserError, match="--inception_graph .*not TTUR's Inception graph"):
        extractors.InceptionGraphExtractor(str(foreign))


def test_evaluate_gives_every_metric_and_format_table_labels_the_extractor(standin_pb):
    extractor = extractors.InceptionGraphExtractor(str(standin_pb[0]))
    rng = np.random.default_rng(11)
    real = rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    stats = extractors.statistics_from_images(extractor, real)
    same = extractors.evaluate(real, stats, extractor)
    assert same["fid"] == pytest.approx(0, abs=1e-3)
    assert (same["precision"], same["recall"], same["n_samples"]) == (1.0, 1.0, 40)
    dark = extractors.evaluate(real // 4, stats, extractor)
    assert dark["fid"] > 0.01 and dark["kid_mean"] > 0
    assert set(dark) == {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall", "n_samples",
                         "extractor"}
    table = formulas.format_table([("real", same), ("darkened", dark)])
    assert table.count("Inception pool_3 (TTUR graph)") == 2
    assert f"{dark['fid']:.3f}" in table
    assert "generated samples" in formulas.format_table(dark)


# --- Cached real statistics --------------------------------------------------------------


class _CountingExtractor:
    """Features = flattened pixels; counts calls so the tests can tell a cache hit from a miss."""

    name = "pixels"

    def __init__(self, digest):
        self.digest = digest
        self.calls = 0

    def features(self, images):
        self.calls += 1
        return images.reshape(len(images), -1).astype(np.float32)


def test_real_statistics_round_trip_through_the_npz_cache(tmp_path):
    images = np.random.default_rng(12).integers(0, 256, size=(10, 2, 2, 1), dtype=np.uint8)
    extractor = _CountingExtractor("a" * 64)
    first = extractors.real_statistics(extractor, lambda: images, str(tmp_path), "mnist", 28)

    def must_not_load():
        raise AssertionError("the cache was not used")

    second = extractors.real_statistics(extractor, must_not_load, str(tmp_path), "mnist", 28)
    assert extractor.calls == 1
    for key in ("mu", "sigma", "features"):
        np.testing.assert_array_equal(first[key], second[key])
    assert os.listdir(tmp_path) == [os.path.basename(extractors.statistics_cache_path(str(tmp_path), "mnist", 28,
                                                                                    extractor.digest))]

    other = _CountingExtractor("b" * 64)
    extractors.real_statistics(other, images, str(tmp_path), "mnist", 28)
    assert other.calls == 1  # a different network never reuses the first one's numbers
    assert len(os.listdir(tmp_path)) == 2
    assert extractors.statistics_cache_path("c", "mnist", 28, "a" * 64) != extractors.statistics_cache_path(
        "c", "mnist", 64, "a" * 64)


def test_real_statistics_recomputes_an_unreadable_cache_file(tmp_path):
    images = np.random.default_rng(13).integers(0, 256, size=(6, 2, 2, 1), dtype=np.uint8)
    extractor = _CountingExtractor("d" * 64)
    Path(extractors.statistics_cache_path(str(tmp_path), "mnist", 28, extractor.digest)).write_bytes(b"truncated")
    stats = extractors.real_statistics(extractor, images, str(tmp_path), "mnist", 28)
    assert extractor.calls == 1
    assert stats["features"].shape == (6, 4)


# --- Choosing an extractor, and the MNIST classifier ---------------------------------------


def test_load_extractor_explains_how_to_get_one_when_there_is_none(tmp_path):
    with pytest.raises(UserError, match="no feature extractor for dataset 'celebA'.*--inception_graph PATH.*"
                                        "download.py inception"):
        extractors.load_extractor("celebA", checkpoint_dir=str(tmp_path))
    with pytest.raises(UserError, match="--train_classifier mnist"):
        extractors.load_extractor("mnist", checkpoint_dir=str(tmp_path))
    with pytest.raises(UserError, match="no trained classifier"):
        extractors.ClassifierExtractor(str(tmp_path), "mnist")


@pytest.fixture(scope="module")
def mnist_slice():
    directory = next((d for d in MNIST_DIRS if d.is_dir()), None)
    if directory is None:
        pytest.skip("no MNIST IDX files in ../shared/data/mnist or embedded_data/mnist")
    images, labels = formats.load_mnist_like(str(directory), "test")
    return (images[:2000], labels[:2000]), (images[2000:2500], labels[2000:2500])


@pytest.fixture(scope="module")
def trained_classifier(mnist_slice, tmp_path_factory):
    checkpoint_dir = tmp_path_factory.mktemp("checkpoint")
    train, test = mnist_slice
    accuracy = classifier_training.train_classifier("mnist", train, test, checkpoint_dir=str(checkpoint_dir), steps=150,
                                        log=lambda message: None)
    return checkpoint_dir, accuracy


def test_classifier_trains_and_serves_penultimate_features(trained_classifier, mnist_slice):
    checkpoint_dir, accuracy = trained_classifier
    assert accuracy > 0.8  # 150 steps on 2000 digits; a broken net or label mix-up stays near 0.1
    info = json.loads((checkpoint_dir / "classifier_mnist" / "classifier.json").read_text())
    assert info["test_accuracy"] == accuracy
    extractor = extractors.load_extractor("mnist", checkpoint_dir=str(checkpoint_dir))
    assert isinstance(extractor, extractors.ClassifierExtractor)
    assert "(MNIST classifier features)" in extractor.name
    assert extractor.digest == info["digest"]
    images = mnist_slice[1][0][:7]
    features, probs = extractor.features_and_probabilities(images)
    assert features.shape == (7, extractors.CLASSIFIER_FEATURES)
    assert probs.shape == (7, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    with pytest.raises(UserError, match="28x28x1"):
        extractor.features(np.zeros((2, 32, 32, 1), np.uint8))


def test_a_classifier_for_one_dataset_is_never_used_for_another(trained_classifier):
    with pytest.raises(UserError, match="no feature extractor for dataset 'fashion'"):
        extractors.load_extractor("fashion", checkpoint_dir=str(trained_classifier[0]))


def test_the_formulas_import_no_tensorflow():
    """evaluation/formulas.py promises NumPy only, so saved features can be scored where TensorFlow is absent."""
    code = "import sys, evaluation.formulas; print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
