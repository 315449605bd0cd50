"""--diffaugment (training/diffaugment.py): each transform's effect computed by hand, the draws (range, independence,
determinism from the run's stateless streams), and its wiring into both networks' updates."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

import config as config_lib
import model
from runtime.errors import UserError
from training import diffaugment, random_streams, updates

v1 = tf.compat.v1
ALL = "color,translation,cutout"


def evaluate(build):
    """build() -> tensors, evaluated in a fresh graph and session (variables initialised)."""
    with tf.Graph().as_default(), v1.Session() as session:
        tensors = build()
        session.run([v1.global_variables_initializer(), v1.local_variables_initializer()])
        return session.run(tensors)


def per_image(*values):
    return tf.constant(values, tf.float32)


def test_brightness_moves_each_image_by_its_own_shift():
    images = np.random.RandomState(0).uniform(-1, 1, (2, 4, 4, 3)).astype(np.float32)
    out = evaluate(lambda: diffaugment.brightness(tf.constant(images), per_image(0.3, -0.2)))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)) - images.mean(axis=(1, 2, 3)), [0.3, -0.2], atol=1e-6)
    np.testing.assert_allclose(out - images, np.broadcast_to(np.reshape([0.3, -0.2], [2, 1, 1, 1]), out.shape),
                               atol=1e-6)


def test_saturation_scales_each_pixels_distance_from_its_grey_and_leaves_grey_alone():
    pixel = np.array([[[[0.5, 0.0, -0.5], [0.2, 0.2, 0.2]]]], np.float32)  # a coloured and a grey pixel
    images = np.concatenate([pixel, pixel])
    out = evaluate(lambda: diffaugment.saturation(tf.constant(images), per_image(2.0, 0.0)))
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 0.0, -1.0], atol=1e-6)  # grey 0, distances doubled
    np.testing.assert_allclose(out[1, 0, 0], [0.0, 0.0, 0.0], atol=1e-6)  # factor 0: its grey
    np.testing.assert_allclose(out[:, 0, 1], [[0.2] * 3] * 2, atol=1e-6)


def test_contrast_scales_each_images_deviations_from_its_mean():
    images = np.array([0.0, 0.5, 0.0, 0.5], np.float32).reshape([1, 2, 2, 1])  # mean 0.25
    out = evaluate(lambda: diffaugment.contrast(tf.constant(images), per_image(1.5)))
    np.testing.assert_allclose(out.ravel(), [-0.125, 0.625, -0.125, 0.625], atol=1e-6)


def test_translation_moves_a_bright_pixel_by_the_offset_zeros_come_in_and_gradients_follow():
    images = -np.ones([1, 8, 8, 1], np.float32)  # black, one white pixel at row 3, column 4
    images[0, 3, 4] = 1.0

    def build():
        x = tf.constant(images)
        moved = diffaugment.translate(x, tf.constant([2]), tf.constant([-3]))  # 2 down, 3 left
        return moved, tf.gradients(tf.reduce_sum(moved), x)[0]

    moved, gradient = evaluate(build)
    expected = np.zeros([8, 8], np.float32)  # what came in (2 rows at the top, 3 columns at the right) is 0
    expected[2:, :5] = -1.0
    expected[5, 1] = 1.0
    np.testing.assert_array_equal(moved[0, :, :, 0], expected)
    kept = np.zeros([8, 8], np.float32)  # the pixels still in the picture get the gradient, the others none
    kept[:6, 3:] = 1.0
    np.testing.assert_array_equal(gradient[0, :, :, 0], kept)


def test_cut_out_zeroes_exactly_the_rectangle_clipped_to_the_image_and_blocks_its_gradient():
    images = np.ones([2, 16, 16, 3], np.float32)

    def build():
        x = tf.constant(images)
        cut = diffaugment.cut_out(x, tf.constant([5, 3]), tf.constant([6, -2]), 8, 8)
        return cut, tf.gradients(tf.reduce_sum(cut), x)[0]

    cut, gradient = evaluate(build)
    inside, clipped = np.ones([16, 16, 3], np.float32), np.ones([16, 16, 3], np.float32)
    inside[5:13, 6:14] = 0.0  # 8 x 8 in the picture
    clipped[3:11, 0:6] = 0.0  # columns -2 and -1 fall outside: 8 x 6 remain
    np.testing.assert_array_equal(cut, [inside, clipped])
    np.testing.assert_array_equal(gradient, cut)


def test_sizes_round_half_up_as_the_authors_code():
    assert [diffaugment.translation_limit(size) for size in (16, 28, 32, 64)] == [2, 4, 4, 8]
    assert [diffaugment.cutout_size(size) for size in (16, 28, 27, 64)] == [8, 14, 14, 32]


def augmented(images, policy, seed=1, runs=1):
    """augment(images) under RandomStreams(seed) in a fresh graph, for `runs` session runs (one draw each)."""
    with tf.Graph().as_default(), v1.Session() as session:
        out = diffaugment.augment(tf.constant(images), policy, random_streams.RandomStreams(seed))
        session.run(v1.global_variables_initializer())
        return [session.run(out) for _ in range(runs)]


def test_color_moves_a_flat_image_by_a_brightness_drawn_from_minus_to_plus_half():
    # Saturation and contrast leave a flat grey image as it is: only brightness shows.
    images = np.full([512, 4, 4, 3], 0.25, np.float32)
    [out] = augmented(images, "color")
    shift = out[:, 0, 0, 0] - 0.25
    np.testing.assert_allclose(out - 0.25, np.broadcast_to(shift[:, None, None, None], out.shape), atol=1e-6)
    assert -0.5 <= shift.min() < -0.45 and 0.45 < shift.max() < 0.5


def test_translation_draws_every_offset_up_to_an_eighth_of_the_side_and_no_more():
    images = np.zeros([512, 16, 16, 1], np.float32)
    images[:, 8, 8] = 1.0
    [out] = augmented(images, "translation")
    assert np.all(out.reshape([512, -1]).sum(axis=1) == 1.0)  # the pixel is moved, never lost or doubled
    rows, columns = np.nonzero(out[:, :, :, 0])[1:]
    offsets = set(zip((rows - 8).tolist(), (columns - 8).tolist(), strict=True))
    assert offsets == {(down, right) for down in range(-2, 3) for right in range(-2, 3)}  # r = 16 / 8


def test_cutout_draws_a_half_size_square_centred_anywhere_clipped_at_the_border():
    [out] = augmented(np.ones([512, 16, 16, 1], np.float32), "cutout")
    spans = set()
    for image in out[:, :, :, 0]:
        zero_rows, zero_columns = np.nonzero(np.any(image == 0, axis=1))[0], np.nonzero(np.any(image == 0, axis=0))[0]
        height, width = len(zero_rows), len(zero_columns)
        assert np.sum(image == 0) == height * width  # one rectangle
        assert np.all(np.diff(zero_rows) == 1) and np.all(np.diff(zero_columns) == 1)
        spans.add((zero_rows[0], zero_rows[-1]))
    # An 8-row hole starting at rows -4 ... 12, clipped to rows 0 ... 15: 4 to 8 rows show.
    assert spans == {(max(top, 0), min(top + 7, 15)) for top in range(-4, 13)}


def test_same_seed_and_step_draw_the_same_the_next_step_or_another_seed_not():
    images = np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    first, second = augmented(images, ALL, seed=5, runs=2)
    again_first, again_second = augmented(images, ALL, seed=5, runs=2)
    [other_seed] = augmented(images, ALL, seed=6)
    np.testing.assert_array_equal(first, again_first)
    np.testing.assert_array_equal(second, again_second)
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, other_seed)


def test_each_call_draws_its_own_transforms_and_no_policy_draws_nothing():
    images = np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)

    def build():
        random, x = random_streams.RandomStreams(1), tf.constant(images)
        assert diffaugment.augment(x, "", random) is x and not random.streams
        return diffaugment.augment(x, ALL, random), diffaugment.augment(x, ALL, random)

    one, other = evaluate(build)
    assert all(not np.array_equal(a, b) for a, b in zip(one, other, strict=True))


def hole(gradient):
    """The rectangle (first row, last row, first column, last column) where an image's gradient is zero."""
    zero = np.all(gradient == 0, axis=-1)
    rows, columns = np.nonzero(np.any(zero, axis=1))[0], np.nonzero(np.any(zero, axis=0))[0]
    assert len(rows) and np.sum(zero) == len(rows) * len(columns), "not one rectangle"
    assert 4 <= len(rows) <= 8 and 4 <= len(columns) <= 8  # half of a 16 x 16 image, at most half cut off
    return rows[0], rows[-1], columns[0], columns[-1]


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_d_sees_its_own_cutout_on_every_real_and_fake_in_both_updates_and_g_learns_through_it(tmp_path,
                                                                                             data_format):
    # The conditional MNIST model, fused step: D's update on real and fake, then G's through the updated D.
    config = tiny_config(tmp_path, diffaugment="cutout", fused_update=True, data_format=data_format)
    rng = np.random.RandomState(0)
    real = rng.uniform(-1, 1, (4, 16, 16, 1)).astype(np.float32)

    def build():
        images = tf.constant(real)
        gan = model.DCGAN(config, images, tf.constant([0, 1, 2, 3], tf.int64))
        g_loss = gan.fused_fetches["g_loss"]
        generator_weights = updates.scope_variables(model.GENERATOR_SCOPE)
        return {"d_on_real": tf.gradients(gan.d_loss, images)[0],
                "d_on_fake": tf.gradients(gan.d_loss, gan.fake_images)[0],
                "g_on_fake": tf.gradients(g_loss, gan.fake_images)[0],
                "g_weights": tf.linalg.global_norm(tf.gradients(g_loss, generator_weights))}

    gradients = evaluate(build)
    holes = {name: [hole(image) for image in gradients[name]] for name in ("d_on_real", "d_on_fake", "g_on_fake")}
    # Independent draws: no two of the three batches have their holes in the same places.
    assert len({tuple(batch) for batch in holes.values()}) == 3
    assert np.isfinite(gradients["g_weights"]) and gradients["g_weights"] > 0


def test_policy_is_checked_and_written_in_the_order_applied(tmp_path):
    assert tiny_config(tmp_path, diffaugment=" cutout,color, cutout").diffaugment == "color,cutout"
    assert tiny_config(tmp_path).diffaugment == ""
    with pytest.raises(UserError, match=r"^--diffaugment: unknown transform 'blur'; .*color, translation, cutout"):
        tiny_config(tmp_path, diffaugment="color,blur")
    assert tuple(diffaugment.RANDOM_TRANSFORMS) == config_lib.DIFFAUGMENT_TRANSFORMS
    assert "diffaugment" in config_lib.RECIPE_FIELDS  # resuming with another policy is refused
