"""training/train.py, the loop: what a run writes, resume bit for bit, seeds, the step schedule's epochs, NaN
losses, and the recipes and CPU switches that must train."""

import csv
import dataclasses
import os

import imageio.v2 as imageio
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_same_tensors, event_tags, loss_rows, tiny_config

from bench.faults.runs import checkpoint_values
from datasets import pipeline as data
from model import DCGAN
from runtime.errors import TrainingDiverged
from training import losses, train
from training.checkpoints import checkpoint_paths

v1 = tf.compat.v1


def test_training_writes_samples_checkpoints_summaries_and_curves(tmp_path):
    config = tiny_config(tmp_path, max_steps=3)
    assert train.train(config) == 3

    samples = sorted(f for f in os.listdir(config.sample_path) if f.startswith("train_"))
    assert samples == ["train_00_0001.png", "train_00_0002.png", "train_00_0003.png"]
    grid = imageio.imread(os.path.join(config.sample_path, samples[-1]))
    # 6 samples of 16x16 -> 2 rows x 3 columns with 1 px padding
    assert grid.shape[:2] == (2 * 16 + 1, 3 * 16 + 2)
    assert len(np.unique(grid)) > 2  # a real picture, not a blank

    curves = imageio.imread(os.path.join(config.sample_path, "loss_curves.png"))
    assert curves.ndim == 3 and curves.shape[0] > 100
    with open(os.path.join(config.sample_path, "losses.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(np.isfinite(float(r["d_loss"])) for r in rows)

    assert [os.path.basename(p) for p in checkpoint_paths(config.checkpoint_path)] == [
        "DCGAN.model-3", "DCGAN.model-2", "DCGAN.model-1"]
    tags = event_tags(config.log_path)
    for tag in ("d_loss", "d_loss_real", "d_loss_fake", "g_loss", "D_x", "D_G_z", "D_x_histogram",
                "D_G_z_histogram", "G_z"):
        assert tag in tags, f"summary {tag} missing from {sorted(tags)}"


def test_resume_continues_from_saved_step_with_identical_state(tmp_path):
    config = tiny_config(tmp_path, max_steps=2)
    train.train(config)
    saved = checkpoint_values(checkpoint_paths(config.checkpoint_path)[0])
    assert int(saved["global_step"]) == 2
    assert any("adam" in name.lower() for name in saved)  # optimizer slots are saved

    # Restarting with nothing left to do restores and leaves the checkpoint as it was.
    assert train.train(config) == 2
    assert [os.path.basename(p) for p in checkpoint_paths(config.checkpoint_path)][0] == "DCGAN.model-2"

    # The restored session holds exactly the saved values, bit for bit.
    from model import DCGAN
    from training.checkpoints import Checkpoints
    with tf.Graph().as_default():
        images = tf.zeros([4, 16, 16, 1])
        gan = DCGAN(config, images, tf.zeros([4], tf.int64))
        with v1.Session() as session:
            session.run(gan.initializer)
            Checkpoints(config.checkpoint_path, gan.saver, config.architecture()).restore(session)
            restored = {v.op.name: session.run(v) for v in v1.global_variables()}
    assert set(restored) == set(saved)
    for name, value in saved.items():
        assert np.array_equal(restored[name], value), name

    # Training further resumes at step 2, not 0.
    longer = tiny_config(tmp_path, max_steps=4)
    assert train.train(longer) == 4
    with open(os.path.join(config.sample_path, "losses.csv")) as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == [1, 2, 3, 4]


@pytest.mark.parametrize("recipe", [{}, {"fused_update": True, "d_steps": 2, "label_flip": 0.1,
                                         "instance_noise": 0.1, "feature_matching": True}])
def test_same_seed_gives_the_same_run_bit_for_bit_and_another_seed_does_not(tmp_path, recipe):
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        config = tiny_config(tmp_path / name, max_steps=3, seed=seed, **recipe)
        train.train(config)
        runs[name] = (loss_rows(config), checkpoint_values(checkpoint_paths(config.checkpoint_path)[0]))
    assert runs["a"][0] == runs["b"][0]  # every logged row
    assert_same_tensors(runs["a"][1], runs["b"][1])  # every tensor of the last checkpoint
    assert runs["a"][0] != runs["c"][0]
    differing = [k for k in runs["a"][1] if not np.array_equal(runs["a"][1][k], runs["c"][1][k])]
    assert any(name.startswith("generator/") for name in differing)


@pytest.mark.parametrize("dataset, recipe", [("mnist", {}), ("folder", {}),
                                             ("mnist", {"diffaugment": "color,translation,cutout"})],
                         ids=["mnist", "folder", "mnist-diffaugment"])
def test_resumed_run_equals_the_uninterrupted_run_bit_for_bit(tmp_path, dataset, recipe, generated_celeba_dir):
    folder = {"dataset": "celebA", "data_dir": str(generated_celeba_dir), "crop": True, "input_height": 54,
              "train_size": 24}
    overrides = dict(recipe, **({} if dataset == "mnist" else folder))
    # 4 steps of batch 4 over 24 (folder) or 64 (MNIST) examples: the folder run crosses an epoch boundary.
    whole = tiny_config(tmp_path / "whole", max_steps=4, ckpt_freq=4, **overrides)
    train.train(whole)
    first_half = tiny_config(tmp_path / "split", max_steps=2, ckpt_freq=2, **overrides)
    train.train(first_half)
    resumed = tiny_config(tmp_path / "split", max_steps=4, ckpt_freq=4, **overrides)
    assert train.train(resumed) == 4
    assert loss_rows(whole) == loss_rows(resumed)
    assert_same_tensors(checkpoint_values(checkpoint_paths(whole.checkpoint_path)[0]),
                        checkpoint_values(checkpoint_paths(resumed.checkpoint_path)[0]))


def test_image_folder_dataset_trains_unconditionally(tmp_path, celeba_like_dir):
    config = tiny_config(tmp_path, dataset="celebA", data_dir=str(celeba_like_dir), input_height=54, crop=True,
                         output_height=16, max_steps=2)
    assert not config.conditional
    train.train(config)
    grid = imageio.imread(os.path.join(config.sample_path, "train_00_0002.png"))
    assert grid.shape == (33, 50, 3)


def test_nan_loss_stops_without_saving_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, max_steps=2)
    train.train(config)
    good = checkpoint_values(checkpoint_paths(config.checkpoint_path)[0])

    original = losses.generator_loss
    monkeypatch.setattr(losses, "generator_loss", lambda kind, logits: original(kind, logits) * np.nan)
    with pytest.raises(TrainingDiverged, match=r"step 3: .*g_loss=nan.*DCGAN.model-2 \(step 2\)"):
        train.train(tiny_config(tmp_path, max_steps=5))
    paths = checkpoint_paths(config.checkpoint_path)
    assert os.path.basename(paths[0]) == "DCGAN.model-2"
    after = checkpoint_values(paths[0])
    assert all(np.array_equal(good[k], after[k]) for k in good)


@pytest.mark.parametrize("switch", [{"data_format": "NCHW"}, {"mixed_precision": True}, {"xla": True}])
def test_gpu_oriented_switches_train_on_cpu_too(tmp_path, switch):
    config = tiny_config(tmp_path, max_steps=2, **switch)
    assert train.train(config) == 2
    values = checkpoint_values(checkpoint_paths(config.checkpoint_path)[0])
    assert all(np.all(np.isfinite(v)) for v in values.values() if np.issubdtype(np.asarray(v).dtype, np.floating))


@pytest.mark.parametrize("recipe", [
    {"d_steps": 1, "g_steps": 2},
    {"d_steps": 2, "g_steps": 1, "feature_matching": True},
    {"d_steps": 1, "g_steps": 2, "fused_update": True, "d_batchnorm": "combined"},
])
def test_one_epoch_of_steps_reads_each_example_exactly_once(tmp_path, recipe):
    config = tiny_config(tmp_path, train_size=16, **recipe)  # conditional MNIST, batch 4
    source = data.open_source(config)
    config = dataclasses.replace(config, c_dim=source.c_dim)
    schedule = train.Schedule(config, source.num_examples)
    assert schedule.steps_per_epoch * schedule.images_per_step == 16
    with tf.Graph().as_default():
        batches = data.input_batches(source, config, epochs=1)  # a stream of exactly one epoch
        gan = DCGAN(config, batches.images, batches.labels)
        # D's real batches, as D's update saw them, gathered from every run of the step plan.
        seen = []
        with v1.Session() as session:
            session.run(gan.initializer)
            batches.initialize(session)
            for _ in range(schedule.steps_per_epoch):
                for fetches, _summary in train.step_plan(config, gan):
                    if "d_applied" in fetches:
                        session.run(fetches)
                        seen.append(session.run(gan.last_real_images))
                    else:
                        session.run(fetches)
            with pytest.raises(tf.errors.OutOfRangeError):  # nothing was left: no update read an extra batch
                session.run(batches.images)
    with tf.Graph().as_default():  # the epoch as the pipeline alone gives it, batch after batch
        batches = data.input_batches(source, config, epochs=1)
        with v1.Session() as session:
            batches.initialize(session)
            epoch = [session.run(batches.images) for _ in range(16 // config.batch_size)]

    def rows(images):
        return sorted(np.concatenate(images).reshape(16, -1).tolist())

    assert len({tuple(r) for r in rows(epoch)}) == 16  # 16 distinct examples
    assert rows(seen) == rows(epoch)  # D saw each of them once, none twice


@pytest.mark.parametrize("recipe", [
    {"loss": "least_squares"}, {"loss": "hinge", "r1_gamma": 1.0}, {"loss": "minimax"},
    {"loss": "wasserstein", "gp_lambda": 10.0, "beta1": 0.0, "beta2": 0.9, "d_steps": 2},
    {"kernel_size": 4, "fused_update": True, "g_steps": 1}, {"minibatch_stddev": True, "d_batchnorm": "combined"},
    {"y_dim": 0},
])
def test_each_recipe_trains_with_finite_weights(tmp_path, recipe):
    config = tiny_config(tmp_path, **recipe)
    assert train.train(config) == 2
    from training.checkpoints import checkpoint_paths

    reader = tf.train.load_checkpoint(checkpoint_paths(config.checkpoint_path)[0])
    values = [reader.get_tensor(n) for n in reader.get_variable_to_shape_map()]
    assert all(np.all(np.isfinite(v)) for v in values if np.issubdtype(np.asarray(v).dtype, np.floating))
