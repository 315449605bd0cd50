"""A style-based generator (Karras et al. 2019, "A Style-Based Generator
Architecture for GANs"), `--arch style`, for the same DCGAN discriminator and losses.

  mapping    z -> pixel norm (-> one-hot label appended) -> --mapping_layers
             dense + LeakyReLU 0.2 -> w [batch, --w_dim], at a learning rate
             --mapping_lr_multiplier (0.01) times the others';
  synthesis  a learned 4x4 constant, then per resolution (4, 8, ..., output)
             two 3x3 convolutions (the first after a 2x --style_upsample of
             the previous resolution; at 4x4 the constant stands in for it),
             each followed by per-pixel noise with a learned per-channel
             strength, a bias, LeakyReLU 0.2 and AdaIN with its own affine
             map of the layer's w; a 1x1 to-RGB convolution and tanh.

Every weight has an equalised learning rate: stored N(0, 1) (N(0, 1/lr
multiplier²) in the mapping) and multiplied at run time by He's constant
gain/sqrt(fan_in) (times the multiplier), so Adam's steps are the same size
relative to every layer's weights.

Training feeds one w to every layer, or with probability --style_mixing two
(w₁ from z, w₂ from a second z) switched at a random crossover layer, and
tracks the average w (`generator/w_avg`, a moving average applied with G's
update like BatchNorm's, so it is checkpointed and a skipped step leaves it).
Sampling moves w towards it: w_avg + ψ(w - w_avg), --truncation_psi, and
draws each sample's noise from a seed computed from its own z (noise_seeds).

Deliberate differences from the paper: the output goes through tanh, as every
generator of this project ends in [-1, 1] (the DCGAN discriminator and the
uint8 conversion assume it); widths follow --gf_dim as DCGAN's G (8·gf_dim at
the coarse resolutions, gf_dim at the output) instead of 512; no progressive
growing, blur or truncation cutoff; the graph is always computed in NHWC.
"""

import math
from typing import NamedTuple

import ops
from networks import AVERAGE_W_NAME, GENERATOR_SCOPE
from runtime.tf_runtime import tf

v1 = tf.compat.v1

LEAK = 0.2
# StyleGAN's dlatent_avg_beta: w_avg <- 0.995 w_avg + 0.005 mean(w of the batch).
W_AVERAGE_BETA = 0.995
CONSTANT_SIZE = 4
# He et al.'s gain for ReLU-like layers; the style affine maps and to-RGB use 1.
RELU_GAIN = math.sqrt(2.0)


def resolutions(spec):
    """4, 8, ..., output size (config.resolve() allows only powers of two from 16)."""
    return [CONSTANT_SIZE * 2 ** i for i in range(int(math.log2(spec.output_height // CONSTANT_SIZE)) + 1)]


def num_layers(spec):
    """Layers that take a style: two per resolution."""
    return 2 * len(resolutions(spec))


def channels_at(resolution, spec):
    return spec.gf_dim * min(8, spec.output_height // resolution)


def he_constant(fan_in, gain=RELU_GAIN):
    return gain / math.sqrt(fan_in)


def equalized_weight(name, shape, gain=RELU_GAIN, lr_multiplier=1.0):
    """The effective weight: a variable stored as N(0, 1/lr_multiplier²), times
    He's constant and lr_multiplier at run time (equalised learning rate)."""
    stored = v1.get_variable(name, shape, tf.float32, v1.random_normal_initializer(stddev=1.0 / lr_multiplier))
    return stored * (he_constant(math.prod(shape[:-1]), gain) * lr_multiplier)


def dense(x, units, name, gain=RELU_GAIN, lr_multiplier=1.0, bias_start=0.0):
    with v1.variable_scope(name):
        weights = equalized_weight("w", [x.shape[-1], units], gain, lr_multiplier)
        bias = v1.get_variable("b", [units], tf.float32, v1.constant_initializer(bias_start))
        return tf.matmul(x, weights) + bias * lr_multiplier


def conv(x, channels, kernel, name, gain=RELU_GAIN):
    """Stride-1 "SAME" convolution (NHWC) with an equalised-learning-rate weight, no bias."""
    with v1.variable_scope(name):
        weights = equalized_weight("w", [kernel, kernel, x.shape[-1], channels], gain)
        return tf.nn.conv2d(x, weights, strides=1, padding="SAME")


def pixel_norm(x, epsilon=1e-8):
    """Scales each vector to unit root mean square: z on the hypersphere of radius sqrt(z_dim)."""
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=-1, keepdims=True) + epsilon)


def adain(x, style, epsilon=1e-8):
    """Adaptive instance normalisation: each (image, channel) of x [N, H, W, C]
    normalised to mean 0 and standard deviation 1 over its pixels, then scaled
    by 1 + style[:, :C] and shifted by style[:, C:] (the +1 makes an untrained
    affine map, which outputs about 0, start at the identity scale)."""
    mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)
    normalized = (x - mean) * tf.math.rsqrt(variance + epsilon)
    scale, bias = tf.split(style, 2, axis=1)
    return normalized * (1.0 + scale[:, None, None, :]) + bias[:, None, None, :]


def mapping(z, labels_onehot, spec):
    """w [batch, w_dim] for z (and the one-hot labels of a conditional model)."""
    with v1.variable_scope(GENERATOR_SCOPE, reuse=v1.AUTO_REUSE), v1.variable_scope("mapping"):
        x = pixel_norm(z)
        if labels_onehot is not None:
            x = tf.concat([x, labels_onehot], axis=1)
        for i in range(spec.mapping_layers):
            x = ops.lrelu(dense(x, spec.w_dim, f"dense{i}", lr_multiplier=spec.mapping_lr_multiplier), LEAK)
        return x


def average_w(spec):
    """The average w (`generator/w_avg`): not trained, moved by G's updates, saved in checkpoints."""
    with v1.variable_scope(GENERATOR_SCOPE, reuse=v1.AUTO_REUSE):
        return ops.moving_average_variable(AVERAGE_W_NAME, [spec.w_dim], v1.zeros_initializer())


def truncate(w, w_average, psi):
    """The truncation trick: w moved towards the average w; ψ = 1 leaves it, ψ = 0 gives the average."""
    return w_average + psi * (w - w_average)


def same_style(w, layers):
    """Per-layer styles [batch, layers, w_dim] that feed w to every layer."""
    return tf.tile(w[:, None, :], [1, layers, 1])


def mix_styles(w1, w2, crossover, layers):
    """Per-layer styles [batch, layers, w_dim]: layers < crossover take w₁, the rest w₂."""
    first = tf.range(layers)[None, :, None] < crossover
    return tf.where(first, w1[:, None, :], w2[:, None, :])


class TrainingStyles(NamedTuple):
    per_layer: tf.Tensor  # [batch, layers, w_dim], what each synthesis layer is fed
    w: tf.Tensor  # w of the batch's z
    mixing_w: tf.Tensor  # w of the second z (= w without --style_mixing)
    crossover: tf.Tensor  # first layer fed mixing_w (= layers: none)


def training_styles(z, labels_onehot, spec, random, update_average):
    """The styles of a training forward pass, with style mixing regularisation:
    with probability --style_mixing, a second z (same labels) and a crossover
    layer uniform in [1, layers), both drawn from `random` (random_streams.RandomStreams).

    `update_average` registers the batch's mean w as a moving-average update of
    w_avg (applied with G's train op, as BatchNorm's averages are)."""
    w = mapping(z, labels_onehot, spec)
    if update_average:
        v1.add_to_collection(ops.MOVING_AVERAGE_UPDATES,
                             (average_w(spec), tf.reduce_mean(w, axis=0), 1.0 - W_AVERAGE_BETA))
    layers = num_layers(spec)
    if not spec.style_mixing:
        return TrainingStyles(same_style(w, layers), w, w, tf.constant(layers))
    mixing_w = mapping(random.z(tf.shape(z)[0], spec), labels_onehot, spec)
    layer = 1 + tf.cast(tf.floor(random.uniform([]) * (layers - 1)), tf.int32)
    crossover = tf.where(random.uniform([]) < spec.style_mixing, layer, layers)
    return TrainingStyles(mix_styles(w, mixing_w, crossover, layers), w, mixing_w, crossover)


def noise_seeds(z):
    """One int64 seed per sample [batch]: a 64-bit fingerprint (FarmHash, as tf.strings.to_hash_bucket_fast
    computes it on every platform) of the float32 bits of its z.

    So a z gets the same per-pixel noise wherever it sits in whichever batch (a grid, the explorer's one
    image, FID's chunks of 500 all render it alike), and distinct z get distinct noise: two collide with
    probability about 2^-63, so 10k samples never share noise maps.  Bits, not decimal text, so z that
    differ in the last bit differ."""
    bits = tf.strings.as_string(tf.bitcast(z, tf.int32))
    return tf.strings.to_hash_bucket_fast(tf.strings.reduce_join(bits, axis=1, separator=","), 2 ** 63 - 1)


def inference_noise(seeds, spec):
    """`noise_for_layer` for sampling: every layer's per-pixel noise of sample i drawn from its seed
    `seeds[i]` (`noise_seeds` of its z, or any int64 seeds: the `noise` visualisation feeds one w with
    many).  One stateless draw per sample covers all layers, so the batch costs one loop over samples
    (stateless ops take one seed per call and do not vectorise)."""
    sizes = [resolution for resolution in resolutions(spec) for _ in range(2)]  # each layer's, two per resolution
    pixels = [size * size for size in sizes]
    per_sample = tf.map_fn(
        lambda seed: tf.random.stateless_normal([sum(pixels)], tf.stack([seed, tf.constant(0, tf.int64)])),
        seeds, fn_output_signature=tf.TensorSpec([sum(pixels)], tf.float32))
    maps = [tf.reshape(part, [-1, size, size, 1])
            for part, size in zip(tf.split(per_sample, pixels, axis=1), sizes, strict=True)]
    return lambda layer: lambda shape: maps[layer]  # [batch, size, size, 1], the shape synthesis asks for


def upsample(x, method):
    size = tf.shape(x)[1:3] * 2
    resized = tf.image.resize(x, size, method=method)
    return tf.ensure_shape(resized, [None, x.shape[1] * 2, x.shape[2] * 2, x.shape[3]])


def synthesis(styles, spec, noise_for_layer):
    """Images [batch, H, W, c_dim] in [-1, 1] from per-layer styles [batch, layers, w_dim].

    `noise_for_layer(layer)` gives a function of a shape [batch, H, W, 1] that
    returns N(0, 1) noise of that shape: the training graph's random streams, or
    inference_noise (per-sample noise of that layer).
    """
    batch = tf.shape(styles)[0]
    layer = 0

    def epilogue(x, name):
        """Noise, bias, LeakyReLU and AdaIN after one convolution (or the constant)."""
        nonlocal layer
        channels = x.shape[-1]
        with v1.variable_scope(name):
            strength = v1.get_variable("noise_strength", [channels], tf.float32, v1.zeros_initializer())
            bias = v1.get_variable("b", [channels], tf.float32, v1.zeros_initializer())
            noise = noise_for_layer(layer)(tf.stack([batch, x.shape[1], x.shape[2], 1]))
            x = ops.lrelu(x + noise * strength + bias, LEAK)
            style = dense(styles[:, layer], 2 * channels, "style", gain=1.0)
        layer += 1
        return adain(x, style)

    with v1.variable_scope(GENERATOR_SCOPE, reuse=v1.AUTO_REUSE), v1.variable_scope("synthesis"):
        for resolution in resolutions(spec):
            channels = channels_at(resolution, spec)
            with v1.variable_scope(f"{resolution}x{resolution}"):
                if resolution == CONSTANT_SIZE:
                    constant = v1.get_variable("constant", [1, resolution, resolution, channels], tf.float32,
                                               v1.ones_initializer())
                    x = tf.tile(constant, tf.stack([batch, 1, 1, 1]))
                else:
                    x = conv(upsample(x, spec.style_upsample), channels, 3, "conv_up")
                x = epilogue(x, "layer0")
                x = epilogue(conv(x, channels, 3, "conv"), "layer1")
        with v1.variable_scope("to_rgb"):
            bias = v1.get_variable("b", [spec.c_dim], tf.float32, v1.zeros_initializer())
            return tf.tanh(conv(x, spec.c_dim, 1, "conv", gain=1.0) + bias)


def generator(z, labels_onehot, spec, is_training, update_moving_stats=True, random=None, truncation_psi=None):
    """G: z (and one-hot labels) -> images in [-1, 1], NHWC (networks/__init__.py's contract).

    Training draws the noise and the style mixing from `random`
    (random_streams.RandomStreams); inference truncates w with the `truncation_psi`
    tensor (None: spec.truncation_psi) and draws each sample's noise from
    its own z (inference_noise of noise_seeds).
    """
    if is_training:
        if random is None:
            raise ValueError("the style generator's training graph needs random streams for its noise")
        styles = training_styles(z, labels_onehot, spec, random, update_moving_stats).per_layer
        return synthesis(styles, spec, lambda layer: random.normal)
    psi = spec.truncation_psi if truncation_psi is None else truncation_psi
    w = truncate(mapping(z, labels_onehot, spec), average_w(spec), psi)
    return synthesis(same_style(w, num_layers(spec)), spec, inference_noise(noise_seeds(z), spec))
