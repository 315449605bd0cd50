"""--eval, --fid_every and --keep_best on a tiny MNIST GAN with a briefly trained classifier."""

import json
import os

import numpy as np
import pytest
from conftest import EMBEDDED_MNIST, tiny_config

import data
import evaluation
import main
import metrics
import train
from errors import UserError


@pytest.fixture(scope="module")
def classifier_root(tmp_path_factory):
    """An out_dir whose checkpoint/ holds an MNIST classifier trained for 150 steps."""
    out_dir = tmp_path_factory.mktemp("eval")
    images, labels = data.load_mnist_like(str(EMBEDDED_MNIST))
    test = data.load_mnist_like(str(EMBEDDED_MNIST), split="test")
    metrics.train_classifier("mnist", (images[:3000], labels[:3000]), (test[0][:500], test[1][:500]),
                             checkpoint_dir=str(out_dir / "checkpoint"), steps=150, log=lambda *a: None)
    return out_dir


def eval_config(out_dir, **overrides):
    values = dict(out_dir=str(out_dir), output_height=28, eval_samples=64, max_steps=3, sample_freq=100)
    values.update(overrides)
    return tiny_config(out_dir, **values)


def test_fid_during_training_goes_to_tensorboard_and_keeps_best(classifier_root):
    from test_train import event_tags

    config = eval_config(classifier_root, fid_every=1, keep_best=True)
    train.train(config)
    tags = event_tags(config.log_path)
    fid_tags = [t for t in tags if t.startswith("quality/fid")]
    assert fid_tags == ["quality/fid [classifier penultimate layer (MNIST classifier features)]"]
    with open(os.path.join(config.checkpoint_path, "best", "best.json")) as f:
        best = json.load(f)
    assert best["extractor"].endswith("(MNIST classifier features)")
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


def test_eval_without_a_feature_network_says_how_to_get_one(tmp_path):
    config = tiny_config(tmp_path, dataset="mnist", output_height=28, eval=True)
    with pytest.raises(UserError, match="no feature extractor for dataset 'mnist'.*--train_classifier mnist"):
        main.run(config)


def test_keep_best_requires_fid_every(tmp_path):
    with pytest.raises(UserError, match="--keep_best needs --fid_every"):
        tiny_config(tmp_path, keep_best=True)


def test_real_images_match_training_preprocessing(tmp_path):
    config = tiny_config(tmp_path, output_height=16, batch_size=8)
    images = evaluation.real_images_uint8(config, 20)
    assert images.shape == (20, 16, 16, 1) and images.dtype == np.uint8
