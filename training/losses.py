"""GAN losses as small pure functions of logits (TF-GAN style), and the table that names them.

Each takes tensors and returns tensors, owns no variables and reads no config,
so it can be tested on constants and swapped without touching the model.
`LOSSES` maps each --loss name to its D loss, its G loss and what the rest of
the project must know of it, so adding a loss touches this file (and its
tests) only; `discriminator_loss(kind, ...)` and `generator_loss(kind, ...)`
look it up, and the penalties are added on top of any of them.

Importing this module does not import TensorFlow (see `_TensorFlowOnFirstUse`):
config.py reads the table for --loss's choices.
"""

from collections.abc import Callable
from typing import NamedTuple


class _TensorFlowOnFirstUse:
    """This module's `tf`: TensorFlow, imported (through runtime/tf_runtime.py, which sets up its
    environment first) when a loss first builds an op, not when the module is imported.

    config.py declares --loss's choices and checks --real_label/--label_flip from `LOSSES`, and whatever
    only reads options (`python -m tools.flag_table`, a test of a Config) imports config.py; an import of
    TensorFlow there cost seconds and loaded TensorFlow in processes that never build a graph.  The
    alternatives declare a loss twice (a TensorFlow-free list of names and flags beside the table of
    functions) or look functions up by name (a typo found only when that loss runs); with this the table
    keeps each loss's functions and flags in one entry and only their TensorFlow calls wait."""

    def __getattr__(self, name):
        from runtime.tf_runtime import tf as tensorflow

        return getattr(tensorflow, name)


tf = _TensorFlowOnFirstUse()


def _sigmoid_cross_entropy(logits, targets):
    targets = tf.broadcast_to(tf.cast(targets, logits.dtype), tf.shape(logits))
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(logits=logits, labels=targets))


def cross_entropy_discriminator(real_logits, fake_logits, real_targets=1.0, fake_targets=0.0):
    """-log D(x) - log(1 - D(G(z))) (Goodfellow et al. 2014), with soft or noisy targets.

    `real_targets` < 1 is one-sided label smoothing (Salimans et al. 2016): D
    cannot become over-confident on real data, while fake targets stay 0.
    Targets may be tensors (per-example flipped labels).
    """
    return _sigmoid_cross_entropy(real_logits, real_targets), _sigmoid_cross_entropy(fake_logits, fake_targets)


def least_squares_discriminator(real_logits, fake_logits, real_targets=1.0, fake_targets=0.0):
    """LSGAN (Mao et al. 2017): ½(D(x) - 1)² + ½D(G(z))², on D's raw output."""
    real = 0.5 * tf.reduce_mean(tf.square(real_logits - real_targets))
    fake = 0.5 * tf.reduce_mean(tf.square(fake_logits - fake_targets))
    return real, fake


def hinge_discriminator(real_logits, fake_logits):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): max(0, 1 - D(x)) + max(0, 1 + D(G(z)))."""
    return tf.reduce_mean(tf.nn.relu(1.0 - real_logits)), tf.reduce_mean(tf.nn.relu(1.0 + fake_logits))


def wasserstein_discriminator(real_logits, fake_logits):
    """The WGAN critic's loss (Arjovsky et al. 2017): E[D(G(z))] - E[D(x)]."""
    return -tf.reduce_mean(real_logits), tf.reduce_mean(fake_logits)


def non_saturating_generator(fake_logits):
    """-log D(G(z)) (Goodfellow et al. 2014, section 3): strong gradients early, when D easily rejects G's
    samples."""
    return _sigmoid_cross_entropy(fake_logits, 1.0)


def minimax_generator(fake_logits):
    """log(1 - D(G(z))), the original game's G loss, which saturates when D rejects G's samples."""
    return -_sigmoid_cross_entropy(fake_logits, 0.0)


def least_squares_generator(fake_logits):
    """LSGAN's G loss (Mao et al. 2017): ½(D(G(z)) - 1)²."""
    return 0.5 * tf.reduce_mean(tf.square(fake_logits - 1.0))


def critic_generator(fake_logits):
    """-E[D(G(z))]: G's loss against a critic (hinge, Lim & Ye 2017; Wasserstein, Arjovsky et al. 2017)."""
    return -tf.reduce_mean(fake_logits)


class Loss(NamedTuple):
    """One --loss: its two networks' losses and what other parts of the project read of it."""

    discriminator: Callable  # (real_logits, fake_logits[, real_targets, fake_targets]) -> (on_real, on_fake)
    generator: Callable  # fake_logits -> G's loss
    # D's targets are 1 and 0, so --real_label smoothing and --label_flip apply (the discriminator takes them).
    has_targets: bool
    # D's losses are sigmoid cross-entropies: at chance each is ln 2 (the watchdog's d_not_learning test).
    cross_entropy: bool


LOSSES = {
    "non_saturating": Loss(cross_entropy_discriminator, non_saturating_generator, has_targets=True,
                           cross_entropy=True),
    "minimax": Loss(cross_entropy_discriminator, minimax_generator, has_targets=True, cross_entropy=True),
    "least_squares": Loss(least_squares_discriminator, least_squares_generator, has_targets=True,
                          cross_entropy=False),
    "hinge": Loss(hinge_discriminator, critic_generator, has_targets=False, cross_entropy=False),
    "wasserstein": Loss(wasserstein_discriminator, critic_generator, has_targets=False, cross_entropy=False),
}


def _named(kind):
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; choose from {tuple(LOSSES)}")
    return LOSSES[kind]


def discriminator_loss(kind, real_logits, fake_logits, real_targets=1.0, fake_targets=0.0):
    """Returns (total, on_real, on_fake) for the loss named `kind`."""
    loss = _named(kind)
    targets = (real_targets, fake_targets) if loss.has_targets else ()
    real, fake = loss.discriminator(real_logits, fake_logits, *targets)
    return real + fake, real, fake


def generator_loss(kind, fake_logits):
    """G's loss for the loss named `kind`."""
    return _named(kind).generator(fake_logits)


def _per_example_squared_norm(gradient):
    return tf.reduce_sum(tf.square(gradient), axis=list(range(1, gradient.shape.ndims)))


def gradient_penalty(discriminator_fn, real_images, fake_images, uniform):
    """WGAN-GP (Gulrajani et al. 2017): E[(‖∇D(x̂)‖₂ - 1)²] at x̂ = εx + (1 - ε)G(z).

    `uniform` holds one ε in [0, 1) per example (passed in, so the caller owns
    the random stream); `discriminator_fn` maps images to logits.
    """
    epsilon = tf.reshape(uniform, [-1] + [1] * (real_images.shape.ndims - 1))
    mixed = epsilon * real_images + (1.0 - epsilon) * fake_images
    gradient = tf.gradients(discriminator_fn(mixed), mixed)[0]
    return tf.reduce_mean(tf.square(tf.sqrt(_per_example_squared_norm(gradient) + 1e-12) - 1.0))


def r1_penalty(real_logits, real_images):
    """R1 (Mescheder et al. 2018): ½E[‖∇D(x)‖²] on real data; times γ by the caller."""
    gradient = tf.gradients(tf.reduce_sum(real_logits), real_images)[0]
    return 0.5 * tf.reduce_mean(_per_example_squared_norm(gradient))


def feature_matching_loss(real_features, fake_features):
    """Squared distance between mean D features on real and fake batches.

    Salimans et al. 2016: G matches the statistics of an intermediate D layer
    instead of maximizing D's output, which resists mode collapse.
    """
    return tf.reduce_sum(tf.square(tf.reduce_mean(real_features, axis=0) - tf.reduce_mean(fake_features, axis=0)))


def historical_average_penalty(variables, averages):
    """Salimans et al. 2016: ‖θ - (running mean of past θ)‖², summed over a network's weights."""
    return tf.add_n([tf.reduce_sum(tf.square(v - a)) for v, a in zip(variables, averages, strict=True)])
