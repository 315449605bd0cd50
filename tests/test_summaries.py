"""training/summaries.py: the loss history and its plot (loss curves, D outputs, and FID read back from
TensorBoard events), and what a real `tensorboard --logdir logs`, queried over HTTP on localhost, shows of a run."""

import csv
import json
import os
import subprocess
import sys
import urllib.request

import imageio.v2 as imageio
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, running_tensorboard, tiny_config

from training import summaries, train

v1 = tf.compat.v1
PANEL_HEIGHT_PX = 280  # utils.plot_curves: 2.8 inches per panel at 100 dpi


def write_losses(directory, rows):
    with open(directory / "losses.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(summaries.LOSS_COLUMNS)
        writer.writerows(rows)


def write_fid_events(log_dir, points, tag="quality/fid [inception]", run=0):
    # TensorBoard names files by the second they were opened: a suffix keeps two runs' files apart
    writer = v1.summary.FileWriter(str(log_dir), filename_suffix=f".run{run}")
    for step, value in points:
        writer.add_summary(v1.Summary(value=[v1.Summary.Value(tag=tag, simple_value=value)]), step)
        writer.add_summary(v1.Summary(value=[v1.Summary.Value(tag="d_loss", simple_value=9.0)]), step)
    writer.close()


def test_fid_history_reads_the_fid_scalars_and_a_resumed_step_wins(tmp_path):
    write_fid_events(tmp_path / "logs", [(10, 80.5), (20, 60.25)])
    write_fid_events(tmp_path / "logs", [(20, 55.0), (30, 40.0)], run=1)  # a resumed run measured step 20 again
    history = summaries.LossHistory(str(tmp_path), str(tmp_path / "logs"))
    assert history.fid_history() == {"quality/fid [inception]": ([10, 20, 30], [80.5, 55.0, 40.0])}
    assert summaries.LossHistory(str(tmp_path)).fid_history() == {}


def test_reading_the_fid_history_prints_no_warning_and_stops_at_a_half_written_record(tmp_path):
    write_fid_events(tmp_path / "logs", [(10, 80.5), (20, 60.25)])
    (events,) = (tmp_path / "logs").iterdir()
    with open(events, "ab") as f:
        f.write(b"\x20\x00\x00")  # the start of a record the writer is still writing
    # In a fresh process: TensorFlow prints a deprecation warning once per process, so a test in this one
    # could miss it.  tf.compat.v1.train.summary_iterator printed one into every run that plotted its losses.
    script = ("import sys; from training import summaries; "
              "print(summaries.LossHistory(sys.argv[1], sys.argv[2]).fid_history())")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(tmp_path / "logs")], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'quality/fid [inception]': ([10, 20], [80.5, 60.25])}"
    assert "deprecated" not in done.stderr and "WARNING" not in done.stderr, done.stderr


def test_plot_has_a_fid_panel_only_when_fid_was_measured(tmp_path):
    write_losses(tmp_path, [[1, 1.4, 0.7, 0.6, 0.4], [2, 1.2, float("nan"), 0.55, 0.45], [3, 1.1, 0.9, 0.5, 0.5]])
    history = summaries.LossHistory(str(tmp_path), str(tmp_path / "logs"))
    history.plot()
    without_fid = imageio.imread(history.plot_path)
    assert without_fid.shape[0] == 2 * PANEL_HEIGHT_PX
    write_fid_events(tmp_path / "logs", [(1, 300.0), (3, 250.0)])
    history.plot()
    with_fid = imageio.imread(history.plot_path)
    assert with_fid.shape[0] == 3 * PANEL_HEIGHT_PX
    assert np.array_equal(with_fid.shape[1:], without_fid.shape[1:])


def test_fid_history_stops_at_a_record_still_being_written(tmp_path):
    """A running job's writer may have written half a record: the complete ones are read, nothing raised."""
    write_fid_events(tmp_path / "logs", [(10, 80.5), (20, 60.25)])
    first = set((tmp_path / "logs").iterdir())
    write_fid_events(tmp_path / "logs", [(30, 40.0)], run=1)  # its last record: d_loss at step 30
    (growing,) = set((tmp_path / "logs").iterdir()) - first
    growing.write_bytes(growing.read_bytes()[:-7])
    history = summaries.LossHistory(str(tmp_path), str(tmp_path / "logs")).fid_history()
    assert history == {"quality/fid [inception]": ([10, 20, 30], [80.5, 60.25, 40.0])}


# --- A real TensorBoard shows the run --------------------------------------------------------------------


def get_json(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture
def tensorboard(tmp_path):
    config = tiny_config(tmp_path, max_steps=3)
    train.train(config)
    with running_tensorboard(os.path.join(config.out_dir, config.summary_dir)) as base:
        yield base, config


def test_tensorboard_serves_losses_discriminator_outputs_and_samples(tensorboard):
    base, config = tensorboard
    run = config.run_name
    scalar_tags = get_json(f"{base}/data/plugin/scalars/tags")[run]
    assert {"d_loss", "d_loss_real", "d_loss_fake", "g_loss", "D_x", "D_G_z"} <= set(scalar_tags)
    points = get_json(f"{base}/data/plugin/scalars/scalars?run={run}&tag=d_loss")
    assert [p[1] for p in points] == [1, 2, 3]  # [wall_time, step, value]
    assert all(0 < p[2] < 10 for p in points)
    histogram_tags = get_json(f"{base}/data/plugin/histograms/tags")[run]
    assert {"D_x_histogram", "D_G_z_histogram"} <= set(histogram_tags)
    image_tags = get_json(f"{base}/data/plugin/images/tags")[run]
    assert "G_z" in image_tags
