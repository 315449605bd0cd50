"""config.py: impossible flags and combinations are one-line errors naming the flags, the option roles the stored
field lists come from, and how the learning-rate flags combine.  A feature's own options are checked in its own
test file (e.g. --diffaugment in test_diffaugment.py, --export_tflite in test_litert_export.py)."""


import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

import config as config_lib
import model
from networks.options import ArchitectureOptions
from runtime import options
from runtime.errors import UserError

v1 = tf.compat.v1


@pytest.mark.parametrize("overrides,message", [
    (dict(dataset="celebA", output_height=50), "--output_height=50: this generator needs a multiple of 16"),
    (dict(dataset="mnist", output_width=30), "--output_width=30: this generator needs a multiple of 4"),
    (dict(batch_size=0), "--batch_size must be at least 1"),
    (dict(z_dist="cauchy"), "--z_dist must be uniform or gaussian"),
    (dict(visualize_option="samples,movie"), "--visualize_option: unknown ['movie']"),
    (dict(port=70000), "--port must be in 0..65535"),
    (dict(visualize_option="arithmetic", arithmetic_groups="0,1;2"), "--arithmetic_groups '0,1;2': give three"),
    (dict(visualize_option="arithmetic", arithmetic_groups="0;x;2"), "--arithmetic_groups '0;x;2': give three"),
    (dict(visualize_option="arithmetic", n_samples=4, arithmetic_groups="0;1;7"),
     "--arithmetic_groups picks sample 7 but test_samples.png has --n_samples 4"),
])
def test_impossible_flags_are_refused(overrides, message):
    with pytest.raises(UserError) as error:
        config_lib.resolve(config_lib.Config(**overrides))
    assert message in str(error.value)


def test_each_option_is_declared_in_one_role_class_and_config_declares_none():
    by_role = [options.option_names(option_class) for option_class in config_lib.ROLES.values()]
    everything = [name for names in by_role for name in names]
    assert len(everything) == len(set(everything))
    assert tuple(everything) == options.option_names(config_lib.Config)  # architecture's first, as before
    assert config_lib.ROLES["architecture"] is ArchitectureOptions


def test_stored_field_lists_are_the_role_classes():
    assert config_lib.ARCHITECTURE_FIELDS == options.option_names(ArchitectureOptions)
    assert config_lib.RECIPE_FIELDS == options.option_names(config_lib.RecipeOptions)
    # The example: BatchNorm's momentum changes training, not the variables.
    config = config_lib.resolve(config_lib.Config(dataset="mnist", bn_momentum=0.8))
    assert config.recipe()["bn_momentum"] == 0.8 and "bn_momentum" not in config.architecture()


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
