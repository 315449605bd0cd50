import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, tiny_config

import model
from training import inference, updates

v1 = tf.compat.v1


def build(tmp_path, **overrides):
    config = tiny_config(tmp_path, **overrides)
    batch = config.batch_size
    rng = np.random.RandomState(0)
    images = tf.constant(rng.uniform(-1, 1, (batch, config.output_height, config.output_width, config.c_dim)),
                         tf.float32)
    labels = tf.constant(rng.randint(0, 10, batch), tf.int64) if config.conditional else None
    return config, model.DCGAN(config, images, labels)


def values(session, variables):
    return {v.name: session.run(v) for v in variables}


def changed(before, after):
    return {name for name in before if not np.array_equal(before[name], after[name])}


@pytest.mark.parametrize("dataset", ["mnist", "celebA"])
def test_each_train_op_touches_only_its_own_network(tmp_path, dataset):
    # The separate D and G runs (carpedm20's schedule); the fused run is tested in test_model_steps.py.
    overrides = dict(fused_update=False, g_steps=2, **({} if dataset == "mnist" else {"c_dim": 3}))
    with tf.Graph().as_default():
        _, gan = build(tmp_path, dataset=dataset, **overrides)
        g_vars = updates.scope_variables(model.GENERATOR_SCOPE, v1.GraphKeys.GLOBAL_VARIABLES)
        d_vars = updates.scope_variables(model.DISCRIMINATOR_SCOPE, v1.GraphKeys.GLOBAL_VARIABLES)
        trainable = set(v1.trainable_variables())
        assert trainable == set(updates.scope_variables(model.GENERATOR_SCOPE)) | set(
            updates.scope_variables(model.DISCRIMINATOR_SCOPE))
        with v1.Session() as session:
            session.run(gan.initializer)
            g_before, d_before = values(session, g_vars), values(session, d_vars)
            session.run(gan.d_train_op)
            g_after_d, d_after_d = values(session, g_vars), values(session, d_vars)
            session.run(gan.g_train_op)
            g_after_g, d_after_g = values(session, g_vars), values(session, d_vars)

    assert changed(g_before, g_after_d) == set(), "a D step changed G variables"
    assert changed(d_after_d, d_after_g) == set(), "a G step changed D variables"
    d_moved, g_moved = changed(d_before, d_after_d), changed(g_after_d, g_after_g)
    # every trainable variable of the stepped net moved, and so did its BN moving statistics
    assert {v.name for v in updates.scope_variables(model.DISCRIMINATOR_SCOPE)} <= d_moved
    assert {v.name for v in updates.scope_variables(model.GENERATOR_SCOPE)} <= g_moved
    assert any("moving_variance" in name for name in g_moved)
    # D always normalises with batch statistics: it keeps no moving averages to update, save or check.
    assert not any("moving" in v.name for v in d_vars)


def test_unassigned_update_op_is_refused(tmp_path):
    with tf.Graph().as_default():
        stray = v1.get_variable("stray", [1], initializer=v1.zeros_initializer())
        v1.add_to_collection(v1.GraphKeys.UPDATE_OPS, stray.assign_add([1.0], read_value=False))
        with pytest.raises(ValueError, match="AssignAddVariableOp"):
            build(tmp_path)


@pytest.mark.parametrize("dataset,size,channels", [("mnist", 28, 1), ("celebA", 32, 3)])
def test_generator_and_discriminator_shapes(tmp_path, dataset, size, channels):
    with tf.Graph().as_default():
        config, gan = build(tmp_path, dataset=dataset, output_height=size, c_dim=channels)
        assert gan.fake_images.shape.as_list()[1:] == [size, size, channels]
        with v1.Session() as session:
            session.run(gan.initializer)
            z = inference.fixed_z(7, config, seed=0)
            images = session.run(gan.sampler.images_uint8,
                                 gan.sampler.feed(z, inference.sample_labels(7, config)))
    assert images.shape == (7, size, size, channels) and images.dtype == np.uint8


def test_fixed_z_is_reproducible_and_in_range(tmp_path):
    config = tiny_config(tmp_path, z_dist="uniform")
    a, b = inference.fixed_z(5, config, 3), inference.fixed_z(5, config, 3)
    assert np.array_equal(a, b) and a.shape == (5, config.z_dim)
    assert a.min() >= -1 and a.max() <= 1
    assert not np.array_equal(a, inference.fixed_z(5, config, 4))


@pytest.mark.parametrize("dataset", ["mnist", "celebA"])
def test_discriminator_steps_lower_its_loss(tmp_path, dataset):
    overrides = {} if dataset == "mnist" else {"c_dim": 3}
    d_drops, g_drops = [], []
    for seed in (0, 1, 2):  # the drop depends on the initial weights: judge the mean over three
        with tf.Graph().as_default():
            v1.set_random_seed(seed)
            _, gan = build(tmp_path, dataset=dataset, learning_rate=2e-3, seed=seed, **overrides)
            with v1.Session() as session:
                session.run(gan.initializer)
                d_losses = [session.run([gan.d_train_op, gan.d_loss])[1] for _ in range(60)]
                g_losses = [session.run([gan.g_train_op, gan.g_loss])[1] for _ in range(60)]
        d_drops.append(np.mean(d_losses[:10]) - np.mean(d_losses[-10:]))
        g_drops.append(np.mean(g_losses[:10]) - np.mean(g_losses[-10:]))
    # Measured drops over seeds 0-3: D 0.06-0.08 on both; G (against the fixed D) 0.02-0.08 on
    # conditional MNIST, while on the tiny unconditional net G barely moves D's batch-normalized output.
    assert min(d_drops) > 0.02, d_drops
    if dataset == "mnist":
        assert np.mean(g_drops) > 0.02, g_drops


def test_sampling_and_checkpoints_do_not_import_the_training_graph():
    # model.py builds on them (its sampler is an InferenceGenerator), so they must not build on it: the tools that
    # only sample or restore load neither the training graph nor its helpers they do not use.
    code = ("import sys; import training.checkpoints, training.inference; "
            "print(sorted(m for m in ('model', 'training.train', 'training.diversity') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr
