"""training/updates.py: an update is applied only when its loss and gradients are finite (a large finite gradient
still is), and a skipped update leaves BatchNorm's moving averages alone too."""

import numpy as np
import tensorflow as tf
from conftest import tiny_config

import model
from networks import GENERATOR_AVERAGE_SCOPE
from training import updates

v1 = tf.compat.v1


def test_large_finite_gradients_are_applied_and_non_finite_ones_skipped():
    # Each gradient is 1e19: finite, but a global norm would square them to 4e38 > float32's 3.4e38.
    with tf.Graph().as_default():
        weights = v1.get_variable("w", [4], initializer=v1.zeros_initializer())
        scale = v1.placeholder(tf.float32, [])
        loss = tf.reduce_sum(weights) * scale
        optimizer = v1.train.GradientDescentOptimizer(1e-19)
        replicas = model.Replicas()
        update = updates.replica_gradients(optimizer, loss, [weights], replicas)
        applied = updates.apply_if_finite(optimizer, replicas, update, [], "guarded")
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            assert not np.isfinite(session.run(tf.linalg.global_norm([tf.fill([4], 1e19)])))  # the old check's flaw
            assert session.run(applied, {scale: 1e19})
            np.testing.assert_allclose(session.run(weights), -1.0, rtol=1e-5)
            assert not session.run(applied, {scale: np.inf})
            np.testing.assert_allclose(session.run(weights), -1.0, rtol=1e-5)  # a skipped update changes nothing


def test_a_skipped_update_leaves_batchnorm_averages_alone(tmp_path):
    with tf.Graph().as_default():
        config = tiny_config(tmp_path, fused_update=False, g_steps=2)  # the separate G run
        scale = v1.placeholder_with_default(1.0, [])
        images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 1)), tf.float32) * scale
        gan = model.DCGAN(config, images, tf.constant([1, 2, 3, 4], tf.int64))
        averages = [v for v in v1.global_variables()  # the BatchNorm averages, not their --g_ema copies
                    if "moving" in v.name and not v.op.name.startswith(GENERATOR_AVERAGE_SCOPE + "/")]
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
