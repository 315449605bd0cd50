"""NaN/Inf losses, gradients and input images under both --nan_policy values: no checkpoint may ever hold a
non-finite value."""

import contextlib
import re
from unittest import mock

import numpy as np

import config as config_lib
import model
from bench.faults.runs import checkpoint_values, restore_check, tiny_config
from runtime.errors import TrainingDiverged
from runtime.tf_runtime import tf
from training import checkpoints, losses, train

v1 = tf.compat.v1


@contextlib.contextmanager
def poisoned(kind, value, steps):
    """Makes G's loss ("loss"), only G's gradient ("gradient") or D's input
    images ("images") `value` (NaN or Inf) at the given 1-based steps."""
    def factor():  # `value` at the bad steps, else 1
        return tf.where(tf.reduce_any(tf.equal(v1.train.get_or_create_global_step() + 1, sorted(steps))), value, 1.0)

    if kind == "loss":
        original = losses.generator_loss
        patch = mock.patch.object(losses, "generator_loss", lambda kind, logits: original(kind, logits) * factor())
    elif kind == "gradient":
        original = losses.generator_loss

        def generator_loss(kind, logits):
            scale = factor()

            @tf.custom_gradient
            def identity(x):
                return tf.identity(x), lambda dy: dy * scale

            return identity(original(kind, logits))

        patch = mock.patch.object(losses, "generator_loss", generator_loss)
    else:
        original_d = model.discriminator
        patch = mock.patch.object(model, "discriminator",
                                  lambda images, *args, **kw: original_d(images * factor(), *args, **kw))
    with patch:
        yield


LIMIT = config_lib.NAN_SKIP_LIMIT
# name: (--nan_policy, what is poisoned, value, at steps, steps to train, the error expected ("": finishes))
NAN_CASES = {
    "stop: NaN loss": ("stop", "loss", np.nan, {3}, 5, r"^step 3: non-finite .*g_loss=nan.*model-2 \(step 2\)"),
    "stop: Inf gradient, finite loss": ("stop", "gradient", np.inf, {3}, 5,
                                        r"^step 3: non-finite .*model-2 \(step 2\)"),
    "skip: NaN loss twice": ("skip", "loss", np.nan, {3, 4}, 5, ""),
    "skip: NaN gradient once": ("skip", "gradient", np.nan, {3}, 5, ""),
    f"skip: Inf loss {LIMIT} times in a row": ("skip", "loss", np.inf, set(range(3, 100)), LIMIT + 3,
                                              rf"^step {LIMIT + 2}: .*{LIMIT} steps in a row.*model-{LIMIT + 1} "),
    # A NaN real batch: D's and G's updates of that step are skipped, BatchNorm averages included, and the run
    # carries on (before round two, G's averages took in the batch and the run stopped at the next save).
    "skip: NaN input images": ("skip", "images", np.nan, {3}, 5, ""),
}


def nan_case(work_dir, name):
    """Runs NAN_CASES[name] with a checkpoint every step: it must end as
    expected, and every checkpoint left must be finite and restorable.
    Returns the step restored."""
    policy, kind, value, steps, total, expected = NAN_CASES[name]
    config = tiny_config(work_dir, max_steps=total, nan_policy=policy, max_to_keep=total)
    with poisoned(kind, value, steps):
        try:
            train.train(config)
            error = ""
        except TrainingDiverged as e:
            error = str(e)
    assert re.search(expected, error) if expected else not error, (name, error)
    for path in checkpoints.checkpoint_paths(config.checkpoint_path):
        assert all(np.all(np.isfinite(v)) for v in checkpoint_values(path).values() if v.dtype.kind == "f"), path
    return restore_check(config)
