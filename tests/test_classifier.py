"""evaluation/classifier.py: the domain classifiers' command line for Fashion-MNIST and CIFAR-10, and an MNIST
classifier trained for a few seconds on a slice of MNIST serving its penultimate features."""

import json

import numpy as np
import pytest
from conftest import EMBEDDED_MNIST, SHARED_DATA, idx_bytes
from PIL import Image

from datasets import formats
from evaluation import classifier as classifier_training
from evaluation import extractors, formulas
from runtime.errors import UserError

MNIST_DIRS = (SHARED_DATA / "mnist", EMBEDDED_MNIST)


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
