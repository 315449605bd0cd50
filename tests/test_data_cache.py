"""A file --cache survives a writer killed mid-epoch (TensorFlow's lockfile stays behind)."""

import fcntl
import logging
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, tiny_config
from PIL import Image

from datasets import pipeline as data
from runtime.errors import UserError

v1 = tf.compat.v1

# Builds the pipeline of `config` and dies by SIGKILL while decoding the image named
# kill.png, i.e. while TensorFlow is writing the cache of the first epoch.
_DYING_WRITER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    import tests.conftest as conftest
    from datasets import pipeline as data
    from runtime.tf_runtime import tf

    real_load_image = data._load_image

    def load_image_or_die(path, config):
        dying = tf.py_function(lambda p: os.kill(os.getpid(), signal.SIGKILL) if p.numpy().endswith(b"kill.png")
                               else 0, [path], tf.int32)
        with tf.control_dependencies([dying]):
            return tf.identity(real_load_image(path, config))

    data._load_image = load_image_or_die
    config = conftest.tiny_config(__import__("pathlib").Path(sys.argv[2]), **eval(sys.argv[3]))
    batches = data.input_batches(data.open_source(config), config)
    with tf.compat.v1.Session() as session:
        session.run(batches.initializer)
        while True:
            session.run(batches.images)
""")


def _folder(tmp_path, count):
    folder = tmp_path / "pics"
    folder.mkdir()
    for index in range(count):
        Image.new("RGB", (16, 16), (index * 10, 0, 0)).save(folder / f"{index:02d}.png")
    Image.new("RGB", (16, 16), (250, 0, 0)).save(folder / "kill.png")
    return dict(dataset="pics", data_dir=str(tmp_path), c_dim=3, cache=str(tmp_path / "cache" / "pics"))


def _red_values(config, batches_to_read):
    source = data.open_source(config)
    with tf.Graph().as_default():
        batches = data.input_batches(source, config)
        with v1.Session() as session:
            session.run(batches.initializer)
            reds = np.concatenate([session.run(batches.images)[:, 0, 0, 0] for _ in range(batches_to_read)])
    return np.round((reds + 1) * 127.5).astype(int)


def test_restart_after_a_writer_was_killed_mid_cache_rebuilds_it(tmp_path, caplog):
    overrides = _folder(tmp_path, 11)  # 12 images, 3 batches of 4 per epoch
    result = subprocess.run([sys.executable, "-c", _DYING_WRITER, str(REPO), str(tmp_path), repr(overrides)],
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    cache_dir = tmp_path / "cache"
    assert any(name.endswith(".lockfile") for name in os.listdir(cache_dir))  # what used to stop every restart
    config = tiny_config(tmp_path, **overrides)
    with caplog.at_level(logging.WARNING, logger="dcgan"):
        reds = _red_values(config, 9)  # three epochs: the cache is written, then read
    assert "removed the unfinished cache a killed run left" in caplog.text
    assert sorted(set(reds)) == sorted([*range(0, 110, 10), 250])
    assert not any(name.endswith(".lockfile") for name in os.listdir(cache_dir))
    assert any(name.endswith(".index") for name in os.listdir(cache_dir))


def test_cache_being_written_by_a_live_process_is_one_line(tmp_path):
    config = tiny_config(tmp_path, **_folder(tmp_path, 3))
    prefix = data.cache_path(config, data.open_source(config).files)
    with open(prefix + ".lock", "a") as other_writer:  # another open file: its flock excludes ours
        fcntl.flock(other_writer, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match=r"^--cache .*pics-[0-9a-f]{16}: another running process is writing"):
            data.claim_file_cache(prefix)
