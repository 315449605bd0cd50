"""Network families, one module each; `model.py` wires them into the training graph.

Every generator maps (z, one-hot labels or None) to NHWC images in [-1, 1]
under the `generator/` scope; every discriminator maps NHWC images (and
labels) to (logits, features) under `discriminator/`.
"""

import functools

from errors import UserError

GENERATOR_SCOPE = "generator"
DISCRIMINATOR_SCOPE = "discriminator"


def generator_for(config, random=None, truncation_psi=None):
    """The generator `--arch` names, as a function of
    (z, labels_onehot, config, is_training, update_moving_stats=True).

    The style generator also needs the training graph's `random` streams (its
    per-pixel noise and the second z of style mixing come from them, so runs
    stay reproducible) and, in inference, the truncation ψ tensor; DCGAN's
    draws nothing and has no average w to truncate towards.
    """
    # Imported here: the network modules import this package's scope names.
    if config.arch == "style":
        from networks import style

        return functools.partial(style.generator, random=random, truncation_psi=truncation_psi)
    if config.truncation_psi != 1.0:
        raise UserError(f"--truncation_psi {config.truncation_psi} needs a style generator (--arch style); "
                        f"this one is --arch {config.arch}")
    from networks import dcgan

    return dcgan.generator
