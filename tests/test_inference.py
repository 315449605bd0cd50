"""training/inference.py: the generator restored from a run samples z as the run was trained (its own record wins
over the flags).  The named-checkpoint restore under damaged files: test_hostile_files.py."""

import pytest
from conftest import tiny_config

from runtime.errors import UserError
from training import train


def test_the_generator_is_restored_with_the_z_distribution_it_was_trained_with(tmp_path):
    from training.inference import restored_generator

    train.train(tiny_config(tmp_path, z_dist="gaussian"))
    with restored_generator(tiny_config(tmp_path)) as restored:  # the flags say uniform: the run's record wins
        assert restored.config.z_dist == "gaussian"
    with pytest.raises(UserError, match="z_dist=gaussian \\(now uniform\\)"):
        train.train(tiny_config(tmp_path, max_steps=3))  # resuming with other z is refused
