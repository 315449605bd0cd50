"""--arch style (networks/style.py): the mechanisms issue 16 lists, checked by hand-computed values and bit-for-bit
equality on tiny models (16x16, w_dim 8, 2 mapping layers)."""

import dataclasses
import math
import os

import imageio.v2 as imageio
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_same_tensors, loss_rows, tiny_config

import model
from bench.faults.runs import checkpoint_values
from networks import network_spec, style
from runtime.errors import UserError
from tools import export, serve, visualize
from training import inference, random_streams, train
from training.checkpoints import checkpoint_paths
from training.inference import restored_generator

v1 = tf.compat.v1
STYLE = dict(arch="style", w_dim=8, mapping_layers=2)


def style_config(tmp_path, **overrides):
    return tiny_config(tmp_path, **{**STYLE, **overrides})


def noise_strengths():
    return [v for v in v1.global_variables() if v.op.name.endswith("noise_strength")]


def set_noise_strengths(session, value):
    for variable in noise_strengths():
        variable.load(np.full(variable.shape, value, np.float32), session)


def test_adain_gives_each_channel_the_styles_mean_and_standard_deviation():
    rng = np.random.RandomState(0)
    x = rng.normal(3.0, 5.0, (2, 6, 6, 3)).astype(np.float32)
    scale = np.array([[0.5, -0.25, 2.0], [0.0, 1.0, -1.5]], np.float32)  # AdaIN scales by 1 + scale
    bias = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], np.float32)
    with tf.Graph().as_default(), v1.Session() as session:
        out = session.run(style.adain(tf.constant(x), tf.constant(np.concatenate([scale, bias], axis=1))))
    np.testing.assert_allclose(out.mean(axis=(1, 2)), bias, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), np.abs(1.0 + scale), rtol=1e-4)


def test_equalized_weights_are_stored_standard_normal_and_scaled_by_he_at_run_time():
    with tf.Graph().as_default(), v1.Session() as session:
        v1.set_random_seed(0)
        with v1.variable_scope("synthesis"):
            conv = style.equalized_weight("w", [3, 3, 32, 64])
        with v1.variable_scope("mapping"):
            x = tf.constant(np.random.RandomState(1).normal(size=(4, 32)), tf.float32)
            mapped = style.dense(x, 48, "dense", lr_multiplier=0.01)
        session.run(v1.global_variables_initializer())
        stored = {v.op.name: session.run(v) for v in v1.global_variables()}
        effective, mapped, x = session.run([conv, mapped, x])
    conv_stored = stored["synthesis/w"]
    assert abs(conv_stored.mean()) < 0.02 and abs(conv_stored.std() - 1.0) < 0.02  # N(0, 1): 18,432 draws
    assert np.array_equal(effective, conv_stored * np.float32(math.sqrt(2.0) / math.sqrt(3 * 3 * 32)))
    # The mapping's learning-rate multiplier: stored N(0, 1/0.01²), effective He x 0.01 (bias x 0.01 too).
    dense_stored = stored["mapping/dense/w"]
    assert abs(dense_stored.std() / 100.0 - 1.0) < 0.05
    expected = x @ (dense_stored * (math.sqrt(2.0) / math.sqrt(32) * 0.01)) + stored["mapping/dense/b"] * 0.01
    np.testing.assert_allclose(mapped, expected, rtol=1e-4, atol=1e-5)


def test_mix_styles_feeds_w1_below_the_crossover_and_w2_from_it():
    w1, w2 = np.array([[1.0, 2.0]], np.float32), np.array([[-1.0, -2.0]], np.float32)
    with tf.Graph().as_default(), v1.Session() as session:
        per_layer = session.run(style.mix_styles(tf.constant(w1), tf.constant(w2), 2, 5))
    assert per_layer.tolist() == [[[1, 2], [1, 2], [-1, -2], [-1, -2], [-1, -2]]]


@pytest.mark.parametrize("mixing", [1.0, 0.0])
def test_training_styles_fed_to_each_layer_follow_the_drawn_crossover(tmp_path, mixing):
    config = style_config(tmp_path, style_mixing=mixing)
    spec = network_spec(config)
    layers = style.num_layers(spec)
    assert layers == 6  # 4x4, 8x8, 16x16: two each
    with tf.Graph().as_default(), v1.Session() as session:
        random = random_streams.RandomStreams(config.seed)
        z = random.z(4, spec)
        styles = style.training_styles(z, None, spec, random, update_average=True)
        session.run(v1.global_variables_initializer())
        crossovers = set()
        for _ in range(20):  # each run draws new z, a new coin and a new crossover
            per_layer, w, mixing_w, crossover = session.run(styles)
            crossovers.add(int(crossover))
            assert np.array_equal(per_layer[:, :crossover], np.broadcast_to(w[:, None], (4, crossover, 8)))
            assert np.array_equal(per_layer[:, crossover:], np.broadcast_to(mixing_w[:, None],
                                                                           (4, layers - crossover, 8)))
    if mixing:
        assert crossovers <= set(range(1, layers)) and len(crossovers) > 1
        assert not np.array_equal(w, mixing_w)  # a second z, not a copy
    else:
        assert crossovers == {layers}


def test_zero_noise_strength_makes_the_training_generator_deterministic_in_z(tmp_path):
    config = style_config(tmp_path, style_mixing=0.0)
    z = np.random.RandomState(0).uniform(-1, 1, (4, config.z_dim)).astype(np.float32)
    with tf.Graph().as_default(), v1.Session() as session:
        z_input = v1.placeholder(tf.float32, [None, config.z_dim])
        images = style.generator(z_input, None, network_spec(config), is_training=True,
                                 random=random_streams.RandomStreams(config.seed))
        session.run(v1.global_variables_initializer())
        assert len(noise_strengths()) == style.num_layers(network_spec(config))
        set_noise_strengths(session, 0.5)
        first, second = (session.run(images, {z_input: z}) for _ in range(2))
        assert not np.array_equal(first, second)  # fresh noise each run
        set_noise_strengths(session, 0.0)
        first, second = (session.run(images, {z_input: z}) for _ in range(2))
        assert np.array_equal(first, second)


def test_psi_zero_gives_every_z_the_same_image(tmp_path):
    config = style_config(tmp_path, dataset="celebA", c_dim=3, y_dim=0)
    z = inference.fixed_z(4, config, seed=3)
    with tf.Graph().as_default(), v1.Session() as session:
        generator = inference.InferenceGenerator(config)
        session.run(v1.global_variables_initializer())
        set_noise_strengths(session, 0.0)  # each z has noise of its own; without it only w tells them apart
        style.average_w(generator.spec).load(np.linspace(-1, 1, config.w_dim, dtype=np.float32), session)
        at_zero, at_one = (session.run(generator.images_uint8, {generator.z: z, generator.truncation_psi: psi})
                           for psi in (0.0, 1.0))
    assert all(np.array_equal(image, at_zero[0]) for image in at_zero)
    assert not all(np.array_equal(image, at_one[0]) for image in at_one)


def test_style_generator_trains_with_every_loss_and_regulariser(tmp_path):
    recipes = [dict(loss="non_saturating", r1_gamma=10.0), dict(loss="wasserstein", gp_lambda=10.0, beta1=0.0),
               dict(loss="hinge", fused_update=True), dict(loss="least_squares", feature_matching=True,
                                                           historical_averaging=0.01, image_pool=4, label_flip=0.1),
               dict(loss="minimax", conditioning="acgan", instance_noise=0.1, minibatch_stddev=True)]
    for index, recipe in enumerate(recipes):
        config = style_config(tmp_path / str(index), **recipe)
        with tf.Graph().as_default(), v1.Session() as session:
            images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 1)), tf.float32)
            gan = model.DCGAN(config, images, tf.constant([0, 1, 2, 3], tf.int64))
            session.run(gan.initializer)
            w_average = style.average_w(gan.spec)
            before = session.run(w_average)
            op = gan.fused_train_op if config.fused_update else [gan.d_train_op, gan.g_train_op]
            assert np.all(session.run(op)), recipe  # every update applied: finite losses and gradients
            assert not np.array_equal(session.run(w_average), before), recipe  # moved with G's update


def test_resumed_style_run_equals_the_uninterrupted_one_bit_for_bit_with_the_average_w(tmp_path):
    whole = style_config(tmp_path / "whole", max_steps=4, ckpt_freq=4)
    train.train(whole)
    train.train(style_config(tmp_path / "split", max_steps=2, ckpt_freq=2))
    resumed = style_config(tmp_path / "split", max_steps=4, ckpt_freq=4)
    assert train.train(resumed) == 4
    assert loss_rows(whole) == loss_rows(resumed)
    saved = checkpoint_values(checkpoint_paths(whole.checkpoint_path)[0])
    assert np.any(saved["generator/w_avg"] != 0)  # tracked, saved
    assert_same_tensors(saved, checkpoint_values(checkpoint_paths(resumed.checkpoint_path)[0]))


@pytest.mark.parametrize("size", [28, 48, 8])
def test_style_sizes_other_than_powers_of_two_from_16_are_one_line_errors(tmp_path, size):
    with pytest.raises(UserError, match=r"--arch style .* powers of two from 16 \(16, 32, 64"):
        style_config(tmp_path, output_height=size)


def test_truncation_psi_with_a_dcgan_generator_is_refused(tmp_path):
    config = tiny_config(tmp_path, truncation_psi=0.7)
    with tf.Graph().as_default(), pytest.raises(UserError, match="--truncation_psi 0.7 needs .*--arch style"):
        inference.InferenceGenerator(config)


@pytest.fixture(scope="module")
def trained_style(tmp_path_factory):
    config = style_config(tmp_path_factory.mktemp("style"), max_steps=2, n_samples=4)
    train.train(config)
    return config


def test_visualize_writes_the_style_visualizations(trained_style):
    names = {os.path.basename(p) for p in visualize.visualize(trained_style)}
    assert {"test_samples.png", "test_style_mixing_004.png", "test_style_mixing_008.png", "test_truncation.png",
            "test_noise.png"} <= names
    assert "test_style_mixing_016.png" not in names  # the output resolution has no finer layers to mix
    cells = visualize.STYLE_SOURCES + 1
    mixing = imageio.imread(os.path.join(trained_style.sample_path, "test_style_mixing_004.png"))
    assert mixing.shape[:2] == (cells * 17 - 1, cells * 17 - 1)
    assert not mixing[:16, :16].any()  # the blank corner


def test_style_grids_show_their_mechanisms(trained_style):
    with restored_generator(trained_style) as restored:
        set_noise_strengths(restored.session, 0.0)
        tools = visualize.StyleTools(restored.session, restored.generator, restored.config)
        truncation = tools.truncation_grid(seed=5).reshape(8, 8, 16, 16, 1)
        quiet_noise = tools.noise_grid(seed=5)
        (_, mixing), _ = tools.style_mixing_grids(seed=5)
        set_noise_strengths(restored.session, 0.5)
        loud_noise = tools.noise_grid(seed=5)
    assert all(np.array_equal(truncation[row, 0], truncation[0, 0]) for row in range(8))  # psi 0: the average w
    assert not np.array_equal(truncation[1, -1], truncation[0, -1])
    rows = visualize.NOISE_ROWS
    quiet_noise, loud_noise = quiet_noise.reshape(rows, rows, 16, 16, 1), loud_noise.reshape(rows, rows, 16, 16, 1)
    assert not quiet_noise[:, -1].any() and all(np.array_equal(quiet_noise[r, 0], quiet_noise[r, 1])
                                                for r in range(rows))
    assert loud_noise[:, -1].max() == 255 and not np.array_equal(loud_noise[0, 0], loud_noise[0, 1])
    cells = visualize.STYLE_SOURCES + 1
    mixing = mixing.reshape(cells, cells, 16, 16, 1)
    assert not np.array_equal(mixing[0, 1], mixing[0, 2]) and not np.array_equal(mixing[1, 0], mixing[2, 0])


def test_style_visualizations_are_refused_for_a_dcgan_checkpoint_only_when_named(tmp_path):
    config = tiny_config(tmp_path, max_steps=1, z_dim=2)
    train.train(config)
    written = {os.path.basename(p) for p in visualize.visualize(config)}  # the default: all that apply
    assert "test_samples.png" in written and not any(name in written for name in (
        "test_noise.png", "test_truncation.png", "test_style_mixing_004.png"))
    with pytest.raises(UserError, match="--visualize_option noise needs a style generator"):
        visualize.visualize(dataclasses.replace(config, visualize_option="samples,noise"))


def test_saved_model_takes_psi_as_an_optional_input_and_the_frozen_graph_too(trained_style, tmp_path):
    z, labels = inference.fixed_z(3, trained_style, seed=5), inference.sample_labels(3, trained_style)
    with restored_generator(trained_style) as restored:
        generator = restored.generator
        expected = {psi: restored.session.run(generator.images_uint8, {**generator.feed(z, labels),
                                                                       generator.truncation_psi: psi})
                    for psi in (1.0, 0.0)}
    assert np.abs(expected[0.0].astype(int) - expected[1.0]).max() > 1
    export.export_saved_model(trained_style, str(tmp_path / "saved"))
    with tf.Graph().as_default(), v1.Session() as session:
        meta = v1.saved_model.loader.load(session, ["serve"], str(tmp_path / "saved"))
        default, truncated = meta.signature_def["serving_default"], meta.signature_def["truncation"]
        description = export.read_description(str(tmp_path / "saved"))
        assert (description["generator"], description["truncation"]) == ("style", True)
        assert set(description["signatures"]) == set(meta.signature_def)
        assert "truncation_psi" not in default.inputs
        feed = {default.inputs["z"].name: z, default.inputs["labels"].name: labels}
        assert np.array_equal(session.run(default.outputs["images"].name, feed), expected[1.0])
        psi_feed = {truncated.inputs["truncation_psi"].name: 0.0, truncated.inputs["z"].name: z,
                    truncated.inputs["labels"].name: labels}
        assert np.array_equal(session.run(truncated.outputs["images"].name, psi_feed), expected[0.0])
    export.freeze_graph(trained_style, str(tmp_path / "g.pb"))
    graph_def = v1.GraphDef()
    with open(tmp_path / "g.pb", "rb") as f:
        graph_def.ParseFromString(f.read())
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
        with v1.Session(graph=graph) as session:
            for psi, images in expected.items():
                fed = session.run("images_uint8:0", {"z:0": z, "labels:0": labels, "truncation_psi:0": psi})
                # Not bit for bit: freezing turns the equalised weights (stored x He constant) into constants,
                # which TensorFlow computes along another path (float32 differences up to ~4e-4 measured).
                assert np.abs(fed.astype(int) - images).max() <= 1


def test_a_checkpoint_recorded_before_arch_existed_reads_as_dcgan(tmp_path):
    import json

    from training.checkpoints import ARCHITECTURE_FILE, Checkpoints

    architecture = tiny_config(tmp_path).architecture()
    old = {k: v for k, v in architecture.items() if k not in ("arch", "mapping_layers", "w_dim",
                                                             "mapping_lr_multiplier", "style_upsample")}
    (tmp_path / ARCHITECTURE_FILE).write_text(json.dumps(old))
    Checkpoints(str(tmp_path), None, architecture).check_architecture()  # the defaults: no difference
    with pytest.raises(UserError, match="arch=dcgan \\(now style\\)"):
        Checkpoints(str(tmp_path), None, style_config(tmp_path).architecture()).check_architecture()


def style_sampler(tmp_path, session):
    """An inference style generator with random weights, noise strength 0.5 and a non-zero average w."""
    config = style_config(tmp_path, dataset="celebA", c_dim=3, y_dim=0)
    generator = inference.InferenceGenerator(config)
    session.run(v1.global_variables_initializer())
    set_noise_strengths(session, 0.5)
    style.average_w(generator.spec).load(np.linspace(-1, 1, config.w_dim, dtype=np.float32), session)
    return config, generator


def test_the_same_z_renders_the_same_at_any_batch_position_in_any_batch_size(tmp_path):
    """Per-pixel noise is seeded by the sample's z, not its slot: a grid, the explorer (one image) and
    FID's chunks of 500 all render one z alike, and chunks never reuse each other's noise (issue 24, bug 7)."""
    with tf.Graph().as_default(), v1.Session() as session:
        config, generator = style_sampler(tmp_path, session)
        z = inference.fixed_z(6, config, seed=3)
        whole = generator.generate(session, z)
        assert len({image.tobytes() for image in whole}) == 6
        assert np.array_equal(generator.generate(session, z[::-1])[::-1], whole)  # other positions
        assert np.array_equal(generator.generate(session, z, chunk=4), whole)  # chunks: 4, then 2
        assert all(np.array_equal(generator.generate(session, z[i:i + 1])[0], whole[i]) for i in range(6))
        mixed = np.concatenate([inference.fixed_z(3, config, seed=4), z[2:3]])  # z[2] among strangers, in slot 3
        assert np.array_equal(generator.generate(session, mixed)[3], whole[2])


def test_different_z_in_the_same_slot_get_different_noise(tmp_path):
    """At psi 0 every z has the average w, so only the noise can tell two samples apart."""
    with tf.Graph().as_default(), v1.Session() as session:
        config, generator = style_sampler(tmp_path, session)
        z = inference.fixed_z(4, config, seed=3)
        alone = [session.run(generator.images_uint8, {generator.z: z[i:i + 1], generator.truncation_psi: 0.0})[0]
                 for i in range(len(z))]
        set_noise_strengths(session, 0.0)
        quiet = [session.run(generator.images_uint8, {generator.z: z[i:i + 1], generator.truncation_psi: 0.0})[0]
                 for i in range(len(z))]
    assert len({image.tobytes() for image in alone}) == len(z)
    assert len({image.tobytes() for image in quiet}) == 1  # the same w: the noise made the difference


def test_the_averaged_generator_copies_w_avg_and_averages_the_weights(tmp_path):
    """StyleGAN copies the tracked average w into G_ema: averaging it again would lag ~1/(1 - --g_ema) steps."""
    config = style_config(tmp_path, g_ema=0.999)
    with tf.Graph().as_default(), v1.Session() as session:
        images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 1)), tf.float32)
        gan = model.DCGAN(config, images, tf.constant([0, 1, 2, 3], tf.int64))
        session.run(gan.initializer)
        for _ in range(3):
            assert session.run(gan.fused_train_op)
        values = {v.op.name: session.run(v) for v in v1.global_variables()}
    assert np.any(values["generator/w_avg"] != 0)
    assert np.array_equal(values["generator_ema/w_avg"], values["generator/w_avg"])
    weight = "mapping/dense0/w"
    assert not np.array_equal(values[f"generator_ema/{weight}"], values[f"generator/{weight}"])  # still averaged


def test_the_explorer_takes_psi_for_a_style_checkpoint_and_its_saved_model(trained_style, tmp_path):
    """Issue 24, bug 8: the explorer refused psi for every generator; a style one's grid, image,
    interpolation and arithmetic take it, from the checkpoint and from the SavedModel's truncation signature."""
    import http.client
    import io
    import json

    z, labels = inference.fixed_z(1, trained_style, seed=5), inference.sample_labels(1, trained_style)
    z_text = ",".join(repr(float(v)) for v in z[0])
    export.export_saved_model(trained_style, str(tmp_path / "saved"))

    def answers(explorer):
        with serve.serving_in_background(explorer) as running:
            def ask(method, path, body=None):
                connection = http.client.HTTPConnection(*running.server_address[:2], timeout=60)
                connection.request(method, path, body=body)
                answer = connection.getresponse()
                return answer.status, answer.read()

            info = json.loads(ask("GET", "/api/info")[1])
            group = json.dumps([z[0].tolist()])
            arithmetic = json.dumps({"a": json.loads(group), "b": json.loads(group), "c": json.loads(group), "psi": 0})
            return info, {psi: ask("GET", f"/api/image?z={z_text}&label=0&psi={psi}") for psi in (0, 1)}, {
                "grid": ask("GET", "/api/grid?count=4&seed=1&psi=0.5")[0],
                "interpolate": ask("GET", f"/api/interpolate?a={z_text}&b={z_text}&t=0.5&psi=0.5")[0],
                "arithmetic": ask("POST", "/api/arithmetic", arithmetic.encode())[0],
                "too far": ask("GET", f"/api/image?z={z_text}&psi=3")}

    with restored_generator(trained_style) as restored:
        generator = restored.generator
        expected = {psi: restored.session.run(generator.images_uint8, {**generator.feed(z, labels),
                                                                       generator.truncation_psi: psi})[0]
                    for psi in (0.0, 1.0)}
        from_checkpoint = answers(serve.checkpoint_explorer(restored))
    with tf.Graph().as_default(), v1.Session() as session:
        from_saved_model = answers(serve.saved_model_explorer(
            dataclasses.replace(trained_style, serve_model=str(tmp_path / "saved")), session))
    for info, images, others in (from_checkpoint, from_saved_model):
        assert info["truncation"] is True and info["psi"] == trained_style.truncation_psi
        for psi, (status, body) in images.items():
            assert status == 200 and np.array_equal(imageio.imread(io.BytesIO(body)).reshape(expected[psi].shape),
                                                    expected[psi])
        assert others.pop("too far")[0] == 400 and others == {"grid": 200, "interpolate": 200, "arithmetic": 200}
