"""tools/visualize.py: every --visualize_option, class labels in each layout, and sample counts independent of
the batch size.  The paper's analyses: test_visualize_analyses.py; style visualizations: test_style.py."""

import dataclasses
import os

import imageio.v2 as imageio
import numpy as np
import pytest
from conftest import reference_images, tiny_config, trained_run
from PIL import Image, ImageSequence

import utils
from runtime.errors import UserError
from tools import visualize
from training.inference import InferenceGenerator


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    # G itself: after 2 steps the merged sweep's first and last frames are 1 grey level apart, and the
    # averaged G (--g_ema, on by default; its visualisation is tested in test_networks.py) rounds them equal.
    return trained_run(tmp_path_factory.mktemp("run"), max_steps=2, z_dim=4, n_samples=5, g_ema=0.0)


def test_visualize_writes_every_option(trained):
    paths = visualize.visualize(trained)
    names = sorted(os.path.basename(p) for p in paths)
    z_dim = trained.z_dim
    expected = (["test_interpolation.gif", "test_merged_sweeps.gif", "test_samples.png"]
                + [f"test_sweep_{d:03d}.gif" for d in range(z_dim)] + [f"test_sweep_{d:03d}.png" for d in range(z_dim)])
    assert names == sorted(expected)
    samples = imageio.imread(os.path.join(trained.sample_path, "test_samples.png"))
    assert samples.shape[:2] == (2 * 16 + 1, 3 * 16 + 2)  # 5 samples: 2 rows x 3 cols, any count works
    sweep = imageio.imread(os.path.join(trained.sample_path, "test_sweep_000.png"))
    assert sweep.shape[:2] == (8 * 17 - 1, 8 * 17 - 1)
    assert shown_frames(os.path.join(trained.sample_path, "test_interpolation.gif")) == 4 * visualize.GIF_FRAMES
    assert shown_frames(os.path.join(trained.sample_path, "test_merged_sweeps.gif")) == visualize.GIF_FRAMES
    merged = imageio.mimread(os.path.join(trained.sample_path, "test_merged_sweeps.gif"))
    assert not np.array_equal(merged[0], merged[-1])


def shown_frames(gif_path, seconds_per_frame=0.1):
    """Frames a viewer shows: Pillow stores a run of identical frames as one longer frame."""
    with Image.open(gif_path) as gif:
        total_ms = sum(frame.info["duration"] for frame in ImageSequence.Iterator(gif))
    return round(total_ms / (seconds_per_frame * 1000))


def test_class_labels_follow_only_the_class_axis(trained):
    sweep = visualize.class_labels(trained, (8, 8), class_axis=0).reshape(8, 8)
    assert (sweep == np.arange(8)[:, None]).all()  # row r is class r in every column
    cells = visualize.class_labels(trained, (3, 16, 12), class_axis=2).reshape(3, 16, 12)
    assert (cells == np.arange(12) % 10).all()  # cell c is class c % 10 in every frame and dimension
    unconditional = dataclasses.replace(trained, y_dim=0)
    assert visualize.class_labels(unconditional, (8, 8), class_axis=0) is None


def test_each_sweep_row_and_gif_cell_keeps_one_class(trained, monkeypatch):
    """The labels fed to the generator by a real visualize() run, in each visualization's layout."""
    fed = []
    original = InferenceGenerator.generate

    def recording_generate(self, session, z, labels=None, chunk=256):
        fed.append((z.copy(), labels.copy()))
        return original(self, session, z, labels, chunk)

    monkeypatch.setattr(InferenceGenerator, "generate", recording_generate)
    visualize.visualize(trained)
    z_dim, cells, frames, steps = trained.z_dim, trained.n_samples, visualize.GIF_FRAMES, visualize.SWEEP_STEPS
    samples, sweeps, interpolation, sweep_gifs = fed[0], fed[1:1 + z_dim], fed[1 + z_dim], fed[2 + z_dim]
    assert len(fed) == 3 + z_dim
    assert (samples[1] == np.arange(cells) % 10).all()
    for dim, (z, labels) in enumerate(sweeps):
        z, labels = z.reshape(steps, steps, z_dim), labels.reshape(steps, steps)
        assert (labels == np.arange(steps)[:, None]).all()
        assert (np.delete(z, dim, axis=2) == np.delete(z, dim, axis=2)[:, :1]).all()  # a row is one z but `dim`
    interpolation_labels = interpolation[1].reshape(4 * frames, cells)  # [frame, cell]
    assert (interpolation_labels == np.arange(cells)).all()
    sweep_gif_labels = sweep_gifs[1].reshape(z_dim, frames, cells)  # [dimension, frame, cell]
    assert (sweep_gif_labels == np.arange(cells)).all()


def test_sweep_grid_shows_each_row_in_its_own_class(trained):
    """The written sweep PNG, pixel for pixel, against the generator run on constant-class rows."""
    dim = 1
    visualize.visualize(dataclasses.replace(trained, visualize_option="sweeps"))
    written = imageio.imread(os.path.join(trained.sample_path, f"test_sweep_{dim:03d}.png"))
    z, labels = visualize.sweep_grid_inputs(trained, dim, trained.seed + 1)
    expected = utils.image_grid(reference_images(trained, z, labels))[..., 0]
    assert np.array_equal(written, expected)
    # Negative control: the classes cycling over the flattened grid (the old bug) give another picture.
    cycling = utils.image_grid(reference_images(trained, z, np.arange(len(z)) % 10))[..., 0]
    assert not np.array_equal(written, cycling)


def test_visualize_single_option_and_sample_count_independent_of_batch_size(trained):
    config = dataclasses.replace(trained, visualize_option="samples", n_samples=10)
    paths = visualize.visualize(config)
    assert [os.path.basename(p) for p in paths] == ["test_samples.png"]
    assert imageio.imread(paths[0]).shape[:2] == (3 * 17 - 1, 4 * 17 - 1)  # 10 > batch_size 4


def test_without_checkpoint_visualize_says_so(tmp_path):
    with pytest.raises(UserError, match="no checkpoint in .*train first"):
        visualize.visualize(tiny_config(tmp_path))
