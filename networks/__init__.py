"""Network families, one module each; `model.py` wires them into the training graph.

Every generator maps (z, one-hot labels or None) to NHWC images in [-1, 1]
under the `generator/` scope; every discriminator maps NHWC images (and
labels) to (logits, features) under `discriminator/`, and appends its hidden
activations to `layers` when given a list (the linear probe's features).
`--arch` picks the family: dcgan.py (convolutional) or mlp.py (fully connected).
"""

import importlib

GENERATOR_SCOPE = "generator"
DISCRIMINATOR_SCOPE = "discriminator"
# The exponential moving average of G's weights (--g_ema): the same variable
# names as under GENERATOR_SCOPE, so the same network code builds on either.
GENERATOR_AVERAGE_SCOPE = "generator_ema"
# Collection holding the training graph's model.RandomStreams: networks that
# draw noise (the MLP D's dropout) take stateless seeds from it, so a resumed
# run draws what the uninterrupted run would have; a graph without it (the
# linear probe's feature extractor) runs them without noise.
RANDOM_STREAMS = "random_streams"


def family(config):
    """The module of --arch: networks/dcgan.py or networks/mlp.py."""
    return importlib.import_module(f"networks.{config.arch}")


def generator(z, labels_onehot, config, is_training, update_moving_stats=True):
    return family(config).generator(z, labels_onehot, config, is_training, update_moving_stats)


def discriminator(images, labels_onehot, config, layers=None):
    return family(config).discriminator(images, labels_onehot, config, layers)
