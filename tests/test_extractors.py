"""evaluation/extractors.py: the Inception .pb loading path, evaluate(), the real-statistics cache, and which
extractor a dataset gets (the classifier itself: test_classifier.py; the closed forms: test_formulas.py).

Offline and small: the Inception graph is replaced by a stand-in with the same tensor names, built and frozen
here.
"""

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import CountingExtractor

from evaluation import extractors, formulas
from runtime.errors import UserError

v1 = tf.compat.v1

STANDIN_FEATURES = 6
STANDIN_CLASSES = 5


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


def test_real_statistics_round_trip_through_the_npz_cache(tmp_path):
    images = np.random.default_rng(12).integers(0, 256, size=(10, 2, 2, 1), dtype=np.uint8)
    extractor = CountingExtractor("a" * 64)
    first = extractors.real_statistics(extractor, lambda: images, str(tmp_path), "mnist", 28)

    def must_not_load():
        raise AssertionError("the cache was not used")

    second = extractors.real_statistics(extractor, must_not_load, str(tmp_path), "mnist", 28)
    assert extractor.calls == 1
    for key in ("mu", "sigma", "features"):
        np.testing.assert_array_equal(first[key], second[key])
    assert os.listdir(tmp_path) == [os.path.basename(extractors.statistics_cache_path(str(tmp_path), "mnist", 28,
                                                                                    extractor.digest))]

    other = CountingExtractor("b" * 64)
    extractors.real_statistics(other, images, str(tmp_path), "mnist", 28)
    assert other.calls == 1  # a different network never reuses the first one's numbers
    assert len(os.listdir(tmp_path)) == 2
    assert extractors.statistics_cache_path("c", "mnist", 28, "a" * 64) != extractors.statistics_cache_path(
        "c", "mnist", 64, "a" * 64)


def test_real_statistics_recomputes_an_unreadable_cache_file(tmp_path):
    images = np.random.default_rng(13).integers(0, 256, size=(6, 2, 2, 1), dtype=np.uint8)
    extractor = CountingExtractor("d" * 64)
    Path(extractors.statistics_cache_path(str(tmp_path), "mnist", 28, extractor.digest)).write_bytes(b"truncated")
    stats = extractors.real_statistics(extractor, images, str(tmp_path), "mnist", 28)
    assert extractor.calls == 1
    assert stats["features"].shape == (6, 4)


# --- Choosing an extractor ---------------------------------------------------------------


def test_load_extractor_explains_how_to_get_one_when_there_is_none(tmp_path):
    with pytest.raises(UserError, match="no feature extractor for dataset 'celebA'.*--inception_graph PATH.*"
                                        "download.py inception"):
        extractors.load_extractor("celebA", checkpoint_dir=str(tmp_path))
    with pytest.raises(UserError, match="--train_classifier mnist"):
        extractors.load_extractor("mnist", checkpoint_dir=str(tmp_path))
    with pytest.raises(UserError, match="no trained classifier"):
        extractors.ClassifierExtractor(str(tmp_path), "mnist")
