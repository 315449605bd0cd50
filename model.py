"""The DCGAN graph: generator, discriminator, losses, train ops, Saver, summaries.

Nothing here loads data or runs a session: `DCGAN` takes the real-image tensor
from the input pipeline (`data.py`) and `train.py` runs the ops it builds.

Variables live under two scopes, `generator/` and `discriminator/`; each
optimizer gets exactly its own scope's trainable variables and its own scope's
BatchNorm moving-average updates, and building fails loudly if any update op
belongs to neither (TF-GAN's rule, and the fix for carpedm20's var_list bug).
"""

import numpy as np

import losses
import ops
from tf_runtime import tf

v1 = tf.compat.v1

GENERATOR_SCOPE = "generator"
DISCRIMINATOR_SCOPE = "discriminator"


def sample_z(batch_size, z_dim, z_dist):
    """In-graph noise, so training feeds nothing through feed_dict."""
    if z_dist == "gaussian":
        return v1.random_normal([batch_size, z_dim], name="z")
    return v1.random_uniform([batch_size, z_dim], -1.0, 1.0, name="z")


def _to_data_format(images_nhwc, data_format):
    return tf.transpose(images_nhwc, [0, 3, 1, 2]) if data_format == "NCHW" else images_nhwc


def _from_data_format(images, data_format):
    return tf.transpose(images, [0, 2, 3, 1]) if data_format == "NCHW" else images


def generator(z, labels_onehot, config, is_training, update_moving_stats=True):
    """G: z (and one-hot label) -> images in [-1, 1], NHWC.

    Unconditional: project z to (H/16 x W/16 x 8·gf_dim), then four 5×5
    stride-2 transposed convolutions with BN + ReLU, tanh at the end (DCGAN
    paper).  Conditional (MNIST): carpedm20's model, with the label
    concatenated to z and to every hidden layer.
    """
    fmt = config.data_format
    h, w, gf = config.output_height, config.output_width, config.gf_dim

    def bn(x, name):
        return ops.batch_norm(x, is_training, update_moving_stats, data_format=fmt, name=name)

    def to_maps(x, size_h, size_w, channels):
        x = tf.reshape(x, [-1, size_h, size_w, channels])
        return _to_data_format(x, fmt)

    with v1.variable_scope(GENERATOR_SCOPE, reuse=v1.AUTO_REUSE):
        if labels_onehot is None:
            x = ops.linear(z, gf * 8 * (h // 16) * (w // 16), name="g_h0_lin")
            x = tf.nn.relu(bn(to_maps(x, h // 16, w // 16, gf * 8), "g_bn0"))
            for i, (scale, channels) in enumerate(((8, gf * 4), (4, gf * 2), (2, gf)), start=1):
                x = ops.deconv2d(x, (h // scale, w // scale, channels), data_format=fmt, name=f"g_h{i}")
                x = tf.nn.relu(bn(x, f"g_bn{i}"))
            x = ops.deconv2d(x, (h, w, config.c_dim), data_format=fmt, name="g_h4")
        else:
            y = labels_onehot
            x = tf.concat([z, y], axis=1)
            x = tf.nn.relu(bn(ops.linear(x, config.gfc_dim, name="g_h0_lin"), "g_bn0"))
            x = tf.concat([x, y], axis=1)
            x = ops.linear(x, gf * 2 * (h // 4) * (w // 4), name="g_h1_lin")
            x = tf.nn.relu(bn(to_maps(x, h // 4, w // 4, gf * 2), "g_bn1"))
            x = ops.conv_cond_concat(x, y, fmt)
            x = tf.nn.relu(bn(ops.deconv2d(x, (h // 2, w // 2, gf * 2), data_format=fmt, name="g_h2"), "g_bn2"))
            x = ops.conv_cond_concat(x, y, fmt)
            x = ops.deconv2d(x, (h, w, config.c_dim), data_format=fmt, name="g_h3")
        return _from_data_format(tf.tanh(x), fmt)


def discriminator(images, labels_onehot, config, update_moving_stats=True):
    """D: NHWC images in [-1, 1] -> (logits [batch, 1], features for feature matching).

    Strided convolutions with LeakyReLU 0.2 and BN on every layer but the first
    (DCGAN paper); conditional variant as in carpedm20's MNIST model.
    """
    fmt = config.data_format
    df = config.df_dim

    def bn(x, name):
        return ops.batch_norm(x, True, update_moving_stats, data_format=fmt, name=name)

    with v1.variable_scope(DISCRIMINATOR_SCOPE, reuse=v1.AUTO_REUSE):
        x = _to_data_format(images, fmt)
        if labels_onehot is None:
            x = ops.lrelu(ops.conv2d(x, df, data_format=fmt, name="d_h0_conv"))
            for i, channels in enumerate((df * 2, df * 4, df * 8), start=1):
                x = ops.lrelu(bn(ops.conv2d(x, channels, data_format=fmt, name=f"d_h{i}_conv"), f"d_bn{i}"))
            features = tf.reshape(x, [-1, x.shape[1:].num_elements()])
            logits = ops.linear(features, 1, name="d_h4_lin")
        else:
            y = labels_onehot
            x = ops.conv_cond_concat(x, y, fmt)
            x = ops.lrelu(ops.conv2d(x, config.c_dim + config.y_dim, data_format=fmt, name="d_h0_conv"))
            x = ops.conv_cond_concat(x, y, fmt)
            x = ops.lrelu(bn(ops.conv2d(x, df + config.y_dim, data_format=fmt, name="d_h1_conv"), "d_bn1"))
            x = tf.concat([tf.reshape(x, [-1, x.shape[1:].num_elements()]), y], axis=1)
            features = ops.lrelu(bn(ops.linear(x, config.dfc_dim, name="d_h2_lin"), "d_bn2"))
            logits = ops.linear(tf.concat([features, y], axis=1), 1, name="d_h3_lin")
        return logits, features


def scope_variables(scope, collection=v1.GraphKeys.TRAINABLE_VARIABLES):
    return v1.get_collection(collection, scope=scope + "/")


def split_update_ops(scopes):
    """Assigns every UPDATE_OPS entry to exactly one network scope.

    Raises ValueError if any is left over: an update that runs with no train op
    would silently freeze that BatchNorm's moving statistics.
    """
    update_ops = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    assigned = {scope: [op for op in update_ops if op.name.startswith(scope + "/")] for scope in scopes}
    unassigned = set(update_ops) - {op for ops_ in assigned.values() for op in ops_}
    if unassigned:
        raise ValueError(f"UPDATE_OPS outside {scopes}: {sorted(op.name for op in unassigned)}")
    return assigned


def _finite_or_zero(x):
    """Histogram summaries raise on NaN; the scalar summaries and the training
    loop's NaN check report divergence instead, so the run stops cleanly."""
    return tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))


class DCGAN:
    """Builds the training graph on a batch of real images (and labels)."""

    def __init__(self, config, real_images, real_labels=None):
        self.config = config
        batch = tf.shape(real_images)[0]
        labels = tf.one_hot(real_labels, config.y_dim) if config.conditional else None
        self.global_step = v1.train.get_or_create_global_step()

        z = sample_z(batch, config.z_dim, config.z_dist)
        self.fake_images = generator(z, labels, config, is_training=True)
        real_logits, real_features = discriminator(real_images, labels, config)
        fake_logits, fake_features = discriminator(self.fake_images, labels, config, update_moving_stats=False)

        self.d_loss, self.d_loss_real, self.d_loss_fake = losses.discriminator_loss(
            real_logits, fake_logits, config.real_label
        )
        self.g_loss = losses.generator_loss(fake_logits)
        if config.feature_matching:
            self.g_loss += losses.feature_matching_loss(tf.stop_gradient(real_features), fake_features)
        self.d_real = tf.reduce_mean(tf.sigmoid(real_logits))
        self.d_fake = tf.reduce_mean(tf.sigmoid(fake_logits))

        updates = split_update_ops([GENERATOR_SCOPE, DISCRIMINATOR_SCOPE])
        self.d_train_op = self._train_op(self.d_loss, DISCRIMINATOR_SCOPE, updates[DISCRIMINATOR_SCOPE])
        self.g_train_op = self._train_op(self.g_loss, GENERATOR_SCOPE, updates[GENERATOR_SCOPE])
        self.advance_step = v1.assign_add(self.global_step, 1, name="advance_step")

        self.sampler = InferenceGenerator(config)
        self.d_summary, self.g_summary = self._summaries(real_logits, fake_logits)
        self.saver = v1.train.Saver(max_to_keep=config.max_to_keep)
        # Checked before every save, so no checkpoint on disk ever holds a NaN/Inf.
        self.variables_finite = {
            v.op.name: tf.reduce_all(tf.math.is_finite(v)) for v in v1.global_variables() if v.dtype.is_floating
        }

    def _train_op(self, loss, scope, update_ops):
        """Adam on `scope`'s variables, applied only if the loss and the global
        gradient norm are finite; evaluates to True when it was applied.

        A skipped update leaves the weights and Adam's moments as they were, so
        --nan_policy skip can carry on past a bad batch and --nan_policy stop
        stops with weights that never saw it.  BatchNorm moving averages (not
        trained, run by the same op) still update; the training loop checks
        every variable is finite before saving.  With --mixed_precision only
        the loss is checked: the loss-scale optimizer skips overflowing
        gradients itself and must see them to lower its scale.
        """
        variables = scope_variables(scope)
        optimizer = v1.train.AdamOptimizer(self.config.learning_rate, beta1=self.config.beta1, name=f"{scope}_adam")
        if self.config.mixed_precision:
            optimizer = v1.mixed_precision.enable_mixed_precision_graph_rewrite(optimizer)
        with tf.control_dependencies(update_ops):
            gradients = optimizer.compute_gradients(loss, var_list=variables)
            finite = tf.math.is_finite(loss)
            if not self.config.mixed_precision:
                norm = tf.linalg.global_norm([g for g, _ in gradients])
                finite = tf.logical_and(finite, tf.math.is_finite(norm))

            def apply():
                with tf.control_dependencies([optimizer.apply_gradients(gradients)]):
                    return tf.constant(True)

            return tf.cond(finite, apply, lambda: tf.constant(False), name=f"{scope}_train")

    def _summaries(self, real_logits, fake_logits):
        d_summary = v1.summary.merge([
            v1.summary.scalar("d_loss", self.d_loss),
            v1.summary.scalar("d_loss_real", self.d_loss_real),
            v1.summary.scalar("d_loss_fake", self.d_loss_fake),
            v1.summary.scalar("D_x", self.d_real),
            v1.summary.histogram("D_x_histogram", _finite_or_zero(tf.sigmoid(real_logits))),
        ])
        g_summary = v1.summary.merge([
            v1.summary.scalar("g_loss", self.g_loss),
            v1.summary.scalar("D_G_z", self.d_fake),
            v1.summary.histogram("D_G_z_histogram", _finite_or_zero(tf.sigmoid(fake_logits))),
        ])
        return d_summary, g_summary


class InferenceGenerator:
    """G in inference mode (BN moving averages) on fed z vectors and labels.

    Shared by training-time samples, visualization and export: the batch
    dimension is free, so sample counts never depend on --batch_size.
    """

    def __init__(self, config):
        self.z = v1.placeholder(tf.float32, [None, config.z_dim], name="z")
        self.labels = v1.placeholder(tf.int64, [None], name="labels") if config.conditional else None
        labels_onehot = tf.one_hot(self.labels, config.y_dim) if config.conditional else None
        self.images = generator(self.z, labels_onehot, config, is_training=False)
        pixels = tf.clip_by_value(tf.round((self.images + 1.0) * 127.5), 0.0, 255.0)
        self.images_uint8 = tf.cast(pixels, tf.uint8, name="images_uint8")

    def feed(self, z, labels=None):
        feed = {self.z: z}
        if self.labels is not None:
            feed[self.labels] = labels
        return feed

    def generate(self, session, z, labels=None, chunk=256):
        """uint8 images for any number of z vectors, `chunk` at a time to bound memory."""
        images = []
        for start in range(0, len(z), chunk):
            part = None if labels is None else labels[start:start + chunk]
            images.append(session.run(self.images_uint8, self.feed(z[start:start + chunk], part)))
        return np.concatenate(images)


def fixed_z(count, config, seed):
    """Reproducible z vectors (NumPy), e.g. the fixed batch behind every sample grid."""
    rng = np.random.RandomState(seed)
    if config.z_dist == "gaussian":
        return rng.standard_normal((count, config.z_dim)).astype(np.float32)
    return rng.uniform(-1.0, 1.0, (count, config.z_dim)).astype(np.float32)


def sample_labels(count, config):
    """Labels cycling 0..y_dim-1, so a grid shows every class in order (None if unconditional)."""
    return np.arange(count) % config.y_dim if config.conditional else None
