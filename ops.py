"""Layers built from `tf.compat.v1.get_variable` and `tf.nn` ops.

`tf.compat.v1.layers` and `tf.contrib` are gone in TF 2.21 (Keras 3), so each
layer here is a small function under its own variable scope, in the spirit of
carpedm20/DCGAN-tensorflow's ops.py.  Every function takes `data_format`
("NHWC" for CPUs, "NCHW" is usually faster on NVIDIA GPUs) so one graph
definition serves both.
"""

from runtime.tf_runtime import tf

v1 = tf.compat.v1

# DCGAN paper: "All weights were initialized from a zero-centered Normal
# distribution with standard deviation 0.02."
WEIGHT_STDDEV = 0.02


def channel_axis(data_format):
    return 1 if data_format == "NCHW" else 3


def _spatial_strides(stride, data_format):
    return [1, 1, stride, stride] if data_format == "NCHW" else [1, stride, stride, 1]


def lrelu(x, leak=0.2, name="lrelu"):
    """LeakyReLU; 0.2 is the DCGAN paper's slope for the discriminator."""
    return tf.nn.leaky_relu(x, alpha=leak, name=name)


def linear(x, output_size, stddev=WEIGHT_STDDEV, bias_start=0.0, spectral_norm=False, name="linear"):
    """Fully connected layer on a [batch, features] tensor."""
    with v1.variable_scope(name):
        weights = v1.get_variable(
            "w", [x.shape[-1], output_size], tf.float32, v1.random_normal_initializer(stddev=stddev)
        )
        if spectral_norm:
            weights = spectrally_normalized(weights)
        bias = v1.get_variable("b", [output_size], initializer=v1.constant_initializer(bias_start))
        return tf.matmul(x, weights) + bias


def conv2d(x, output_channels, kernel=5, stride=2, stddev=WEIGHT_STDDEV, data_format="NHWC", spectral_norm=False,
           name="conv2d"):
    """Strided convolution ("SAME" padding): the DCGAN replacement for pooling."""
    with v1.variable_scope(name):
        in_channels = x.shape[channel_axis(data_format)]
        weights = v1.get_variable(
            "w", [kernel, kernel, in_channels, output_channels],
            initializer=v1.truncated_normal_initializer(stddev=stddev),
        )
        if spectral_norm:
            weights = spectrally_normalized(weights)
        bias = v1.get_variable("b", [output_channels], initializer=v1.zeros_initializer())
        strides = _spatial_strides(stride, data_format)
        y = tf.nn.conv2d(x, weights, strides=strides, padding="SAME", data_format=data_format)
        return tf.nn.bias_add(y, bias, data_format=data_format)


def deconv2d(x, output_hwc, kernel=5, stride=2, stddev=WEIGHT_STDDEV, data_format="NHWC", name="deconv2d"):
    """Transposed convolution to a static (height, width, channels) output.

    The batch dimension is taken from `x` at run time, so an exported generator
    accepts any number of z vectors.
    """
    height, width, out_channels = output_hwc
    with v1.variable_scope(name):
        in_channels = x.shape[channel_axis(data_format)]
        weights = v1.get_variable(
            "w", [kernel, kernel, out_channels, in_channels], initializer=v1.random_normal_initializer(stddev=stddev)
        )
        bias = v1.get_variable("b", [out_channels], initializer=v1.zeros_initializer())
        batch = tf.shape(x)[0]
        if data_format == "NCHW":
            output_shape = tf.stack([batch, out_channels, height, width])
        else:
            output_shape = tf.stack([batch, height, width, out_channels])
        y = tf.nn.conv2d_transpose(
            x, weights, output_shape, strides=_spatial_strides(stride, data_format), data_format=data_format
        )
        y = tf.nn.bias_add(y, bias, data_format=data_format)
        if data_format == "NCHW":
            y.set_shape([None, out_channels, height, width])
        else:
            y.set_shape([None, height, width, out_channels])
        return y


def resize_conv2d(x, output_hwc, kernel=5, data_format="NHWC", name="resize_conv2d"):
    """Nearest-neighbour upsampling by 2, then a stride-1 convolution: every
    output pixel gets the same number of kernel taps, so none of the
    checkerboard artefacts of a transposed convolution whose kernel is not a
    multiple of its stride (Odena et al. 2016; document 003's generator)."""
    height, width, out_channels = output_hwc
    spatial = (2, 3) if data_format == "NCHW" else (1, 2)
    for axis in spatial:
        x = tf.repeat(x, 2, axis=axis)
    if (x.shape[spatial[0]], x.shape[spatial[1]]) != (height, width):
        raise ValueError(f"resize_conv2d {name}: upsampling gives {x.shape}, not {height}x{width}")
    return conv2d(x, out_channels, kernel=kernel, stride=1, data_format=data_format, name=name)


# Collection of (moving-average variable, batch value, decay) triples.  Not
# assign ops (as tf.GraphKeys.UPDATE_OPS would hold): the train op creates the
# assignments inside the branch that applies its update, so a skipped
# non-finite step (--nan_policy skip) changes no moving average either.
MOVING_AVERAGE_UPDATES = "moving_average_updates"


def moving_average_variable(name, shape, initializer, dtype=tf.float32):
    """A non-trainable variable that MOVING_AVERAGE_UPDATES moves.

    Synchronised on read with the MEAN of the replicas' copies: with several
    replicas (training/replicas.py) each replica moves its own copy with its own batch
    statistics, and reads outside the replicas (sampling, saving) see their
    mean, so a checkpoint holds every replica's contribution rather than replica
    0's copy alone.  On one device it is an ordinary variable."""
    return v1.get_variable(name, shape, dtype, initializer, trainable=False,
                           synchronization=v1.VariableSynchronization.ON_READ,
                           aggregation=v1.VariableAggregation.MEAN)


def batch_norm(x, is_training, update_moving_stats=True, track_moving_stats=True, momentum=0.9, epsilon=1e-5,
               data_format="NHWC", name="bn"):
    """Batch normalization; training normalizes with the batch statistics
    (fused kernel for 4-D input), inference with moving averages.

    The moving-average updates are registered in MOVING_AVERAGE_UPDATES under
    this layer's scope, so the model can hand each network's updates to that
    network's own train op (the carpedm20 bug this project fixes).  Pass
    `update_moving_stats=False` for a second call that shares the variables so
    the averages track one input, and `track_moving_stats=False` for a network
    that never runs in inference mode (D): it then has no moving averages to
    update, save or check.
    """
    is_4d = x.shape.ndims == 4
    channels = x.shape[channel_axis(data_format) if is_4d else -1]
    if not (is_training or track_moving_stats):
        raise ValueError("inference-mode batch_norm needs moving statistics (track_moving_stats=True)")
    with v1.variable_scope(name):
        scale = v1.get_variable("scale", [channels], initializer=v1.ones_initializer())
        offset = v1.get_variable("offset", [channels], initializer=v1.zeros_initializer())
        if track_moving_stats:
            moving_mean = moving_average_variable("moving_mean", [channels], v1.zeros_initializer())
            moving_var = moving_average_variable("moving_variance", [channels], v1.ones_initializer())
        if not is_training:
            if is_4d:
                y, _, _ = v1.nn.fused_batch_norm(
                    x, scale, offset, moving_mean, moving_var, epsilon, data_format=data_format, is_training=False
                )
                return y
            return tf.nn.batch_normalization(x, moving_mean, moving_var, offset, scale, epsilon)
        if is_4d:
            y, mean, variance = v1.nn.fused_batch_norm(x, scale, offset, epsilon=epsilon, data_format=data_format)
        else:
            mean, variance = tf.nn.moments(x, axes=[0])
            y = tf.nn.batch_normalization(x, mean, variance, offset, scale, epsilon)
        if track_moving_stats and update_moving_stats:
            for moving, batch_value in ((moving_mean, mean), (moving_var, variance)):
                v1.add_to_collection(MOVING_AVERAGE_UPDATES, (moving, batch_value, 1.0 - momentum))
        return y


def moving_average_assignments(updates):
    """The assign ops for MOVING_AVERAGE_UPDATES triples: moving -= decay * (moving - batch_value), and for
    a decay of exactly 1 (a Python number: a copy) moving = batch_value, since moving - (moving - value)
    can miss value by a rounding."""
    return [moving.assign(value, read_value=False) if isinstance(decay, float | int) and decay == 1
            else moving.assign_sub(decay * (moving - value), read_value=False) for moving, value, decay in updates]


def conv_cond_concat(x, y, data_format="NHWC"):
    """Appends a one-hot label vector `y` [batch, classes] to every pixel of `x`."""
    if data_format == "NCHW":
        y_maps = y[:, :, tf.newaxis, tf.newaxis] * tf.ones_like(x[:, :1, :, :])
    else:
        y_maps = y[:, tf.newaxis, tf.newaxis, :] * tf.ones_like(x[:, :, :, :1])
    return tf.concat([x, y_maps], axis=channel_axis(data_format))


def _scale_and_offset(x, axis):
    """Learned per-channel scale (starting at 1) and offset (at 0), shaped to broadcast along `axis`."""
    channels = x.shape[axis]
    scale = v1.get_variable("scale", [channels], initializer=v1.ones_initializer())
    offset = v1.get_variable("offset", [channels], initializer=v1.zeros_initializer())
    shape = [1] * x.shape.ndims
    shape[axis] = channels
    return tf.reshape(scale, shape), tf.reshape(offset, shape)


def _normalize_over(x, axes, axis, epsilon, name):
    with v1.variable_scope(name):
        mean, variance = tf.nn.moments(x, axes=axes, keepdims=True)
        scale, offset = _scale_and_offset(x, axis)
        return (x - mean) * tf.math.rsqrt(variance + epsilon) * scale + offset


def instance_norm(x, epsilon=1e-5, data_format="NHWC", name="instance_norm"):
    """Instance normalization (Ulyanov et al. 2016): each example's each channel
    over its own spatial positions, so no statistic crosses the batch (the
    ganhacks choice when batch norm is not possible, document 000).  A [batch,
    features] tensor has no spatial positions: it is normalised over its
    features, which is layer normalization."""
    if x.shape.ndims != 4:
        return layer_norm(x, epsilon, data_format, name)
    axes = [2, 3] if data_format == "NCHW" else [1, 2]
    return _normalize_over(x, axes, channel_axis(data_format), epsilon, name)


def layer_norm(x, epsilon=1e-5, data_format="NHWC", name="layer_norm"):
    """Layer normalization (Ba et al. 2016): each example over all its features
    (every channel and position), with a per-channel scale and offset."""
    axis = channel_axis(data_format) if x.shape.ndims == 4 else -1
    return _normalize_over(x, list(range(1, x.shape.ndims)), axis % x.shape.ndims, epsilon, name)


def normalize(x, kind, is_training, update_moving_stats=True, track_moving_stats=True, momentum=0.9,
              data_format="NHWC", name="norm"):
    """The --g_norm/--d_norm choice: "batch", "instance", "layer" or "none".
    Only batch norm has moving statistics; the others act the same in training
    and inference."""
    if kind == "batch":
        return batch_norm(x, is_training, update_moving_stats, track_moving_stats, momentum,
                          data_format=data_format, name=name)
    if kind == "instance":
        return instance_norm(x, data_format=data_format, name=name)
    if kind == "layer":
        return layer_norm(x, data_format=data_format, name=name)
    if kind == "none":
        return x
    raise ValueError(f"unknown normalization {kind!r}")


def spectrally_normalized(weights, epsilon=1e-12):
    """`weights` divided by its largest singular value (Miyato et al. 2018),
    with the weights seen as a [fan-in, outputs] matrix.

    The singular value comes from one power iteration per forward pass,
    starting from the vector `u` it left last time (a non-trainable,
    checkpointed variable), so the estimate sharpens as training goes.  The
    new `u` is registered as a MOVING_AVERAGE_UPDATES triple with decay 1 (a
    plain assignment), once per variable however often the network is called,
    so it is assigned only inside the branch of D's train op that applies a
    finite update, like the BatchNorm averages: a skipped update changes nothing.
    """
    matrix = tf.reshape(weights, [-1, weights.shape[-1]])
    u = moving_average_variable("u", [1, weights.shape[-1]], v1.random_normal_initializer())
    v = tf.stop_gradient(tf.math.l2_normalize(tf.matmul(u, matrix, transpose_b=True), epsilon=epsilon))
    u_next = tf.stop_gradient(tf.math.l2_normalize(tf.matmul(v, matrix), epsilon=epsilon))
    sigma = tf.reduce_sum(tf.matmul(v, matrix) * u_next)
    if not any(registered is u for registered, _, _ in v1.get_collection(MOVING_AVERAGE_UPDATES)):
        v1.add_to_collection(MOVING_AVERAGE_UPDATES, (u, u_next, 1.0))
    return weights / sigma
