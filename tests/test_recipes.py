"""Recipe switches and numerics: layout-independent weights, the finite check,
session-scoped mixed precision, bfloat16, the fused step and bad combinations."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

import model
import train
from errors import UserError
from networks.dcgan import discriminator, generator

v1 = tf.compat.v1


def _networks_output(config, values=None):
    """G's images on fixed z/labels and D's logits on them, with `values` loaded into the variables."""
    rng = np.random.RandomState(0)
    z = rng.uniform(-1, 1, (3, config.z_dim)).astype(np.float32)
    onehot = np.eye(config.y_dim, dtype=np.float32)[[0, 3, 7]] if config.conditional else None
    with tf.Graph().as_default():
        images = generator(tf.constant(z), None if onehot is None else tf.constant(onehot), config,
                           is_training=False)
        logits, _ = discriminator(images, None if onehot is None else tf.constant(onehot), config)
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            if values is not None:
                for variable in v1.global_variables():
                    variable.load(values[variable.op.name], session)
            weights = {v.op.name: session.run(v) for v in v1.global_variables()}
            return session.run([images, logits]), weights


@pytest.mark.parametrize("dataset", ["mnist", "celebA"])
def test_the_same_weights_give_the_same_outputs_in_both_layouts(tmp_path, dataset):
    overrides = {} if dataset == "mnist" else {"c_dim": 3}
    nhwc = tiny_config(tmp_path, dataset=dataset, **overrides)
    (images, logits), weights = _networks_output(nhwc)
    (images_nchw, logits_nchw), _ = _networks_output(dataclasses.replace(nhwc, data_format="NCHW"), weights)
    np.testing.assert_allclose(images_nchw, images, atol=1e-5)
    np.testing.assert_allclose(logits_nchw, logits, rtol=1e-4, atol=1e-5)
    assert np.std(logits) > 0  # not a degenerate comparison


def test_large_finite_gradients_are_applied_and_non_finite_ones_skipped():
    # Each gradient is 1e19: finite, but a global norm would square them to 4e38 > float32's 3.4e38.
    with tf.Graph().as_default():
        weights = v1.get_variable("w", [4], initializer=v1.zeros_initializer())
        scale = v1.placeholder(tf.float32, [])
        loss = tf.reduce_sum(weights) * scale
        optimizer = v1.train.GradientDescentOptimizer(1e-19)
        applied, norm = model.guarded_update(optimizer, loss, [weights], [], "guarded")
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            assert not np.isfinite(session.run(tf.linalg.global_norm([tf.fill([4], 1e19)])))  # the old check's flaw
            assert session.run(applied, {scale: 1e19})
            np.testing.assert_allclose(session.run(weights), -1.0, rtol=1e-5)
            assert not session.run(applied, {scale: np.inf})
            np.testing.assert_allclose(session.run(weights), -1.0, rtol=1e-5)  # a skipped update changes nothing


def test_a_skipped_update_leaves_batchnorm_averages_alone(tmp_path):
    with tf.Graph().as_default():
        config = tiny_config(tmp_path)
        scale = v1.placeholder_with_default(1.0, [])
        images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 1)), tf.float32) * scale
        gan = model.DCGAN(config, images, tf.constant([1, 2, 3, 4], tf.int64))
        averages = [v for v in v1.global_variables() if "moving" in v.name]
        assert averages and all(v.op.name.startswith("generator/") for v in averages)
        with v1.Session() as session:
            session.run(gan.initializer)
            session.run(gan.d_train_op)  # fills the step's real batch for G's update
            before = session.run(averages)
            feed = {gan.g_loss: np.nan}  # a non-finite G loss: the update must be skipped
            assert not session.run(gan.g_train_op, feed)
            assert all(np.array_equal(a, b) for a, b in zip(before, session.run(averages), strict=True))
            assert session.run(gan.g_train_op)
            assert not all(np.array_equal(a, b) for a, b in zip(before, session.run(averages), strict=True))


def test_fused_step_updates_both_networks_in_one_run_drawing_noise_once(tmp_path):
    with tf.Graph().as_default():
        config = tiny_config(tmp_path, fused_update=True)
        images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 1)), tf.float32)
        gan = model.DCGAN(config, images, tf.constant([1, 2, 3, 4], tf.int64))
        g_vars = model.scope_variables(model.GENERATOR_SCOPE)
        d_vars = model.scope_variables(model.DISCRIMINATOR_SCOPE)
        with v1.Session() as session:
            session.run(gan.initializer)
            before = session.run(g_vars + d_vars)
            out = session.run(gan.fused_fetches)
            after = session.run(g_vars + d_vars)
            draws = session.run(gan.random.counter)
    assert out["d_applied"] and out["g_applied"]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))  # every G and D weight moved
    assert draws == 1  # one fake batch: G's forward pass ran once for both updates


def test_mixed_precision_is_confined_to_the_training_session(tmp_path):
    train.train(tiny_config(tmp_path, mixed_precision=True))
    assert not tf.config.optimizer.get_experimental_options().get("auto_mixed_precision")


def test_bfloat16_trains_where_the_cpu_has_it_and_is_refused_in_one_line_elsewhere(tmp_path, monkeypatch):
    import tf_runtime

    if tf_runtime.cpu_has_bfloat16():
        assert train.train(tiny_config(tmp_path / "bf16", bfloat16=True)) == 2
    monkeypatch.setattr(train, "cpu_has_bfloat16", lambda: False)
    with pytest.raises(UserError, match="--bfloat16: this CPU has neither AVX512_BF16 nor AMX"):
        train.train(tiny_config(tmp_path / "refused", bfloat16=True))


@pytest.mark.parametrize("overrides,message", [
    ({"loss": "wasserstein"}, "--loss wasserstein needs --gp_lambda"),
    ({"loss": "wasserstein", "gp_lambda": 10.0, "real_label": 0.9}, "--real_label has no meaning with --loss"),
    ({"loss": "hinge", "label_flip": 0.1}, "--label_flip has no meaning with --loss hinge"),
    ({"r1_gamma": -1.0}, "--r1_gamma must be 0 .off. or a positive number"),
    ({"loss": "ralsgan"}, "--loss must be one of"),
    ({"kernel_size": 3}, "--kernel_size must be 4 or 5"),
    ({"label_flip": 0.6}, "--label_flip must be in"),
    ({"bfloat16": True, "mixed_precision": True}, "exclude each other"),
])
def test_bad_combinations_are_one_line_errors_naming_the_flags(tmp_path, overrides, message):
    with pytest.raises(UserError, match=message):
        tiny_config(tmp_path, **overrides)


@pytest.mark.parametrize("recipe", [
    {"loss": "least_squares"}, {"loss": "hinge", "r1_gamma": 1.0}, {"loss": "minimax"},
    {"loss": "wasserstein", "gp_lambda": 10.0, "beta1": 0.0, "beta2": 0.9, "d_steps": 2},
    {"kernel_size": 4, "fused_update": True, "g_steps": 1}, {"minibatch_stddev": True, "d_batchnorm": "combined"},
    {"y_dim": 0},
])
def test_each_recipe_trains_with_finite_weights(tmp_path, recipe):
    config = tiny_config(tmp_path, **recipe)
    assert train.train(config) == 2
    from checkpoints import checkpoint_paths

    reader = tf.train.load_checkpoint(checkpoint_paths(config.checkpoint_path)[0])
    values = [reader.get_tensor(n) for n in reader.get_variable_to_shape_map()]
    assert all(np.all(np.isfinite(v)) for v in values if np.issubdtype(np.asarray(v).dtype, np.floating))
