"""Where the training graph's random numbers come from: `RandomStreams`.

Kept apart from the graph (`model.py`) because everything that draws takes the
streams as an argument: the networks (the style generator's noise, the MLP D's
dropout, through the RANDOM_STREAMS collection), --diffaugment's transforms and
the stabilisers (the image pool's swaps); a test builds one on its own.
"""

from networks import RANDOM_STREAMS
from runtime.tf_runtime import tf

v1 = tf.compat.v1


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
        """`batch` z vectors as --z_dist and --z_dim say (`config`: a Config, or the networks' NetworkSpec)."""
        if config.z_dist == "gaussian":
            return self.normal([batch, config.z_dim])
        return self.uniform([batch, config.z_dim], -1.0, 1.0)
