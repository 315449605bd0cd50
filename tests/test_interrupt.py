"""Ctrl-C (SIGINT) and SIGTERM save a checkpoint at the step they stop at; a second Ctrl-C aborts without saving."""

import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO, StderrLines

from training.checkpoints import MANIFEST_SUFFIX, checkpoint_paths, checkpoint_step, verify

TRAIN_ARGS = ["--dataset", "mnist", "--train", "--batch_size", "4", "--train_size", "64", "--gf_dim", "4",
              "--df_dim", "4", "--gfc_dim", "16", "--dfc_dim", "16", "--z_dim", "8", "--log_freq", "1",
              "--sample_freq", "1000", "--ckpt_freq", "1000", "--max_steps", "100000"]

# Runs main.py with StopRequest's handler made to wait, after handling the first signal, until the test
# writes a line to stdin: the second Ctrl-C then arrives while the run is certainly still stopping.
HOLD_AFTER_FIRST_SIGNAL = """
import runpy, sys
sys.path.insert(0, {repo!r})
from training import train
handle = train.StopRequest._handle
def handle_then_hold(self, signum, frame):
    first = self.signal_name is None
    handle(self, signum, frame)
    if first:
        print("holding after the first signal", file=sys.stderr, flush=True)
        sys.stdin.readline()
train.StopRequest._handle = handle_then_hold
sys.argv = ["main.py"] + sys.argv[1:]
runpy.run_path({main!r}, run_name="__main__")
"""


class TrainingProcess:
    """`main.py --train` in a subprocess, its stderr read with a timeout on every wait."""

    def __init__(self, out_dir, command):
        self.process = subprocess.Popen(command + TRAIN_ARGS + ["--out_dir", str(out_dir)], cwd=out_dir,
                                        stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr = StderrLines(self.process)

    def wait_for(self, pattern):
        return self.stderr.wait_for(pattern)

    def finish(self):
        """Exit code, once all of the output is read."""
        self.stderr.read_to_end()
        return self.process.wait(timeout=self.stderr.timeout_seconds)

    @property
    def output(self):
        return self.stderr.output

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_training(tmp_path):
    processes = []

    def start(command):
        processes.append(TrainingProcess(tmp_path, command))
        return processes[-1]

    yield start
    for process in processes:
        process.kill()


def checkpoint_folder(out_dir):
    return str(out_dir / "checkpoint" / "mnist_4_28_28")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_the_step_it_stopped_at_and_exits_zero(tmp_path, start_training, signum):
    run = start_training([sys.executable, str(REPO / "main.py")])
    run.wait_for(r" step 3 \|")
    run.process.send_signal(signum)
    stopped_at = int(run.wait_for(rf"interrupted by {signum.name} at step (\d+): saving").group(1))
    assert run.finish() == 0, run.output
    assert stopped_at >= 3
    newest = checkpoint_paths(checkpoint_folder(tmp_path))[0]
    assert checkpoint_step(newest) == stopped_at
    assert f"saved {newest}" in run.output
    assert os.path.exists(newest + MANIFEST_SUFFIX) and verify(newest) is None  # complete, files match


def test_second_ctrl_c_aborts_without_saving(tmp_path, start_training):
    hold = HOLD_AFTER_FIRST_SIGNAL.format(repo=str(REPO), main=str(REPO / "main.py"))
    run = start_training([sys.executable, "-c", hold])
    run.wait_for(r" step 3 \|")
    run.process.send_signal(signal.SIGINT)
    run.wait_for("SIGINT received: stopping after this step")
    run.wait_for("holding after the first signal")
    run.process.send_signal(signal.SIGINT)
    run.process.stdin.close()  # stop holding: a run that ignored the second Ctrl-C would now save and exit 0
    assert run.finish() != 0
    assert "KeyboardInterrupt" in run.output and "interrupted by SIGINT" not in run.output
    assert checkpoint_paths(checkpoint_folder(tmp_path)) == []  # --ckpt_freq 1000: only the first signal would save
