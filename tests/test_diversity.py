"""training/diversity.py: the watchdog's diversity measures as tensors, against hand-computed distances and
known batches (identical fakes, a real batch against itself, a few noisy repeated images)."""

import numpy as np
import pytest

from runtime.tf_runtime import tf
from training.diversity import mean_pairwise_distance, near_duplicate_fraction, pairwise_distances
from training.watchdog import MAX_NEAR_DUPLICATES, MIN_DIVERSITY, NEAR_DUPLICATE_QUANTILE

v1 = tf.compat.v1


def in_graph(function, *arrays, **kwargs):
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        return session.run(function(*[tf.constant(a) for a in arrays], **kwargs))


def random_images(count, spread=1.0, seed=0):
    """`count` 16x16 images of uniform noise in [-spread, spread]: no two alike, no two distances equal."""
    return np.random.default_rng(seed).uniform(-spread, spread, (count, 16, 16, 1)).astype(np.float32)


def test_pairwise_distances_are_the_distinct_pairs_row_by_row():
    images = np.zeros((3, 2, 2, 1), np.float32)
    images[1, 0, :, 0] = [3.0, 4.0]
    images[2, 0, 0, 0] = 6.0
    # (0, 1): |(3, 4)| = 5; (0, 2): 6; (1, 2): |(3, -4)| = 5
    np.testing.assert_allclose(in_graph(pairwise_distances, images), [5.0, 6.0, 5.0], rtol=1e-6)
    assert in_graph(mean_pairwise_distance, images) == pytest.approx(16.0 / 3)
    assert in_graph(mean_pairwise_distance, images[:1]) == 0.0  # one image: no pair, no NaN


def test_identical_fakes_are_all_near_duplicates():
    real = random_images(64)
    fakes = np.repeat(random_images(1, seed=1), 64, axis=0)
    assert in_graph(near_duplicate_fraction, fakes, real, quantile=NEAR_DUPLICATE_QUANTILE) == 1.0


def test_a_batch_as_varied_as_the_real_one_scores_about_the_quantile():
    real = random_images(64)
    # The real batch against itself: exactly the pairs ranked below floor(0.02 x 2015) = 40, of 2016.
    assert in_graph(near_duplicate_fraction, real, real, quantile=0.02) == pytest.approx(40 / 2016)
    other = in_graph(near_duplicate_fraction, random_images(64, seed=1), real, quantile=0.02)
    assert other < 0.05  # another draw of the same distribution: near the real 2%, far under the alarm
    assert in_graph(near_duplicate_fraction, real[:1], real[:1], quantile=0.02) == 0.0  # no pair: 0, not NaN


def test_a_handful_of_noisy_repeated_images_is_flagged_where_the_mean_distance_is_not():
    real = random_images(64, spread=0.5)
    modes = np.repeat(random_images(4, seed=1), 16, axis=0)  # 4 images, 16 noisy copies of each
    fakes = modes + np.random.default_rng(2).normal(0, 0.05, modes.shape).astype(np.float32)
    # Copies of one image: 4 x (16 x 15 / 2) = 480 of the 2016 pairs; the 4 images are farther apart
    # (spread 1 against the real 0.5) than any real pair, so no other pair counts.
    assert in_graph(near_duplicate_fraction, fakes, real, quantile=NEAR_DUPLICATE_QUANTILE) == pytest.approx(
        480 / 2016)
    assert 480 / 2016 > MAX_NEAR_DUPLICATES
    ratio = in_graph(mean_pairwise_distance, fakes) / in_graph(mean_pairwise_distance, real)
    assert ratio > 1.0 > MIN_DIVERSITY  # the mean distance sees a batch more varied than the real one
