"""Guarded updates: which variables and moving averages each network's train op owns, and
applying an update only when it is finite on every replica.

Variables live under two scopes, `generator/` and `discriminator/`; each
optimizer gets exactly its own scope's trainable variables and its own scope's
BatchNorm moving-average updates, and building fails loudly if any update
belongs to neither (TF-GAN's rule, and the fix for carpedm20's var_list bug).
A non-finite loss or gradient skips the whole update (weights, Adam's moments,
BatchNorm averages), which is what --nan_policy skip relies on.
"""

import contextlib
import functools
from typing import NamedTuple

import ops
from runtime.tf_runtime import tf

v1 = tf.compat.v1


def scope_variables(scope, collection=v1.GraphKeys.TRAINABLE_VARIABLES):
    return v1.get_collection(collection, scope=scope + "/")


@contextlib.contextmanager
def collected_updates():
    """Yields a list that receives the MOVING_AVERAGE_UPDATES registered inside
    the block, while the block sees only its own (so a layer's "already
    registered" check is per replica).  Replicas build one after another, so
    this splits the updates by the replica that created them, which names
    cannot do (replica 0's ops carry no replica_k/ prefix)."""
    registered = v1.get_collection_ref(ops.MOVING_AVERAGE_UPDATES)
    earlier, collected = list(registered), []
    del registered[:]
    try:
        yield collected
    finally:
        collected.extend(registered)
        registered[:] = earlier + collected


def split_update_ops(scopes, updates):
    """Assigns every moving-average update in `updates` to exactly one network scope.

    Raises ValueError if any is left over, or if anything sits in UPDATE_OPS
    (this project's layers never put ops there): an update that runs with no
    train op would silently freeze or corrupt that statistic.
    """
    stray = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    if stray:
        raise ValueError(f"UPDATE_OPS outside {scopes}: {sorted(op.name for op in stray)}")
    assigned = {scope: [u for u in updates if u[0].op.name.startswith(scope + "/")] for scope in scopes}
    leftover = [u[0].op.name for u in updates if not any(u in assigned[s] for s in scopes)]
    if leftover:
        raise ValueError(f"moving-average updates outside {scopes}: {sorted(leftover)}")
    return assigned


def all_finite(tensors):
    """True when every element of every tensor is finite.

    Checked tensor by tensor, never through a global norm: a sum of squares of
    large but finite gradients overflows float32 and would reject a good update.
    """
    return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]))


class ReplicaUpdate(NamedTuple):
    """One replica's part of a guarded update (`replica_gradients`)."""

    loss: tf.Tensor
    gradients: list  # (gradient, variable) pairs, of the loss divided by the replica count
    finite: tf.Tensor  # bool: the loss (and, unless loss-scaled, every gradient) is finite
    norm: tf.Tensor  # the replica's gradient norm of `loss`


def replica_gradients(optimizer, loss, variables, replicas, check_gradients=True):
    """One replica's part of a guarded update, a `ReplicaUpdate`.

    The gradients are of `loss` divided by the replica count, so the
    optimizer's sum over replicas is the mean gradient (one replica: `loss`'s
    own).  `finite` says whether the loss (and every gradient) is finite; with
    a loss-scale optimizer only the loss is checked: it skips overflowing
    gradients itself and must see them to lower its scale.  `norm` is the
    replica's gradient norm of `loss`.
    """
    gradients = optimizer.compute_gradients(loss / replicas.count if replicas.count > 1 else loss, var_list=variables)
    present = [g for g, _ in gradients if g is not None]
    norm = tf.linalg.global_norm(present)
    return ReplicaUpdate(loss, gradients, all_finite([loss] + (present if check_gradients else [])),
                         norm * replicas.count if replicas.count > 1 else norm)


def _apply_on_replica(optimizer, gradients, moving_updates, averages):
    # Moving averages first: historical averaging reads each weight before the
    # optimizer changes it, in every run alike; --g_ema then averages the new weights.
    with tf.control_dependencies(ops.moving_average_assignments(moving_updates)):
        updated = [optimizer.apply_gradients(gradients)]
    if averages:
        with tf.control_dependencies(updated):
            updated = ops.moving_average_assignments(averages)
    return updated


def apply_if_finite(optimizer, replicas, update, moving_updates, name, averages=()):
    """Applies the `replica_gradients` `update` with the network's moving-average
    updates (per replica) only if it is finite on every replica; then, in the
    same branch, the `averages` triples (read after the update: the --g_ema
    weight average, --historical_averaging's update counts).  Returns whether it was applied (bool tensor).

    The decision is made in cross-replica context, once for all replicas and
    workers, and the branch then runs the per-replica updates (whose
    all-reduce is a synchronisation point: it cannot sit inside a condition
    of a replica's own).  A skipped update leaves the weights, Adam's moments
    and the BatchNorm averages as they were, so --nan_policy skip carries on
    past a bad batch with nothing changed.
    """
    def apply():
        updated = replicas.run(functools.partial(_apply_on_replica, optimizer, averages=averages),
                               update.gradients, moving_updates)
        with tf.control_dependencies(replicas.local_all(updated)):
            return tf.constant(True)

    return tf.cond(replicas.all(update.finite), apply, lambda: tf.constant(False), name=name)
