"""Stabilisers of GAN training that keep state of their own in the graph: the image pool, historical
averaging and the moving average of G's weights (--g_ema).

Each owns variables beside the networks' (checkpointed with them, so a resumed
run continues them) and is wired in by `model.py`: the pool between G and D,
the averages as moving-average updates that run only with an applied update of
their own network (`training/updates.py`'s `apply_if_finite`).
"""

import contextlib

import ops
from networks import AVERAGE_W_NAME, GENERATOR_AVERAGE_SCOPE, GENERATOR_SCOPE
from runtime.tf_runtime import tf
from training.updates import scope_variables

v1 = tf.compat.v1


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
