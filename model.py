"""The training graph: G and D wired to the losses, scoped train ops, Saver, summaries.

Nothing here loads data or runs a session: `DCGAN` takes the real-image tensor
from the input pipeline (`datasets/pipeline.py`) and `training/train.py` runs the ops it builds.
The networks themselves live in `networks/`.

Variables live under two scopes, `generator/` and `discriminator/`; each
optimizer gets exactly its own scope's trainable variables and its own scope's
BatchNorm moving-average updates, and building fails loudly if any update
belongs to neither (TF-GAN's rule, and the fix for carpedm20's var_list bug).

Only D's updates read the input pipeline: G's labels are drawn in the graph
and G's feature-matching target is D's features of the last D update's real
batch (kept for G's update, and put through D as it is then), so
one step consumes exactly `d_steps` batches and epochs count true passes.
"""

import contextlib
import functools
import logging

import numpy as np

import ops
from networks import (
    AVERAGE_W_NAME,
    DISCRIMINATOR_SCOPE,
    GENERATOR_AVERAGE_SCOPE,
    GENERATOR_SCOPE,
    RANDOM_STREAMS,
    discriminator,
    generator_for,
)
from runtime.tf_runtime import tf
from training import diffaugment, losses
from training.replicas import Replicas
from training.watchdog import NEAR_DUPLICATE_QUANTILE

v1 = tf.compat.v1
log = logging.getLogger("dcgan")


class RandomStreams:
    """Every random draw of the training graph, from stateless ops.

    Each session.run that draws anything bumps one counter (a checkpointed
    variable) once, and each consumer gets its own stream id, so a run
    resumed from a checkpoint continues the very same noise it would have
    drawn uninterrupted ("same seed = same run" across restarts).  With
    several replicas each replica (`on_replica`) numbers its own streams, and
    with `replicas` > 1 mixes its index into the counter, so replicas draw
    different z from seeded streams; with `replicas` 1 every replica draws the
    seeds of a single-device run.
    """

    def __init__(self, seed, replicas=1):
        self.seed = seed
        self.counter = v1.get_variable("random_draws", [], tf.int64, v1.zeros_initializer(), trainable=False)
        self.draw = self.counter.assign_add(1)
        self.replicas, self.replica = replicas, 0
        self.streams = {}  # replica -> stream ids it has used
        v1.add_to_collection(RANDOM_STREAMS, self)

    def on_replica(self, replica):
        """Draws built from here on are `replica`'s, numbered from its first stream on."""
        self.replica = replica

    def _next_seed(self):
        self.streams[self.replica] = self.streams.get(self.replica, 0) + 1
        draw = self.draw if self.replicas == 1 else self.draw * self.replicas + self.replica
        return tf.stack([tf.constant(self.seed, tf.int64) * 1000 + self.streams[self.replica], draw])

    def uniform(self, shape, low=0.0, high=1.0):
        return tf.random.stateless_uniform(shape, self._next_seed(), low, high)

    def normal(self, shape):
        return tf.random.stateless_normal(shape, self._next_seed())

    def integers(self, shape, low, high):
        """Integers drawn uniformly from low, ..., high - 1."""
        return tf.random.stateless_uniform(shape, self._next_seed(), low, high, dtype=tf.int32)

    def dropout(self, x, rate):
        return tf.nn.experimental.stateless_dropout(x, rate, self._next_seed())

    def z(self, batch, config):
        if config.z_dist == "gaussian":
            return self.normal([batch, config.z_dim])
        return self.uniform([batch, config.z_dim], -1.0, 1.0)


def scope_variables(scope, collection=v1.GraphKeys.TRAINABLE_VARIABLES):
    return v1.get_collection(collection, scope=scope + "/")


@contextlib.contextmanager
def collected_updates():
    """Yields a list that receives the MOVING_AVERAGE_UPDATES registered inside
    the block, while the block sees only its own (so a layer's "already
    registered" check is per replica).  Replicas build one after another, so
    this splits the updates by the replica that created them, which names
    cannot do (replica 0's ops carry no replica_k/ prefix)."""
    registered = v1.get_collection_ref(ops.MOVING_AVERAGE_UPDATES)
    earlier, collected = list(registered), []
    del registered[:]
    try:
        yield collected
    finally:
        collected.extend(registered)
        registered[:] = earlier + collected


def split_update_ops(scopes, updates):
    """Assigns every moving-average update in `updates` to exactly one network scope.

    Raises ValueError if any is left over, or if anything sits in UPDATE_OPS
    (this project's layers never put ops there): an update that runs with no
    train op would silently freeze or corrupt that statistic.
    """
    stray = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    if stray:
        raise ValueError(f"UPDATE_OPS outside {scopes}: {sorted(op.name for op in stray)}")
    assigned = {scope: [u for u in updates if u[0].op.name.startswith(scope + "/")] for scope in scopes}
    leftover = [u[0].op.name for u in updates if not any(u in assigned[s] for s in scopes)]
    if leftover:
        raise ValueError(f"moving-average updates outside {scopes}: {sorted(leftover)}")
    return assigned


def all_finite(tensors):
    """True when every element of every tensor is finite.

    Checked tensor by tensor, never through a global norm: a sum of squares of
    large but finite gradients overflows float32 and would reject a good update.
    """
    return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]))


def replica_gradients(optimizer, loss, variables, replicas, check_gradients=True):
    """One replica's part of a guarded update: {"gradients", "finite", "norm"}.

    The gradients are of `loss` divided by the replica count, so the
    optimizer's sum over replicas is the mean gradient (one replica: `loss`'s
    own).  `finite` says whether the loss (and every gradient) is finite; with
    a loss-scale optimizer only the loss is checked: it skips overflowing
    gradients itself and must see them to lower its scale.  `norm` is the
    replica's gradient norm of `loss`.
    """
    gradients = optimizer.compute_gradients(loss / replicas.count if replicas.count > 1 else loss, var_list=variables)
    present = [g for g, _ in gradients if g is not None]
    norm = tf.linalg.global_norm(present)
    return {"gradients": gradients, "finite": all_finite([loss] + (present if check_gradients else [])),
            "norm": norm * replicas.count if replicas.count > 1 else norm}


def _apply_on_replica(optimizer, gradients, moving_updates, averages):
    # Moving averages first: historical averaging reads each weight before the
    # optimizer changes it, in every run alike; --g_ema then averages the new weights.
    with tf.control_dependencies(ops.moving_average_assignments(moving_updates)):
        updated = [optimizer.apply_gradients(gradients)]
    if averages:
        with tf.control_dependencies(updated):
            updated = ops.moving_average_assignments(averages)
    return updated


def apply_if_finite(optimizer, replicas, update, moving_updates, name, averages=()):
    """Applies the `replica_gradients` `update` with the network's moving-average
    updates (per replica) only if it is finite on every replica; then, in the
    same branch, the `averages` triples (read after the update: the --g_ema
    weight average, --historical_averaging's update counts).  Returns whether it was applied (bool tensor).

    The decision is made in cross-replica context, once for all replicas and
    workers, and the branch then runs the per-replica updates (whose
    all-reduce is a synchronisation point: it cannot sit inside a condition
    of a replica's own).  A skipped update leaves the weights, Adam's moments
    and the BatchNorm averages as they were, so --nan_policy skip carries on
    past a bad batch with nothing changed.
    """
    def apply():
        updated = replicas.run(functools.partial(_apply_on_replica, optimizer, averages=averages),
                               update["gradients"], moving_updates)
        with tf.control_dependencies(replicas.local_all(updated)):
            return tf.constant(True)

    return tf.cond(replicas.all(update["finite"]), apply, lambda: tf.constant(False), name=name)


def historical_averages(scope, variables):
    """Running means of `variables` over every past update of their network
    (Salimans et al. 2016), registered as moving-average updates so they move
    only with an applied update of their own network.

    Returns (averages, count_update).  The weights before the n-th update enter
    with decay 1/n, so after n updates each of the n snapshots weighs 1/n; n is
    counted per network by a variable of its own, because a network may update
    several times in a step (--d_steps, --g_steps, the fused step's extra G
    updates): a decay from the step count weighed a step's snapshots unequally
    and dropped some.
    `count_update` is the (variable, value, 1) triple that advances the count;
    it must run after the averages have read it (apply_if_finite's `averages`)."""
    count = ops.moving_average_variable(f"{scope}/historical_average_updates", [], v1.zeros_initializer())
    decay = 1.0 / (count + 1.0)
    averages = []
    for variable in variables:
        average = ops.moving_average_variable(variable.op.name + "/historical_average", variable.shape,
                                              v1.zeros_initializer())
        v1.add_to_collection(ops.MOVING_AVERAGE_UPDATES, (average, variable.read_value(), decay))
        averages.append(average)
    return averages, (count, count + 1.0, 1.0)


class ImageHistoryPool:
    """D's fakes mixed with fakes G made at earlier steps (Shrivastava et al.
    2017): D keeps being shown old modes, so G cannot cycle between them.

    While the pool fills, the current fakes are shown and stored; after that
    each fake is, with probability 1/2, swapped for a random stored one (which
    D sees instead).  A conditional model's fakes are stored with the one-hot
    labels G drew them for, and a stored fake is always shown with its own
    label: D (and AC-GAN's classifier) must never learn from a fake paired with
    another image's class.  The pool is checkpointed, so a resumed run sees the same.
    """

    def __init__(self, size, image_shape, random, label_dim=0):
        self.size, self.random = size, random
        self.images = v1.get_variable("image_pool", [size, *image_shape], tf.float32, v1.zeros_initializer(),
                                      trainable=False)
        self.labels = (v1.get_variable("image_pool_labels", [size, label_dim], tf.float32, v1.zeros_initializer(),
                                       trainable=False) if label_dim else None)
        self.filled = v1.get_variable("image_pool_filled", [], tf.int32, v1.zeros_initializer(), trainable=False)

    def shown(self, fakes, onehot=None):
        """The (images, one-hot labels) D sees in place of (`fakes`, `onehot`)."""
        batch = tf.shape(fakes)[0]
        full = self.filled >= self.size
        distinct = tf.argsort(self.random.uniform([self.size]))[:batch]  # no two fakes in one slot
        self._slots = tf.where(full, distinct, tf.math.floormod(self.filled + tf.range(batch), self.size))
        self._swap = tf.logical_and(full, self.random.uniform([batch]) < 0.5)
        self._write = tf.logical_or(self._swap, tf.logical_not(full))
        images = _where_rows(self._swap, tf.gather(self.images, self._slots), fakes)
        return images, (None if onehot is None else _where_rows(self._swap, tf.gather(self.labels, self._slots),
                                                                onehot))

    def store(self, fakes, onehot=None):
        """Writes this batch (and its labels) where D was shown a stored image or the pool is filling.

        Built inside the branch that runs after an applied D update (whose
        result depends on the read above), so it never writes before the read
        and a skipped update stores nothing."""
        slots = self._slots[:, None]
        updates = [self.images.scatter_nd_update(
            slots, _where_rows(self._write, tf.stop_gradient(fakes), tf.gather(self.images, self._slots)))]
        if onehot is not None:
            updates.append(self.labels.scatter_nd_update(
                slots, _where_rows(self._write, onehot, tf.gather(self.labels, self._slots))))
        return tf.group(*updates, self.filled.assign(tf.minimum(self.filled + tf.shape(fakes)[0], self.size)))


def _where_rows(condition, x, y):
    """tf.where with a per-row boolean [batch] picking whole rows of x or y, whatever their rank."""
    return tf.where(tf.reshape(condition, [-1] + [1] * (x.shape.rank - 1)), x, y)


def class_logits(features, config):
    """AC-GAN's auxiliary classifier on D's features (Odena et al. 2017)."""
    with v1.variable_scope(DISCRIMINATOR_SCOPE, reuse=v1.AUTO_REUSE):
        return ops.linear(features, config.y_dim, name="d_class_lin")


def class_loss(logits, onehot):
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=logits))


def averaged_name(variable):
    """generator/x -> generator_ema/x: the --g_ema copy of one of G's variables."""
    return GENERATOR_AVERAGE_SCOPE + variable.op.name[len(GENERATOR_SCOPE):]


EMA_WARMUP = 10.0


def ema_decay(decay, step):
    """--g_ema's decay at training step `step`: min(decay, (1 + step) / (10 + step)), the warm-up of
    TF's ExponentialMovingAverage(num_updates=step).  Without it a 0.999 average still holds 74% of G's
    random initial weights after 300 steps, and a short run (the ablation's 300-938 steps on this CPU)
    would sample from an average worse than G itself."""
    step = tf.cast(step, tf.float32)
    return tf.minimum(tf.constant(decay, tf.float32), (1.0 + step) / (EMA_WARMUP + step))


def generator_average(decay, g_updates, step):
    """Creates the --g_ema copies of G's weights and BatchNorm averages, each
    starting from its variable's initial value, and returns the triples
    (copy, variable, 1 - d) that G's train op assigns after each applied
    update: copy = d * copy + (1 - d) * variable, d = ema_decay(decay, step).
    The BatchNorm averages are averaged like the weights (as BigGAN's G_ema
    averages its whole state dict), so they follow the averaged network's time scale.  The style generator's
    average w is copied (rate 1), as StyleGAN's Gs copies dlatent_avg: it is already an average, and
    averaging it again would put the truncation centre ~1/(1 - d) steps behind the tracked one."""
    weights = scope_variables(GENERATOR_SCOPE) + list(dict.fromkeys(moving for moving, _, _ in g_updates))
    rate = 1.0 - ema_decay(decay, step)
    return [(ops.moving_average_variable(averaged_name(variable), None, variable.initial_value), variable,
             1.0 if variable.op.name == f"{GENERATOR_SCOPE}/{AVERAGE_W_NAME}" else rate)
            for variable in weights]


@contextlib.contextmanager
def averaged_generator_variables():
    """Inside it, G's network code reads generator_ema/x wherever it asks for
    generator/x, so one network definition builds the averaged G too."""
    def renamed(getter, name, *args, **kwargs):
        if name.startswith(GENERATOR_SCOPE + "/"):
            name = GENERATOR_AVERAGE_SCOPE + name[len(GENERATOR_SCOPE):]
            kwargs.update(trainable=False, reuse=v1.AUTO_REUSE)  # made by generator_average() in training
        return getter(name, *args, **kwargs)

    with v1.variable_scope(v1.get_variable_scope(), custom_getter=renamed):
        yield


def pairwise_distances(images):
    """Euclidean distances between the distinct pairs (i < j) of a batch, as one float32 vector, row by row.

    From ‖a‖² + ‖b‖² - 2a·b, so a batch of 64 costs one matrix product (not a 64 x 64 x pixels difference);
    its float32 rounding can leave identical images up to about 0.3 apart at 64x64x3 (0.25 measured for
    saturated pixels), far below two distinct images (tens)."""
    flat = tf.reshape(tf.cast(images, tf.float32), [tf.shape(images)[0], -1])
    squared = tf.reduce_sum(tf.square(flat), axis=1)
    distances = squared[:, None] + squared[None, :] - 2.0 * tf.matmul(flat, flat, transpose_b=True)
    index = tf.range(tf.shape(flat)[0])
    return tf.sqrt(tf.maximum(tf.boolean_mask(distances, index[:, None] < index[None, :]), 0.0))


def mean_pairwise_distance(images):
    """Mean Euclidean distance between the distinct pairs of a batch (0 for one image):
    the collapse watchdog compares it between fake and real batches."""
    pairs = pairwise_distances(images)
    return tf.math.divide_no_nan(tf.reduce_sum(pairs), tf.cast(tf.size(pairs), tf.float32))


def near_duplicate_fraction(fake_images, real_images, quantile):
    """The fraction of fake pairs closer to each other than the real batch's `quantile` pair distance
    (the real distance at rank floor(quantile x (pairs - 1)) in increasing order: NumPy's "lower" quantile).

    Real data scores about `quantile` against itself, G repeating one image scores 1.  It catches
    what the mean distance misses: G making a handful of distinct images, or noisy copies of them,
    keeps the mean pairwise distance near the real one while most pairs are copies."""
    real = tf.sort(pairwise_distances(real_images))
    pairs = tf.cast(tf.size(real), tf.float64)
    rank = tf.cast(tf.floor(quantile * (pairs - 1.0)), tf.int32)
    threshold = tf.concat([real, [np.inf]], axis=0)[tf.maximum(rank, 0)]  # no real pair: nothing is "close"
    fake = pairwise_distances(fake_images)
    close = tf.reduce_sum(tf.cast(fake < threshold, tf.float32))
    return tf.math.divide_no_nan(close, tf.cast(tf.size(fake), tf.float32))


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
        d_train_op = apply_if_finite(self.d_optimizer, replicas, step["d"], step["d_moving"],
                                     f"{DISCRIMINATOR_SCOPE}_train", averages=self._counted(DISCRIMINATOR_SCOPE))
        remember = replicas.run(functools.partial(self._remember, d_train_op), step["real"], step["fake"])
        self.d_train_op = tf.tuple([d_train_op], control_inputs=replicas.local_all(remember))[0]
        self.fake_images, self.shown_fakes = replicas.concat(step["fake_images"]), replicas.concat(step["shown_fakes"])
        # The labels D was shown with `shown_fakes` (a conditional model's; None otherwise).
        self.shown_fake_onehot = replicas.concat(step["shown_onehot"]) if config.conditional else None
        self.d_loss, self.d_loss_real, self.d_loss_fake, self.d_real, self.d_fake = (
            replicas.mean(step["d_scalars"][name])
            for name in ("d_loss", "d_loss_real", "d_loss_fake", "d_real", "d_fake"))
        diversity = {name: replicas.mean(step["d_scalars"][name]) for name in ("diversity", "near_duplicates")}
        d_grad_norm = replicas.mean(step["d"]["norm"])
        self.d_fetches = {"d_applied": self.d_train_op, "d_loss": self.d_loss, "d_real": self.d_real,
                          "d_fake": self.d_fake, "d_grad_norm": d_grad_norm, **diversity}

        g_updates, fused_g_updates = step["g_moving"], step["g_moving_fused"]
        g_average = (generator_average(config.g_ema, g_updates + fused_g_updates, self.global_step) if config.g_ema
                     else [])
        g_after = g_average + self._counted(GENERATOR_SCOPE)
        self.g_train_op = apply_if_finite(self.g_optimizer, replicas, step["g"], g_updates,
                                          f"{GENERATOR_SCOPE}_train", averages=g_after)
        self.g_loss, g_grad_norm = replicas.mean(step["g_loss"]), replicas.mean(step["g"]["norm"])
        self.g_fetches = {"g_applied": self.g_train_op, "g_loss": self.g_loss, "g_grad_norm": g_grad_norm}

        if config.fused_update:
            fused = replicas.run(functools.partial(self._replica_fused_g, self.d_train_op), step["fused_inputs"])
            self.fused_train_op = apply_if_finite(self.g_optimizer, replicas, fused, fused_g_updates, "fused_train",
                                                  averages=g_after)
            fused_g_loss, fused_norm = replicas.mean(fused["loss"]), replicas.mean(fused["norm"])
            self.fused_fetches = dict(self.d_fetches, g_applied=self.fused_train_op, g_loss=fused_g_loss,
                                      g_grad_norm=fused_norm)
        else:
            self.fused_train_op = self.fused_fetches = self.fused_summary = None

        self.advance_step = tf.group(
            v1.assign_add(self.global_step, 1),
            v1.assign_add(self.images_seen, tf.cast(replicas.global_batch(step["batch"]), tf.int64) * config.d_steps),
            name="advance_step")
        self.sampler = InferenceGenerator(config)
        self.d_summary, self.g_summary = self._summaries(
            replicas.concat(step["d_logits"]["real"]), replicas.concat(step["d_logits"]["fake"]), d_grad_norm,
            g_grad_norm, diversity)
        if config.fused_update:
            self.fused_summary = v1.summary.merge([self.d_summary, _generator_summary(fused_g_loss, fused_norm)])
        self.saver = v1.train.Saver(max_to_keep=config.max_to_keep)
        self.initializer = tf.group(v1.global_variables_initializer(), v1.local_variables_initializer(),
                                    name="initialize")
        # Checked before every save, so no checkpoint on disk ever holds a NaN/Inf.
        self.variables_finite = {
            v.op.name: tf.reduce_all(tf.math.is_finite(v)) for v in v1.global_variables() if v.dtype.is_floating
        }

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
                images = generator_for(config, self.random)(self.random.z(batch, config), onehot, config, True,
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
        diversity = {
            "diversity": mean_pairwise_distance(fake_images) / tf.maximum(mean_pairwise_distance(real_images), 1e-8),
            "near_duplicates": near_duplicate_fraction(fake_images, real_images, NEAR_DUPLICATE_QUANTILE)}

        g_loss = self._g_loss(g_fake, g_onehot, self.last_real_images, self.last_real_onehot,
                              penalties[GENERATOR_SCOPE])
        g_update = replica_gradients(self.g_optimizer, g_loss, scope_variables(GENERATOR_SCOPE), self.replicas,
                                     check_gradients=not self._loss_scaled)
        return {
            "batch": batch, "d": d_update, "d_moving": updates[DISCRIMINATOR_SCOPE],
            "g": g_update, "g_loss": g_loss,
            # Each G update applies the moving averages of its own forward pass (and both, the historical ones).
            "g_moving": [u for u in updates[GENERATOR_SCOPE] if u not in fused_g_moving],
            "g_moving_fused": [u for u in updates[GENERATOR_SCOPE] if u not in separate_g_moving],
            "d_scalars": {"d_loss": d_loss, "d_loss_real": d_loss_real, "d_loss_fake": d_loss_fake,
                          "d_real": d_out["real_probability"], "d_fake": d_out["fake_probability"],
                          **diversity},
            "d_logits": {"real": d_out["real_logits"], "fake": d_out["fake_logits"]},
            "real": {"images": real_images, "onehot": real_onehot},
            "fake_images": fake_images, "shown_fakes": shown_fakes,
            "fake": {"images": fake_images, **({"onehot": fake_onehot} if config.conditional else {})},
            "shown_onehot": shown_onehot if config.conditional else batch,
            "fused_inputs": {"fake_images": fake_images, "fake_onehot": fake_onehot, "real_images": real_images,
                             "real_onehot": real_onehot,
                             "penalty": penalties[GENERATOR_SCOPE]},
        }

    def _remember(self, d_applied, real, fake):
        """On each replica, after D's update: keeps its real batch for G's update (if applied) and
        stores the fakes in the image pool."""
        remember = [_assign_if(d_applied, self.last_real_images, real["images"])]
        if self.config.conditional:
            remember.append(_assign_if(d_applied, self.last_real_onehot, real["onehot"]))
        if self.pool:
            remember.append(tf.cond(d_applied, lambda: self.pool.store(fake["images"], fake.get("onehot")), tf.no_op))
        return remember

    def _replica_fused_g(self, d_applied, inputs):
        """On each replica: G's loss on D's fake batch through the updated D, and its gradients."""
        self.random.on_replica(self.replicas.replica_id())  # its draws (augmentation, noise) are this replica's
        with tf.control_dependencies([d_applied]):
            loss = self._g_loss(inputs["fake_images"], inputs["fake_onehot"], inputs["real_images"],
                                inputs["real_onehot"], inputs["penalty"])
        return dict(replica_gradients(self.g_optimizer, loss, scope_variables(GENERATOR_SCOPE), self.replicas,
                                      check_gradients=not self._loss_scaled), loss=loss)

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
        return discriminator(images, None if self.config.conditioning == "acgan" else onehot, self.config,
                             batch_groups=batch_groups)

    def _discriminate(self, real_images, real_onehot, fake_images, fake_onehot):
        real_input, fake_input = self._shown_to_d(real_images), self._shown_to_d(fake_images)
        (real_logits, real_features), (fake_logits, fake_features) = self._discriminator_pair(
            real_input, real_onehot, fake_input, fake_onehot)
        return {"real_logits": real_logits, "fake_logits": fake_logits, "real_features": real_features,
                "fake_features": fake_features, "real_input": real_input, "fake_input": fake_input,
                "real_probability": tf.reduce_mean(tf.sigmoid(real_logits)),
                "fake_probability": tf.reduce_mean(tf.sigmoid(fake_logits))}

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
            config.loss, d_out["real_logits"], d_out["fake_logits"], real_targets, fake_targets)
        if config.conditioning == "acgan":
            total += (class_loss(class_logits(d_out["real_features"], config), real_onehot)
                      + class_loss(class_logits(d_out["fake_features"], config), fake_onehot))
        if config.gp_lambda:
            def critic(images):
                return self._discriminator(images, real_onehot)[0]
            epsilon = self.random.uniform([tf.shape(real_images)[0]])
            total += config.gp_lambda * losses.gradient_penalty(
                critic, d_out["real_input"], d_out["fake_input"], epsilon)
        if config.r1_gamma:
            total += config.r1_gamma * losses.r1_penalty(d_out["real_logits"], d_out["real_input"])
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
            loss += class_loss(class_logits(features, config), fake_onehot)
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
            v1.summary.scalar("watchdog/diversity_fake_over_real", diversity["diversity"]),
            v1.summary.scalar("watchdog/near_duplicate_fraction", diversity["near_duplicates"]),
            v1.summary.histogram("D_x_histogram", _finite_or_zero(tf.sigmoid(real_logits))),
            v1.summary.histogram("D_G_z_histogram", _finite_or_zero(tf.sigmoid(fake_logits))),
        ])
        return d_summary, _generator_summary(self.g_loss, g_grad_norm)


class InferenceGenerator:
    """G in inference mode (BN moving averages) on fed z vectors and labels.

    Shared by training-time samples, visualization and export: the batch
    dimension is free, so sample counts never depend on --batch_size.  With
    --g_ema it is the averaged G (its variables under `scope`).  A style
    generator also takes `truncation_psi` (a scalar, default --truncation_psi).
    """

    def __init__(self, config):
        self.z = v1.placeholder(tf.float32, [None, config.z_dim], name="z")
        self.labels = v1.placeholder(tf.int64, [None], name="labels") if config.conditional else None
        self.labels_onehot = tf.one_hot(self.labels, config.y_dim) if config.conditional else None
        self.truncation_psi = (v1.placeholder_with_default(float(config.truncation_psi), [], name="truncation_psi")
                               if config.arch == "style" else None)
        self.scope = GENERATOR_AVERAGE_SCOPE if config.g_ema else GENERATOR_SCOPE
        if config.g_ema:
            log.info("generator: sampling with the moving average of G's weights (--g_ema %g)", config.g_ema)
        self.config = config
        self.images = self.build(self.z, self.labels_onehot)
        self.images_uint8 = to_uint8(self.images, name="images_uint8")

    def variables(self):
        """The context in which network code reads this generator's variables: the averaged G's
        with --g_ema (code that builds parts of G itself, like visualize.StyleTools, needs it too)."""
        return averaged_generator_variables() if self.config.g_ema else contextlib.nullcontext()

    def build(self, z, labels_onehot):
        """G's images for other z/label tensors, on this generator's variables and settings
        (the averaged G with --g_ema; the truncation input of a style generator)."""
        with self.variables():
            return generator_for(self.config, truncation_psi=self.truncation_psi)(
                z, labels_onehot, self.config, is_training=False)

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


def to_uint8(images, name=None):
    """Images in [-1, 1] -> uint8 pixels (rounded, clipped)."""
    pixels = tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0.0, 255.0)
    return tf.cast(pixels, tf.uint8, name=name)


def fixed_z(count, config, seed):
    """Reproducible z vectors (NumPy), e.g. the fixed batch behind every sample grid."""
    rng = np.random.RandomState(seed)
    if config.z_dist == "gaussian":
        return rng.standard_normal((count, config.z_dim)).astype(np.float32)
    return rng.uniform(-1.0, 1.0, (count, config.z_dim)).astype(np.float32)


def sample_labels(count, config):
    """Labels cycling 0..y_dim-1, so a grid shows every class in order (None if unconditional)."""
    return np.arange(count) % config.y_dim if config.conditional else None
