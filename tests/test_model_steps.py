"""model.py's train ops: the fused step updates both networks drawing G's noise once, and feature matching
compares D's features of the real and the fake batch under the same D in every schedule.  (Beside
test_model.py while another branch edits that file; they belong together.)"""

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

import model
from training import updates

v1 = tf.compat.v1


def test_fused_step_updates_both_networks_in_one_run_drawing_noise_once(tmp_path):
    with tf.Graph().as_default():
        config = tiny_config(tmp_path, fused_update=True)
        images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 1)), tf.float32)
        gan = model.DCGAN(config, images, tf.constant([1, 2, 3, 4], tf.int64))
        g_vars = updates.scope_variables(model.GENERATOR_SCOPE)
        d_vars = updates.scope_variables(model.DISCRIMINATOR_SCOPE)
        g_moving = [v for v in updates.scope_variables(model.GENERATOR_SCOPE, v1.GraphKeys.GLOBAL_VARIABLES)
                    if "moving_variance" in v.name]
        with v1.Session() as session:
            session.run(gan.initializer)
            before = session.run(g_vars + d_vars + g_moving)
            out = session.run(gan.fused_fetches)
            after = session.run(g_vars + d_vars + g_moving)
            draws = session.run(gan.random.counter)
    assert out["d_applied"] and out["g_applied"] and g_moving
    # every G and D weight moved, and G's BatchNorm moving statistics with them
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert draws == 1  # one fake batch: G's forward pass ran once for both updates


@pytest.mark.parametrize("schedule", [{"fused_update": True, "g_steps": 1}, {"fused_update": False},
                                      {"fused_update": True, "g_steps": 1, "d_batchnorm": "combined"}])
def test_feature_matching_is_zero_for_a_generator_that_outputs_the_real_batch(tmp_path, monkeypatch, schedule):
    pixels = np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 1)).astype(np.float32)

    def copies_the_data(z, labels_onehot, spec, is_training, update_moving_stats=True):
        with v1.variable_scope(model.GENERATOR_SCOPE, reuse=v1.AUTO_REUSE):
            return tf.constant(pixels) * v1.get_variable("scale", [], initializer=v1.ones_initializer())

    terms = []

    def recorded(real_mean, fake_features):
        terms.append(feature_matching_loss(real_mean, fake_features))
        return terms[-1]

    feature_matching_loss = model.losses.feature_matching_loss
    monkeypatch.setattr(model.losses, "feature_matching_loss", recorded)
    monkeypatch.setattr(model, "generator_for", lambda spec, random=None, truncation_psi=None: copies_the_data)
    with tf.Graph().as_default():
        config = tiny_config(tmp_path, y_dim=0, feature_matching=True, d_learning_rate=0.01, g_learning_rate=0.0,
                             **schedule)  # G stays a copy of the data; D moves fast
        gan = model.DCGAN(config, tf.constant(pixels))
        separate_term, fused_term = terms if config.fused_update else (terms[0], None)
        with v1.Session() as session:
            session.run(gan.initializer)
            for _ in range(3):  # D's update changes D between the real and the fake pass of the old code
                if config.fused_update:
                    values = session.run({"applied": gan.fused_train_op, "term": fused_term})
                else:
                    session.run(gan.d_train_op)
                    values = session.run({"applied": gan.g_train_op, "term": separate_term})
                # Zero up to rounding (3e-7 seen: the two D passes may get differently fused kernels);
                # features from D before and after its update gave 0.04-0.05 here.
                assert values["applied"] and values["term"] < 1e-5, values
