"""networks/dcgan.py: the same weights give the same outputs in NHWC and NCHW, and the minibatch-stddev feature is
taken per stacked batch (combined BatchNorm: real and fake halves apart).  The option grid: test_networks.py."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

import model
from networks import dcgan as networks_dcgan
from networks import network_spec
from networks.dcgan import discriminator, generator

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
