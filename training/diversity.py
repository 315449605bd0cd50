"""The collapse watchdog's diversity measures, as tensors of one fake and one real batch.

Graph code, computed with every D update (model.py) and by the benches that
score saved samples the same way; `training/watchdog.py` stays pure Python and
judges the numbers they give.
"""

from typing import NamedTuple

import numpy as np

from runtime.tf_runtime import tf
from training.watchdog import NEAR_DUPLICATE_QUANTILE


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


class DiversitySignals(NamedTuple):
    """What the watchdog reads of one step's fake and real batch (training/watchdog.py's low_diversity and
    near_duplicates alarms); the field names are the keys the training loop fetches them by."""

    diversity: tf.Tensor  # the fake batch's mean pair distance over the real batch's
    near_duplicates: tf.Tensor  # near_duplicate_fraction at NEAR_DUPLICATE_QUANTILE


def diversity_signals(fake_images, real_images):
    """The `DiversitySignals` of a fake batch against the real batch of the same step."""
    return DiversitySignals(
        mean_pairwise_distance(fake_images) / tf.maximum(mean_pairwise_distance(real_images), 1e-8),
        near_duplicate_fraction(fake_images, real_images, NEAR_DUPLICATE_QUANTILE))
