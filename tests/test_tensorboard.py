"""`tensorboard --logdir logs` shows the run: a real TensorBoard, queried over HTTP on localhost."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import tiny_config

import train


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def tensorboard(tmp_path):
    config = tiny_config(tmp_path, max_steps=3)
    train.train(config)
    logdir = os.path.join(config.out_dir, config.summary_dir)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                tags = get_json(f"{base}/data/plugin/scalars/tags")
                if tags:
                    break
            except OSError:
                pass
            if time.time() > deadline or server.poll() is not None:
                pytest.fail("TensorBoard did not serve the run within 90 s")
            time.sleep(0.5)
        yield base, config
    finally:
        server.terminate()
        server.wait(timeout=30)


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
