"""The networks receive a NetworkSpec, not the Config (issue 25): exactly the architecture options and the
documented extras, frozen, and enough to build every network; a network reading anything else fails."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

import config as config_lib
import networks
from networks import dcgan, style
from networks.options import ArchitectureOptions
from training.random_streams import RandomStreams

v1 = tf.compat.v1


class ReadRecorder:
    """A spec that records the name of every field read from it."""

    def __init__(self, spec):
        self.spec, self.read = spec, set()

    def __getattr__(self, name):
        self.read.add(name)
        return getattr(self.spec, name)


def test_the_spec_holds_the_architecture_options_and_the_documented_extras_only(tmp_path):
    config = tiny_config(tmp_path)
    spec = networks.network_spec(config)
    names = [field.name for field in dataclasses.fields(spec)]
    assert names == [*config_lib.ARCHITECTURE_FIELDS, *networks.NETWORK_EXTRAS]
    # Each extra is an option of another role (recipe or run), declared once in config.py, with its type.
    types = {field.name: field.type for field in dataclasses.fields(config_lib.Config)}
    assert {name: types[name] for name in networks.NETWORK_EXTRAS} == networks.NETWORK_EXTRAS
    assert not set(networks.NETWORK_EXTRAS) & {field.name for field in dataclasses.fields(ArchitectureOptions)}
    assert all(getattr(spec, name) == getattr(config, name) for name in names)
    for not_a_network_field in ("learning_rate", "dataset", "seed", "checkpoint_path", "conditional"):
        assert hasattr(config, not_a_network_field)
        with pytest.raises(AttributeError):
            getattr(spec, not_a_network_field)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.gf_dim = 8


def _dcgan_outputs(config, network_input):
    """dcgan's G and D built from `network_input` (a Config or its spec), their outputs and variables."""
    z = np.random.RandomState(0).uniform(-1, 1, (3, config.z_dim)).astype(np.float32)
    onehot = np.eye(config.y_dim, dtype=np.float32)[[0, 3, 7]]
    with tf.Graph().as_default():
        v1.set_random_seed(1)
        images = dcgan.generator(tf.constant(z), tf.constant(onehot), network_input, is_training=True)
        logits, features = dcgan.discriminator(images, tf.constant(onehot), network_input)
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            shapes = {v.op.name: v.shape.as_list() for v in v1.global_variables()}
            return session.run([images, logits, features]), shapes


def test_dcgan_builds_from_the_spec_alone_what_it_built_from_the_config(tmp_path):
    config = tiny_config(tmp_path, y_dim=10, bn_momentum=0.8, data_format="NCHW", minibatch_stddev=True)
    from_spec, spec_variables = _dcgan_outputs(config, networks.network_spec(config))
    from_config, config_variables = _dcgan_outputs(config, config)
    assert spec_variables == config_variables
    for spec_output, config_output in zip(from_spec, from_config, strict=True):
        np.testing.assert_array_equal(spec_output, config_output)
    assert np.std(from_spec[1]) > 0  # not a degenerate comparison


def test_every_extra_is_read_by_the_network_code(tmp_path):
    """What the extras are for: building each family's networks from the spec reads every one of them, and
    nothing the spec lacks (a missing field would raise AttributeError here)."""
    reads = set()
    for options in (dict(arch="dcgan"), dict(arch="mlp"), dict(arch="style", w_dim=8, mapping_layers=2)):
        recorder = ReadRecorder(networks.network_spec(tiny_config(tmp_path, y_dim=0, **options)))
        with tf.Graph().as_default():
            random = RandomStreams(seed=1)
            z = random.z(2, recorder)
            images = networks.generator_for(recorder, random)(z, None, recorder, is_training=True)
            networks.discriminator(images, None, recorder)
            if options["arch"] == "style":
                style.generator(z, None, recorder, is_training=False)  # ψ from the spec
        reads |= recorder.read
    assert set(networks.NETWORK_EXTRAS) <= reads
    assert reads <= {field.name for field in dataclasses.fields(networks.NetworkSpec)}
