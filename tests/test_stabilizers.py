"""training/stabilizers.py: the image pool (which fakes D sees, with the labels they were drawn for) and
historical averaging (the running mean of the weights, one snapshot per update).  G's moving average
(--g_ema): test_networks.py."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_gan

import model
from training import train, updates

v1 = tf.compat.v1


def test_image_pool_fills_then_shows_stored_fakes_half_the_time(tmp_path):
    with tf.Graph().as_default():
        gan = tiny_gan(tmp_path, image_pool=8)
        with v1.Session() as session:
            session.run(gan.initializer)
            first = [session.run([gan.d_train_op, gan.fake_images, gan.shown_fakes]) for _ in range(2)]
            pool = session.run(gan.pool.images)
            for _, fakes, shown in first:  # while filling, D sees the current fakes
                assert np.array_equal(fakes, shown)
            np.testing.assert_array_equal(pool, np.concatenate([fakes for _, fakes, _ in first]))
            from_pool = 0
            for _ in range(6):
                before = session.run(gan.pool.images)
                _, fakes, shown = session.run([gan.d_train_op, gan.fake_images, gan.shown_fakes])
                after = session.run(gan.pool.images)
                for image, fake in zip(shown, fakes, strict=True):
                    if np.array_equal(image, fake):
                        continue
                    from_pool += 1
                    assert any(np.array_equal(image, stored) for stored in before)  # an earlier fake
                    assert any(np.array_equal(fake, stored) for stored in after)  # swapped in for it
    assert 6 <= from_pool <= 18  # half of 24, give or take (seeded: the same count every run)


def test_image_pool_shows_every_stored_fake_with_the_label_it_was_drawn_for(tmp_path):
    with tf.Graph().as_default():
        gan = tiny_gan(tmp_path, image_pool=8)  # conditional: the step's fakes are drawn for labels 1, 2, 3, 4
        with v1.Session() as session:
            session.run(gan.initializer)
            drawn_for, from_pool = {}, 0
            for _ in range(10):
                _, fakes, shown, shown_onehot = session.run(
                    [gan.d_train_op, gan.fake_images, gan.shown_fakes, gan.shown_fake_onehot])
                drawn_for.update({fake.tobytes(): label for fake, label in zip(fakes, [1, 2, 3, 4], strict=True)})
                for image, fake, onehot in zip(shown, fakes, shown_onehot, strict=True):
                    from_pool += not np.array_equal(image, fake)
                    assert np.array_equal(onehot, np.eye(10)[drawn_for[image.tobytes()]])
            stored, labels = session.run([gan.pool.images, gan.pool.labels])
            assert [drawn_for[image.tobytes()] for image in stored] == list(labels.argmax(axis=1))
    assert from_pool >= 6  # stored fakes were shown, at other positions than they were drawn at


def test_historical_averages_are_the_running_means_of_the_weights(tmp_path):
    with tf.Graph().as_default():
        gan = tiny_gan(tmp_path, historical_averaging=0.1)
        weight = [v for v in updates.scope_variables(model.DISCRIMINATOR_SCOPE) if v.op.name.endswith("d_h3_lin/w")][0]
        average = [v for v in v1.global_variables() if v.op.name == weight.op.name + "/historical_average"][0]
        with v1.Session() as session:
            session.run(gan.initializer)
            seen = []
            for _ in range(3):
                seen.append(session.run(weight))
                session.run(gan.d_train_op)
                session.run(gan.advance_step)
            # The average of the weights before each of the 3 updates (cumulative mean, decay 1/(t+1)).
            np.testing.assert_allclose(session.run(average), np.mean(seen, axis=0), rtol=1e-5, atol=1e-7)


def _variable(name):
    return next(v for v in v1.global_variables() if v.op.name == name)


@pytest.mark.parametrize("schedule", [{"d_steps": 2, "g_steps": 2}, {"fused_update": True, "g_steps": 2}])
def test_historical_averages_weigh_every_update_equally_when_a_network_updates_twice_a_step(tmp_path, schedule):
    with tf.Graph().as_default():
        gan = tiny_gan(tmp_path, historical_averaging=0.1, **schedule)
        d_weight = [v for v in updates.scope_variables(model.DISCRIMINATOR_SCOPE)
                    if v.op.name.endswith("d_h3_lin/w")][0]
        g_weight = [v for v in updates.scope_variables(model.GENERATOR_SCOPE) if v.op.name.endswith("g_h3/w")][0]
        moving_means = [v for v in v1.global_variables() if v.op.name.startswith("generator/")
                        and v.op.name.endswith("moving_mean")]
        averages = [_variable(w.op.name + "/historical_average") for w in (d_weight, g_weight)]
        with v1.Session() as session:
            session.run(gan.initializer)
            d_seen, g_seen, separate_g_moved = [], [], []
            for _ in range(3):
                for fetches, _ in train.step_plan(gan.config, gan):
                    before = session.run([d_weight, g_weight, moving_means])
                    applied = session.run(fetches)
                    if "d_applied" in applied:
                        d_seen.append(before[0])
                    if "g_applied" in applied:
                        g_seen.append(before[1])
                    if "g_applied" in applied and "d_applied" not in applied:  # a separate G update
                        after = session.run(moving_means)
                        separate_g_moved.append(any(not np.array_equal(a, b) for a, b in zip(after, before[2],
                                                                                             strict=True)))
                session.run(gan.advance_step)
            assert len(d_seen) == 3 * gan.config.d_steps and len(g_seen) == 6
            d_average, g_average = session.run(averages)
    # Each update's snapshot weighs 1/n: the plain mean of the weights before every update.
    np.testing.assert_allclose(d_average, np.mean(d_seen, axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g_average, np.mean(g_seen, axis=0), rtol=1e-5, atol=1e-7)
    assert separate_g_moved and all(separate_g_moved)  # every G update moves G's BatchNorm averages
