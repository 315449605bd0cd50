"""evaluation/quality.py: --eval, --fid_every and --keep_best on a tiny MNIST GAN with a briefly trained
classifier, the real images as training preprocesses them, and the real-statistics cache's key."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    EMBEDDED_MNIST,
    CountingExtractor,
    cifar_records,
    eval_config,
    event_tags,
    tiny_config,
    write_cifar_class_folders,
    write_jpegs,
)

import main
import utils
from datasets import formats
from datasets import pipeline as data
from evaluation import extractors, formulas
from evaluation import quality as evaluation
from runtime.errors import UserError
from training import train
from training.inference import restored_generator

v1 = tf.compat.v1


def test_fid_during_training_goes_to_tensorboard_and_keeps_best(classifier_root):
    config = eval_config(classifier_root, fid_every=1, keep_best=True)
    train.train(config)
    tags = event_tags(config.log_path)
    fid_tags = [t for t in tags if t.startswith("quality/fid")]
    assert fid_tags == ["quality/fid [classifier penultimate layer (MNIST classifier features)]"]
    assert {f"quality/{key} [MNIST classifier]" for key in evaluation.CLASS_STATISTICS} <= tags
    with open(os.path.join(config.checkpoint_path, "best", "best.json")) as f:
        best = json.load(f)
    assert best["extractor"].endswith("(MNIST classifier features)")
    assert 0 <= best["class_accuracy"] <= 1 and 1 <= best["classes_present"] <= 10
    assert np.isfinite(best["fid"]) and best["n_samples"] == 64
    assert os.path.exists(best["checkpoint"] + ".index")
    # real statistics were cached once, keyed by dataset, size and extractor digest
    cached = os.listdir(os.path.join(classifier_root, "checkpoint", "real_statistics"))
    assert len(cached) == 1 and "28x28" in cached[0]


def test_eval_prints_table_and_writes_json(classifier_root, capsys):
    config = eval_config(classifier_root, max_steps=2, eval=True, batch_size=8)  # a run of its own
    train.train(config)
    main.run(config)
    table = capsys.readouterr().out
    assert "| FID |" in table and "(MNIST classifier features)" in table
    with open(os.path.join(config.sample_path, "eval_step_2.json")) as f:
        results = json.load(f)
    assert results["n_samples"] == 64 and 0 <= results["precision"] <= 1 and results["fid"] > 0
    # The class statistics are those of the evaluated samples, regenerated here, under the MNIST classifier.
    with restored_generator(config) as restored:
        fakes = evaluation.generate_uint8(restored.session, restored.generator, restored.config, 64, config.seed + 2)
    classifier = extractors.domain_classifier("mnist", os.path.join(classifier_root, "checkpoint"))
    expected = formulas.class_statistics(classifier.class_probabilities(fakes), np.arange(64) % 10)
    assert {key: results[key] for key in expected} == expected and results["class_classifier"] == "MNIST classifier"
    assert formulas.format_class_statistics(results) in table


def test_requested_class_accuracy_of_real_test_images_is_the_classifier_accuracy(classifier_root):
    classifier = extractors.domain_classifier("mnist", os.path.join(classifier_root, "checkpoint"))
    with open(os.path.join(classifier_root, "checkpoint", "classifier_mnist", "classifier.json")) as f:
        measured_when_trained = json.load(f)["test_accuracy"]  # on the first 500 test images
    images, labels = formats.load_mnist_like(str(EMBEDDED_MNIST), split="test")
    probabilities = classifier.class_probabilities(images[:500])
    statistics = formulas.class_statistics(probabilities, labels[:500])
    assert statistics["class_accuracy"] == measured_when_trained > 0.5
    assert statistics["classes_present"] == 10
    shifted = formulas.class_statistics(probabilities, (labels[:500] + 1) % 10)  # every request wrong
    assert shifted["class_accuracy"] < 0.2


class RealImagesGenerator:
    """Stands in for G: returns the given real images whatever z, so the expected classes are known."""

    def __init__(self, images):
        self.images = images

    def generate(self, session, z, labels=None, chunk=256):
        assert labels is None  # an unconditional model gets no labels
        return self.images[:len(z)]


def test_unconditional_model_gets_classes_present_and_kl_but_no_accuracy(classifier_root):
    config = dataclasses.replace(eval_config(classifier_root), y_dim=0)
    images, labels = formats.load_mnist_like(str(EMBEDDED_MNIST), split="test")
    ones_and_sevens = images[np.isin(labels, [1, 7])][:64]  # a generator collapsed onto two classes
    results = evaluation.QualityMeter(config).measure(None, RealImagesGenerator(ones_and_sevens))
    assert "class_accuracy" not in results
    predicted = extractors.domain_classifier("mnist", os.path.join(classifier_root, "checkpoint")).class_probabilities(
        ones_and_sevens).argmax(axis=1)
    counts = np.bincount(predicted, minlength=10)
    assert results["classes_present"] == np.count_nonzero(counts) < 10
    assert results["class_kl_uniform"] == pytest.approx(formulas.kl_to_uniform(counts), abs=1e-12)
    assert results["class_kl_uniform"] > 0.5 * np.log(5)  # mostly 2 of 10 classes: near ln 5


def test_eval_without_a_feature_network_says_how_to_get_one(tmp_path):
    config = tiny_config(tmp_path, dataset="mnist", output_height=28, eval=True)
    with pytest.raises(UserError, match="no feature extractor for dataset 'mnist'.*--train_classifier mnist"):
        main.run(config)


def test_keep_best_requires_fid_every(tmp_path):
    with pytest.raises(UserError, match="--keep_best needs --fid_every"):
        tiny_config(tmp_path, keep_best=True)


def training_pipeline_uint8(config, batches):
    """`batches` batches of the training input pipeline, quantized back to uint8."""
    with tf.Graph().as_default():
        pipeline = data.input_batches(data.open_source(config), config)
        with v1.Session() as session:
            session.run(pipeline.initializer, pipeline.feed_dict)
            return utils.to_uint8(np.concatenate([session.run(pipeline.images) for _ in range(batches)]))


def sorted_by_bytes(images):
    return sorted(image.tobytes() for image in images)


@pytest.mark.parametrize("dataset", ["celebA", "mnist"])
def test_real_images_match_training_preprocessing(tmp_path, generated_celeba_dir, dataset):
    """One epoch of the (shuffled) training pipeline holds exactly the images evaluation reads in order."""
    if dataset == "celebA":  # files: crop 54 of 89x109 JPEGs, resize to 16x16, RGB
        config = tiny_config(tmp_path, dataset="celebA", data_dir=str(generated_celeba_dir), input_height=54,
                             crop=True, c_dim=3, batch_size=8, train_size=0)
        count = 24
    else:  # arrays: MNIST resized from 28x28 to 16x16
        config = tiny_config(tmp_path, batch_size=8, train_size=64)
        count = 64
    images = evaluation.real_images_uint8(config, count)
    assert images.dtype == np.uint8 and images.shape == (count, 16, 16, config.c_dim)
    assert sorted_by_bytes(images) == sorted_by_bytes(training_pipeline_uint8(config, count // 8))
    assert np.array_equal(evaluation.real_images_uint8(config, 10), images[:10])  # the first 10, whatever the seed
    other_crop = dataclasses.replace(config, crop=True, input_height=20, input_width=20)  # negative control
    assert sorted_by_bytes(images) != sorted_by_bytes(training_pipeline_uint8(other_crop, count // 8))


class RowMeans:
    """A stand-in feature network (exact and instant): the mean of each image row, per channel."""

    name = "row means"

    def __init__(self, digest):
        self.digest = digest

    def features(self, images):
        return images.astype(np.float64).mean(axis=2).reshape(len(images), -1)


@pytest.mark.parametrize("field, value", [
    ("crop", False), ("input_height", 40), ("input_width", 40), ("output_height", 32), ("output_width", 32),
    ("c_dim", 1), ("eval_samples", 12), ("dataset", "faces"), ("train_size", 20), ("extractor digest", "b" * 64),
])
def test_real_statistics_are_recomputed_when_anything_that_changes_them_changes(
        tmp_path, generated_celeba_dir, monkeypatch, field, value):
    shutil.copytree(generated_celeba_dir / "celebA", generated_celeba_dir / "faces")
    reads = []
    read_images = evaluation.real_images_uint8
    monkeypatch.setattr(evaluation, "real_images_uint8",
                        lambda config, count: reads.append(config) or read_images(config, count))
    flags = dict(dataset="celebA", data_dir=str(generated_celeba_dir), input_height=54, crop=True, c_dim=3,
                 eval_samples=16, train_size=0)
    config = tiny_config(tmp_path, **flags)
    first = evaluation.cached_real_statistics(config, RowMeans("a" * 64))
    # Seed and batch size change nothing (images are read in order): a cache hit.
    again = evaluation.cached_real_statistics(dataclasses.replace(config, seed=7, batch_size=8), RowMeans("a" * 64))
    assert len(reads) == 1 and np.array_equal(first["sigma"], again["sigma"])
    if field == "extractor digest":
        changed, extractor = config, RowMeans(value)
    else:
        changed, extractor = tiny_config(tmp_path, **{**flags, field: value}), RowMeans("a" * 64)
    evaluation.cached_real_statistics(changed, extractor)
    assert reads == [config, changed]
    assert len(os.listdir(os.path.join(config.out_dir, config.checkpoint_dir, "real_statistics"))) == 2


def test_real_statistics_follow_the_data_not_the_folder_name(tmp_path, monkeypatch):
    """Issue 24, bug 8: adding CIFAR-10's binary batches beside JPEG class folders changes what the data
    folder holds (formats.read_cifar10 prefers the batches), so the cached statistics of the JPEGs must not be
    reused; a file rewritten in place must not either.  Nothing changed: a cache hit."""

    directory = tmp_path / "data" / "cifar10"
    write_cifar_class_folders(directory / "train", {"cat": 4, "ship": 4}, suffix=".jpg")
    reads = []
    read_images = evaluation.real_images_uint8
    monkeypatch.setattr(evaluation, "real_images_uint8", lambda *args: reads.append(1) or read_images(*args))
    config = tiny_config(tmp_path, dataset="cifar10", data_dir=str(tmp_path / "data"), output_height=32,
                         eval_samples=8, train_size=0)
    jpegs = evaluation.cached_real_statistics(config, RowMeans("a" * 64))
    assert np.array_equal(evaluation.cached_real_statistics(config, RowMeans("a" * 64))["mu"], jpegs["mu"])
    assert len(reads) == 1
    batches = directory / "cifar-10-batches-bin"
    batches.mkdir()
    pixels = np.random.default_rng(5).integers(0, 256, (10, 3, 32, 32), dtype=np.uint8)
    for index in range(5):
        (batches / f"data_batch_{index + 1}.bin").write_bytes(
            cifar_records(pixels[2 * index:2 * index + 2], [index, index + 5]).tobytes())
    binary = evaluation.cached_real_statistics(config, RowMeans("a" * 64))
    assert len(reads) == 2 and not np.array_equal(binary["mu"], jpegs["mu"])
    expected = RowMeans("a" * 64).features(pixels[:8].transpose(0, 2, 3, 1)).mean(axis=0)
    assert np.allclose(binary["mu"], expected)
    (batches / "data_batch_1.bin").write_bytes(cifar_records(pixels[:3] // 2, [0, 5, 9]).tobytes())  # replaced
    evaluation.cached_real_statistics(config, RowMeans("a" * 64))
    assert len(reads) == 3


def test_real_statistics_cache_follows_the_content_of_the_files(tmp_path):
    folder = write_jpegs(tmp_path / "data" / "faces", count=8)
    config = tiny_config(tmp_path, dataset="faces", data_dir=str(tmp_path / "data"), c_dim=3, eval_samples=8,
                         train_size=0)
    extractor = CountingExtractor("a" * 64)
    first = evaluation.cached_real_statistics(config, extractor)
    evaluation.cached_real_statistics(config, extractor)
    assert extractor.calls == 1  # unchanged data: a cache hit
    write_jpegs(folder, count=1, seed=5)  # 000001.jpg rewritten in place: same path, new pixels
    changed = evaluation.cached_real_statistics(config, extractor)
    assert extractor.calls == 2 and not np.array_equal(first["mu"], changed["mu"])
    assert len(os.listdir(os.path.join(config.out_dir, config.checkpoint_dir, "real_statistics"))) == 2
