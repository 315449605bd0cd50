"""Ctrl-C (SIGINT) and SIGTERM save a checkpoint and exit cleanly."""

import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO

from checkpoints import checkpoint_paths, checkpoint_step


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_checkpoint_and_exits_zero(tmp_path, signum):
    args = [sys.executable, str(REPO / "main.py"), "--dataset", "mnist", "--train", "--out_dir", str(tmp_path),
            "--batch_size", "4", "--train_size", "64", "--gf_dim", "4", "--df_dim", "4", "--gfc_dim", "16",
            "--dfc_dim", "16", "--z_dim", "8", "--log_freq", "1", "--sample_freq", "1000", "--ckpt_freq", "1000",
            "--max_steps", "100000"]
    process = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if " step 3 |" in line:
            break
    else:
        pytest.fail("training never reached step 3:\n" + "".join(seen))
    process.send_signal(signum)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 0, rest
    assert "interrupted" in rest and "saved" in rest
    paths = checkpoint_paths(str(tmp_path / "checkpoint" / "mnist_4_28_28"))
    assert paths and checkpoint_step(paths[0]) >= 3
    assert os.path.exists(paths[0] + ".index")
