"""tools/visualize.py, the DCGAN paper's analyses: vector arithmetic, D's filters by guided backpropagation, latent
walks."""

import json
import os

import imageio.v2 as imageio
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config, trained_run

import utils
from tools import visualize
from training import train
from training.inference import fixed_z, restored_generator

v1 = tf.compat.v1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny unconditional MNIST generator trained 2 steps."""
    return trained_run(tmp_path_factory.mktemp("analyses"), max_steps=2, z_dim=4, n_samples=9, y_dim=0,
                       visualize_option="arithmetic,d_filters,walk", arithmetic_groups="0,1;2;3,4,5")


def test_visualize_writes_the_three_analyses(trained):
    names = sorted(os.path.basename(p) for p in visualize.visualize(trained))
    assert names == ["test_arithmetic.png", "test_d_filters.png", "test_walk.gif", "test_walk.png",
                     "test_walk_transitions.json"]
    frames = (visualize.WALK_KEY_POINTS - 1) * visualize.WALK_STEPS + 1
    strip = imageio.imread(os.path.join(trained.sample_path, "test_walk.png"))
    assert strip.shape[:2] == (visualize.WALKS * 17 - 1, frames * 17 - 1)  # a row per walk, a column per step
    filters = imageio.imread(os.path.join(trained.sample_path, "test_d_filters.png"))
    assert filters.shape[:2] == (visualize.D_FILTERS_SHOWN * 17 - 1, visualize.D_FILTER_TOP_IMAGES * 17 - 1)
    with open(os.path.join(trained.sample_path, "test_walk_transitions.json")) as f:
        report = json.load(f)
    assert np.array(report["mean_abs_pixel_change_per_step"]).shape == (visualize.WALKS, frames - 1)


def test_arithmetic_grid_rows_are_the_groups_and_the_result(trained):
    with restored_generator(trained) as restored:
        def generate(z, labels):
            return restored.generator.generate(restored.session, z, labels)

        grid = visualize.arithmetic_grid(restored.config, generate, seed=3)
        z = fixed_z(9, restored.config, 3)
        results = visualize.arithmetic_z(z[[0, 1]], z[[2]], z[[3, 4, 5]], seed=3)
        assert np.allclose(results[0], z[[0, 1]].mean(0) - z[2] + z[[3, 4, 5]].mean(0), atol=1e-6)
        cells = np.zeros((4, 9, 16, 16, 1), np.uint8)  # 9 columns: the result and its 8 variants
        cells[0, :2], cells[1, :1], cells[2, :3] = generate(z[[0, 1]], None), generate(z[[2]], None), \
            generate(z[[3, 4, 5]], None)
        cells[3] = generate(results, None)
    assert np.array_equal(grid, utils.image_grid(cells.reshape(-1, 16, 16, 1), cols=9))


def test_walk_goes_linearly_through_its_key_points(tmp_path):
    config = tiny_config(tmp_path, z_dim=3, y_dim=0)
    z, labels = visualize.walk_inputs(config, seed=2)
    frames = (visualize.WALK_KEY_POINTS - 1) * visualize.WALK_STEPS + 1
    walks = z.reshape(visualize.WALKS, frames, 3)
    keys = fixed_z(visualize.WALKS * visualize.WALK_KEY_POINTS, config, 2).reshape(visualize.WALKS, -1, 3)
    assert labels is None
    assert np.allclose(walks[:, :: visualize.WALK_STEPS], keys)  # every WALK_STEPS-th frame is a key point
    assert np.allclose(walks[1, 3], keys[1, 0] + 3 / visualize.WALK_STEPS * (keys[1, 1] - keys[1, 0]))


def test_a_jump_in_a_walk_is_reported_as_sharp():
    even = np.arange(5, dtype=np.float64)[:, None, None, None] * np.ones((5, 2, 2, 1)) * 10  # 10 per step
    jumpy = even.copy()
    jumpy[3:] += 100  # one step changes by 110, the others by 10
    sizes = visualize.transition_sizes(np.stack([even, jumpy]))
    assert np.allclose(sizes, [[10, 10, 10, 10], [10, 10, 110, 10]])
    assert np.allclose(visualize.sharpest_transitions(sizes), [1.0, 11.0])


def test_guided_leaky_relu_passes_only_positive_gradients_of_active_units():
    with tf.Graph().as_default() as graph, v1.Session() as session:
        x = tf.constant([-1.0, 2.0, 3.0, 0.5])
        upstream = tf.constant([1.0, 1.0, -1.0, 2.0])
        with graph.gradient_override_map({"LeakyRelu": "GuidedLeakyRelu"}):
            y = tf.nn.leaky_relu(x, alpha=0.2)
        plain = tf.gradients(tf.nn.leaky_relu(x, alpha=0.2), x, upstream)[0]
        guided = tf.gradients(y, x, upstream)[0]
        assert session.run(plain).tolist() == pytest.approx([0.2, 1.0, -1.0, 2.0])
        assert session.run(guided).tolist() == [0.0, 1.0, 0.0, 2.0]


def test_d_filter_maps_show_the_images_that_excite_each_filter_most(trained):
    with restored_generator(trained) as restored:
        config = restored.config
        images = restored.generator.generate(restored.session, fixed_z(12, config, 0))
        maps = visualize.d_filter_maps(config, restored.path, images, None)
    assert maps.shape == (visualize.D_FILTERS_SHOWN, visualize.D_FILTER_TOP_IMAGES, 16, 16, 1)
    assert maps.dtype == np.uint8 and all(len(np.unique(m)) > 2 for m in maps.reshape(-1, 16 * 16))


@pytest.mark.parametrize("conditioning, sees_labels", [("acgan", False), ("concat", True)])
def test_d_filters_build_d_as_training_did(tmp_path, conditioning, sees_labels):
    """Issue 24, bug 8: d_filters gave AC-GAN's D the labels concatenated (the concat model's D), whose
    weights are not in an AC-GAN checkpoint.  AC-GAN's D predicts the labels, so its maps cannot depend on
    them; the concat D is shown them, so its maps do."""
    config = tiny_config(tmp_path, max_steps=1, z_dim=4, conditioning=conditioning, visualize_option="d_filters")
    train.train(config)
    assert [os.path.basename(p) for p in visualize.visualize(config)] == ["test_d_filters.png"]
    with restored_generator(config) as restored:
        images = restored.generator.generate(restored.session, fixed_z(12, config, 0), np.arange(12) % 10)
        maps = [visualize.d_filter_maps(restored.config, restored.path, images, np.full(12, label))
                for label in (0, 7)]
    assert np.array_equal(maps[0], maps[1]) != sees_labels
