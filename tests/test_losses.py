import math

import numpy as np
import tensorflow as tf

import losses


def run(tensors):
    with tf.compat.v1.Session() as session:
        return session.run(tensors)


def test_discriminator_loss_at_chance_is_two_log_two():
    with tf.Graph().as_default():
        zeros = tf.zeros([4, 1])
        total, real, fake = run(losses.discriminator_loss(zeros, zeros))
    assert math.isclose(real, math.log(2), rel_tol=1e-6)
    assert math.isclose(fake, math.log(2), rel_tol=1e-6)
    assert math.isclose(total, 2 * math.log(2), rel_tol=1e-6)


def test_discriminator_loss_matches_cross_entropy_formula():
    real_logits = np.array([[2.0], [-1.0]], np.float32)
    fake_logits = np.array([[0.5], [-3.0]], np.float32)

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    expected_real = -np.mean(np.log(sigmoid(real_logits)))
    expected_fake = -np.mean(np.log(1 - sigmoid(fake_logits)))
    with tf.Graph().as_default():
        total, real, fake = run(losses.discriminator_loss(tf.constant(real_logits), tf.constant(fake_logits)))
    np.testing.assert_allclose([real, fake, total], [expected_real, expected_fake, expected_real + expected_fake],
                               rtol=1e-5)


def test_one_sided_label_smoothing_changes_only_the_real_term():
    with tf.Graph().as_default():
        logits = tf.constant([[3.0], [4.0]])
        plain = run(losses.discriminator_loss(logits, -logits, real_label=1.0))
        smoothed = run(losses.discriminator_loss(logits, -logits, real_label=0.9))
    assert smoothed[1] > plain[1]  # confident real predictions are penalized
    assert smoothed[2] == plain[2]  # fake targets stay 0


def test_generator_loss_is_non_saturating():
    with tf.Graph().as_default():
        fake_logits = tf.constant([[-5.0], [0.0]])
        loss = losses.generator_loss(fake_logits)
        gradient = tf.gradients(loss, fake_logits)[0]
        loss_value, gradient_value = run([loss, gradient])
    expected = np.mean([np.log1p(np.exp(5.0)), np.log(2)])
    assert math.isclose(loss_value, expected, rel_tol=1e-5)
    # where D confidently rejects the fake, G still gets a strong gradient
    assert abs(gradient_value[0, 0]) > 0.45


def test_feature_matching_is_zero_for_equal_means_and_positive_otherwise():
    with tf.Graph().as_default():
        real = tf.constant([[1.0, 2.0], [3.0, 4.0]])
        same_mean = tf.constant([[2.0, 3.0], [2.0, 3.0]])
        shifted = real + 1.0
        equal, different = run([losses.feature_matching_loss(real, same_mean),
                                losses.feature_matching_loss(real, shifted)])
    assert equal == 0.0
    assert math.isclose(different, 2.0, rel_tol=1e-6)
