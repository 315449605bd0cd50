"""GAN losses as small pure functions of logits (TF-GAN style).

Each takes tensors and returns tensors, owns no variables and reads no config,
so it can be tested on constants and swapped without touching the model.
`discriminator_loss(kind, ...)` and `generator_loss(kind, ...)` pick one of
LOSSES by name; the penalties are added on top of any of them.
"""

from config import LOSSES
from runtime.tf_runtime import tf


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


def discriminator_loss(kind, real_logits, fake_logits, real_targets=1.0, fake_targets=0.0):
    """Returns (total, on_real, on_fake) for the loss named `kind`."""
    if kind in ("non_saturating", "minimax"):
        real, fake = cross_entropy_discriminator(real_logits, fake_logits, real_targets, fake_targets)
    elif kind == "least_squares":
        real, fake = least_squares_discriminator(real_logits, fake_logits, real_targets, fake_targets)
    elif kind == "hinge":
        real, fake = hinge_discriminator(real_logits, fake_logits)
    elif kind == "wasserstein":
        real, fake = wasserstein_discriminator(real_logits, fake_logits)
    else:
        raise ValueError(f"unknown loss {kind!r}; choose from {LOSSES}")
    return real + fake, real, fake


def generator_loss(kind, fake_logits):
    """G's loss for the loss named `kind`.

    non_saturating: -log D(G(z)), strong gradients early when D easily rejects
    G's samples; minimax: log(1 - D(G(z))), the original game, which saturates
    then; least_squares: ½(D(G(z)) - 1)²; hinge and wasserstein: -D(G(z)).
    """
    if kind == "non_saturating":
        return _sigmoid_cross_entropy(fake_logits, 1.0)
    if kind == "minimax":
        return -_sigmoid_cross_entropy(fake_logits, 0.0)
    if kind == "least_squares":
        return 0.5 * tf.reduce_mean(tf.square(fake_logits - 1.0))
    if kind in ("hinge", "wasserstein"):
        return -tf.reduce_mean(fake_logits)
    raise ValueError(f"unknown loss {kind!r}; choose from {LOSSES}")


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
