"""GAN losses as small pure functions of logits (TF-GAN style).

Each takes tensors and returns tensors, owns no variables and reads no config,
so it can be tested on constants and swapped without touching the model.
"""

from tf_runtime import tf


def _sigmoid_cross_entropy(logits, label):
    labels = tf.fill(tf.shape(logits), label)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(logits=logits, labels=labels))


def discriminator_loss(real_logits, fake_logits, real_label=1.0):
    """Minimax discriminator loss: -log D(x) - log(1 - D(G(z))).

    `real_label` < 1 is one-sided label smoothing (Salimans et al. 2016): only
    the real targets are softened (e.g. 0.9) so D cannot become over-confident
    on real data, while fake targets stay 0.

    Returns (total, on_real, on_fake).
    """
    loss_real = _sigmoid_cross_entropy(real_logits, real_label)
    loss_fake = _sigmoid_cross_entropy(fake_logits, 0.0)
    return loss_real + loss_fake, loss_real, loss_fake


def generator_loss(fake_logits):
    """Non-saturating generator loss -log D(G(z)) (Goodfellow et al. 2014).

    It gives G strong gradients early, when D easily rejects its samples and the
    minimax form log(1 - D(G(z))) would saturate.
    """
    return _sigmoid_cross_entropy(fake_logits, 1.0)


def feature_matching_loss(real_features, fake_features):
    """Squared distance between mean D features on real and fake batches.

    Salimans et al. 2016: G matches the statistics of an intermediate D layer
    instead of maximizing D's output, which resists mode collapse.
    """
    return tf.reduce_sum(tf.square(tf.reduce_mean(real_features, axis=0) - tf.reduce_mean(fake_features, axis=0)))
