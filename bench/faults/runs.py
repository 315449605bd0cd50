"""The tiny run every fault scenario trains, how a scenario starts it as a user would, and the checks after
a fault: the restart restores the newest complete checkpoint bit for bit, and a clean run leaves a tidy folder."""

import dataclasses
import functools
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np

import model
from bench import harness
from runtime.tf_runtime import tf
from training import checkpoints

v1 = tf.compat.v1


# The run every scenario trains: harness.TINY, keeping three checkpoints.  The fully connected layers keep
# their default width: steps stay fast but a checkpoint is 5 MB, so writing it takes long enough
# for random kills to land in it.
RUN = dict(gfc_dim=1024, dfc_dim=1024, max_to_keep=3)
FOREVER = 10**6  # max_steps of a run that only a fault ends
SAVED_LINE = re.compile(r" saved \S+-(\d+)$", re.MULTILINE)
RESUMED_LINE = re.compile(r" resumed from (\S+)$", re.MULTILINE)


def tiny_config(out_dir, **overrides):
    """The resolved Config of the tiny run writing under `out_dir`, as `main.py --train` makes it."""
    return harness.tiny_config(out_dir, **{"train": True, **RUN, **overrides})


def main_command(out_dir, **overrides):
    """The argv of `main.py --train` on the tiny run, as a user would type it."""
    return harness.main_command("--train", *harness.as_flags(harness.tiny_values(out_dir, **{**RUN, **overrides})))


@functools.cache
def _training_graph():
    """A session on the tiny run's training graph, built once: every check restores into it."""
    config, graph = tiny_config("."), tf.Graph()
    with graph.as_default():
        images = tf.zeros([config.batch_size, config.output_height, config.output_width, config.c_dim])
        gan = model.DCGAN(config, images, tf.zeros([config.batch_size], tf.int64))
        return v1.Session(graph=graph), gan.saver, v1.global_variables()


def restore_check(config):
    """Restores `config`'s run the way training does and checks every variable
    against the checkpoint restored, bit for bit; returns its step (0: none)."""
    session, saver, variables = _training_graph()
    with session.graph.as_default():
        session.run(v1.global_variables_initializer())
        path = checkpoints.Checkpoints(config.checkpoint_path, saver, config.architecture()).restore(session)
        restored = dict(zip([v.op.name for v in variables], session.run(variables), strict=True))
    if path is None:
        return 0
    saved = checkpoint_values(path)
    differ = sorted(set(saved) ^ set(restored)) or [k for k in saved if not np.array_equal(saved[k], restored[k])]
    if differ or int(saved["global_step"]) != checkpoints.checkpoint_step(path):
        raise AssertionError(f"{path}: restored variables differ from the file: {differ[:3]}")
    return checkpoints.checkpoint_step(path)


def checkpoint_values(path):
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def assert_tidy(config):
    """After a clean run: no temporaries, every checkpoint matches its manifest,
    the state file lists exactly them, and none holds a NaN/Inf."""
    directory = config.checkpoint_path
    leftovers = [name for name in os.listdir(directory) if checkpoints.TEMPORARY_NAME.search(name)]
    paths = checkpoints.checkpoint_paths(directory)
    state = v1.train.get_checkpoint_state(directory)
    listed = sorted(os.path.basename(p) for p in state.all_model_checkpoint_paths)
    assert not leftovers, leftovers
    assert listed == sorted(os.path.basename(p) for p in paths) and len(paths) <= config.max_to_keep, (listed, paths)
    for path in paths:
        assert checkpoints.verify(path) is None, path
        assert all(np.all(np.isfinite(v)) for v in checkpoint_values(path).values() if v.dtype.kind == "f"), path


@dataclasses.dataclass
class Kill:
    moment: str  # where in the save sequence it landed
    acknowledged: int  # the newest step saved before the kill, as far as the run could know
    restored: int  # the step the restart restored

    @property
    def lost(self):
        return max(0, self.acknowledged - self.restored)


def wait_for(log_path, text, process, timeout=300):
    """Returns once `text` is in a run's log; fails if the run ends or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while text not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{log_path} never showed {text!r}:\n{log_path.read_text()}")
        time.sleep(0.02)


def start_run(work_dir, name, **overrides):
    """Starts `main.py --train` on the tiny run in `work_dir`, its stderr to `name`.log; returns (process, log)."""
    log_path = Path(work_dir) / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(main_command(work_dir, **overrides), cwd=work_dir, stdout=subprocess.DEVNULL,
                                   stderr=log_file)
    return process, log_path
