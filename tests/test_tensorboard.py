"""`tensorboard --logdir logs` shows the run: a real TensorBoard, queried over HTTP on localhost.

The server binds port 0 (the OS picks a free port, so no other process can take it between choosing and
binding) and the test reads the port back from the line TensorBoard prints once it listens.  Its data is
loaded before that line (`--reload_task blocking --reload_interval 0`), so the first request sees the run.
"""

import contextlib
import json
import os
import subprocess
import sys
import urllib.request

import pytest
from conftest import StderrLines, tiny_config

from training import train


def get_json(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def running_tensorboard(logdir):
    """Yields the base URL of `tensorboard --logdir logdir` on 127.0.0.1, its data already loaded."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1", "--port", "0",
         "--load_fast", "false", "--reload_task", "blocking", "--reload_interval", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield StderrLines(server).wait_for(r"TensorBoard \S+ at (http://127\.0\.0\.1:\d+)/ ").group(1)
    finally:
        server.terminate()
        server.wait(timeout=60)


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
