"""Two worker processes on 127.0.0.1 train one run with MultiWorkerMirroredStrategy (TF_CONFIG)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, StderrLines

from training.checkpoints import checkpoint_paths, checkpoint_step, verify

RUN = "mnist_4_16_16"
TRAIN_ARGS = ["--dataset", "mnist", "--train", "--output_height", "16", "--batch_size", "4", "--train_size", "64",
              "--gf_dim", "4", "--df_dim", "4", "--gfc_dim", "16", "--dfc_dim", "16", "--z_dim", "8",
              "--n_samples", "6", "--log_freq", "1", "--summary_freq", "1", "--worker_timeout", "120"]
PROGRESS = re.compile(r"step (\d+) \|.*\| (d_loss .*)$")


def free_ports(count):
    """Ports the kernel picked as free (bound to port 0, then released for the workers)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Worker:
    def __init__(self, out_dir, workers, index, args):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        self.process = subprocess.Popen([sys.executable, str(REPO / "main.py"), *TRAIN_ARGS, *args,
                                         "--out_dir", str(out_dir)], cwd=out_dir, stderr=subprocess.PIPE,
                                        text=True, env=dict(os.environ, TF_CONFIG=json.dumps(tf_config)))
        self.stderr = StderrLines(self.process)

    def finish(self):
        self.stderr.read_to_end()
        return self.process.wait(timeout=self.stderr.timeout_seconds)

    def progress(self):
        """{step: the losses its progress line logged}."""
        return {int(m.group(1)): m.group(2) for m in map(PROGRESS.search, self.stderr.output.splitlines()) if m}


def start_cluster(out_dir, args, count=2):
    workers = [f"127.0.0.1:{port}" for port in free_ports(count)]
    return [Worker(out_dir, workers, index, args) for index in range(count)]


def stop_all(workers):
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def test_two_workers_train_in_step_and_only_the_chief_writes(tmp_path):
    workers = start_cluster(tmp_path, ["--max_steps", "2", "--sample_freq", "1", "--ckpt_freq", "1"])
    try:
        codes = [worker.finish() for worker in workers]
    finally:
        stop_all(workers)
    assert codes == [0, 0], "\n".join(worker.stderr.output for worker in workers)
    chief, other = workers
    assert "2 replicas: 2 workers, this is worker 0" in chief.stderr.output
    # The losses are all-reduced: both workers log the same values at every step.
    assert chief.progress() == other.progress() and sorted(chief.progress()) == [1, 2]

    folder = tmp_path / "checkpoint" / RUN
    assert [os.path.basename(p) for p in checkpoint_paths(str(folder))] == ["DCGAN.model-2", "DCGAN.model-1"]
    reader = tf.train.load_checkpoint(str(folder / "DCGAN.model-2"))
    assert reader.get_tensor("global_step") == 2 and reader.get_tensor("images_seen") == 2 * 4
    assert all(np.all(np.isfinite(reader.get_tensor(name))) for name in reader.get_variable_to_shape_map()
               if reader.get_variable_to_dtype_map()[name].is_floating)
    samples = sorted(p.name for p in (tmp_path / "samples" / RUN).iterdir() if p.name.startswith("train_"))
    assert samples == ["train_00_0001.png", "train_00_0002.png"]
    # Nothing but the chief's run folders in the shared output folder: the other worker wrote to its scratch.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "logs", "samples"]
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == [RUN]


@pytest.mark.slow  # 2 to 3 minutes on 2 shared cores: two clusters of 2 workers start, train and stop
def test_a_killed_worker_stops_the_run_in_one_line_naming_it_and_a_restart_resumes(tmp_path):
    workers = start_cluster(tmp_path, ["--max_steps", "100000", "--sample_freq", "1000", "--ckpt_freq", "1"])
    try:
        chief, other = workers
        chief.stderr.wait_for(r"saved .*DCGAN\.model-2$")
        other.process.send_signal(signal.SIGKILL)
        code = chief.finish()
    finally:
        stop_all(workers)
    last_line = chief.stderr.output.strip().splitlines()[-1]
    assert code == 2, chief.stderr.output
    assert re.search(r"^main\.py: error: worker 1 \(127\.0\.0\.1:\d+\) is gone \(TensorFlow: \w+Error\); "
                     r"restart every worker to resume from .*DCGAN\.model-\d+$", last_line), last_line
    assert "Traceback" not in chief.stderr.output
    folder = str(tmp_path / "checkpoint" / RUN)
    newest = checkpoint_paths(folder)[0]
    assert verify(newest) is None and checkpoint_step(newest) >= 2  # nothing half-written is trusted

    resume_to = checkpoint_step(newest) + 1
    workers = start_cluster(tmp_path, ["--max_steps", str(resume_to), "--sample_freq", "1000", "--ckpt_freq", "1"])
    try:
        codes = [worker.finish() for worker in workers]
    finally:
        stop_all(workers)
    assert codes == [0, 0], "\n".join(worker.stderr.output for worker in workers)
    for worker in workers:
        assert f"resumed from {newest} ({checkpoint_step(newest) * 4} images seen)" in worker.stderr.output
    assert checkpoint_step(checkpoint_paths(folder)[0]) == resume_to
