"""Network families, one module each; `model.py` wires them into the training graph.

Every generator maps (z, one-hot labels or None) to NHWC images in [-1, 1]
under the `generator/` scope; every discriminator maps NHWC images (and
labels) to (logits, features) under `discriminator/`, and appends its hidden
activations to `layers` when given a list (the linear probe's features).
`--arch` picks the family: dcgan.py (convolutional), mlp.py (fully connected),
or style (StyleGAN's generator in style.py with the DCGAN discriminator).

The networks receive a `NetworkSpec`, not the whole Config: the architecture
options (options.py) and the few other options network code reads, built once
per graph with `network_spec(config)`.  So what a network can depend on is
listed in one place, and a network that reads anything else fails at once
(AttributeError) instead of quietly depending on a run or recipe option.
"""

import dataclasses
import functools
import importlib

from networks.options import ArchitectureOptions
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

# What network code reads besides the architecture options, and why; none of them changes a variable.
NETWORK_EXTRAS = {
    "bn_momentum": float,  # G's BatchNorm moving averages move by it (a recipe option)
    "data_format": str,  # the layout G and D compute in (a run option: weights are stored in NHWC either way)
    "style_mixing": float,  # the style G's training graph feeds two w with this probability (a recipe option)
    "truncation_psi": float,  # the style G's ψ when given no ψ tensor; the other G refuse ψ != 1 (a run option)
}

NetworkSpec = dataclasses.make_dataclass(
    "NetworkSpec",
    [(field.name, field.type) for field in dataclasses.fields(ArchitectureOptions)] + list(NETWORK_EXTRAS.items()),
    frozen=True,
    namespace={"__module__": __name__,  # make_dataclass's own `module` argument needs Python 3.12
               "__doc__": "What the networks are built from: every ArchitectureOptions field and NETWORK_EXTRAS, "
                          "frozen (a network cannot change what the graph is built from)."})


def network_spec(config):
    """The NetworkSpec of a (resolved) Config: what its graph's networks are given."""
    return NetworkSpec(**{field.name: getattr(config, field.name) for field in dataclasses.fields(NetworkSpec)})


def family(spec):
    """The module of --arch's discriminator: networks/dcgan.py or networks/mlp.py."""
    return importlib.import_module(f"networks.{'dcgan' if spec.arch == 'style' else spec.arch}")


def generator_for(spec, random=None, truncation_psi=None):
    """The generator `--arch` names, as a function of
    (z, labels_onehot, spec, is_training, update_moving_stats=True).

    The style generator also needs the training graph's `random` streams (its
    per-pixel noise and the second z of style mixing come from them, so runs
    stay reproducible) and, in inference, the truncation ψ tensor; the others
    draw nothing and have no average w to truncate towards.
    """
    if spec.arch == "style":
        from networks import style  # imported here: the network modules import this package's scope names

        return functools.partial(style.generator, random=random, truncation_psi=truncation_psi)
    if spec.truncation_psi != 1.0:
        raise UserError(f"--truncation_psi {spec.truncation_psi} needs a style generator (--arch style); "
                        f"this one is --arch {spec.arch}")
    return family(spec).generator


def generator(z, labels_onehot, spec, is_training, update_moving_stats=True):
    return generator_for(spec)(z, labels_onehot, spec, is_training, update_moving_stats)


def discriminator(images, labels_onehot, spec, layers=None, batch_groups=1):
    return family(spec).discriminator(images, labels_onehot, spec, layers, batch_groups)
