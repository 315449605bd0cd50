"""The training graph: G and D wired to the losses, scoped train ops, Saver, summaries.

Nothing here loads data or runs a session: `DCGAN` takes the real-image tensor
from the input pipeline (`datasets/pipeline.py`) and `training/train.py` runs the ops it builds.
The networks live in `networks/`; what the graph is built from lives in `training/`:
guarded updates (updates.py), random streams (random_streams.py), the image pool,
historical averaging and G's average (stabilizers.py), the watchdog's diversity
measures (diversity.py), the losses (losses.py) and the sampling G (inference.py).

Only D's updates read the input pipeline: G's labels are drawn in the graph
and G's feature-matching target is D's features of the last D update's real
batch (kept for G's update, and put through D as it is then), so
one step consumes exactly `d_steps` batches and epochs count true passes.
"""

import functools
from typing import NamedTuple

from networks import DISCRIMINATOR_SCOPE, GENERATOR_SCOPE, discriminator, generator_for, network_spec
from networks.acgan import class_logits, class_loss
from runtime.tf_runtime import tf
from training import diffaugment, losses
from training.diversity import DiversitySignals, diversity_signals
from training.inference import InferenceGenerator
from training.random_streams import RandomStreams
from training.replicas import Replicas
from training.stabilizers import ImageHistoryPool, generator_average, historical_averages
from training.updates import (
    ReplicaUpdate,
    apply_if_finite,
    collected_updates,
    replica_gradients,
    scope_variables,
    split_update_ops,
)

v1 = tf.compat.v1


class DiscriminatorOutputs(NamedTuple):
    """D on one real and one fake batch, as the step showed them (`DCGAN._discriminate`)."""

    real_logits: tf.Tensor
    fake_logits: tf.Tensor
    real_features: tf.Tensor
    fake_features: tf.Tensor
    real_input: tf.Tensor  # the real batch as D saw it (augmented, noisy): where R1 and WGAN-GP read D
    fake_input: tf.Tensor
    real_probability: tf.Tensor  # mean sigmoid(logits): D(x) and D(G(z)) of the logs
    fake_probability: tf.Tensor


class StepBatches(NamedTuple):
    """One replica's batches of a step (TF-GAN's GANModel for this graph); the one-hots are None unless
    the model is conditional."""

    size: tf.Tensor  # the replica's batch size
    real_images: tf.Tensor
    real_onehot: object
    fake_images: tf.Tensor  # G's batch for D's update, and for the fused step's G update
    fake_onehot: object
    shown_fakes: tf.Tensor  # `fake_images` after the image pool's swaps: what D was shown
    shown_onehot: object


class DiscriminatorStep(NamedTuple):
    """One replica's D update (TF-GAN's GANLoss and train-op inputs, for D)."""

    update: ReplicaUpdate  # its loss is D's total, penalties included
    moving: list  # D's moving-average updates
    on_real: tf.Tensor  # the GAN loss's two terms, for the logs
    on_fake: tf.Tensor
    outputs: DiscriminatorOutputs
    diversity: DiversitySignals


class GeneratorStep(NamedTuple):
    """One replica's separate G update, and what the fused step's G update reuses."""

    update: ReplicaUpdate
    moving: list  # the BatchNorm averages of the separate update's G forward pass
    fused_moving: list  # those of the fused update's (D's fake batch)
    penalty: object  # --historical_averaging's term of G's loss (0.0 when off)


class ReplicaStep(NamedTuple):
    """What `DCGAN._replica_step` hands to the cross-replica part of the graph."""

    batches: StepBatches
    d: DiscriminatorStep
    g: GeneratorStep


def _local_variable(name, shape):
    """Not checkpointed, one copy per replica (each keeps its own real batch)."""
    return v1.get_variable(name, shape, tf.float32, v1.zeros_initializer(), trainable=False,
                           collections=[v1.GraphKeys.LOCAL_VARIABLES],
                           synchronization=v1.VariableSynchronization.ON_READ,
                           aggregation=v1.VariableAggregation.MEAN)


def _assign_if(condition, variable, value):
    """Assigns `value` when `condition` holds, else leaves `variable` as it was."""
    return variable.assign(tf.where(condition, value, variable.read_value()), read_value=False)


def _generator_summary(g_loss, g_grad_norm):
    """G's scalars under fixed tags: built twice with --fused_update (the separate and the fused G
    run), and `summary.scalar` would tag the second copy "g_loss_1"."""
    return v1.summary.merge([tf.raw_ops.ScalarSummary(tags="g_loss", values=g_loss),
                             tf.raw_ops.ScalarSummary(tags="gradient_norm/generator", values=g_grad_norm)])


def _finite_or_zero(x):
    """Histogram summaries raise on NaN; the scalar summaries and the training
    loop's NaN check report divergence instead, so the run stops cleanly."""
    return tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))


class DCGAN:
    """Builds the training graph on a batch of real images (and labels).

    Ops the loop runs (each evaluates to whether its finite update was applied):
      d_train_op      one D update on a fresh real batch and a fresh fake batch;
      g_train_op      one G update on a fresh fake batch;
      fused_train_op  (--fused_update) G's forward once, D updated on that fake
                      batch, then G updated through the updated D on the same
                      fake batch: the PyTorch reference DCGAN's step in one run.
    with `d_fetches`, `g_fetches`, `fused_fetches`: the scalars logged with each.
    """

    def __init__(self, config, real_images, real_labels=None, replicas=None, noise_per_replica=True):
        """`real_images`/`real_labels` are one batch, or with several `replicas`
        (training/replicas.py) each replica's part of the global batch.  With
        `noise_per_replica` False every replica draws the z a single device
        would (the equivalence test of k replicas against one)."""
        self.config = config
        self.spec = network_spec(config)  # what G and D are built from
        self.replicas = replicas = replicas or Replicas()
        # Step counters and the noise counter are ordinary variables outside the
        # strategy: every worker advances its own copy identically.
        self.global_step = v1.train.get_or_create_global_step()
        self.images_seen = v1.get_variable("images_seen", [], tf.int64, v1.zeros_initializer(), trainable=False)
        self.random = RandomStreams(config.seed, replicas.count if noise_per_replica else 1)
        # Both learning rates are multiplied by it; --on_collapse rollback feeds a lower one.  A placeholder, not a
        # variable: checkpoints hold the same variables with or without rollbacks.
        self.learning_rate_scale = v1.placeholder_with_default(1.0, [], name="learning_rate_scale")
        self.update_counts = {}  # scope -> its --historical_averaging update-count triple
        self.d_optimizer, self.g_optimizer = self._optimizer("d"), self._optimizer("g")
        with replicas.scope():
            self._build(real_images, real_labels)

    def _build(self, real_images, real_labels):
        config, replicas = self.config, self.replicas
        step = replicas.run(self._replica_step, real_images, real_labels)
        d_train_op = apply_if_finite(self.d_optimizer, replicas, step.d.update, step.d.moving,
                                     f"{DISCRIMINATOR_SCOPE}_train", averages=self._counted(DISCRIMINATOR_SCOPE))
        remember = replicas.run(functools.partial(self._remember, d_train_op), step.batches)
        self.d_train_op = tf.tuple([d_train_op], control_inputs=replicas.local_all(remember))[0]
        batches = step.batches
        self.fake_images, self.shown_fakes = replicas.concat(batches.fake_images), replicas.concat(batches.shown_fakes)
        # The labels D was shown with `shown_fakes` (a conditional model's; None otherwise).
        self.shown_fake_onehot = replicas.concat(batches.shown_onehot) if config.conditional else None
        outputs = step.d.outputs
        self.d_loss, self.d_loss_real, self.d_loss_fake, self.d_real, self.d_fake = (
            replicas.mean(value) for value in (step.d.update.loss, step.d.on_real, step.d.on_fake,
                                               outputs.real_probability, outputs.fake_probability))
        diversity = DiversitySignals._make(replicas.mean(value) for value in step.d.diversity)
        d_grad_norm = replicas.mean(step.d.update.norm)
        self.d_fetches = {"d_applied": self.d_train_op, "d_loss": self.d_loss, "d_real": self.d_real,
                          "d_fake": self.d_fake, "d_grad_norm": d_grad_norm, **diversity._asdict()}

        g_average = (generator_average(config.g_ema, step.g.moving + step.g.fused_moving, self.global_step)
                     if config.g_ema else [])
        g_after = g_average + self._counted(GENERATOR_SCOPE)
        self.g_train_op = apply_if_finite(self.g_optimizer, replicas, step.g.update, step.g.moving,
                                          f"{GENERATOR_SCOPE}_train", averages=g_after)
        self.g_loss, g_grad_norm = replicas.mean(step.g.update.loss), replicas.mean(step.g.update.norm)
        self.g_fetches = {"g_applied": self.g_train_op, "g_loss": self.g_loss, "g_grad_norm": g_grad_norm}
        fused_summary = self._fused_update(step, g_after)

        self.advance_step = tf.group(
            v1.assign_add(self.global_step, 1),
            v1.assign_add(self.images_seen, tf.cast(replicas.global_batch(batches.size), tf.int64) * config.d_steps),
            name="advance_step")
        self.sampler = InferenceGenerator(config)
        self.d_summary, self.g_summary = self._summaries(
            replicas.concat(outputs.real_logits), replicas.concat(outputs.fake_logits), d_grad_norm,
            g_grad_norm, diversity)
        self.fused_summary = None if fused_summary is None else v1.summary.merge([self.d_summary, fused_summary])
        self.saver = v1.train.Saver(max_to_keep=config.max_to_keep)
        self.initializer = tf.group(v1.global_variables_initializer(), v1.local_variables_initializer(),
                                    name="initialize")
        # Checked before every save, so no checkpoint on disk ever holds a NaN/Inf.
        self.variables_finite = {
            v.op.name: tf.reduce_all(tf.math.is_finite(v)) for v in v1.global_variables() if v.dtype.is_floating
        }

    def _fused_update(self, step, g_after):
        """--fused_update's G update: G's loss on D's fake batch through the updated D, applied with the
        BatchNorm averages of that batch's G forward pass.  Sets `fused_train_op` and `fused_fetches` (None
        without --fused_update) and returns G's summary of it (merged with D's by the caller), or None."""
        if not self.config.fused_update:
            self.fused_train_op = self.fused_fetches = None
            return None
        replicas = self.replicas
        fused = replicas.run(functools.partial(self._replica_fused_g, self.d_train_op), step.batches, step.g.penalty)
        self.fused_train_op = apply_if_finite(self.g_optimizer, replicas, fused, step.g.fused_moving, "fused_train",
                                              averages=g_after)
        loss, norm = replicas.mean(fused.loss), replicas.mean(fused.norm)
        self.fused_fetches = dict(self.d_fetches, g_applied=self.fused_train_op, g_loss=loss, g_grad_norm=norm)
        return _generator_summary(loss, norm)

    def _replica_step(self, real_images, real_labels):
        """One replica's part of the step: its fake batches, D's and G's losses,
        gradients and moving-average updates, and what the later parts need."""
        config = self.config
        self.random.on_replica(self.replicas.replica_id())
        # Several workers' iterators leave the batch dimension open; the step's variables need it.
        per_replica = config.batch_size // self.replicas.count
        real_images.set_shape([real_images.shape[0] or per_replica, *real_images.shape[1:]])
        if config.conditional:
            real_labels.set_shape([real_labels.shape[0] or per_replica])
        with collected_updates() as registered:
            batch = tf.shape(real_images)[0]
            real_onehot = tf.one_hot(real_labels, config.y_dim) if config.conditional else None

            # What G's separate update needs of the step's real batch, kept from the D
            # update so G never reads the pipeline.  Local (not checkpointed): every
            # step runs its D update before its G updates.
            self.last_real_images = _local_variable("last_real_images", real_images.shape)
            self.last_real_onehot = (_local_variable("last_real_onehot", real_onehot.shape) if config.conditional
                                     else None)

            def fake_batch(onehot, update_moving_stats):
                images = generator_for(self.spec, self.random)(self.random.z(batch, config), onehot, self.spec, True,
                                                               update_moving_stats)
                return images, onehot

            # D's update: real batch and a fake batch of the same classes (carpedm20).
            # G's BatchNorm averages follow the G forward pass whose update applies
            # them: this one for the fused step's G update.
            with collected_updates() as fused_g_moving:
                fake_images, fake_onehot = fake_batch(real_onehot, update_moving_stats=config.fused_update)
            # G's own update (alternating schedule, and the fused step's further --g_steps):
            # a fresh fake batch of the step's classes, without reading the pipeline again.
            with collected_updates() as separate_g_moving:
                g_fake, g_onehot = fake_batch(self.last_real_onehot, update_moving_stats=True)
            self.pool = (ImageHistoryPool(config.image_pool, fake_images.shape[1:], self.random,
                                          config.y_dim if config.conditional else 0) if config.image_pool else None)
            shown_fakes, shown_onehot = (self.pool.shown(fake_images, fake_onehot) if self.pool
                                         else (fake_images, fake_onehot))
            d_out = self._discriminate(real_images, real_onehot, shown_fakes, shown_onehot)
            d_loss, d_loss_real, d_loss_fake = self._d_loss(d_out, real_images, real_onehot, shown_onehot)
            penalties = self._historical_averaging()
            d_loss += penalties[DISCRIMINATOR_SCOPE]
        updates = split_update_ops([GENERATOR_SCOPE, DISCRIMINATOR_SCOPE], registered)
        d_update = replica_gradients(self.d_optimizer, d_loss, scope_variables(DISCRIMINATOR_SCOPE), self.replicas,
                                     check_gradients=not self._loss_scaled)
        diversity = diversity_signals(fake_images, real_images)

        g_loss = self._g_loss(g_fake, g_onehot, self.last_real_images, self.last_real_onehot,
                              penalties[GENERATOR_SCOPE])
        g_update = replica_gradients(self.g_optimizer, g_loss, scope_variables(GENERATOR_SCOPE), self.replicas,
                                     check_gradients=not self._loss_scaled)
        # Each G update applies the moving averages of its own forward pass (and both, the historical ones).
        g_moving = [u for u in updates[GENERATOR_SCOPE] if u not in fused_g_moving]
        fused_g_moving = [u for u in updates[GENERATOR_SCOPE] if u not in separate_g_moving]
        return ReplicaStep(
            StepBatches(batch, real_images, real_onehot, fake_images, fake_onehot, shown_fakes, shown_onehot),
            DiscriminatorStep(d_update, updates[DISCRIMINATOR_SCOPE], d_loss_real, d_loss_fake, d_out, diversity),
            GeneratorStep(g_update, g_moving, fused_g_moving, penalties[GENERATOR_SCOPE]))

    def _remember(self, d_applied, batches):
        """On each replica, after D's update: keeps its real batch for G's update (if applied) and
        stores the fakes in the image pool."""
        remember = [_assign_if(d_applied, self.last_real_images, batches.real_images)]
        if self.config.conditional:
            remember.append(_assign_if(d_applied, self.last_real_onehot, batches.real_onehot))
        if self.pool:
            remember.append(tf.cond(d_applied, lambda: self.pool.store(batches.fake_images, batches.fake_onehot),
                                    tf.no_op))
        return remember

    def _replica_fused_g(self, d_applied, batches, penalty):
        """On each replica: G's loss on D's fake batch through the updated D, and its gradients."""
        self.random.on_replica(self.replicas.replica_id())  # its draws (augmentation, noise) are this replica's
        with tf.control_dependencies([d_applied]):
            loss = self._g_loss(batches.fake_images, batches.fake_onehot, batches.real_images, batches.real_onehot,
                                penalty)
        return replica_gradients(self.g_optimizer, loss, scope_variables(GENERATOR_SCOPE), self.replicas,
                                 check_gradients=not self._loss_scaled)


    @property
    def _loss_scaled(self):
        return self.config.mixed_precision

    def _optimizer(self, network):
        config = self.config
        d_rate, g_rate = config.learning_rates()
        scope = DISCRIMINATOR_SCOPE if network == "d" else GENERATOR_SCOPE
        rate = tf.multiply(d_rate if network == "d" else g_rate, self.learning_rate_scale,
                           name=f"{scope}_learning_rate")
        optimizer = v1.train.AdamOptimizer(rate, beta1=config.beta1, beta2=config.beta2, name=f"{scope}_adam")
        if config.mixed_precision:
            # The loss-scale wrapper only: the float16 rewrite itself is switched on
            # in the training session's own options (tf_runtime.session_config), so
            # no other graph or session of the process runs in float16.
            optimizer = v1.mixed_precision.MixedPrecisionLossScaleOptimizer(optimizer, "dynamic")
        return optimizer

    def _noisy(self, images):
        """Instance noise (Sønderby et al. 2016): Gaussian noise on D's inputs,
        decaying linearly to zero over --instance_noise_steps (0 = constant)."""
        config = self.config
        if not config.instance_noise:
            return images
        sigma = tf.constant(config.instance_noise, tf.float32)
        if config.instance_noise_steps:
            progress = tf.cast(self.global_step, tf.float32) / config.instance_noise_steps
            sigma *= tf.maximum(0.0, 1.0 - progress)
        return images + sigma * self.random.normal(tf.shape(images))

    def _shown_to_d(self, images):
        """What D is shown of a batch, real or fake, in either update: the batch with --diffaugment's
        transforms (each image its own draw; training/diffaugment.py), then --instance_noise.  D's penalties
        (R1, WGAN-GP) and feature matching read D at these inputs: R1 is D's gradient at the augmented
        real, as in the DiffAugment paper's CIFAR and FFHQ runs (loss ns_r1_DiffAugment)."""
        return self._noisy(diffaugment.augment(images, self.config.diffaugment, self.random))

    def _discriminator_pair(self, real, real_onehot, fake, fake_onehot):
        """D's (logits, features) on the real and the fake batch: two passes, each
        with its own BatchNorm statistics (carpedm20), or with --d_batchnorm
        combined one pass over both, so BN cannot hide the gap between them.
        """
        if self.config.d_batchnorm == "combined":
            onehot = None if real_onehot is None else tf.concat([real_onehot, fake_onehot], axis=0)
            logits, features = self._discriminator(tf.concat([real, fake], axis=0), onehot, batch_groups=2)
            count = tf.shape(real)[0]
            return (logits[:count], features[:count]), (logits[count:], features[count:])
        return self._discriminator(real, real_onehot), self._discriminator(fake, fake_onehot)

    def _discriminator(self, images, onehot, batch_groups=1):
        """D's (logits, features); with --conditioning acgan D is not shown the labels: it predicts them."""
        return discriminator(images, None if self.config.conditioning == "acgan" else onehot, self.spec,
                             batch_groups=batch_groups)

    def _discriminate(self, real_images, real_onehot, fake_images, fake_onehot):
        """D's outputs in D's update: on the real batch and the shown fakes, each as D is shown it."""
        real_input, fake_input = self._shown_to_d(real_images), self._shown_to_d(fake_images)
        (real_logits, real_features), (fake_logits, fake_features) = self._discriminator_pair(
            real_input, real_onehot, fake_input, fake_onehot)
        return DiscriminatorOutputs(real_logits, fake_logits, real_features, fake_features, real_input, fake_input,
                                    tf.reduce_mean(tf.sigmoid(real_logits)), tf.reduce_mean(tf.sigmoid(fake_logits)))

    def _d_for_g(self, fake, fake_onehot, real, real_onehot):
        """D's (logits, features) on a fake batch, for G's loss, and D's features on the
        step's real batch when G needs them (--feature_matching; else None), from the
        same D.  With combined BatchNorm D sees the real batch beside the fake, as in
        D's update."""
        fake = self._shown_to_d(fake)
        if self.config.d_batchnorm == "combined":
            (_, real_features), (logits, features) = self._discriminator_pair(
                tf.stop_gradient(self._shown_to_d(real)), real_onehot, fake, fake_onehot)
            return logits, features, real_features
        logits, features = self._discriminator(fake, fake_onehot)
        if not self.config.feature_matching:
            return logits, features, None
        return logits, features, self._discriminator(self._shown_to_d(real), real_onehot)[1]

    def _label_targets(self, batch):
        """D's targets: one-sided smoothing (--real_label) and a fraction
        --label_flip of them swapped at random (noisy labels)."""
        config = self.config
        if not config.label_flip:
            return config.real_label, 0.0
        flip_real = self.random.uniform([batch, 1]) < config.label_flip
        flip_fake = self.random.uniform([batch, 1]) < config.label_flip
        real = tf.where(flip_real, tf.zeros([batch, 1]), tf.fill([batch, 1], config.real_label))
        fake = tf.where(flip_fake, tf.ones([batch, 1]), tf.zeros([batch, 1]))
        return real, fake

    def _d_loss(self, d_out, real_images, real_onehot, fake_onehot):
        config = self.config
        real_targets, fake_targets = self._label_targets(tf.shape(real_images)[0])
        total, on_real, on_fake = losses.discriminator_loss(
            config.loss, d_out.real_logits, d_out.fake_logits, real_targets, fake_targets)
        if config.conditioning == "acgan":
            total += (class_loss(class_logits(d_out.real_features, config.y_dim), real_onehot)
                      + class_loss(class_logits(d_out.fake_features, config.y_dim), fake_onehot))
        if config.gp_lambda:
            def critic(images):
                return self._discriminator(images, real_onehot)[0]
            epsilon = self.random.uniform([tf.shape(real_images)[0]])
            total += config.gp_lambda * losses.gradient_penalty(
                critic, d_out.real_input, d_out.fake_input, epsilon)
        if config.r1_gamma:
            total += config.r1_gamma * losses.r1_penalty(d_out.real_logits, d_out.real_input)
        return total, on_real, on_fake

    def _g_loss(self, fake, fake_onehot, real, real_onehot, penalty):
        """G's loss on the `fake` batch through D as it is when G updates (in the fused
        step: after D's update)."""
        config = self.config
        logits, features, real_features = self._d_for_g(fake, fake_onehot, real, real_onehot)
        loss = losses.generator_loss(config.loss, logits) + penalty
        if config.feature_matching:
            # Both sides from the same D: real features kept from before D's update left
            # the loss a floor above zero even for a G that matches the data.
            real_mean = tf.stop_gradient(tf.reduce_mean(real_features, axis=0))
            loss += losses.feature_matching_loss(real_mean[None, :], features)
        if config.conditioning == "acgan":
            loss += class_loss(class_logits(features, config.y_dim), fake_onehot)
        return loss

    def _counted(self, scope):
        """The `averages` of `scope`'s train ops: its update count, with --historical_averaging."""
        return [self.update_counts[scope]] if scope in self.update_counts else []

    def _historical_averaging(self):
        """{scope: --historical_averaging x ‖θ - running mean of θ‖²} (0 when off); keeps each network's
        update-count triple in `self.update_counts` for its train ops."""
        if not self.config.historical_averaging:
            return {GENERATOR_SCOPE: 0.0, DISCRIMINATOR_SCOPE: 0.0}
        penalties = {}
        for scope in (GENERATOR_SCOPE, DISCRIMINATOR_SCOPE):
            variables = scope_variables(scope)
            averages, self.update_counts[scope] = historical_averages(scope, variables)
            penalties[scope] = self.config.historical_averaging * losses.historical_average_penalty(
                variables, averages)
        return penalties

    def _summaries(self, real_logits, fake_logits, d_grad_norm, g_grad_norm, diversity):
        d_summary = v1.summary.merge([
            v1.summary.scalar("d_loss", self.d_loss),
            v1.summary.scalar("d_loss_real", self.d_loss_real),
            v1.summary.scalar("d_loss_fake", self.d_loss_fake),
            v1.summary.scalar("D_x", self.d_real),
            v1.summary.scalar("D_G_z", self.d_fake),
            v1.summary.scalar("gradient_norm/discriminator", d_grad_norm),
            v1.summary.scalar("watchdog/diversity_fake_over_real", diversity.diversity),
            v1.summary.scalar("watchdog/near_duplicate_fraction", diversity.near_duplicates),
            v1.summary.histogram("D_x_histogram", _finite_or_zero(tf.sigmoid(real_logits))),
            v1.summary.histogram("D_G_z_histogram", _finite_or_zero(tf.sigmoid(fake_logits))),
        ])
        return d_summary, _generator_summary(self.g_loss, g_grad_norm)
