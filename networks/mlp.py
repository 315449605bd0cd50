"""The vanilla GAN (Goodfellow et al. 2014): fully connected G and D, the MLP
GAN of documents 002/003 on 28x28 MNIST / Fashion-MNIST, at any image size.

G: z (+ one-hot label) -> gfc/4 -> gfc/2 -> gfc units (LeakyReLU 0.2, --g_norm)
-> H·W·C, tanh.  D: the flattened image (+ one-hot label) -> dfc -> dfc/2 ->
dfc/4 units (LeakyReLU 0.2, --d_norm after the first, dropout) -> one logit.
With the label concatenated to the inputs of both networks it is the
conditional GAN of Mirza & Osindero (2014).  Images are NHWC in and out
whatever --data_format says: there are no feature maps to lay out.
"""

import ops
from networks import DISCRIMINATOR_SCOPE, GENERATOR_SCOPE, RANDOM_STREAMS
from runtime.tf_runtime import tf

v1 = tf.compat.v1

# Dropout rate in D's hidden layers (the Keras/PyTorch vanilla GAN examples use 0.3).
D_DROPOUT = 0.3


def _with_labels(x, labels_onehot):
    return x if labels_onehot is None else tf.concat([x, labels_onehot], axis=1)


def generator(z, labels_onehot, spec, is_training, update_moving_stats=True):
    """G: z (and one-hot label) -> NHWC images in [-1, 1]."""
    h, w, c = spec.output_height, spec.output_width, spec.c_dim
    with v1.variable_scope(GENERATOR_SCOPE, reuse=v1.AUTO_REUSE):
        x = _with_labels(z, labels_onehot)
        for i, width in enumerate((spec.gfc_dim // 4, spec.gfc_dim // 2, spec.gfc_dim)):
            x = ops.linear(x, width, name=f"g_h{i}_lin")
            x = ops.lrelu(ops.normalize(x, spec.g_norm, is_training, update_moving_stats,
                                        momentum=spec.bn_momentum, name=f"g_bn{i}"))
        x = ops.linear(x, h * w * c, name="g_out_lin")
        return tf.reshape(tf.tanh(x), [-1, h, w, c])


def _dropout(x):
    """Dropout drawn from the training graph's stateless random streams; none without them."""
    streams = v1.get_collection(RANDOM_STREAMS)
    return streams[0].dropout(x, D_DROPOUT) if streams else x


def discriminator(images, labels_onehot, spec, layers=None, batch_groups=1):
    """D: NHWC images in [-1, 1] -> (logits [batch, 1], last hidden layer as features).
    It has no per-batch statistic, so `batch_groups` (stacked batches) changes nothing."""
    layers = [] if layers is None else layers
    with v1.variable_scope(DISCRIMINATOR_SCOPE, reuse=v1.AUTO_REUSE):
        x = _with_labels(tf.reshape(images, [-1, images.shape[1:].num_elements()]), labels_onehot)
        for i, width in enumerate((spec.dfc_dim, spec.dfc_dim // 2, spec.dfc_dim // 4)):
            x = ops.linear(x, width, spectral_norm=spec.spectral_norm, name=f"d_h{i}_lin")
            if i:
                x = ops.normalize(x, spec.d_norm, True, track_moving_stats=False, name=f"d_bn{i}")
            x = ops.lrelu(x)
            layers.append(x)
            x = _dropout(x)
        logits = ops.linear(x, 1, spectral_norm=spec.spectral_norm, name="d_out_lin")
        return logits, layers[-1]
