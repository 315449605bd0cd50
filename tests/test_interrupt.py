"""Ctrl-C (SIGINT) and SIGTERM save a checkpoint at the step they stop at; a second Ctrl-C aborts without saving."""

import os
import queue
import re
import signal
import subprocess
import sys
import threading

import pytest
from conftest import REPO

from checkpoints import MANIFEST_SUFFIX, checkpoint_paths, checkpoint_step, verify

# Only a guard against a hung child: each wait ends as soon as its line arrives.
LINE_TIMEOUT_SECONDS = 600

TRAIN_ARGS = ["--dataset", "mnist", "--train", "--batch_size", "4", "--train_size", "64", "--gf_dim", "4",
              "--df_dim", "4", "--gfc_dim", "16", "--dfc_dim", "16", "--z_dim", "8", "--log_freq", "1",
              "--sample_freq", "1000", "--ckpt_freq", "1000", "--max_steps", "100000"]

# Runs main.py with StopRequest's handler made to wait, after handling the first signal, until the test
# writes a line to stdin: the second Ctrl-C then arrives while the run is certainly still stopping.
HOLD_AFTER_FIRST_SIGNAL = """
import runpy, sys
sys.path.insert(0, {repo!r})
import train
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
    """`main.py --train` in a subprocess; a thread reads its stderr, so every wait for a line has a timeout."""

    def __init__(self, out_dir, command):
        self.process = subprocess.Popen(command + TRAIN_ARGS + ["--out_dir", str(out_dir)], cwd=out_dir,
                                        stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines, self.seen = queue.Queue(), []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put(None)  # end of output

    def wait_for(self, pattern):
        """The first match of `pattern` in the lines still to come; fails if the output ends first."""
        while True:
            try:
                line = self.lines.get(timeout=LINE_TIMEOUT_SECONDS)
            except queue.Empty:
                pytest.fail(f"no line for {LINE_TIMEOUT_SECONDS} s while waiting for {pattern!r}:\n" + self.output)
            if line is None:
                pytest.fail(f"output ended without {pattern!r}:\n" + self.output)
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def finish(self):
        """Exit code, once the process has exited and all of its output is read."""
        returncode = self.process.wait(timeout=LINE_TIMEOUT_SECONDS)
        while (line := self.lines.get(timeout=LINE_TIMEOUT_SECONDS)) is not None:
            self.seen.append(line)
        return returncode

    @property
    def output(self):
        return "".join(self.seen)

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
