"""Architecture options (issue 15): shapes over the option grid, the PyTorch
reference's kernel-4 shapes, instance/layer norm statistics, spectral norm
against numpy's SVD, and the G weight average against a hand-computed one."""

import dataclasses
import itertools
import json
import logging

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

import config as config_lib
import model
import networks
import ops
from runtime.errors import UserError
from tools import export
from training import checkpoints, inference, stabilizers, train, updates

v1 = tf.compat.v1

DCGAN_OPTIONS = [dict(arch="dcgan", g_upsample=upsample, kernel_size=kernel, d_head=head, g_norm=norm, d_norm=norm)
                 for upsample, kernel, head, norm in itertools.product(config_lib.G_UPSAMPLE, (4, 5),
                                                                       config_lib.D_HEADS, config_lib.NORMS)]
MLP_OPTIONS = [dict(arch="mlp", g_norm=norm, d_norm=norm) for norm in ("batch", "layer", "none")]
# (size, y_dim): the unconditional DCGAN G upsamples 4 times, so 28x28 is conditional (MNIST's model) only.
SIZES = [(16, 0), (16, 10), (28, 10)]


def _case_id(options):
    return "-".join(str(value) for value in options.values())


def _networks(config, batch, rng):
    """G's training-mode images on random z/labels, and D's logits and features on them."""
    z = tf.constant(rng.uniform(-1, 1, (batch, config.z_dim)).astype(np.float32))
    onehot = tf.constant(np.eye(config.y_dim, dtype=np.float32)[rng.randint(0, config.y_dim, batch)]
                         ) if config.conditional else None
    spec = networks.network_spec(config)
    images = networks.generator(z, onehot, spec, is_training=True)
    return (images, *networks.discriminator(images, onehot, spec))


def _network_outputs(config, values=None, batch=3):
    """`_networks`' outputs and every variable's value; `values` (by name) are loaded first when given."""
    with tf.Graph().as_default():
        tensors = _networks(config, batch, np.random.RandomState(0))
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            for variable in v1.global_variables() if values is not None else []:
                variable.load(values[variable.op.name], session)
            return session.run(tensors), {v.op.name: session.run(v) for v in v1.global_variables()}


@pytest.mark.parametrize("options", DCGAN_OPTIONS + MLP_OPTIONS, ids=_case_id)
def test_every_option_builds_the_right_shapes_at_16_and_28(tmp_path, options):
    configs = {}
    for size, y_dim in SIZES + ([(28, 0)] if options["arch"] == "mlp" else []):
        if options.get("g_norm") == "instance" and (size, y_dim) == (16, 0):
            with pytest.raises(UserError, match="--g_norm instance would zero the 1x1 feature maps"):
                tiny_config(tmp_path, output_height=size, y_dim=y_dim, **options)
            continue
        configs[size, y_dim] = tiny_config(tmp_path, output_height=size, y_dim=y_dim, **options)
    with tf.Graph().as_default():  # one graph and session for every size: each under a scope of its own
        outputs = {}
        for (size, y_dim), config in configs.items():
            with v1.variable_scope(f"size{size}_classes{y_dim}"):
                outputs[size, y_dim] = _networks(config, 3, np.random.RandomState(0))
        kernels = {tuple(v.shape.as_list()[:2]) for v in v1.global_variables() if v.shape.ndims == 4}
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            outputs = session.run(outputs)
    for (size, y_dim), (images, logits, features) in outputs.items():
        assert images.shape == (3, size, size, 1) and np.abs(images).max() <= 1
        assert logits.shape == (3, 1) and np.isfinite(logits).all() and features.ndim == 2
        assert np.std(images, axis=0).max() > 0  # G's output depends on z
        if options.get("d_head") == "gap" and not y_dim:
            assert features.shape == (3, configs[size, y_dim].df_dim * 8)  # one value per channel of the last maps
    assert kernels <= {(options.get("kernel_size", 5),) * 2}


@pytest.mark.parametrize("options", [dict(g_upsample="resize_conv", d_head="gap"),
                                     dict(g_norm="instance", d_norm="layer", spectral_norm=True),
                                     dict(g_norm="layer", d_norm="instance", kernel_size=4)], ids=_case_id)
@pytest.mark.parametrize("y_dim", [0, 10])
def test_the_same_weights_give_the_same_outputs_in_nchw(tmp_path, options, y_dim):
    nhwc = tiny_config(tmp_path, y_dim=y_dim, output_height=32, **options)
    (images, logits, features), weights = _network_outputs(nhwc)
    (images_nchw, logits_nchw, features_nchw), _ = _network_outputs(
        dataclasses.replace(nhwc, data_format="NCHW"), weights)
    np.testing.assert_allclose(images_nchw, images, atol=1e-5)
    np.testing.assert_allclose(logits_nchw, logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features_nchw, features, rtol=1e-4, atol=1e-5)
    assert np.std(logits) > 0  # not a degenerate comparison


def test_kernel_4_gives_the_pytorch_reference_shapes_at_64(tmp_path):
    # pytorch/examples dcgan: G 4x4x(8·ngf) -> 8x8x(4·ngf) -> 16x16x(2·ngf) -> 32x32xngf -> 64x64xnc,
    # D 64 -> 32x32xndf -> 16x16x(2·ndf) -> 8x8x(4·ndf) -> 4x4x(8·ndf), every kernel 4x4, stride 2.
    config = tiny_config(tmp_path, dataset="celebA", c_dim=3, output_height=64, kernel_size=4)
    gf, df = config.gf_dim, config.df_dim
    with tf.Graph().as_default() as graph:
        spec = networks.network_spec(config)
        images = networks.generator(tf.zeros([2, config.z_dim]), None, spec, is_training=True)
        layers = []
        networks.discriminator(images, None, spec, layers)
        g_maps = [graph.get_tensor_by_name(f"generator/{name}:0").shape.as_list()[1:]
                  for name in ("Reshape", "g_h1/BiasAdd", "g_h2/BiasAdd", "g_h3/BiasAdd", "g_h4/BiasAdd")]
        kernels = [v.shape.as_list() for v in v1.global_variables() if v.shape.ndims == 4]
    assert g_maps == [[4, 4, 8 * gf], [8, 8, 4 * gf], [16, 16, 2 * gf], [32, 32, gf], [64, 64, 3]]
    assert [layer.shape.as_list()[1:] for layer in layers] == [[32, 32, df], [16, 16, 2 * df], [8, 8, 4 * df],
                                                                [4, 4, 8 * df]]
    assert len(kernels) == 8 and all(kernel[:2] == [4, 4] for kernel in kernels)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("kind", ["instance", "layer"])
def test_instance_and_layer_norm_standardise_over_their_axes(kind, data_format):
    rng = np.random.RandomState(0)
    # Every example and channel with its own mean and spread, so normalising over the wrong axes shows.
    x = rng.normal(size=(3, 5, 6, 4)) * rng.uniform(0.5, 4, (3, 1, 1, 4)) + rng.uniform(-3, 3, (3, 1, 1, 4))
    x = x.transpose(0, 3, 1, 2) if data_format == "NCHW" else x
    spatial = (2, 3) if data_format == "NCHW" else (1, 2)
    axes = spatial if kind == "instance" else (1, 2, 3)
    with tf.Graph().as_default():
        y = ops.normalize(tf.constant(x, tf.float32), kind, is_training=True, data_format=data_format)
        variables = v1.global_variables()
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            y = session.run(y)
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=axes), 1, atol=1e-3)  # epsilon 1e-5 in the denominator
    expected = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    assert sorted(v.shape.as_list() for v in variables) == [[4], [4]]  # per-channel scale and offset only
    if kind == "layer":  # the per-channel statistics are not standardised: layer norm is not instance norm
        assert np.abs(y.mean(axis=spatial)).max() > 0.1


def test_instance_norm_of_a_dense_layer_is_layer_norm():
    x = np.random.RandomState(1).normal(3, 2, (4, 7)).astype(np.float32)
    with tf.Graph().as_default():
        y = ops.normalize(tf.constant(x), "instance", is_training=True)
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            y = session.run(y)
    np.testing.assert_allclose(y, (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5),
                               atol=1e-5)


def test_spectral_norm_makes_the_largest_singular_value_one():
    rng = np.random.RandomState(0)
    kernel = rng.normal(0, 0.3, (5, 5, 3, 8)).astype(np.float32)
    with tf.Graph().as_default(), v1.variable_scope("layer", reuse=v1.AUTO_REUSE):
        v1.set_random_seed(0)  # u's random start: the same in every run
        weights = v1.get_variable("w", initializer=kernel)
        normalized = ops.spectrally_normalized(weights)
        ops.spectrally_normalized(weights)  # a second call (D runs several times a step) registers nothing
        updates = v1.get_collection(ops.MOVING_AVERAGE_UPDATES)
        assert len(updates) == 1 and updates[0][0].op.name == "layer/u" and not updates[0][0].trainable
        power_iteration = ops.moving_average_assignments(updates)
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            first = session.run(normalized)
            for _ in range(100):  # converges geometrically, whatever u's start
                session.run(power_iteration)
            converged = session.run(normalized)
    singular_values = np.linalg.svd(kernel.reshape(-1, 8), compute_uv=False)
    assert singular_values[0] > 2  # so dividing by it matters
    assert np.linalg.svd(converged.reshape(-1, 8), compute_uv=False)[0] == pytest.approx(1, abs=1e-3)
    # One iteration from a random u underestimates sigma, so the first estimate leaves it above 1.
    assert np.linalg.svd(first.reshape(-1, 8), compute_uv=False)[0] > 1.0


def test_spectral_norm_u_moves_only_with_an_applied_d_update_and_is_checkpointed(tmp_path):
    with tf.Graph().as_default():
        config = tiny_config(tmp_path, y_dim=0, spectral_norm=True)
        images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 1)), tf.float32)
        gan = model.DCGAN(config, images)
        u_vectors = [v for v in v1.global_variables() if v.op.name.endswith("/u")]
        assert len(u_vectors) == 5 and all(v.op.name.startswith("discriminator/") for v in u_vectors)
        assert set(u_vectors) <= set(gan.saver._var_list) and not set(u_vectors) & set(v1.trainable_variables())
        with v1.Session() as session:
            session.run(gan.initializer)
            before = session.run(u_vectors)
            assert not session.run(gan.d_train_op, {gan.d_loss: np.nan})
            assert all(np.array_equal(a, b) for a, b in zip(before, session.run(u_vectors), strict=True))
            assert session.run(gan.g_train_op)  # G's update leaves D's u alone
            assert all(np.array_equal(a, b) for a, b in zip(before, session.run(u_vectors), strict=True))
            assert session.run(gan.d_train_op)
            after = session.run(u_vectors)
    assert not any(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(np.linalg.norm(u) == pytest.approx(1, abs=1e-5) for u in after)


@pytest.mark.parametrize("fused_update", [False, True])
def test_g_ema_equals_the_hand_computed_average_after_k_steps(tmp_path, fused_update):
    decay, steps = 0.7, 20  # past the warm-up: (1 + 20) / 30 = 0.7
    with tf.Graph().as_default():
        config = tiny_config(tmp_path, g_ema=decay, fused_update=fused_update)
        images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 1)), tf.float32)
        gan = model.DCGAN(config, images, tf.constant([1, 2, 3, 4], tf.int64))
        weights = updates.scope_variables(model.GENERATOR_SCOPE) + [
            v for v in updates.scope_variables(model.GENERATOR_SCOPE, v1.GraphKeys.GLOBAL_VARIABLES)
            if "moving" in v.op.name]
        by_name = {v.op.name: v for v in v1.global_variables()}
        averages = [by_name[stabilizers.averaged_name(v)] for v in weights]
        assert not set(averages) & set(v1.trainable_variables()) and set(averages) <= set(gan.saver._var_list)
        with v1.Session() as session:
            session.run(gan.initializer)
            expected = session.run(weights)
            for average, initial in zip(session.run(averages), expected, strict=True):
                np.testing.assert_array_equal(average, initial)  # they start from G's initial values
            train_op, g_loss = ((gan.fused_train_op, gan.fused_fetches["g_loss"]) if fused_update
                                else (gan.g_train_op, gan.g_loss))
            for step in range(steps + 1):
                skip = step == 1  # a skipped G update leaves the average alone
                if not fused_update:
                    session.run(gan.d_train_op)
                assert session.run(train_op, {g_loss: np.nan} if skip else {}) != skip
                if not skip:
                    warmed = min(decay, (1 + step) / (10 + step))  # warm-up: 0.1 at step 0 up to 0.7 at step 20
                    expected = [warmed * a + (1 - warmed) * w for a, w in zip(expected, session.run(weights),
                                                                              strict=True)]
                session.run(gan.advance_step)
            got = session.run(averages)
            current = session.run(weights)
    for average, value in zip(got, expected, strict=True):
        np.testing.assert_allclose(average, value, rtol=1e-5, atol=1e-7)
    assert not all(np.allclose(a, w) for a, w in zip(got, current, strict=True))  # a real average, not a copy


def test_samples_and_export_use_the_averaged_generator(tmp_path, caplog):
    config = tiny_config(tmp_path, g_ema=0.5, g_norm="layer")
    with tf.Graph().as_default():
        images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 1)), tf.float32)
        gan = model.DCGAN(config, images, tf.constant([1, 2, 3, 4], tf.int64))
        z, labels = inference.fixed_z(5, config, seed=3), inference.sample_labels(5, config)
        with v1.Session() as session:
            session.run(gan.initializer)
            session.run([gan.d_train_op, gan.g_train_op])
            averaged = {v.op.name: session.run(v) for v in updates.scope_variables(
                networks.GENERATOR_AVERAGE_SCOPE, v1.GraphKeys.GLOBAL_VARIABLES)}
            own = {v.op.name: session.run(v) for v in updates.scope_variables(
                networks.GENERATOR_SCOPE, v1.GraphKeys.GLOBAL_VARIABLES)}
            sampled = gan.sampler.generate(session, z, labels)
            saved = checkpoints.Checkpoints(config.checkpoint_path, gan.saver, config.architecture())
            saved.save(session, 1)
    # The same images from the plain G network given the averaged weights, in a graph of its own.
    with tf.Graph().as_default():
        plain = inference.InferenceGenerator(dataclasses.replace(config, g_ema=0.0))
        with v1.Session() as session:
            for variable in v1.global_variables():
                variable.load(averaged[stabilizers.averaged_name(variable)], session)
            np.testing.assert_array_equal(plain.generate(session, z, labels), sampled)
    with caplog.at_level(logging.INFO, logger="dcgan"), inference.restored_generator(
            dataclasses.replace(config, g_ema=0.0)) as restored:  # the architecture file turns it on
        assert restored.generator.scope == "generator_ema"
        np.testing.assert_array_equal(restored.generator.generate(restored.session, z, labels), sampled)
    assert "moving average of G's weights (--g_ema 0.5)" in caplog.text
    # average=False: the same checkpoint's G itself, for benchmarks comparing the two.
    with inference.restored_generator(config, average=False) as restored:
        assert restored.generator.scope == "generator" and restored.config.g_ema == 0.0
        restored_own = {v.op.name: restored.session.run(v) for v in v1.global_variables()}
        assert restored_own and restored_own.keys() <= own.keys()  # G's weights (own also has Adam's slots)
        for name, value in restored_own.items():
            np.testing.assert_array_equal(value, own[name])
        assert not np.array_equal(restored.generator.generate(restored.session, z, labels), sampled)


def test_a_checkpoint_of_another_architecture_option_is_refused(tmp_path):
    config = tiny_config(tmp_path, g_upsample="resize_conv", spectral_norm=True)
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / checkpoints.ARCHITECTURE_FILE).write_text(json.dumps(config.architecture()))
    resumed = tiny_config(tmp_path, g_upsample="deconv", spectral_norm=True)
    with pytest.raises(UserError, match=r"g_upsample=resize_conv \(now deconv\); pass the same flags"):
        checkpoints.Checkpoints(str(directory), None, resumed.architecture()).check_architecture()


def test_a_checkpoint_folder_from_before_the_options_reads_as_the_plain_dcgan(tmp_path):
    config = tiny_config(tmp_path, g_ema=0.0)  # the options' values before they existed
    directory = tmp_path / "old_run"
    directory.mkdir()
    old = {k: v for k, v in config.architecture().items() if k not in config_lib.ARCHITECTURE_BEFORE_FIELDS}
    (directory / checkpoints.ARCHITECTURE_FILE).write_text(json.dumps(old))
    assert checkpoints.read_architecture(str(directory)) == config.architecture()
    checkpoints.Checkpoints(str(directory), None, config.architecture()).check_architecture()
    # Resumed under today's defaults, which sample a moving average of G: refused in one line.
    with pytest.raises(UserError, match=r"g_ema=0.0 \(now 0.999\)"):
        checkpoints.Checkpoints(str(directory), None, tiny_config(tmp_path).architecture()).check_architecture()


def test_mlp_trains_unconditional_at_an_odd_size_with_dropout_from_the_streams(tmp_path):
    config = tiny_config(tmp_path, arch="mlp", output_height=20, y_dim=0)
    with tf.Graph().as_default():
        images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (4, 20, 20, 1)), tf.float32)
        gan = model.DCGAN(config, images)
        dropouts = [op for op in v1.get_default_graph().get_operations() if "stateless_dropout" in op.name]
        assert dropouts  # D's dropout is drawn from the stateless streams
        with v1.Session() as session:
            session.run(gan.initializer)
            assert session.run(gan.d_train_op) and session.run(gan.g_train_op)
            assert session.run(gan.sampler.images_uint8, gan.sampler.feed(inference.fixed_z(2, config, 0))).shape == (
                2, 20, 20, 1)


@pytest.mark.parametrize("overrides,message", [
    (dict(arch="mlp", d_head="gap"), "--d_head has no meaning with --arch mlp"),
    (dict(arch="mlp", g_upsample="resize_conv"), "--g_upsample has no meaning with --arch mlp"),
    (dict(arch="mlp", g_norm="instance"), "--g_norm instance needs feature maps"),
    (dict(arch="mlp", gfc_dim=2), "--arch mlp: --gfc_dim and --dfc_dim must be at least 4"),
    (dict(arch="resnet"), "--arch must be dcgan or mlp"),
    (dict(d_norm="group"), "--d_norm must be one of batch, instance, layer, none"),
    (dict(g_ema=1.0), "--g_ema must be 0 (off) or a decay in (0, 1)"),
    (dict(linear_probe=True), "--linear_probe needs an unconditional D (--y_dim 0)"),
    (dict(linear_probe=True, dataset="celebA", y_dim=0), "--linear_probe needs a labelled dataset"),
])
def test_impossible_combinations_are_one_line_errors(tmp_path, overrides, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        tiny_config(tmp_path, **overrides)
    assert "\n" not in str(error.value)


def test_defaults_resolve_per_architecture(tmp_path):
    assert (tiny_config(tmp_path).g_norm, tiny_config(tmp_path).d_norm) == ("batch", "batch")
    mlp = tiny_config(tmp_path, arch="mlp", output_height=28)
    assert (mlp.g_norm, mlp.d_norm) == ("batch", "none")
    assert set(config_lib.ARCHITECTURE_FIELDS) >= {"arch", "g_upsample", "d_head", "g_norm", "d_norm",
                                                   "spectral_norm", "g_ema"}



@pytest.mark.parametrize("options", [
    dict(g_upsample="resize_conv", d_head="gap", g_norm="layer", d_norm="none", spectral_norm=True, g_ema=0.99,
         data_format="NCHW", kernel_size=4),
    dict(arch="mlp", y_dim=0, output_height=28, g_norm="layer", spectral_norm=True, g_ema=0.99),
], ids=["dcgan", "mlp"])
def test_options_train_resume_and_export_with_the_averaged_generator(tmp_path, options):
    config = tiny_config(tmp_path, **options)
    assert train.train(config) == 2
    assert train.train(dataclasses.replace(config, max_steps=3)) == 3  # resumed: one more step
    names = {name for name, _ in tf.train.list_variables(tf.train.latest_checkpoint(config.checkpoint_path))}
    assert {n for n in names if n.endswith("/u")} and all(n.startswith("discriminator/") for n in names
                                                          if n.endswith("/u"))
    assert {n.replace("generator/", "generator_ema/", 1) for n in names if n.startswith("generator/")
            and "adam" not in n.lower()} <= names
    z, labels = inference.fixed_z(3, config, seed=5), inference.sample_labels(3, config)
    with inference.restored_generator(config) as restored:
        expected = restored.generator.generate(restored.session, z, labels)
    export.export_saved_model(config, str(tmp_path / "saved"))
    with tf.Graph().as_default(), v1.Session() as session:
        signature = v1.saved_model.loader.load(session, ["serve"], str(tmp_path / "saved")).signature_def[
            "serving_default"]
        feed = {signature.inputs["z"].name: z}
        if config.conditional:
            feed[signature.inputs["labels"].name] = labels
        images = session.run(signature.outputs["images"].name, feed)
    np.testing.assert_array_equal(images, expected)
    assert images.shape == (3, config.output_height, config.output_width, 1)


@pytest.mark.parametrize("overrides, expected", [
    (dict(dataset="mnist"), "deconv"),  # conditional: carpedm20's transposed convolutions
    (dict(dataset="mnist", y_dim=0, output_height=32), "resize_conv"),  # where deconv collapsed
    (dict(dataset="fashion", y_dim=0, output_height=32), "resize_conv"),
    (dict(dataset="celebA"), "deconv"),
    (dict(dataset="mnist", y_dim=0, output_height=32, g_upsample="deconv"), "deconv"),  # a flag given wins
    (dict(dataset="celebA", g_upsample="resize_conv"), "resize_conv"),
    (dict(dataset="mnist", y_dim=0, arch="mlp"), "deconv"),  # no convolutions: the value has no meaning
])
def test_g_upsample_defaults_by_model_and_a_given_flag_wins(overrides, expected):
    assert config_lib.resolve(config_lib.Config(**overrides)).g_upsample == expected
