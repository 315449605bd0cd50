"""SIGKILL at random moments of `main.py --train` runs, and in-process death at each point of the save
sequence: every restart must restore the newest complete checkpoint, never older than the last save the killed
run had logged."""

import dataclasses
import os
import random
import re
import time
from unittest import mock

from bench.faults.runs import (
    FOREVER,
    RESUMED_LINE,
    SAVED_LINE,
    Kill,
    assert_tidy,
    restore_check,
    start_run,
    tiny_config,
    wait_for,
)
from runtime.errors import UserError
from runtime.tf_runtime import tf
from training import checkpoints, train

v1 = tf.compat.v1


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
        process, log_path = start_run(work_dir, f"run{cycle}", max_steps=restored + 3 if last else FOREVER)
        try:
            if last:
                assert process.wait(timeout=300) == 0, log_path.read_text()
            elif cycle == 0 or rng.random() < 0.75:
                wait_for(log_path, " training ", process)
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
