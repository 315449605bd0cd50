"""G as it is sampled: in inference mode on fed z (and labels), and restored from a run's checkpoints.

What training-time samples, visualization, export, serving and evaluation all
read.  In `training/` because restoring needs the checkpoints' rules
(`training/checkpoints.py`) and the averaged G's variable renaming
(`training/stabilizers.py`); `networks/` stays below `training/` and imports
neither, and `training/checkpoints.py` no longer imports the training graph.
"""

import contextlib
import dataclasses
import logging
import os

import numpy as np

import config as config_lib
from networks import GENERATOR_AVERAGE_SCOPE, GENERATOR_SCOPE, generator_for, network_spec
from runtime.errors import UserError
from runtime.tf_runtime import tf
from training.checkpoints import ARCHITECTURE_FILE, Checkpoints, checkpoint_paths, read_architecture
from training.stabilizers import averaged_generator_variables
from training.updates import scope_variables

v1 = tf.compat.v1
log = logging.getLogger("dcgan")


class InferenceGenerator:
    """G in inference mode (BN moving averages) on fed z vectors and labels.

    Shared by training-time samples, visualization and export: the batch
    dimension is free, so sample counts never depend on --batch_size.  With
    --g_ema it is the averaged G (its variables under `scope`).  A style
    generator also takes `truncation_psi` (a scalar, default --truncation_psi).
    """

    def __init__(self, config):
        self.z = v1.placeholder(tf.float32, [None, config.z_dim], name="z")
        self.labels = v1.placeholder(tf.int64, [None], name="labels") if config.conditional else None
        self.labels_onehot = tf.one_hot(self.labels, config.y_dim) if config.conditional else None
        self.truncation_psi = (v1.placeholder_with_default(float(config.truncation_psi), [], name="truncation_psi")
                               if config.arch == "style" else None)
        self.scope = GENERATOR_AVERAGE_SCOPE if config.g_ema else GENERATOR_SCOPE
        if config.g_ema:
            log.info("generator: sampling with the moving average of G's weights (--g_ema %g)", config.g_ema)
        self.config = config
        self.spec = network_spec(config)  # what G is built from (visualize.StyleTools builds parts of it too)
        self.images = self.build(self.z, self.labels_onehot)
        self.images_uint8 = to_uint8(self.images, name="images_uint8")

    def variables(self):
        """The context in which network code reads this generator's variables: the averaged G's
        with --g_ema (code that builds parts of G itself, like visualize.StyleTools, needs it too)."""
        return averaged_generator_variables() if self.config.g_ema else contextlib.nullcontext()

    def build(self, z, labels_onehot):
        """G's images for other z/label tensors, on this generator's variables and settings
        (the averaged G with --g_ema; the truncation input of a style generator)."""
        with self.variables():
            return generator_for(self.spec, truncation_psi=self.truncation_psi)(
                z, labels_onehot, self.spec, is_training=False)

    def feed(self, z, labels=None):
        feed = {self.z: z}
        if self.labels is not None:
            feed[self.labels] = labels
        return feed

    def generate(self, session, z, labels=None, chunk=256):
        """uint8 images for any number of z vectors, `chunk` at a time to bound memory."""
        images = []
        for start in range(0, len(z), chunk):
            part = None if labels is None else labels[start:start + chunk]
            images.append(session.run(self.images_uint8, self.feed(z[start:start + chunk], part)))
        return np.concatenate(images)


def to_uint8(images, name=None):
    """Images in [-1, 1] -> uint8 pixels (rounded, clipped)."""
    pixels = tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0.0, 255.0)
    return tf.cast(pixels, tf.uint8, name=name)


def fixed_z(count, config, seed):
    """Reproducible z vectors (NumPy), e.g. the fixed batch behind every sample grid."""
    rng = np.random.RandomState(seed)
    if config.z_dist == "gaussian":
        return rng.standard_normal((count, config.z_dim)).astype(np.float32)
    return rng.uniform(-1.0, 1.0, (count, config.z_dim)).astype(np.float32)


def sample_labels(count, config):
    """Labels cycling 0..y_dim-1, so a grid shows every class in order (None if unconditional)."""
    return np.arange(count) % config.y_dim if config.conditional else None


@dataclasses.dataclass
class RestoredGenerator:
    session: object
    generator: InferenceGenerator
    config: object  # the run's Config with the architecture read from the checkpoint folder
    path: str  # the checkpoint restored


@contextlib.contextmanager
def restored_generator(config, checkpoint=None, average=True):
    """Yields a RestoredGenerator: G restored from the newest checkpoint of
    `config`'s run (of its best/ folder with --best, or the given `checkpoint`
    prefix of that run), in a fresh graph.

    The architecture comes from the checkpoint folder, so visualizing needs no
    data and only the flags that name the run (dataset, batch and output size).
    A run trained with --g_ema holds both G and its moving average; the average
    is what a user samples, and `average=False` gives G's own weights instead,
    so a benchmark can measure what the average adds to the same run.
    """
    directory = os.path.join(config.checkpoint_path, "best") if config.best else config.checkpoint_path
    architecture = read_architecture(directory)
    if architecture is None or not checkpoint_paths(directory):
        raise UserError(f"no checkpoint in {directory}; train first with the same flags and --train")
    config = dataclasses.replace(config, **architecture)
    try:
        config_lib.resolve(config)
    except UserError as e:
        raise UserError(f"{os.path.join(directory, ARCHITECTURE_FILE)}: damaged ({e})") from None
    built = config if average else dataclasses.replace(config, g_ema=0.0)
    with tf.Graph().as_default():
        generator = InferenceGenerator(built)
        saver = v1.train.Saver(scope_variables(generator.scope, v1.GraphKeys.GLOBAL_VARIABLES))
        with v1.Session() as session:
            path = Checkpoints(directory, saver, config.architecture()).restore(session, checkpoint)
            log.info("restored generator from %s", path)
            yield RestoredGenerator(session, generator, built, path)
