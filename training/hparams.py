"""Runs compared in TensorBoard's HParams dashboard (`tensorboard --logdir logs`, tab HPARAMS).

Each training run writes, into its own events (logs/<run>/), the HParams plugin's session-start record
(`tensorboard.plugins.hparams.summary_v2.hparams_pb`, added to the run's TF1 FileWriter like any Summary):
its recipe and architecture fields, the dataset, batch size and seed that tell runs apart, and the learning
rates the recipe resolves to.  Its metrics are its scalars: TensorBoard builds the experiment from the runs'
session-start records and takes each scalar tag of those runs as a metric, at its last value.  So the run
also writes its final losses and D outputs under `final/` when it stops, and the quality figures of
--fid_every (`quality/fid [extractor]`, ...) appear as they are measured.  No experiment-wide config is
written: TensorBoard would take one run's and apply it to all, and runs on other data have other metrics.

A resumed run writes its record again, which fills in runs begun before this existed; TensorBoard keeps the
first record of a run, so a run continued with --allow_recipe_change shows the recipe it started with.
"""

from tensorboard.plugins.hparams import summary_v2

import config as config_lib
from runtime.tf_runtime import tf

v1 = tf.compat.v1

RUN_FIELDS = ("dataset", "batch_size", "seed")
HPARAM_FIELDS = tuple(dict.fromkeys(RUN_FIELDS + config_lib.RECIPE_FIELDS + config_lib.ARCHITECTURE_FIELDS))
# (key of a training step's results, TensorBoard tag of its final value)
FINAL_METRICS = (("d_loss", "final/d_loss"), ("g_loss", "final/g_loss"), ("d_real", "final/D_x"),
                 ("d_fake", "final/D_G_z"))


def hparams(config):
    """{name: bool, int, float or str} of the run's hyperparameters."""
    values = {name: getattr(config, name) for name in HPARAM_FIELDS}
    # A rate flag left at 0 means the model's default (config.DEFAULT_LEARNING_RATES): record the rates used.
    values["d_learning_rate_used"], values["g_learning_rate_used"] = config.learning_rates()
    return values


def session_start_summary(config):
    """The serialized Summary holding the run's HParams session-start record (FileWriter.add_summary takes it)."""
    return summary_v2.hparams_pb(hparams(config)).SerializeToString()


def final_metrics_summary(results):
    """Scalars `final/...` of the last step's results (a dict with the keys of FINAL_METRICS)."""
    return v1.Summary(value=[v1.Summary.Value(tag=tag, simple_value=float(results[key]))
                             for key, tag in FINAL_METRICS])
