"""Fault injection on real training runs: what survives, and is anything lost?

    python -m bench.faults [--kills 20] [--fuzz 200] [--seed 0]

Tiny conditional-MNIST runs (16x16, layer widths 4-16, batch 4, a sample, a
summary and a checkpoint every step, so that faults land inside writes) are
  * killed with SIGKILL at random moments, and in-process at each point of the
    save sequence; after every kill the restart must restore the newest
    complete checkpoint, bit for bit, never older than the last save the
    killed run had logged;
  * interrupted with SIGINT and SIGTERM: they must save, exit 0 and resume;
  * given NaN/Inf losses, gradients and input images under both --nan_policy
    values: no checkpoint may ever hold a non-finite value;
  * refused their writes: ENOSPC injected into each kind of output, a real
    full tmpfs, read-only folders (the tmpfs variants need root to mount);
    each must end in one line (exit 2) with the checkpoint it names intact;
  * fed fuzzed IDX bytes, image folders and flag values, and damaged or
    hostile files of its own (architecture.json, checkpoint manifests,
    real-statistics .npz: wrong types, negative or huge sizes, truncation):
    only UserError, or for a cache the fallback of recomputing it;
  * soaked: RSS and step time after 100 and after 5,000 steps must agree
    within 5%.
It prints a markdown table for the README.  tests/test_faults.py runs the
same scenarios, fewer times.
"""

import argparse
import collections
import contextlib
import dataclasses
import errno
import functools
import io
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from PIL import Image
from tensorflow.python.summary.writer.event_file_writer import EventFileWriter

import checkpoints  # (sets up TensorFlow's environment before it loads)
import config as config_lib
import data
import losses
import metrics
import model
import train
import utils
from bench import harness
from errors import TrainingDiverged, UserError
from tf_runtime import tf

v1 = tf.compat.v1

# The run every scenario trains: harness.TINY, keeping three checkpoints.  The fully connected layers keep
# their default width: steps stay fast but a checkpoint is 5 MB, so writing it takes long enough
# for random kills to land in it.
RUN = dict(gfc_dim=1024, dfc_dim=1024, max_to_keep=3)
FOREVER = 10**6  # max_steps of a run that only a fault ends
SAVED_LINE = re.compile(r" saved \S+-(\d+)$", re.MULTILINE)
RESUMED_LINE = re.compile(r" resumed from (\S+)$", re.MULTILINE)


def tiny_config(out_dir, **overrides):
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


# --------------------------------------------------------------------------
# SIGKILL at random moments of main.py runs


def where_killed(config, log_text, started):
    """Where a run was killed, judged from its log and from what it left on
    disk since `started` (older files may be leftovers of earlier kills)."""
    if " training " not in log_text:
        return "during start-up (imports, graph, restore)"
    directory = config.checkpoint_path
    names = os.listdir(directory)
    new = [name for name in names if os.stat(os.path.join(directory, name)).st_mtime >= started]
    prefix = re.escape(checkpoints.CHECKPOINT_PREFIX)

    def steps(suffix, among):
        return [int(m.group(1)) for name in among if (m := re.fullmatch(rf"{prefix}-(\d+){suffix}", name))]

    files, manifests = steps(r"\.(index|data-\d+-of-\d+)", new), steps(re.escape(checkpoints.MANIFEST_SUFFIX), new)
    listed = checkpoints.checkpoint_step(v1.train.latest_checkpoint(directory) or "")
    if any(checkpoints.TEMPORARY_NAME.search(name) for name in new):
        return "inside a file write"
    if max(files, default=-1) > max(manifests, default=-1):
        return "after data/index, before the manifest"
    if max(manifests, default=-1) > listed:
        return "after the manifest, before the state file"
    if checkpoints.STATE_FILE in new and len(steps(re.escape(checkpoints.MANIFEST_SUFFIX), names)) > config.max_to_keep:
        return "before the oldest checkpoint was deleted"
    return "between saves"


def _wait_for(log_path, text, process, timeout=300):
    deadline = time.monotonic() + timeout
    while text not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{log_path} never showed {text!r}:\n{log_path.read_text()}")
        time.sleep(0.02)


def _start(work_dir, name, **overrides):
    log_path = Path(work_dir) / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(main_command(work_dir, **overrides), cwd=work_dir, stdout=subprocess.DEVNULL,
                                   stderr=log_file)
    return process, log_path


def random_kills(work_dir, kills, seed=0):
    """SIGKILLs `kills` successive main.py runs at random moments (a quarter
    counted from the process start, so during start-up and restore too), checks
    each restart, and finally lets one run finish.  While the first run trains,
    a second one on the same folder must be refused naming its pid; its lock,
    left by the kill, is taken over by the restart.  Returns [Kill]."""
    rng = random.Random(seed)
    config = tiny_config(work_dir)
    results, restored = [], 0
    for cycle in range(kills + 1):
        last, started = cycle == kills, time.time()
        process, log_path = _start(work_dir, f"run{cycle}", max_steps=restored + 3 if last else FOREVER)
        try:
            if last:
                assert process.wait(timeout=300) == 0, log_path.read_text()
            elif cycle == 0 or rng.random() < 0.75:
                _wait_for(log_path, " training ", process)
                if cycle == 0:
                    _assert_refused(config, process.pid)
                time.sleep(rng.uniform(0.0, 1.5))
            else:
                time.sleep(rng.uniform(0.5, 8.0))
        finally:
            process.kill()
            process.wait()
        log_text = log_path.read_text()
        resumed = RESUMED_LINE.search(log_text)
        if resumed:  # the restart restored what the check after the previous kill restored
            assert checkpoints.checkpoint_step(resumed.group(1)) == restored, (resumed.group(1), restored)
        if last:
            assert_tidy(config)
            break
        # Acknowledged: logged as saved, or named by TF's state file.
        state = v1.train.latest_checkpoint(config.checkpoint_path) or ""
        acknowledged = max([restored, *map(int, SAVED_LINE.findall(log_text)), checkpoints.checkpoint_step(state)])
        moment = where_killed(config, log_text, started)
        restored = restore_check(config)
        results.append(Kill(moment, acknowledged, restored))
    return results


def _assert_refused(config, pid):
    try:
        train.train(config)
    except UserError as e:
        assert f"in use by another training run (pid {pid} on " in str(e) and "\n" not in str(e), str(e)
    else:
        raise AssertionError("a second run was allowed to write the same checkpoints")


# --------------------------------------------------------------------------
# In-process death at each point of the save sequence


class Killed(BaseException):
    """SIGKILL in-process: no handler catches it, so files stay as a kill leaves them."""


def _die(*args, **kwargs):
    raise Killed


def _cut_short(path):
    """What a write cut short leaves: a partial temporary."""
    with open(path, "wb") as f:
        f.write(b"\0" * 100)
    raise Killed


def _when_writing(ending, action):
    """Runs `action(path)` instead of checkpoints' atomic write of a path with this ending."""
    original = checkpoints.write_atomically

    def write(path, contents, mode="w"):
        return action(path) if path.endswith(ending) else original(path, contents, mode)

    return mock.patch.object(checkpoints, "write_atomically", write)


def _delete_data_then_die(prefix):
    os.remove(prefix + ".data-00000-of-00001")
    raise Killed


# name: (patch that dies at that point, whether the checkpoint being saved is complete by then)
KILL_POINTS = {
    "while TF writes the data file": (lambda: mock.patch.object(
        v1.train.Saver, "save", lambda self, sess, prefix, **kw: _cut_short(prefix + ".data-00000-of-00001.tempstate1")
    ), False),
    "after data/index, before the manifest": (lambda: mock.patch.object(checkpoints, "write_manifest", _die), False),
    "while writing the manifest": (lambda: _when_writing(
        checkpoints.MANIFEST_SUFFIX, lambda path: _cut_short(f"{path}.tmp{os.getpid()}")), False),
    "after the manifest, before the state file": (lambda: _when_writing(os.sep + checkpoints.STATE_FILE, _die), True),
    "before the oldest checkpoint is deleted": (lambda: mock.patch.object(
        checkpoints, "delete_checkpoint", _die), True),
    "halfway through deleting the oldest": (lambda: mock.patch.object(
        checkpoints, "delete_checkpoint", _delete_data_then_die), True),
}


def kill_points(work_dir, moments=tuple(KILL_POINTS)):
    """Dies at each of these KILL_POINTS in turn, one step after the last
    save; each restart must restore that save or, once complete, the new one.
    Ends with a clean run.  Returns [Kill]."""
    config = tiny_config(work_dir, max_steps=2)
    train.train(config)
    step, results = 2, []
    for moment in moments:
        dies, completes = KILL_POINTS[moment]
        with dies():
            try:
                train.train(dataclasses.replace(config, max_steps=step + 1))
                raise AssertionError(f"not killed {moment}")
            except Killed:
                pass
        restored = restore_check(config)
        assert restored == step + completes, (moment, restored, step)
        results.append(Kill(moment, step, restored))
        step = restored
    train.train(dataclasses.replace(config, max_steps=step + 2))
    assert_tidy(config)
    return results


# --------------------------------------------------------------------------
# Signals


def interrupt(work_dir, signum):
    """Sends `signum` to a main.py run after step 3 (with no periodic
    checkpoints); it must save, exit 0, and resume from that save."""
    process, log_path = _start(work_dir, signal.Signals(signum).name, max_steps=FOREVER, ckpt_freq=FOREVER)
    try:
        _wait_for(log_path, " step 3 |", process)
        process.send_signal(signum)
        assert process.wait(timeout=120) == 0, log_path.read_text()
    finally:
        process.kill()
        process.wait()
    saved = max(map(int, SAVED_LINE.findall(log_path.read_text())))
    return Kill(f"{signal.Signals(signum).name} after step 3", saved, restore_check(tiny_config(work_dir)))


# --------------------------------------------------------------------------
# NaN / Inf


@contextlib.contextmanager
def poisoned(kind, value, steps):
    """Makes G's loss ("loss"), only G's gradient ("gradient") or D's input
    images ("images") `value` (NaN or Inf) at the given 1-based steps."""
    def factor():  # `value` at the bad steps, else 1
        return tf.where(tf.reduce_any(tf.equal(v1.train.get_or_create_global_step() + 1, sorted(steps))), value, 1.0)

    if kind == "loss":
        original = losses.generator_loss
        patch = mock.patch.object(losses, "generator_loss", lambda kind, logits: original(kind, logits) * factor())
    elif kind == "gradient":
        original = losses.generator_loss

        def generator_loss(kind, logits):
            scale = factor()

            @tf.custom_gradient
            def identity(x):
                return tf.identity(x), lambda dy: dy * scale

            return identity(original(kind, logits))

        patch = mock.patch.object(losses, "generator_loss", generator_loss)
    else:
        original_d = model.discriminator
        patch = mock.patch.object(model, "discriminator",
                                  lambda images, *args, **kw: original_d(images * factor(), *args, **kw))
    with patch:
        yield


LIMIT = config_lib.NAN_SKIP_LIMIT
# name: (--nan_policy, what is poisoned, value, at steps, steps to train, the error expected ("": finishes))
NAN_CASES = {
    "stop: NaN loss": ("stop", "loss", np.nan, {3}, 5, r"^step 3: non-finite .*g_loss=nan.*model-2 \(step 2\)"),
    "stop: Inf gradient, finite loss": ("stop", "gradient", np.inf, {3}, 5,
                                        r"^step 3: non-finite .*model-2 \(step 2\)"),
    "skip: NaN loss twice": ("skip", "loss", np.nan, {3, 4}, 5, ""),
    "skip: NaN gradient once": ("skip", "gradient", np.nan, {3}, 5, ""),
    f"skip: Inf loss {LIMIT} times in a row": ("skip", "loss", np.inf, set(range(3, 100)), LIMIT + 3,
                                              rf"^step {LIMIT + 2}: .*{LIMIT} steps in a row.*model-{LIMIT + 1} "),
    # A NaN real batch: D's and G's updates of that step are skipped, BatchNorm averages included, and the run
    # carries on (before round two, G's averages took in the batch and the run stopped at the next save).
    "skip: NaN input images": ("skip", "images", np.nan, {3}, 5, ""),
}


def nan_case(work_dir, name):
    """Runs NAN_CASES[name] with a checkpoint every step: it must end as
    expected, and every checkpoint left must be finite and restorable.
    Returns the step restored."""
    policy, kind, value, steps, total, expected = NAN_CASES[name]
    config = tiny_config(work_dir, max_steps=total, nan_policy=policy, max_to_keep=total)
    with poisoned(kind, value, steps):
        try:
            train.train(config)
            error = ""
        except TrainingDiverged as e:
            error = str(e)
    assert re.search(expected, error) if expected else not error, (name, error)
    for path in checkpoints.checkpoint_paths(config.checkpoint_path):
        assert all(np.all(np.isfinite(v)) for v in checkpoint_values(path).values() if v.dtype.kind == "f"), path
    return restore_check(config)


# --------------------------------------------------------------------------
# Full disk and read-only folders


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


# --------------------------------------------------------------------------
# Untrusted inputs

_IDX_ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}  # the IDX format's type codes


def _idx_file(type_code, shape):
    header = struct.pack(">BBBB", 0, 0, type_code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    return header + bytes(int(np.prod(shape)) * _IDX_ITEM_BYTES[type_code])


def _mutate(raw, how, position, extra):
    """Truncates, extends, overwrites bytes, or sets one header word to a huge value."""
    position %= max(len(raw), 1)
    if how == 0:
        return raw[:position]
    if how == 1:
        return raw + extra
    if how == 2:
        return raw[:position] + extra + raw[position + len(extra):]
    word = 4 + 4 * (position % max((len(raw) - 4) // 4, 1))
    return raw[:word] + b"\xff\xff\xff\xf0" + raw[word + 4:]


def _mutated(files):
    return st.builds(_mutate, files, st.integers(0, 3), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8))


def idx_bytes():
    """Random bytes, valid small IDX files, and mutated ones."""
    valid = st.builds(_idx_file, st.sampled_from(sorted(_IDX_ITEM_BYTES)),
                      st.lists(st.integers(0, 6), min_size=1, max_size=4))
    return st.one_of(st.binary(max_size=64), valid, _mutated(valid))


def check_idx(raw):
    """data.parse_idx returns an array or raises UserError, nothing else."""
    try:
        return type(data.parse_idx(raw, source="fuzzed")).__name__
    except UserError:
        return "refused"


_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"RIFF\x1a\0\0\0WEBPVP8X", b"")


def _encode(image_format, mode, width, height, seed):
    if image_format == "JPEG" and mode not in ("L", "RGB"):
        mode = "RGB"
    pixels = np.random.RandomState(seed).randint(0, 256, (height, width, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, image_format)
    return buffer.getvalue()


def image_files():
    """Small valid PNG/JPEG/GIF/BMP/WebP files, mutated ones, and junk behind a real magic number."""
    valid = st.builds(_encode, st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP"]),
                      st.sampled_from(["L", "RGB", "RGBA", "P"]), st.integers(1, 40), st.integers(1, 40),
                      st.integers(0, 1000))
    junk = st.builds(lambda magic, body: magic + body, st.sampled_from(_MAGIC), st.binary(max_size=300))
    return st.lists(st.one_of(valid, _mutated(valid), junk), min_size=1, max_size=4)


def check_image_folder(work_dir, files):
    """Writes `files` as an image folder and reads it as training does: list
    it, open it, pull three batches.  Allowed: a UserError, clean batches, or
    (data.py's contract when TF decodes none of the files) the end of the data."""
    folder = Path(work_dir) / "fuzz"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for index, contents in enumerate(files):
        (folder / f"{index}.{('png', 'jpg', 'gif', 'bmp', 'webp')[index % 5]}").write_bytes(contents)
    config = tiny_config(work_dir, dataset="fuzz", data_dir=str(work_dir), batch_size=1,
                         input_fname_pattern="*.png,*.jpg,*.gif,*.bmp,*.webp")
    try:
        source = data.open_source(config)
    except UserError:
        return "refused"
    config = dataclasses.replace(config, c_dim=source.c_dim)
    with tf.Graph().as_default():
        batches = data.input_batches(source, config)
        with v1.Session() as session:
            session.run(batches.initializer, batches.feed_dict)
            try:
                for _ in range(3):
                    images = session.run(batches.images)
                    assert images.shape == (1, 16, 16, config.c_dim) and np.all(np.abs(images) <= 1), images.shape
            except tf.errors.OutOfRangeError:
                return "nothing decodable"
    return "read"


# Damaged or hostile files that the project itself writes: architecture.json,
# checkpoint manifests and the real-statistics cache.

_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10)
# Sizes and types that a damaged or hand-edited file might hold.
_ODD_NUMBERS = st.sampled_from([0, -1, -(1 << 40), 1 << 14, (1 << 14) + 1, 1 << 40, 10**30, True, 2.5, "4", None, []])


def _json_files(objects):
    """Encoded `objects`, any JSON, nesting deeper than Python's recursion limit, mutated bytes, junk."""
    texts = st.one_of(objects.map(json.dumps), _ANY_JSON.map(json.dumps),
                      st.integers(1, 100_000).map(lambda depth: "[" * depth + "]" * depth))
    encoded = texts.map(str.encode)
    return st.one_of(encoded, _mutated(encoded), st.binary(max_size=64))


def architecture_files():
    """architecture.json contents: the real keys with small, odd or huge values, and anything else."""
    values = st.integers(1, 40) | _ODD_NUMBERS | _ANY_JSON
    return _json_files(st.fixed_dictionaries({name: values for name in config_lib.ARCHITECTURE_FIELDS}))


@functools.cache
def _trained_run(work_dir):
    """A tiny run trained for two steps (checkpoints 1 and 2); returns its config."""
    config = tiny_config(work_dir, max_steps=2)
    train.train(config)
    return config


def check_architecture(work_dir, raw):
    """A damaged architecture.json beside real checkpoints: visualizing restores G
    or refuses with one line; never another exception or a huge allocation."""
    config = _trained_run(str(work_dir))
    architecture = Path(config.checkpoint_path, checkpoints.ARCHITECTURE_FILE)
    genuine = architecture.read_bytes()
    architecture.write_bytes(raw)
    try:
        with checkpoints.restored_generator(config) as restored:
            assert restored.config.architecture() == config.architecture(), restored.config.architecture()
    except UserError as e:
        assert "\n" not in str(e), str(e)
        return "refused"
    finally:
        architecture.write_bytes(genuine)
    return "restored"


def manifest_files(names):
    """A checkpoint manifest: the real file names (`names`) or others, with odd sizes and digests."""
    entry = st.fixed_dictionaries({"bytes": st.integers(0, 1 << 24) | _ODD_NUMBERS,
                                   "sha256": st.text(max_size=64) | _ODD_NUMBERS}) | _ANY_JSON
    files = st.dictionaries(st.sampled_from(names) | st.text(max_size=12), entry, max_size=3) | _ANY_JSON
    return _json_files(st.fixed_dictionaries({"files": files}) | _ANY_JSON)


def _manifest_names(work_dir):
    config = _trained_run(str(work_dir))
    return sorted(os.path.basename(p) for p in checkpoints.checkpoint_files(
        checkpoints.checkpoint_paths(config.checkpoint_path)[0]))


def check_manifest(work_dir, raw):
    """A damaged manifest on the newest checkpoint: verification answers (vouching
    only for files that match), never raises."""
    config = _trained_run(str(work_dir))
    newest = checkpoints.checkpoint_paths(config.checkpoint_path)[0]
    manifest = Path(newest + checkpoints.MANIFEST_SUFFIX)
    genuine = manifest.read_bytes()
    manifest.write_bytes(raw)
    try:
        problem = checkpoints.verify(newest)
    finally:
        manifest.write_bytes(genuine)
    assert problem is None or isinstance(problem, str), problem
    if problem is None:  # it vouched: then it must describe the files exactly
        expected = {name: entry["bytes"] for name, entry in json.loads(genuine)["files"].items()}
        assert {name: entry["bytes"] for name, entry in json.loads(raw)["files"].items()} == expected
        return "vouched"
    return "rejected"


def _npy(array, claimed_shape=None, descr=None):
    """The .npy bytes of `array`, optionally with a header claiming another shape or dtype."""
    buffer = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(array)
    header.update({k: v for k, v in (("shape", claimed_shape), ("descr", descr)) if v is not None})
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + array.tobytes()


def _npz(dim, count, claims, compressed):
    """A statistics cache file; `claims` maps array names to (claimed shape, claimed dtype)."""
    features = np.random.RandomState(dim).rand(count, dim)
    arrays = {"mu": features.mean(0), "sigma": np.cov(features, rowvar=False).reshape(dim, dim),
              "features": features}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            archive.writestr(name + ".npy", _npy(array, *claims.get(name, (None, None))))
    return buffer.getvalue()


def statistics_files():
    """Real-statistics .npz files: valid, with headers claiming huge, negative or inconsistent shapes or
    other dtypes (object, int, text), compressed members, and mutated bytes."""
    shapes = st.lists(st.integers(-2, 6) | st.sampled_from([1 << 40, 1 << 62]), max_size=3).map(tuple)
    descrs = st.sampled_from([None, "<f8", "<f4", "|O", "<i8", "<U4", "|b1", ">f8"])
    claims = st.dictionaries(st.sampled_from(["mu", "sigma", "features"]), st.tuples(shapes | st.none(), descrs),
                             max_size=2)
    valid = st.builds(_npz, st.integers(1, 4), st.integers(2, 5), claims, st.booleans())
    return st.one_of(valid, _mutated(valid), st.binary(max_size=64))


class _FixedFeatures:
    """A stand-in feature extractor: the pixels are the features."""

    digest = "0" * 64

    def features(self, images):
        return images.reshape(len(images), -1).astype(np.float64)


def check_statistics(work_dir, raw):
    """A damaged cache file is recomputed (one warning line), a valid one used;
    nothing else is raised and nothing is allocated beyond what the file holds."""
    cache = Path(work_dir) / "stats"
    cache.mkdir(parents=True, exist_ok=True)
    path = Path(metrics.statistics_cache_path(str(cache), "fuzz", 2, _FixedFeatures.digest))
    path.write_bytes(raw)
    images = np.arange(24, dtype=np.uint8).reshape(6, 2, 2, 1)
    stats = metrics.real_statistics(_FixedFeatures(), images, str(cache), "fuzz", 2)
    dim = stats["mu"].shape[0]
    assert stats["sigma"].shape == (dim, dim) and stats["features"].shape[1:] == (dim,)
    return "used" if not np.array_equal(stats["features"], _FixedFeatures().features(images)) else "recomputed"


def config_values():
    """Values of each Config field's own type (what absl's typed flags deliver):
    the default, small numbers, extreme ones, NaN/Inf, any text."""
    def values(field):
        default = field.default
        if field.name == "crop":
            return st.none() | st.booleans()
        if isinstance(default, bool):
            return st.booleans()
        if isinstance(default, int):
            return st.just(default) | st.integers(-3, 70) | st.integers(-(1 << 64), 1 << 64)
        if isinstance(default, float):
            return st.just(default) | st.floats(-2, 2) | st.floats()
        return st.just(default) | st.text(max_size=12)

    return st.fixed_dictionaries({f.name: values(f) for f in dataclasses.fields(config_lib.Config)})


def check_config(values):
    """config.resolve accepts (and the paths derived from it work) or raises UserError, nothing else."""
    try:
        config = config_lib.resolve(config_lib.Config(**values))
    except UserError:
        return "refused"
    config.architecture()
    assert config.checkpoint_path and config.sample_path and config.log_path and config.visualize_options()
    return "accepted"


def fuzz(check, strategy, examples, random_seed):
    """Runs `check` on `examples` inputs drawn by hypothesis and carries on
    past failures, for the table (tests let hypothesis stop and shrink).
    Returns (inputs tried, [(exception, input)] for those that failed)."""
    tried, failures = [], []

    @seed(random_seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value):
        tried.append(value)
        try:
            check(value)
        except Exception as e:  # every kind of failure is what is counted
            failures.append((f"{type(e).__name__}: {str(e).splitlines()[0][:80]}", repr(value)[:120]))

    run()
    return len(tried), failures


# --------------------------------------------------------------------------
# Soak: does a long run grow?  (A graph that is not finalized lets an op created
# inside the loop grow it, and memory and step time with it, without any error.)

PROGRESS_LINE = re.compile(r" step (\d+) \| ([\d.]+) img/s")


def _rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1]) * 1024


def _cpu_seconds(pid):
    """User + system CPU time of a process so far (all its threads)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class SoakPoint:
    step: int
    rss_bytes: int  # of the training process, read when it logged `step`
    step_seconds: float  # median over `windows` windows of 100 steps next to `step`: wall time per step
    cpu_seconds: float  # the same for the process's CPU time per step
    windows: int


def soak(work_dir, steps=5000, early=100, windows=10):
    """Trains the tiny model (small fully connected layers) for `steps` steps
    through main.py; returns SoakPoints for step `early` and step `steps`.

    RSS is read from /proc when the run logs that step.  Step times are
    medians over `windows` windows of 100 steps (after `early`; before
    `steps`): wall time from the run's own progress lines (img/s), CPU time
    from /proc.  On this shared machine single windows vary by 2x with the
    other jobs' load; a graph or loop that grows would slow all of them.
    Samples and checkpoints come only at the end, so both points see the same
    work per step (summaries every 10 steps).
    """
    window = 100
    if steps < early + 2 * windows * window:
        raise ValueError(f"--soak_steps must be at least {early + 2 * windows * window}")
    command = main_command(work_dir, max_steps=steps, gfc_dim=16, dfc_dim=16, log_freq=window,
                           sample_freq=steps + 1, ckpt_freq=steps + 1, summary_freq=10)
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    wall, cpu, rss, tail = {}, {}, {}, collections.deque(maxlen=20)
    for line in process.stderr:
        tail.append(line)
        match = PROGRESS_LINE.search(line)
        if match:
            step = int(match.group(1))
            wall[step] = harness.TINY["batch_size"] / float(match.group(2))  # one D update per step
            cpu[step] = _cpu_seconds(process.pid)
            if step in (early, steps):
                rss[step] = _rss_bytes(process.pid)
    if process.wait() != 0 or set(rss) != {early, steps}:
        raise RuntimeError(f"soak run failed (exit {process.returncode}): {''.join(tail)}")

    def point(step, first):
        ends = range(first + window, first + (windows + 1) * window, window)  # a line reports the 100 steps before it
        return SoakPoint(step, rss[step], float(np.median([wall[end] for end in ends])),
                         float(np.median([(cpu[end] - cpu[end - window]) / window for end in ends])), windows)

    return point(early, early), point(steps, steps - windows * window)


def soak_row(points, tolerance=0.05):
    early, late = points
    changes = [late.rss_bytes / early.rss_bytes - 1, late.step_seconds / early.step_seconds - 1,
               late.cpu_seconds / early.cpu_seconds - 1]
    within = all(abs(change) <= tolerance for change in changes)
    return (f"soak: tiny model, {late.step} steps of `main.py --train`",
            f"RSS, and time per step (median of {early.windows} windows of 100 steps), after {early.step} and "
            f"after {late.step} steps",
            f"RSS {early.rss_bytes / 2**20:.0f} MB -> {late.rss_bytes / 2**20:.0f} MB ({changes[0]:+.1%}); step "
            f"{early.step_seconds * 1000:.1f} ms -> {late.step_seconds * 1000:.1f} ms ({changes[1]:+.1%}); CPU "
            f"{early.cpu_seconds * 1000:.1f} ms -> {late.cpu_seconds * 1000:.1f} ms per step ({changes[2]:+.1%}): "
            f"{'within' if within else 'NOT within'} {tolerance:.0%}")


# --------------------------------------------------------------------------
# The README table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="random SIGKILLs")
    parser.add_argument("--fuzz", type=int, default=200, help="fuzzed inputs of each kind (image folders: a quarter)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--soak_steps", type=int, default=5000, help="length of the soak run (0: skip it)")
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        def work(name):
            return Path(tmp) / name

        kills = random_kills(work("kills"), args.kills, args.seed)
        points = kill_points(work("points"))
        signals = [interrupt(work(s.name), s) for s in (signal.SIGINT, signal.SIGTERM)]
        nan = [nan_case(work(f"nan{i}"), name) for i, name in enumerate(NAN_CASES)]
        full = disk_full_cases(work("full"))
        real = [m for m in (real_disk_full(work(f"real{kb}"), kb) for kb in (900, 4000, 9000, 13000)) if m]
        read_only = read_only_cases(work("read_only")) or []
        soaked = soak(work("soak"), args.soak_steps) if args.soak_steps else None
        inputs = {
            "IDX byte strings": fuzz(check_idx, idx_bytes(), args.fuzz, args.seed),
            "image folders": fuzz(lambda files: check_image_folder(work("images"), files), image_files(),
                                  args.fuzz // 4, args.seed),
            "flag sets": fuzz(check_config, config_values(), args.fuzz, args.seed),
            "architecture.json files": fuzz(lambda raw: check_architecture(work("hostile"), raw),
                                            architecture_files(), args.fuzz, args.seed),
            "checkpoint manifests": fuzz(lambda raw: check_manifest(work("hostile"), raw),
                                         manifest_files(_manifest_names(work("hostile"))), args.fuzz, args.seed),
            "real-statistics .npz files": fuzz(lambda raw: check_statistics(work("stats"), raw), statistics_files(),
                                               args.fuzz, args.seed),
        }
    for what, (_, failures) in inputs.items():
        for error, value in failures[:3]:
            print(f"{what}: {error} on {value}", file=sys.stderr)
    moments = collections.Counter(kill.moment for kill in kills)
    lost = sum(kill.lost for kill in [*kills, *points, *signals])
    rows = [
        ("SIGKILL at random moments of `main.py --train` (checkpoint every step)",
         f"{len(kills)}: " + ", ".join(f"{n} {moment}" for moment, n in moments.most_common()),
         "every restart restored the newest complete checkpoint, bit for bit; a second run on the folder "
         "was refused naming the first's pid, and the killed run's lock was taken over"),
        ("death at each point of a save (in-process)", f"{len(points)}: " + "; ".join(k.moment for k in points),
         "restored the previous checkpoint until the new one's manifest was written, then the new one"),
        ("SIGINT, SIGTERM", str(len(signals)), "saved, exit 0, resumed at the saved step"),
        ("NaN/Inf in G's loss, G's gradient or D's input, `--nan_policy stop` and `skip`", str(len(nan)),
         "stop: exit 3 naming the step and last checkpoint; skip: updates skipped, stops after "
         f"{LIMIT} in a row; a NaN input batch is skipped, BatchNorm averages included; "
         "no checkpoint ever held a NaN/Inf"),
        ("disk full (ENOSPC)", f"{len(full)} writers injected ({', '.join(full)}); {len(real)} real full tmpfs",
         "one line, exit 2, the checkpoint it names intact"),
        ("read-only folder (samples mid-run, checkpoints at start)", str(len(read_only)),
         "one line, exit 2, checkpoints intact"),
        ("bad inputs (hypothesis)", ", ".join(f"{n} {what}" for what, (n, _) in inputs.items()),
         "; ".join(f"{what}: {len(failures)} raised {failures[0][0]}" for what, (_, failures) in inputs.items()
                   if failures)
         or "only UserError (one line, exit 2); or clean batches with bad files skipped, a manifest rejected "
            "(the older checkpoint restored), a statistics cache recomputed"),
        *([soak_row(soaked)] if soaked else []),
        ("**data lost** (acknowledged saves not restored, over every kill and signal)", "", f"**{lost}**"),
    ]
    print(harness.table_header(["fault", "cases", "outcome"]))
    for row in rows:
        print(harness.table_row(row))
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {(time.time() - started) / 60:.0f} min: "
          f"python -m bench.faults --kills {args.kills} --fuzz {args.fuzz} --seed {args.seed} "
          f"--soak_steps {args.soak_steps}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
