"""Recipe switches and numerics: layout-independent weights, the finite check,
session-scoped mixed precision, bfloat16, the fused step and bad combinations."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

import model
from networks import GENERATOR_AVERAGE_SCOPE, network_spec
from networks import dcgan as networks_dcgan
from networks.dcgan import discriminator, generator
from runtime.errors import UserError
from training import train, updates

v1 = tf.compat.v1


def _networks_output(config, values=None):
    """G's images on fixed z/labels and D's logits on them, with `values` loaded into the variables."""
    rng = np.random.RandomState(0)
    z = rng.uniform(-1, 1, (3, config.z_dim)).astype(np.float32)
    onehot = np.eye(config.y_dim, dtype=np.float32)[[0, 3, 7]] if config.conditional else None
    spec = network_spec(config)
    with tf.Graph().as_default():
        images = generator(tf.constant(z), None if onehot is None else tf.constant(onehot), spec, is_training=False)
        logits, _ = discriminator(images, None if onehot is None else tf.constant(onehot), spec)
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


def test_mixed_precision_is_confined_to_the_training_session(tmp_path):
    train.train(tiny_config(tmp_path, mixed_precision=True))
    assert not tf.config.optimizer.get_experimental_options().get("auto_mixed_precision")


def test_bfloat16_trains_where_the_cpu_has_it_and_is_refused_in_one_line_elsewhere(tmp_path, monkeypatch):
    from runtime import tf_runtime

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
    from training.checkpoints import checkpoint_paths

    reader = tf.train.load_checkpoint(checkpoint_paths(config.checkpoint_path)[0])
    values = [reader.get_tensor(n) for n in reader.get_variable_to_shape_map()]
    assert all(np.all(np.isfinite(v)) for v in values if np.issubdtype(np.asarray(v).dtype, np.floating))


def _stddev_channel(x):
    """The minibatch-stddev value Karras et al. 2018 give a batch x [batch, ...], computed in NumPy."""
    return np.mean(np.sqrt(np.var(x, axis=0) + 1e-8))


def test_minibatch_stddev_is_taken_per_stacked_batch():
    rng = np.random.RandomState(0)
    real, collapsed = rng.normal(0, 2, (4, 3, 3, 2)), np.repeat(rng.normal(0, 1, (1, 3, 3, 2)), 4, axis=0)
    stacked = np.concatenate([real, collapsed]).astype(np.float32)
    with tf.Graph().as_default(), v1.Session() as session:
        per_half, whole = session.run([networks_dcgan.minibatch_stddev(tf.constant(stacked), "NHWC", groups=2),
                                       networks_dcgan.minibatch_stddev(tf.constant(stacked), "NHWC")])
    np.testing.assert_allclose(per_half[:4, ..., -1], _stddev_channel(real), rtol=1e-5)
    np.testing.assert_allclose(per_half[4:, ..., -1], 1e-4, rtol=1e-3)  # sqrt(1e-8): every fake alike
    np.testing.assert_allclose(whole[..., -1], _stddev_channel(stacked), rtol=1e-5)
    np.testing.assert_array_equal(per_half[..., :-1], stacked)


def test_combined_batchnorm_gives_real_and_fake_their_own_minibatch_stddev(tmp_path, monkeypatch):
    seen = []

    def recorded(x, data_format, groups=1):
        seen.append((x, groups, minibatch_stddev(x, data_format, groups)))
        return seen[-1][2]

    minibatch_stddev = networks_dcgan.minibatch_stddev
    monkeypatch.setattr(networks_dcgan, "minibatch_stddev", recorded)
    with tf.Graph().as_default():
        # Every real image alike: the real half's statistic is sqrt(1e-8), the fakes' (4 z) is not.
        config = tiny_config(tmp_path, minibatch_stddev=True, d_batchnorm="combined", y_dim=0)
        gan = model.DCGAN(config, tf.fill([4, 16, 16, 1], 0.5))
        with v1.Session() as session:
            session.run(gan.initializer)
            x, groups, out = seen[0]  # D's update: one pass over [real; fake]
            x, out = session.run([x, out])
    assert groups == 2
    np.testing.assert_allclose(out[:4, ..., -1], _stddev_channel(x[:4]), rtol=1e-4)
    np.testing.assert_allclose(out[4:, ..., -1], _stddev_channel(x[4:]), rtol=1e-4)
    np.testing.assert_allclose(out[:4, ..., -1], 1e-4, rtol=1e-3)
    assert _stddev_channel(x[4:]) > 1e-2  # the fakes differ, and over the stacked batch both halves got ~half that


def _tiny_gan(tmp_path, **overrides):
    config = tiny_config(tmp_path, **overrides)
    images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 1)), tf.float32)
    return model.DCGAN(config, images, tf.constant([1, 2, 3, 4], tf.int64))


def test_image_pool_fills_then_shows_stored_fakes_half_the_time(tmp_path):
    with tf.Graph().as_default():
        gan = _tiny_gan(tmp_path, image_pool=8)
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
        gan = _tiny_gan(tmp_path, image_pool=8)  # conditional: the step's fakes are drawn for labels 1, 2, 3, 4
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
        gan = _tiny_gan(tmp_path, historical_averaging=0.1)
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
        gan = _tiny_gan(tmp_path, historical_averaging=0.1, **schedule)
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


def test_acgan_discriminator_predicts_the_class_instead_of_reading_it(tmp_path):
    with tf.Graph().as_default():
        gan = _tiny_gan(tmp_path, conditioning="acgan")
        names = {v.op.name for v in updates.scope_variables(model.DISCRIMINATOR_SCOPE)}
        assert "discriminator/d_class_lin/w" in names
        first_conv = [v for v in v1.global_variables() if v.op.name == "discriminator/d_h0_conv/w"][0]
        assert first_conv.shape[2] == 1  # the image's channel only: no label maps concatenated
        with v1.Session() as session:
            session.run(gan.initializer)
            losses_ = [session.run([gan.d_train_op, gan.d_loss])[1] for _ in range(30)]
    assert losses_[0] > 2 * np.log(2)  # the class terms (about 2 ln 10) on top of the adversarial ones
    assert np.mean(losses_[-5:]) < np.mean(losses_[:5])


def test_resuming_with_another_recipe_is_refused_unless_allowed(tmp_path):
    assert train.train(tiny_config(tmp_path, max_steps=2)) == 2
    with pytest.raises(UserError, match=r"trained with --loss non_saturating \(now hinge\).*--allow_recipe_change"):
        train.train(tiny_config(tmp_path, max_steps=3, loss="hinge"))
    assert train.train(tiny_config(tmp_path, max_steps=3, loss="hinge", allow_recipe_change=True)) == 3
    # The newest checkpoint continued with hinge: that is now the recorded recipe.
    assert train.train(tiny_config(tmp_path, max_steps=4, loss="hinge")) == 4


def test_the_generator_is_restored_with_the_z_distribution_it_was_trained_with(tmp_path):
    from training.inference import restored_generator

    train.train(tiny_config(tmp_path, z_dist="gaussian"))
    with restored_generator(tiny_config(tmp_path)) as restored:  # the flags say uniform: the run's record wins
        assert restored.config.z_dist == "gaussian"
    with pytest.raises(UserError, match="z_dist=gaussian \\(now uniform\\)"):
        train.train(tiny_config(tmp_path, max_steps=3))  # resuming with other z is refused


@pytest.mark.parametrize("flags, conditional, unconditional", [
    ({}, (4e-4, 1e-4), (2e-4, 2e-4)),  # the defaults: TTUR for the conditional model, one rate otherwise
    ({"learning_rate": 3e-4}, (3e-4, 3e-4), (3e-4, 3e-4)),  # --learning_rate sets both networks
    ({"learning_rate": 3e-4, "d_learning_rate": 9e-4}, (9e-4, 3e-4), (9e-4, 3e-4)),
    ({"g_learning_rate": 5e-5}, (4e-4, 5e-5), (2e-4, 5e-5)),  # one network's flag leaves the other's default
])
def test_learning_rate_flags_combine_and_none_is_ignored(tmp_path, flags, conditional, unconditional):
    assert tiny_config(tmp_path, **flags).learning_rates() == conditional
    assert tiny_config(tmp_path, y_dim=0, **flags).learning_rates() == unconditional
    with tf.Graph().as_default():  # the optimizers get exactly these rates
        gan = model.DCGAN(tiny_config(tmp_path, y_dim=0, **flags),
                          tf.zeros((4, 16, 16, 1)), None)
        with v1.Session() as session:
            rates = session.run([v1.get_default_graph().get_tensor_by_name(f"{scope}_learning_rate:0")
                                 for scope in (model.DISCRIMINATOR_SCOPE, model.GENERATOR_SCOPE)])
    assert np.allclose(rates, unconditional) and gan.d_train_op is not None
