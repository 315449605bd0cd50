"""Every loss against values computed by hand with NumPy."""

import math

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

from runtime.errors import UserError
from training import losses
from training.watchdog import CHANCE_LOSS

REAL = np.array([[2.0], [-1.0], [0.5]], np.float32)
FAKE = np.array([[0.5], [-3.0], [1.5]], np.float32)


def run(tensors):
    with tf.compat.v1.Session() as session:
        return session.run(tensors)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_discriminator_loss_at_chance_is_two_log_two():
    with tf.Graph().as_default():
        zeros = tf.zeros([4, 1])
        total, real, fake = run(losses.discriminator_loss("non_saturating", zeros, zeros))
    assert math.isclose(real, math.log(2), rel_tol=1e-6)
    assert math.isclose(fake, math.log(2), rel_tol=1e-6)
    assert math.isclose(total, 2 * math.log(2), rel_tol=1e-6)


# (kind, D's loss on real, D's loss on fake, G's loss), each computed by hand from REAL and FAKE.
HAND_COMPUTED = [
    ("non_saturating", -np.mean(np.log(sigmoid(REAL))), -np.mean(np.log(1 - sigmoid(FAKE))),
     -np.mean(np.log(sigmoid(FAKE)))),
    ("minimax", -np.mean(np.log(sigmoid(REAL))), -np.mean(np.log(1 - sigmoid(FAKE))),
     np.mean(np.log(1 - sigmoid(FAKE)))),
    ("least_squares", 0.5 * np.mean((REAL - 1) ** 2), 0.5 * np.mean(FAKE ** 2), 0.5 * np.mean((FAKE - 1) ** 2)),
    ("hinge", np.mean(np.maximum(0, 1 - REAL)), np.mean(np.maximum(0, 1 + FAKE)), -np.mean(FAKE)),
    ("wasserstein", -np.mean(REAL), np.mean(FAKE), -np.mean(FAKE)),
]


@pytest.mark.parametrize("kind,on_real,on_fake,generator", HAND_COMPUTED, ids=[row[0] for row in HAND_COMPUTED])
def test_each_loss_matches_its_formula(kind, on_real, on_fake, generator):
    with tf.Graph().as_default():
        real, fake = tf.constant(REAL), tf.constant(FAKE)
        (total, real_term, fake_term), g = run([losses.discriminator_loss(kind, real, fake),
                                                losses.generator_loss(kind, fake)])
    np.testing.assert_allclose([real_term, fake_term, total, g], [on_real, on_fake, on_real + on_fake, generator],
                               rtol=1e-5)


@pytest.mark.parametrize("kind", list(losses.LOSSES))
def test_the_cross_entropy_column_is_what_the_watchdog_assumes_of_d_at_chance(kind):
    # The watchdog's d_not_learning alarm reads d_loss = 2 ln 2 as D at chance (logits 0), for these losses only.
    with tf.Graph().as_default():
        zeros = tf.zeros([4, 1])
        total = run(losses.discriminator_loss(kind, zeros, zeros)[0])
    assert math.isclose(total, CHANCE_LOSS, rel_tol=1e-6) == losses.LOSSES[kind].cross_entropy


@pytest.mark.parametrize("kind", list(losses.LOSSES))
def test_the_targets_column_says_which_losses_read_smoothed_targets_and_config_follows_it(kind, tmp_path):
    with tf.Graph().as_default():
        real, fake = tf.constant(REAL), tf.constant(FAKE)
        (_, plain, _), (_, smoothed, _) = run([losses.discriminator_loss(kind, real, fake),
                                               losses.discriminator_loss(kind, real, fake, 0.9, 0.0)])
    assert (plain != smoothed) == losses.LOSSES[kind].has_targets
    penalty = {"gp_lambda": 10.0} if kind == "wasserstein" else {}
    if losses.LOSSES[kind].has_targets:
        tiny_config(tmp_path, loss=kind, real_label=0.9, **penalty)
    else:
        with pytest.raises(UserError, match=f"--real_label has no meaning with --loss {kind}"):
            tiny_config(tmp_path, loss=kind, real_label=0.9, **penalty)


def test_unknown_loss_is_refused():
    with tf.Graph().as_default(), pytest.raises(ValueError, match="unknown loss 'ralsgan'"):
        losses.generator_loss("ralsgan", tf.zeros([2, 1]))


def test_smoothed_and_flipped_targets_enter_the_cross_entropy():
    real_targets = np.array([[0.9], [0.0], [0.9]], np.float32)  # one-sided smoothing, the second flipped
    fake_targets = np.array([[0.0], [1.0], [0.0]], np.float32)
    expected_real = -np.mean(real_targets * np.log(sigmoid(REAL)) + (1 - real_targets) * np.log(1 - sigmoid(REAL)))
    expected_fake = -np.mean(fake_targets * np.log(sigmoid(FAKE)) + (1 - fake_targets) * np.log(1 - sigmoid(FAKE)))
    with tf.Graph().as_default():
        _, real, fake = run(losses.discriminator_loss("non_saturating", tf.constant(REAL), tf.constant(FAKE),
                                                      tf.constant(real_targets), tf.constant(fake_targets)))
    np.testing.assert_allclose([real, fake], [expected_real, expected_fake], rtol=1e-5)


def test_generator_loss_is_non_saturating():
    with tf.Graph().as_default():
        fake_logits = tf.constant([[-5.0], [0.0]])
        loss = losses.generator_loss("non_saturating", fake_logits)
        minimax = losses.generator_loss("minimax", fake_logits)
        gradient, minimax_gradient = tf.gradients(loss, fake_logits)[0], tf.gradients(minimax, fake_logits)[0]
        loss_value, gradient_value, minimax_value = run([loss, gradient, minimax_gradient])
    expected = np.mean([np.log1p(np.exp(5.0)), np.log(2)])
    assert math.isclose(loss_value, expected, rel_tol=1e-5)
    # where D confidently rejects the fake, G still gets a strong gradient; the minimax form saturates there
    assert abs(gradient_value[0, 0]) > 0.45 and abs(minimax_value[0, 0]) < 0.01


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = sum(w * x): its gradient is w everywhere, so the penalty is (|w| - 1)^2 whatever epsilon is.
    w = np.array([[[0.6, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.3]]], np.float32)[..., None]  # 2x2x2x1
    with tf.Graph().as_default():
        real = tf.constant(np.random.RandomState(0).normal(size=(3, 2, 2, 2, 1)), tf.float32)[:, 0]
        fake = tf.zeros_like(real)

        def critic(images):
            return tf.reduce_sum(images * w[0], axis=[1, 2, 3])

        penalty = run(losses.gradient_penalty(critic, real, fake, tf.constant([0.1, 0.5, 0.9])))
    norm = np.sqrt(np.sum(w[0] ** 2))
    assert math.isclose(penalty, (norm - 1) ** 2, rel_tol=1e-4)


def test_r1_penalty_is_half_the_mean_squared_gradient_norm():
    with tf.Graph().as_default():
        images = tf.constant([[1.0, 2.0], [3.0, -1.0]])
        logits = tf.reduce_sum(tf.square(images), axis=1, keepdims=True)  # gradient 2x
        penalty = run(losses.r1_penalty(logits, images))
    expected = 0.5 * np.mean([4 * (1 + 4), 4 * (9 + 1)])
    assert math.isclose(penalty, expected, rel_tol=1e-6)


def test_feature_matching_is_zero_for_equal_means_and_positive_otherwise():
    with tf.Graph().as_default():
        real = tf.constant([[1.0, 2.0], [3.0, 4.0]])
        same_mean = tf.constant([[2.0, 3.0], [2.0, 3.0]])
        shifted = real + 1.0
        equal, different = run([losses.feature_matching_loss(real, same_mean),
                                losses.feature_matching_loss(real, shifted)])
    assert equal == 0.0
    assert math.isclose(different, 2.0, rel_tol=1e-6)
