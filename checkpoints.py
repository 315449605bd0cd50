"""Saving and restoring checkpoints so that no run is ever lost or mixed up.

TensorFlow's V2 Saver writes the data and index files through temporaries and
rewrites the `checkpoint` state file last, so a crash mid-save leaves the
previous checkpoint as the newest complete one.  On top of that this module
  * stores the architecture beside the checkpoints and refuses, in one line,
    to restore into a network built with different flags;
  * falls back to the next older checkpoint if the newest one is unreadable.
"""

import contextlib
import dataclasses
import json
import logging
import os
import re

import tensorflow as tf

from errors import UserError
from model import GENERATOR_SCOPE, InferenceGenerator, scope_variables
from utils import write_atomically

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

ARCHITECTURE_FILE = "architecture.json"
CHECKPOINT_PREFIX = "DCGAN.model"


def read_architecture(directory):
    path = os.path.join(directory, ARCHITECTURE_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e}); restore it or use another --checkpoint_dir") from None


def checkpoint_step(path):
    match = re.search(r"-(\d+)$", path)
    return int(match.group(1)) if match else 0


def checkpoint_paths(directory):
    """Checkpoint prefixes listed in the state file, newest first."""
    state = v1.train.get_checkpoint_state(directory)
    if state is None:
        return []
    # The state file may hold absolute paths from before the folder was moved.
    listed = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    paths = [os.path.join(directory, os.path.basename(p)) for p in listed]
    return sorted(set(paths), key=checkpoint_step, reverse=True)


class Checkpoints:
    """One run's checkpoint folder, bound to a Saver and an architecture."""

    def __init__(self, directory, saver, architecture):
        self.directory = directory
        self.saver = saver
        self.architecture = architecture

    def latest(self):
        paths = checkpoint_paths(self.directory)
        return paths[0] if paths else None

    def check_architecture(self):
        saved = read_architecture(self.directory)
        if saved is None:
            return
        differences = {k: (saved.get(k), v) for k, v in self.architecture.items() if saved.get(k) != v}
        if differences:
            detail = ", ".join(f"{k}={old} (now {new})" for k, (old, new) in sorted(differences.items()))
            raise UserError(
                f"{self.directory} holds a model built with {detail}; pass the same flags, "
                "or a different --checkpoint_dir to start a new run"
            )

    def restore(self, session):
        """Restores the newest readable checkpoint; returns its path or None."""
        paths = checkpoint_paths(self.directory)
        if not paths:
            return None
        self.check_architecture()
        for path in paths:
            try:
                self.saver.restore(session, path)
                return path
            except (tf.errors.NotFoundError, tf.errors.DataLossError) as e:
                if isinstance(e, tf.errors.NotFoundError) and "not found in checkpoint" in e.message:
                    raise UserError(
                        f"{path} was written by a different model (a variable is missing); "
                        "use the flags it was trained with or another --checkpoint_dir"
                    ) from None
                log.warning("checkpoint %s is unreadable (%s); trying an older one", path, e.message.splitlines()[0])
            except tf.errors.InvalidArgumentError:
                raise UserError(
                    f"{path} was written by a model with different layer sizes; "
                    "use the flags it was trained with or another --checkpoint_dir"
                ) from None
        raise UserError(f"{self.directory}: no checkpoint in it can be read; move the folder away to start over")

    def save(self, session, step):
        os.makedirs(self.directory, exist_ok=True)
        if read_architecture(self.directory) is None:
            write_atomically(os.path.join(self.directory, ARCHITECTURE_FILE), json.dumps(self.architecture, indent=2))
        return self.saver.save(
            session, os.path.join(self.directory, CHECKPOINT_PREFIX), global_step=step, write_meta_graph=False
        )


@contextlib.contextmanager
def restored_generator(config):
    """Yields (session, InferenceGenerator, config) with G restored from the
    newest checkpoint of `config`'s run, in a fresh graph.

    The architecture comes from the checkpoint folder, so visualizing needs no
    data and only the flags that name the run (dataset, batch and output size).
    """
    directory = config.checkpoint_path
    architecture = read_architecture(directory)
    if architecture is None or not checkpoint_paths(directory):
        raise UserError(f"no checkpoint in {directory}; train first with the same flags and --train")
    config = dataclasses.replace(config, **architecture)
    with tf.Graph().as_default():
        generator = InferenceGenerator(config)
        saver = v1.train.Saver(scope_variables(GENERATOR_SCOPE, v1.GraphKeys.GLOBAL_VARIABLES))
        with v1.Session() as session:
            path = Checkpoints(directory, saver, config.architecture()).restore(session)
            log.info("restored generator from %s", path)
            yield session, generator, config
