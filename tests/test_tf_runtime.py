"""runtime/tf_runtime.py: the session options every training session gets; mixed precision stays inside the
training session."""

import tensorflow as tf
from conftest import tiny_config

from training import train


def test_mixed_precision_is_confined_to_the_training_session(tmp_path):
    train.train(tiny_config(tmp_path, mixed_precision=True))
    assert not tf.config.optimizer.get_experimental_options().get("auto_mixed_precision")
