"""Class statistics of generated samples (formulas.class_statistics) against hand-computed values, and the
Fashion-MNIST and CIFAR-10 domain classifiers' command line."""

import json
import math

import numpy as np
import pytest
from PIL import Image
from test_pipeline import idx_bytes

from datasets import formats
from evaluation import classifier as classifier_training
from evaluation import extractors, formulas
from runtime.errors import UserError


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


def test_train_classifier_fashion_reads_the_fashion_mnist_layout_and_reports_test_accuracy(tmp_path, capsys):
    folder = tmp_path / "data" / "fashion-mnist"  # Zalando's repository name, as in ../shared/data
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, count in (("train", 64), ("t10k", 40)):
        (folder / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(rng.integers(0, 256, (count, 28, 28))))
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(count) % 10))
    checkpoint_dir = str(tmp_path / "checkpoint")
    assert classifier_training.main(["--train_classifier", "fashion", "--data_dir", str(tmp_path / "data"),
                         "--checkpoint_dir", checkpoint_dir, "--steps", "5"]) == 0
    with open(tmp_path / "checkpoint" / "classifier_fashion" / "classifier.json") as f:
        info = json.load(f)
    assert info["dataset"] == "fashion" and info["test_images"] == 40 and info["train_images"] == 64
    assert f"test accuracy {info['test_accuracy']:.4f} on 40 Fashion-MNIST test images" in capsys.readouterr().out
    classifier = extractors.domain_classifier("fashion", checkpoint_dir)
    test_images, test_labels = formats.load_mnist_like(str(folder), "test", "fashion")
    recomputed = formulas.class_statistics(classifier.class_probabilities(test_images), test_labels)
    assert recomputed["class_accuracy"] == info["test_accuracy"]
    assert extractors.domain_classifier("mnist", checkpoint_dir) is None  # never another dataset's classifier


def test_train_classifier_cifar10_learns_class_folders_and_names_its_training_data(tmp_path, capsys):
    # Ten classes told apart by colour (plus noise): a working network and label wiring get them right quickly.
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (10, 3))
    for split, per_class in (("train", 12), ("test", 4)):
        for label, name in enumerate(formats.CIFAR10_CLASSES):
            (tmp_path / "data" / "cifar10" / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = np.clip(palette[label] + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(tmp_path / "data" / "cifar10" / split / name / f"{i:04d}.png")
    checkpoint_dir = str(tmp_path / "checkpoint")
    assert classifier_training.main(["--train_classifier", "cifar10", "--data_dir", str(tmp_path / "data"),
                         "--checkpoint_dir", checkpoint_dir, "--steps", "60"]) == 0
    info = json.loads((tmp_path / "checkpoint" / "classifier_cifar10" / "classifier.json").read_text())
    assert info["dataset"] == "cifar10" and (info["train_images"], info["test_images"]) == (120, 40)
    assert info["training_data"] == "PNG class folders" and info["test_accuracy"] >= 0.9  # chance is 0.1
    assert f"test accuracy {info['test_accuracy']:.4f} on 40 CIFAR-10 test images" in capsys.readouterr().out
    extractor = extractors.load_extractor("cifar10", checkpoint_dir=checkpoint_dir)
    assert extractor.name == ("classifier penultimate layer (CIFAR-10 classifier features, "
                              "trained on PNG class folders)")
    test_images, test_labels = formats.load_cifar10(str(tmp_path / "data" / "cifar10"), "test")
    features, probabilities = extractor.features_and_probabilities(test_images)
    assert features.shape == (40, extractors.CLASSIFIER_FEATURES) and probabilities.shape == (40, 10)
    assert formulas.class_statistics(probabilities, test_labels)["class_accuracy"] == info["test_accuracy"]
    with pytest.raises(UserError, match="the CIFAR-10 classifier takes 32x32x3 images"):
        extractor.features(np.zeros((2, 28, 28, 1), np.uint8))
    assert extractors.domain_classifier("mnist", checkpoint_dir) is None
    # A classifier.json describing other weights (another digest) names nothing.
    (tmp_path / "checkpoint" / "classifier_cifar10" / "classifier.json").write_text(
        json.dumps({**info, "digest": "0" * 64}))
    assert extractors.domain_classifier("cifar10", checkpoint_dir).name == (
        "classifier penultimate layer (CIFAR-10 classifier features)")
