"""Network families, one module each; `model.py` wires them into the training graph.

Every generator maps (z, one-hot labels or None) to NHWC images in [-1, 1]
under the `generator/` scope; every discriminator maps NHWC images (and
labels) to (logits, features) under `discriminator/`, and appends its hidden
activations to `layers` when given a list (the linear probe's features).
`--arch` picks the family: dcgan.py (convolutional), mlp.py (fully connected),
or style (StyleGAN's generator in style.py with the DCGAN discriminator).
"""

import functools
import importlib

from runtime.errors import UserError

GENERATOR_SCOPE = "generator"
DISCRIMINATOR_SCOPE = "discriminator"
# The exponential moving average of G's weights (--g_ema): the same variable
# names as under GENERATOR_SCOPE, so the same network code builds on either.
GENERATOR_AVERAGE_SCOPE = "generator_ema"
# The style generator's tracked average w (generator/w_avg, networks/style.py): --g_ema copies it.
AVERAGE_W_NAME = "w_avg"
# Collection holding the training graph's random_streams.RandomStreams: networks that
# draw noise (the MLP D's dropout) take stateless seeds from it, so a resumed
# run draws what the uninterrupted run would have; a graph without it (the
# linear probe's feature extractor) runs them without noise.
RANDOM_STREAMS = "random_streams"


def family(config):
    """The module of --arch's discriminator: networks/dcgan.py or networks/mlp.py."""
    return importlib.import_module(f"networks.{'dcgan' if config.arch == 'style' else config.arch}")


def generator_for(config, random=None, truncation_psi=None):
    """The generator `--arch` names, as a function of
    (z, labels_onehot, config, is_training, update_moving_stats=True).

    The style generator also needs the training graph's `random` streams (its
    per-pixel noise and the second z of style mixing come from them, so runs
    stay reproducible) and, in inference, the truncation ψ tensor; the others
    draw nothing and have no average w to truncate towards.
    """
    if config.arch == "style":
        from networks import style  # imported here: the network modules import this package's scope names

        return functools.partial(style.generator, random=random, truncation_psi=truncation_psi)
    if config.truncation_psi != 1.0:
        raise UserError(f"--truncation_psi {config.truncation_psi} needs a style generator (--arch style); "
                        f"this one is --arch {config.arch}")
    return family(config).generator


def generator(z, labels_onehot, config, is_training, update_moving_stats=True):
    return generator_for(config)(z, labels_onehot, config, is_training, update_moving_stats)


def discriminator(images, labels_onehot, config, layers=None, batch_groups=1):
    return family(config).discriminator(images, labels_onehot, config, layers, batch_groups)
