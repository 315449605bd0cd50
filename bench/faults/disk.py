"""Refused writes: ENOSPC injected into each kind of output, a real full tmpfs, read-only folders (the tmpfs
variants need root to mount).  Each must end in one line (exit 2) with the checkpoint it names intact."""

import contextlib
import dataclasses
import errno
import os
import re
import subprocess
from pathlib import Path
from unittest import mock

import numpy as np
from tensorflow.python.summary.writer.event_file_writer import EventFileWriter

import utils
from bench.faults.runs import FOREVER, assert_tidy, checkpoint_values, restore_check, tiny_config
from runtime.errors import UserError
from runtime.tf_runtime import tf
from training import checkpoints, train

v1 = tf.compat.v1


def _enospc(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def _full_for(module, matches):
    """Makes `module`'s write_atomically fail with ENOSPC for paths `matches` accepts."""
    original = utils.write_atomically

    def write(path, contents, mode="w"):
        if matches(path):
            raise _enospc(f"{path}.tmp{os.getpid()}")
        return original(path, contents, mode)

    return mock.patch.object(module, "write_atomically", write)


def _full_csv():
    original = open

    def opener(file, mode="r", *args, **kwargs):
        if str(file).endswith("losses.csv") and "a" in mode:
            raise _enospc(str(file))
        return original(file, mode, *args, **kwargs)

    return mock.patch("builtins.open", opener)


def _full_events(self, event):
    """As TF reports it: the writer thread's failure, re-raised as RuntimeError."""
    raise RuntimeError(f"{self.get_logdir()}/events.out.tfevents.0.host; No space left on device\n\t"
                       f"Failed to flush 3 events to {self.get_logdir()}/events.out.tfevents.0.host")


def _full_save(self, session, prefix, **kwargs):
    """As TF 2.21 reports it (measured on a full tmpfs)."""
    raise tf.errors.ResourceExhaustedError(None, None, (
        "Graph execution error:\n\nDetected at node 'save/SaveV2' defined at (most recent call last):\n"
        f"Node: 'save/SaveV2'\n{prefix}.data-00000-of-00001.tempstate1; No space left on device\n"
        "\t [[{{node save/SaveV2}}]]"))


DISK_FULL = {
    "sample grid PNG": lambda: _full_for(utils, lambda p: os.path.basename(p).startswith("train_")),
    "loss-curve PNG": lambda: _full_for(utils, lambda p: p.endswith("loss_curves.png")),
    "losses.csv": _full_csv,
    "TensorBoard events": lambda: mock.patch.object(EventFileWriter, "add_event", _full_events),
    "checkpoint data (TF SaveV2)": lambda: mock.patch.object(v1.train.Saver, "save", _full_save),
    "checkpoint manifest": lambda: _full_for(checkpoints, lambda p: p.endswith(checkpoints.MANIFEST_SUFFIX)),
    "checkpoint state file": lambda: _full_for(checkpoints, lambda p: p.endswith(os.sep + checkpoints.STATE_FILE)),
}


def refused_write(config, max_steps):
    """Trains to `max_steps` expecting a failed write: one line, exit code 2,
    and the checkpoint it names restores bit for bit.  Returns (message, step)."""
    try:
        train.train(dataclasses.replace(config, max_steps=max_steps))
        raise AssertionError("no write failed")
    except UserError as e:
        error = e
    message = str(error)
    assert error.exit_code == 2 and "\n" not in message, message
    named = re.search(r"Last good checkpoint: (\S+-(\d+) \(step \d+\)|none \(nothing was saved yet\))$", message)
    restored = restore_check(config)
    assert named and int(named.group(2) or 0) == restored, (message, restored)
    return message, restored


def disk_full_cases(work_dir, kinds=tuple(DISK_FULL)):
    """Fails each of these kinds of DISK_FULL write in turn, one step after
    the last save; the previous checkpoint must stay intact.  Returns {kind: message}."""
    config = tiny_config(work_dir, max_steps=2, max_to_keep=20)
    train.train(config)
    messages = {}
    for kind in kinds:
        full = DISK_FULL[kind]
        step = restore_check(config)
        before = checkpoint_values(f"{config.checkpoint_path}/{checkpoints.CHECKPOINT_PREFIX}-{step}")
        with full():
            messages[kind], restored = refused_write(config, step + 2)
        assert "No space left on device" in messages[kind], messages[kind]
        after = checkpoint_values(f"{config.checkpoint_path}/{checkpoints.CHECKPOINT_PREFIX}-{step}")
        assert restored >= step and all(np.array_equal(before[k], after[k]) for k in before), kind
    train.train(dataclasses.replace(config, max_steps=restore_check(config) + 1))
    assert_tidy(config)
    return messages


@contextlib.contextmanager
def tmpfs(path, kilobytes):
    """Mounts a tmpfs of `kilobytes` at `path` (made if missing); yields False
    where mounting is not allowed (not root).  Undoes a make_read_only chmod."""
    os.makedirs(path, exist_ok=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(path)], capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=True)
        else:
            os.chmod(path, 0o755)


def make_read_only(path):
    """Makes the folder `path` read-only: remounts it if it is a mount point,
    else chmod, which root ignores.  Returns whether writes now really fail."""
    if os.path.ismount(path):
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    else:
        os.chmod(path, 0o555)
    probe = os.path.join(path, ".probe")
    try:
        with open(probe, "w"):
            pass
    except OSError:
        return True
    os.remove(probe)
    return False


def real_disk_full(work_dir, kilobytes):
    """Trains on a real tmpfs of `kilobytes` until it is full.  Returns the
    message, or None where no tmpfs can be mounted."""
    disk = Path(work_dir) / "disk"
    with tmpfs(disk, kilobytes) as mounted:
        if not mounted:
            return None
        config = tiny_config(disk, max_to_keep=2)
        message, _ = refused_write(config, FOREVER)
        assert "No space left on device" in message, message
        assert not [n for n in os.listdir(config.checkpoint_path) if checkpoints.TEMPORARY_NAME.search(n)]
        return message


def read_only_cases(work_dir):
    """The samples folder turned read-only mid-run, then the checkpoint folder
    read-only at start: one line, exit 2, checkpoints intact.  Returns the two
    messages, or None where no folder can be made read-only (root without mount)."""
    config = tiny_config(work_dir, max_steps=2)
    with tmpfs(config.sample_path, 65536), tmpfs(config.checkpoint_path, 65536):
        train.train(config)
        if not make_read_only(config.sample_path):
            return None
        samples_message, step = refused_write(config, 4)
        if not make_read_only(config.checkpoint_path):
            return None
        try:
            train.train(dataclasses.replace(config, max_steps=step + 2))
            raise AssertionError("trained into a read-only checkpoint folder")
        except UserError as e:
            start_message, exit_code = str(e), e.exit_code
        assert exit_code == 2 and "\n" not in start_message, start_message
        assert restore_check(config) == step
    return [samples_message, start_message]
