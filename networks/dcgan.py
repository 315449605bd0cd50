"""The DCGAN generator and discriminator (Radford et al. 2015), in carpedm20's
shapes: the unconditional 64x64 pair and the conditional MNIST pair.

Weights never depend on the data layout: G builds its first feature map in
NHWC and D flattens its last one in NHWC whatever `--data_format` computes in,
so a checkpoint trained in one layout loads unchanged in the other.

Options (networks/options.py): --kernel_size, --g_upsample (transposed convolutions or
resize + convolution), --d_head (dense or global average pooling), --g_norm /
--d_norm, --spectral_norm (every D weight).
"""

import ops
from networks import DISCRIMINATOR_SCOPE, GENERATOR_SCOPE
from runtime.tf_runtime import tf

v1 = tf.compat.v1


def to_data_format(images_nhwc, data_format):
    return tf.transpose(images_nhwc, [0, 3, 1, 2]) if data_format == "NCHW" else images_nhwc


def from_data_format(images, data_format):
    return tf.transpose(images, [0, 2, 3, 1]) if data_format == "NCHW" else images


def flatten_nhwc(x, data_format):
    """[batch, H*W*C] in NHWC order, the one layout D's dense weights are stored in."""
    x = from_data_format(x, data_format)
    return tf.reshape(x, [-1, x.shape[1:].num_elements()])


def minibatch_stddev(x, data_format, groups=1):
    """Appends one feature map holding the batch's mean per-feature standard
    deviation (Karras et al. 2018): D sees how varied the batch is, so a
    collapsed G (every sample alike) is easy to reject.

    With `groups` > 1 the batch is that many batches stacked (--d_batchnorm
    combined's real and fake halves) and each gets its own statistic: taken
    over the stacked batch, real and fake would be given the same value and
    it could not help D tell them apart."""
    shape = tf.shape(x)
    per_group = shape[0] // groups
    _, variance = tf.nn.moments(tf.reshape(x, tf.concat([[groups, per_group], shape[1:]], axis=0)), axes=[1])
    group_std = tf.reduce_mean(tf.sqrt(variance + 1e-8), axis=list(range(1, x.shape.rank)))  # [groups]
    example_std = tf.repeat(group_std, per_group)[:, None, None, None]
    axis = ops.channel_axis(data_format)
    ones = x[:, :1] if axis == 1 else x[..., :1]
    return tf.concat([x, tf.ones_like(ones) * example_std], axis=axis)


def head_features(x, spec):
    """D's last feature maps as one vector per example: flattened (--d_head
    dense) or averaged over the positions (gap: one value per channel, so the
    head's size no longer grows with the image)."""
    if spec.d_head == "gap":
        return tf.reduce_mean(x, axis=[2, 3] if spec.data_format == "NCHW" else [1, 2])
    return flatten_nhwc(x, spec.data_format)


def generator(z, labels_onehot, spec, is_training, update_moving_stats=True):
    """G: z (and one-hot label) -> images in [-1, 1], NHWC.

    Unconditional: project z to (H/16 x W/16 x 8·gf_dim), then four stride-2
    upsampling layers (--g_upsample, --kernel_size) with --g_norm + ReLU, tanh
    at the end (DCGAN paper).  Conditional (MNIST): carpedm20's model, with the
    label concatenated to z and to every hidden layer.
    """
    fmt, kernel = spec.data_format, spec.kernel_size
    h, w, gf = spec.output_height, spec.output_width, spec.gf_dim

    def bn(x, name):
        return ops.normalize(x, spec.g_norm, is_training, update_moving_stats, momentum=spec.bn_momentum,
                             data_format=fmt, name=name)

    def deconv(x, hwc, name):
        if spec.g_upsample == "resize_conv":
            return ops.resize_conv2d(x, hwc, kernel=kernel, data_format=fmt, name=name)
        return ops.deconv2d(x, hwc, kernel=kernel, data_format=fmt, name=name)

    def to_maps(x, size_h, size_w, channels):
        return to_data_format(tf.reshape(x, [-1, size_h, size_w, channels]), fmt)

    with v1.variable_scope(GENERATOR_SCOPE, reuse=v1.AUTO_REUSE):
        if labels_onehot is None:
            x = ops.linear(z, gf * 8 * (h // 16) * (w // 16), name="g_h0_lin")
            x = tf.nn.relu(bn(to_maps(x, h // 16, w // 16, gf * 8), "g_bn0"))
            for i, (scale, channels) in enumerate(((8, gf * 4), (4, gf * 2), (2, gf)), start=1):
                x = tf.nn.relu(bn(deconv(x, (h // scale, w // scale, channels), f"g_h{i}"), f"g_bn{i}"))
            x = deconv(x, (h, w, spec.c_dim), "g_h4")
        else:
            y = labels_onehot
            x = tf.concat([z, y], axis=1)
            x = tf.nn.relu(bn(ops.linear(x, spec.gfc_dim, name="g_h0_lin"), "g_bn0"))
            x = tf.concat([x, y], axis=1)
            x = ops.linear(x, gf * 2 * (h // 4) * (w // 4), name="g_h1_lin")
            x = tf.nn.relu(bn(to_maps(x, h // 4, w // 4, gf * 2), "g_bn1"))
            x = ops.conv_cond_concat(x, y, fmt)
            x = tf.nn.relu(bn(deconv(x, (h // 2, w // 2, gf * 2), "g_h2"), "g_bn2"))
            x = ops.conv_cond_concat(x, y, fmt)
            x = deconv(x, (h, w, spec.c_dim), "g_h3")
        return from_data_format(tf.tanh(x), fmt)


def discriminator(images, labels_onehot, spec, layers=None, batch_groups=1):
    """D: NHWC images in [-1, 1] -> (logits [batch, 1], features for feature matching).

    Strided convolutions with LeakyReLU 0.2 and --d_norm on every layer but the
    first (DCGAN paper); conditional variant as in carpedm20's MNIST model.  D
    always normalises with the statistics of the batch it is given (it never
    runs in inference mode), so it keeps no moving averages.  Each hidden
    activation is appended to `layers` when it is a list.  `batch_groups`: the
    batch is that many batches stacked, each with its own minibatch statistic.
    """
    fmt, kernel, sn = spec.data_format, spec.kernel_size, spec.spectral_norm
    df = spec.df_dim
    layers = [] if layers is None else layers

    def bn(x, name):
        return ops.normalize(x, spec.d_norm, True, track_moving_stats=False, data_format=fmt, name=name)

    def conv(x, channels, name):
        return ops.conv2d(x, channels, kernel=kernel, data_format=fmt, spectral_norm=sn, name=name)

    def hidden(x):
        layers.append(x)
        return x

    with v1.variable_scope(DISCRIMINATOR_SCOPE, reuse=v1.AUTO_REUSE):
        x = to_data_format(images, fmt)
        if labels_onehot is None:
            x = hidden(ops.lrelu(conv(x, df, "d_h0_conv")))
            for i, channels in enumerate((df * 2, df * 4, df * 8), start=1):
                x = hidden(ops.lrelu(bn(conv(x, channels, f"d_h{i}_conv"), f"d_bn{i}")))
            if spec.minibatch_stddev:
                x = minibatch_stddev(x, fmt, batch_groups)
            features = head_features(x, spec)
            logits = ops.linear(features, 1, spectral_norm=sn, name="d_h4_lin")
        else:
            y = labels_onehot
            x = ops.conv_cond_concat(x, y, fmt)
            x = hidden(ops.lrelu(conv(x, spec.c_dim + spec.y_dim, "d_h0_conv")))
            x = ops.conv_cond_concat(x, y, fmt)
            x = hidden(ops.lrelu(bn(conv(x, df + spec.y_dim, "d_h1_conv"), "d_bn1")))
            if spec.minibatch_stddev:
                x = minibatch_stddev(x, fmt, batch_groups)
            x = tf.concat([head_features(x, spec), y], axis=1)
            features = hidden(ops.lrelu(bn(ops.linear(x, spec.dfc_dim, spectral_norm=sn, name="d_h2_lin"),
                                           "d_bn2")))
            logits = ops.linear(tf.concat([features, y], axis=1), 1, spectral_norm=sn, name="d_h3_lin")
        return logits, features
