"""Saving and restoring checkpoints so that no run is ever lost or mixed up.

A save is a sequence of writes, and a killed process may stop after any one:
  1. TensorFlow's Saver writes the data and index files (through `.tempstate`
     temporaries that it renames into place);
  2. a manifest, `<prefix>.manifest.json`, records the size and SHA-256 of
     those files; it is written atomically, and from then on the checkpoint
     is complete;
  3. the `checkpoint` state file, read by TensorFlow's own tools, is rewritten
     to list the kept checkpoints;
  4. checkpoints beyond --max_to_keep are deleted, each one's manifest last.
Restoring therefore trusts manifests rather than the state file: the newest
checkpoint whose files match its manifest is restored even if the process died
before step 3, and one that does not match falls back to the next older one
with a warning.  Checkpoints written before manifests existed are known by
being in the state file and are checked by TensorFlow's per-tensor checksums.

A training run holds `train.lock` in the folder, so two runs never write the
same checkpoints, and while holding it deletes the temporaries a killed save
left.  The architecture is stored beside the checkpoints and a mismatch is
refused in one line.
"""

import contextlib
import dataclasses
import fcntl
import glob
import json
import logging
import os
import re
import socket

import config as config_lib
from config import with_defaults
from runtime.errors import UserError
from runtime.tf_runtime import tf
from utils import file_digest, write_atomically

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

ARCHITECTURE_FILE = "architecture.json"
RECIPE_FILE = "recipe.json"
ROLLBACK_FILE = "rollback.json"
CHECKPOINT_PREFIX = "DCGAN.model"
STATE_FILE = "checkpoint"  # TensorFlow's name: tf.train.latest_checkpoint reads it
MANIFEST_SUFFIX = ".manifest.json"
LOCK_FILE = "train.lock"
# What a killed save leaves: TF's SaveV2 writes `<file>.tempstate<digits>` (the
# Saver here is not sharded, so no `<prefix>_temp/` folders), utils.write_atomically
# `<file>.tmp<pid>` and TF's own atomic writes `<file>.tmp<hex>`.
TEMPORARY_NAME = re.compile(r"(\.tempstate\d+|\.tmp[0-9a-f]+)$")


# architecture.json and manifests are a few hundred bytes: a larger file is
# damaged or hostile and is refused before it is read into memory.
_MAX_JSON_BYTES = 1 << 20
# Wider than any DCGAN layer or image; larger values in architecture.json mean a
# damaged file, and building them would ask for terabytes.
_MAX_ARCHITECTURE_VALUE = 1 << 14


def read_json(path):
    """The parsed content of a small JSON file the project wrote; raises OSError or ValueError if it is
    unreadable, too large or not JSON (deep nesting, whose RecursionError is not a ValueError, included)."""
    with open(path, "rb") as f:
        raw = f.read(_MAX_JSON_BYTES + 1)
    if len(raw) > _MAX_JSON_BYTES:
        raise ValueError(f"larger than {_MAX_JSON_BYTES} bytes")
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


_MAX_ARCHITECTURE_TEXT = 64


def _architecture_problem(architecture):
    """Why a parsed architecture.json cannot describe a model of this program, or None.

    Each value must have its Config field's type (whole numbers in a sane
    range, short strings); fields it lacks were added to the program later and
    read as the values runs had before them (`read_architecture`)."""
    if not isinstance(architecture, dict) or not set(architecture) <= set(config_lib.ARCHITECTURE_FIELDS):
        return f"not an object with keys among {', '.join(config_lib.ARCHITECTURE_FIELDS)}"
    defaults = config_lib.Config()
    for name, value in sorted(architecture.items()):
        kind = type(getattr(defaults, name))
        if kind is int:
            low = 0 if name == "y_dim" else 1
            if type(value) is not int or not low <= value <= _MAX_ARCHITECTURE_VALUE:
                return f"{name} is {json.dumps(value)[:40]}, not a whole number in [{low}, {_MAX_ARCHITECTURE_VALUE}]"
        elif type(value) is not kind or (kind is str and len(value) > _MAX_ARCHITECTURE_TEXT):
            return f"{name} is {json.dumps(value)[:40]}, not a {kind.__name__}"
    if architecture.get("c_dim", 1) not in (1, 3):
        return f"c_dim is {architecture['c_dim']}, not 1 or 3"
    return None


def read_architecture(directory):
    """The architecture stored beside the checkpoints (None if there is none), validated:
    a damaged or hostile file is one UserError, never a traceback or a huge graph."""
    path = os.path.join(directory, ARCHITECTURE_FILE)
    if not os.path.exists(path):
        return None
    try:
        architecture = read_json(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e}); restore it or use another --checkpoint_dir") from None
    problem = _architecture_problem(architecture)
    if problem:
        raise UserError(f"{path}: damaged ({problem}); restore it or use another --checkpoint_dir")
    # A field the file lacks was added to the program later: the run had the value from before it existed.
    before = {name: getattr(config_lib.Config(), name) for name in config_lib.ARCHITECTURE_FIELDS}
    before.update(config_lib.ARCHITECTURE_BEFORE_FIELDS)
    return {name: architecture.get(name, before[name]) for name in config_lib.ARCHITECTURE_FIELDS}


@dataclasses.dataclass(frozen=True)
class RollbackRecord:
    """What --on_collapse rollback did to a run folder: the factor on both
    learning rates and the number of rollbacks that led to it.

    Kept in a file beside the checkpoints, not in them: checkpoints written
    before rollbacks existed still restore, and a restarted run keeps its
    lowered rates whichever checkpoint it resumes from.
    """

    learning_rate_scale: float = 1.0
    rollbacks: int = 0


def _rollback_problem(saved):
    """Why a parsed rollback.json is not a RollbackRecord, or None."""
    fields = [field.name for field in dataclasses.fields(RollbackRecord)]
    if not isinstance(saved, dict) or sorted(saved) != sorted(fields):
        return f"not an object with keys {', '.join(fields)}"
    scale, rollbacks = saved["learning_rate_scale"], saved["rollbacks"]
    if type(scale) not in (int, float) or not 0 < scale <= 1:
        return f"learning_rate_scale is {json.dumps(scale)[:40]}, not a number in (0, 1]"
    if type(rollbacks) is not int or rollbacks < 0:
        return f"rollbacks is {json.dumps(rollbacks)[:40]}, not a whole number of 0 or more"
    return None


def read_rollback(directory):
    """The folder's RollbackRecord (the default one, rates as the flags say, if it has none);
    a damaged file is one UserError."""
    path = os.path.join(directory, ROLLBACK_FILE)
    if not os.path.exists(path):
        return RollbackRecord()
    try:
        saved = read_json(path)
        problem = _rollback_problem(saved)
    except (OSError, ValueError) as e:
        problem = f"unreadable: {e}"
    if problem:
        raise UserError(f"{path}: damaged ({problem}); delete it to train at the learning rates the flags give")
    return RollbackRecord(float(saved["learning_rate_scale"]), saved["rollbacks"])


def write_rollback(directory, record):
    """Writes `record` atomically, as every file beside the checkpoints is written."""
    os.makedirs(directory, exist_ok=True)
    write_atomically(os.path.join(directory, ROLLBACK_FILE), json.dumps(dataclasses.asdict(record), indent=2))


def checkpoint_step(path):
    match = re.search(r"-(\d+)$", path)
    return int(match.group(1)) if match else 0


def checkpoint_files(prefix):
    """The index and data files of the checkpoint at `prefix` that exist, sorted."""
    pattern = glob.escape(prefix)
    return sorted(glob.glob(pattern + ".index") + glob.glob(pattern + ".data-?????-of-?????"))


def _listed_paths(directory):
    """Prefixes named by the state file (which may hold absolute paths from before the folder was moved)."""
    state = v1.train.get_checkpoint_state(directory)
    if state is None:
        return []
    listed = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    return [os.path.join(directory, os.path.basename(p)) for p in listed]


def checkpoint_paths(directory):
    """Checkpoints that claim to be complete (a manifest, or a place in the state file), newest first."""
    manifests = glob.glob(os.path.join(glob.escape(directory), f"{CHECKPOINT_PREFIX}-*{MANIFEST_SUFFIX}"))
    manifested = [path[: -len(MANIFEST_SUFFIX)] for path in manifests]
    return sorted(set(manifested + _listed_paths(directory)), key=checkpoint_step, reverse=True)


def write_manifest(prefix):
    """Records the size and SHA-256 of each of the checkpoint's files: the mark of a complete save."""
    files = {os.path.basename(p): {"bytes": os.path.getsize(p), "sha256": file_digest(p)}
             for p in checkpoint_files(prefix)}
    write_atomically(prefix + MANIFEST_SUFFIX, json.dumps({"files": files}, indent=2))


def verify(prefix):
    """Why the checkpoint at `prefix` cannot be trusted, or None if its files match its manifest.

    One without a manifest can only be a listed checkpoint from before
    manifests; it is left to TensorFlow's checksums (None).
    """
    manifest = prefix + MANIFEST_SUFFIX
    if not os.path.exists(manifest):
        return None
    try:
        expected = {name: (entry["bytes"], entry["sha256"]) for name, entry in read_json(manifest)["files"].items()}
        present = {os.path.basename(p) for p in checkpoint_files(prefix)}
        if present != set(expected) or not any(name.endswith(".index") for name in present):
            return f"files {sorted(present)} on disk, {sorted(expected)} in the manifest"
        directory = os.path.dirname(prefix)
        for name, (size, sha256) in sorted(expected.items()):
            path = os.path.join(directory, name)
            if os.path.getsize(path) != size or file_digest(path) != sha256:
                return f"{name} differs from the manifest"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"unreadable manifest or files ({e})"
    return None


def _state_text(paths):
    """The state file for `paths` (newest last), relative to the folder so that it can be moved."""
    names = [os.path.basename(p) for p in paths]
    lines = [f'model_checkpoint_path: "{names[-1]}"'] + [f'all_model_checkpoint_paths: "{n}"' for n in names]
    return "\n".join(lines) + "\n"


def delete_checkpoint(prefix):
    """Deletes a checkpoint, manifest last: cut short, it leaves a manifest that
    fails verification (and is deleted by the next save), never unlisted files."""
    for path in checkpoint_files(prefix) + [prefix + MANIFEST_SUFFIX]:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def remove_temporaries(directory):
    """Deletes the temporaries killed saves left in `directory` and its
    subfolders; returns their paths.  Only while holding the lock: a running
    save's temporaries look the same."""
    removed = []
    for root, _, files in os.walk(directory):
        for name in files:
            if TEMPORARY_NAME.search(name):
                removed.append(os.path.join(root, name))
                os.remove(removed[-1])
    return removed


class Checkpoints:
    """One run's checkpoint folder, bound to a Saver and an architecture."""

    def __init__(self, directory, saver, architecture, recipe=None):
        self.directory = directory
        self.saver = saver
        self.architecture = architecture
        self.recipe = recipe  # training flags recorded beside the checkpoints (None: not recorded)

    def latest(self):
        paths = checkpoint_paths(self.directory)
        return paths[0] if paths else None

    def check_architecture(self):
        saved = read_architecture(self.directory)
        if saved is None:
            return
        differences = {k: (saved[k], v) for k, v in self.architecture.items() if saved[k] != v}
        if differences:
            detail = ", ".join(f"{k}={old} (now {new})" for k, (old, new) in sorted(differences.items()))
            raise UserError(
                f"{self.directory} holds a model built with {detail}; pass the same flags, "
                "or a different --checkpoint_dir to start a new run"
            )

    def check_recipe(self, allow_change):
        """Refuses to resume with other recipe flags (loss, learning rates, ...)
        than the checkpoints were trained with, unless `allow_change`: a silent
        change of recipe mid-run makes its results impossible to interpret."""
        path = os.path.join(self.directory, RECIPE_FILE)
        if self.recipe is None or not os.path.exists(path) or not checkpoint_paths(self.directory):
            return
        try:
            saved = read_json(path)
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            raise UserError(f"{path} is unreadable ({e}); delete it to resume with the current flags") from None
        saved = with_defaults(saved, self.recipe)
        differences = {k: (saved[k], v) for k, v in self.recipe.items() if saved[k] != v}
        if not differences:
            return
        detail = ", ".join(f"--{k} {old} (now {new})" for k, (old, new) in sorted(differences.items()))
        if not allow_change:
            raise UserError(f"{self.directory} was trained with {detail}; pass the same flags, "
                            "or --allow_recipe_change to continue with the new ones")
        log.warning("continuing %s with a changed recipe: %s", self.directory, detail)

    @contextlib.contextmanager
    def exclusive(self):
        """Holds the folder's lock for one training run and clears stale temporaries.

        flock is released by the kernel however the process ends (kill -9
        included), so a lock whose holder died is simply taken over; the file
        names the holder only for the refusal message.
        """
        path = os.path.join(self.directory, LOCK_FILE)
        try:
            os.makedirs(self.directory, exist_ok=True)
            lock = open(path, "a+")
        except OSError as e:
            raise UserError(f"cannot write to {self.directory} ({e.strerror}); "
                            "make it writable or pass another --out_dir") from None
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                raise UserError(f"{self.directory} is in use by another training run ({lock.read().strip()}); "
                                "wait for it to end, stop it, or pass another --out_dir") from None
            lock.seek(0)
            previous = lock.read().strip()
            if previous:
                log.warning("%s was held by %s, which ended without releasing it; taking it over", path, previous)
            lock.truncate(0)
            lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            lock.flush()
            removed = remove_temporaries(self.directory)
            if removed:
                log.info("removed %d temporary files left by an interrupted save: %s", len(removed),
                         ", ".join(sorted(os.path.basename(p) for p in removed)))
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    lock.truncate(0)  # released cleanly: nobody to name as a dead holder

    def restore(self, session, path=None, before=None):
        """Restores the newest complete checkpoint (or exactly `path`, a checkpoint
        of this folder, which gets the same verification but no fallback; or, with
        `before`, the newest saved before that step); returns its path, or None if
        there is none."""
        paths = checkpoint_paths(self.directory)
        if before is not None:
            paths = [p for p in paths if checkpoint_step(p) < before]
        if path is not None:
            paths = [p for p in paths if os.path.realpath(p) == os.path.realpath(path)]
            if not paths:
                raise UserError(f"{path}: not a complete checkpoint in {self.directory}; "
                                "pass one of its DCGAN.model-STEP prefixes")
        if not paths:
            return None
        self.check_architecture()
        for candidate in paths:
            problem = verify(candidate) or self._restore_verified(session, candidate)
            if not problem:
                return candidate
            if path is not None:
                raise UserError(f"{candidate} is incomplete or damaged ({problem}); "
                                "pick another checkpoint or restore its files")
            log.warning("checkpoint %s is incomplete or damaged (%s); trying an older one", candidate, problem)
        raise UserError(f"{self.directory}: no checkpoint in it can be read; move the folder away to start over")

    def _restore_verified(self, session, path):
        """Restores `path`; returns None, or why it is unreadable.  Raises UserError if the
        checkpoint is fine but belongs to another model (an older one would not help)."""
        try:
            self.saver.restore(session, path)
            return None
        except (tf.errors.NotFoundError, tf.errors.DataLossError) as e:
            if isinstance(e, tf.errors.NotFoundError) and "not found in checkpoint" in e.message:
                raise UserError(
                    f"{path} was written by a different model (a variable is missing); "
                    "use the flags it was trained with or another --checkpoint_dir"
                ) from None
            return f"unreadable: {e.message.splitlines()[0]}"
        except tf.errors.InvalidArgumentError:
            raise UserError(
                f"{path} was written by a model with different layer sizes; "
                "use the flags it was trained with or another --checkpoint_dir"
            ) from None

    def save(self, session, step, keep_before=None):
        """Writes checkpoint `step` (steps 1-4 of the module docstring) and returns its prefix.

        Any failed write (full disk, read-only folder) raises OSError, whichever
        layer failed, and leaves every older checkpoint as it was.  With
        `keep_before` (the first step of a collapse streak still running) the
        newest checkpoint saved before that step is kept beyond --max_to_keep:
        it is the one --on_collapse rollback restores if the streak fires.
        """
        os.makedirs(self.directory, exist_ok=True)
        if read_architecture(self.directory) is None:
            write_atomically(os.path.join(self.directory, ARCHITECTURE_FILE), json.dumps(self.architecture, indent=2))
        if self.recipe is not None:  # the recipe the newest checkpoint continued with
            write_atomically(os.path.join(self.directory, RECIPE_FILE), json.dumps(self.recipe, indent=2))
        prefix = os.path.join(self.directory, f"{CHECKPOINT_PREFIX}-{step}")
        with contextlib.suppress(FileNotFoundError):
            os.remove(prefix + MANIFEST_SUFFIX)  # it must never vouch for files that are being rewritten
        try:
            self.saver.save(session, prefix, write_meta_graph=False, write_state=False)
        except tf.errors.OpError as e:  # e.g. ResourceExhaustedError for ENOSPC; the line naming the file says it
            lines = e.message.splitlines()
            raise OSError(next((line.strip() for line in lines if self.directory in line), lines[0])) from None
        write_manifest(prefix)
        # Kept: this one and the newest older ones.  Newer ones can only be
        # damaged checkpoints that restore() skipped; this run has replaced them.
        max_to_keep = self.saver.saver_def.max_to_keep
        candidates = checkpoint_paths(self.directory)
        older = [p for p in candidates if checkpoint_step(p) < step]
        kept = older[: max_to_keep - 1] if max_to_keep else older
        before_streak = next((p for p in older if keep_before is not None and checkpoint_step(p) < keep_before), None)
        if before_streak and before_streak not in kept:
            kept.append(before_streak)  # older than every other kept one: the state file lists it first
        write_atomically(os.path.join(self.directory, STATE_FILE), _state_text([*reversed(kept), prefix]))
        for path in candidates:
            if path != prefix and path not in kept:
                delete_checkpoint(path)
        return prefix
