import numpy as np
import pytest
import tensorflow as tf

import ops

v1 = tf.compat.v1


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_conv_and_deconv_shapes_and_free_batch(data_format):
    with tf.Graph().as_default():
        shape = [None, 3, 8, 6] if data_format == "NCHW" else [None, 8, 6, 3]
        x = v1.placeholder(tf.float32, shape)
        up = ops.deconv2d(x, (16, 12, 5), data_format=data_format)
        down = ops.conv2d(up, 7, data_format=data_format)
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            up_value, down_value = session.run([up, down], {x: np.ones([2] + shape[1:], np.float32)})
    if data_format == "NCHW":
        assert up_value.shape == (2, 5, 16, 12) and down_value.shape == (2, 7, 8, 6)
    else:
        assert up_value.shape == (2, 16, 12, 5) and down_value.shape == (2, 8, 6, 7)


def test_weights_follow_dcgan_init():
    with tf.Graph().as_default():
        ops.linear(v1.placeholder(tf.float32, [None, 400]), 300)
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            weights = session.run(v1.trainable_variables()[0])
    assert abs(weights.std() - 0.02) < 0.002
    assert abs(weights.mean()) < 0.002


def test_batch_norm_moving_stats_move_only_through_their_assignments():
    with tf.Graph().as_default():
        x = v1.placeholder(tf.float32, [None, 4, 4, 2])
        with v1.variable_scope("net"):
            y = ops.batch_norm(x, is_training=True)
        updates = v1.get_collection(ops.MOVING_AVERAGE_UPDATES)
        assignments = ops.moving_average_assignments(updates)
        moving_mean = [v for v in v1.global_variables() if "moving_mean" in v.name][0]
        batch = np.random.RandomState(0).normal(5.0, 2.0, (8, 4, 4, 2)).astype(np.float32)
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            normalized = session.run(y, {x: batch})
            assert np.all(session.run(moving_mean) == 0)  # the forward pass alone leaves them
            session.run(assignments, {x: batch})
            moved = session.run(moving_mean)
    assert len(updates) == 2 and all(variable.op.name.startswith("net/bn/") for variable, _, _ in updates)
    assert v1.get_collection(v1.GraphKeys.UPDATE_OPS) == []
    np.testing.assert_allclose(moved, 0.1 * batch.mean(axis=(0, 1, 2)), rtol=1e-4)
    np.testing.assert_allclose(normalized.mean(axis=(0, 1, 2)), 0, atol=1e-4)


def test_batch_norm_without_moving_stats_creates_none():
    with tf.Graph().as_default():
        ops.batch_norm(v1.placeholder(tf.float32, [None, 4, 4, 2]), is_training=True, track_moving_stats=False)
        assert [v.op.name for v in v1.global_variables()] == ["bn/scale", "bn/offset"]
        assert v1.get_collection(ops.MOVING_AVERAGE_UPDATES) == []


def test_batch_norm_inference_uses_moving_stats_and_adds_no_updates():
    with tf.Graph().as_default():
        x = v1.placeholder(tf.float32, [None, 3])
        y = ops.batch_norm(x, is_training=False)
        assert v1.get_collection(ops.MOVING_AVERAGE_UPDATES) == []
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            out = session.run(y, {x: [[1.0, 2.0, 3.0]]})
    np.testing.assert_allclose(out, [[1.0, 2.0, 3.0]], rtol=1e-4)  # mean 0, variance 1


def test_conv_cond_concat_appends_labels_to_every_pixel():
    with tf.Graph().as_default():
        x = tf.zeros([2, 3, 3, 4])
        y = tf.constant([[1.0, 0.0], [0.0, 1.0]])
        with v1.Session() as session:
            out = session.run(ops.conv_cond_concat(x, y))
    assert out.shape == (2, 3, 3, 6)
    assert np.all(out[0, :, :, 4] == 1) and np.all(out[1, :, :, 5] == 1)
