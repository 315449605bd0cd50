"""Synchronous data-parallel training on TensorFlow's own distributed runtime.

One graph-building path for one device and for many: `model.DCGAN` builds its
networks, losses and gradients inside `Replicas.run` (once per replica) and
applies the gradients across replicas, and the strategy decides the devices:

* one device (the default without GPUs, or with one): no strategy at all, so
  every op is the one a single-device run always built;
* `--devices` / `--num_replicas` on one machine: `MirroredStrategy`, the global
  batch split across the replicas by the strategy's dataset iterator;
* `TF_CONFIG` naming several workers: `MultiWorkerMirroredStrategy`
  (collective all-reduce), with this process's `tf.distribute.Server`.

Gradients are all-reduced per network (the mean over replicas: each replica
differentiates its loss divided by the replica count and the optimizer sums),
and BatchNorm statistics are per replica, as in every DCGAN codebase; the
moving averages are ON_READ/MEAN variables (`ops.moving_average_variable`), so
a checkpoint holds the mean of the replicas' averages.
"""

import contextlib
import dataclasses
import json
import os
import re
import socket
import tempfile

from config import parse_devices
from runtime.errors import UserError
from runtime.tf_runtime import tf

v1 = tf.compat.v1
ReduceOp = tf.distribute.ReduceOp

@dataclasses.dataclass(frozen=True)
class Cluster:
    """This process's place in a TF_CONFIG cluster: worker `index` of `workers` (host:port each).

    Worker 0 is the chief: the only one that writes samples, summaries and the
    real checkpoints."""

    workers: tuple
    index: int

    @property
    def is_chief(self):
        return self.index == 0

    def name(self, index):
        return f"worker {index} ({self.workers[index]})"


def cluster_from_tf_config(text):
    """The Cluster a TF_CONFIG value describes, None when it names no cluster of
    several workers, or UserError naming what is wrong with it."""
    if not text:
        return None
    try:
        spec = json.loads(text)
        workers = tuple(spec["cluster"]["worker"])
        task = spec["task"]
        kind, index = task["type"], task["index"]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"TF_CONFIG: not a cluster description ({type(e).__name__}: {e}); expected "
                        '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}} '
                        "(docs/scaling.md)") from None
    other_jobs = sorted(set(spec["cluster"]) - {"worker"})
    if other_jobs or kind != "worker":
        raise UserError(f"TF_CONFIG: only 'worker' jobs are used (worker 0 is the chief); found "
                        f"{', '.join(other_jobs) or kind!r}")
    if not all(isinstance(w, str) and re.match(r"^[^:\s]+:\d+$", w) for w in workers):
        raise UserError(f"TF_CONFIG: cluster.worker must list host:port strings (got {list(workers)})")
    if not isinstance(index, int) or not 0 <= index < len(workers):
        raise UserError(f"TF_CONFIG: task index {index!r} is not one of the {len(workers)} workers")
    return Cluster(workers, index) if len(workers) > 1 else None


def _local_devices(config, available_gpus):
    """The devices of this machine's replicas, or [] for one device and no strategy."""
    if config.devices:
        devices = parse_devices(config.devices)
        missing = [d for d in devices if d.startswith("/gpu:") and int(d.split(":")[1]) >= available_gpus]
        if missing:
            raise UserError(f"--devices {config.devices}: this machine has {available_gpus} GPU(s), so {missing[0]} "
                            "does not exist; list existing GPUs (or /cpu:0,/cpu:1 to try replicas on the CPU)")
        if config.num_replicas and config.num_replicas != len(devices):
            raise UserError(f"--num_replicas {config.num_replicas} but --devices lists {len(devices)}; "
                            "give one of them, or make them agree")
        return devices
    wanted = config.num_replicas or (available_gpus if available_gpus > 1 else 1)
    if wanted > 1 and wanted > available_gpus:
        raise UserError(f"--num_replicas {wanted}: this machine has {available_gpus} GPU(s); ask for at most "
                        "that, or pass --devices /cpu:0,/cpu:1 to try replicas on the CPU")
    return [f"/gpu:{i}" for i in range(wanted)] if wanted > 1 else []


class Replicas:
    """The replicas one graph is built for, and the few cross-replica operations the model needs.

    Without a strategy each operation is the identity (or a plain call), so the
    single-device graph is the one this project always built."""

    def __init__(self, strategy=None, devices=(), cluster=None):
        self.distributed = strategy is not None
        self.strategy = strategy or tf.distribute.get_strategy()
        self.devices = tuple(devices)
        self.cluster = cluster
        self.count = self.strategy.num_replicas_in_sync

    @property
    def is_chief(self):
        return self.cluster is None or self.cluster.is_chief

    @property
    def cpu_devices(self):
        """Logical CPU devices the session must create: /cpu:1 exists only if asked for."""
        indices = [int(d.split(":")[1]) for d in self.devices if d.startswith("/cpu:")]
        return max(indices, default=0) + 1

    def describe(self):
        if self.cluster:
            return (f"{self.count} replicas: {len(self.cluster.workers)} workers, this is "
                    f"{self.cluster.name(self.cluster.index)}{' (chief)' if self.cluster.is_chief else ''}")
        return f"{self.count} replicas on {', '.join(self.devices)}" if self.distributed else "1 device"

    def scope(self):
        return self.strategy.scope()

    def run(self, fn, *args):
        """fn(*args) once per replica (each replica's part of PerReplica args); results regrouped."""
        return self.strategy.extended.call_for_each_replica(fn, args=args)

    def local(self, value):
        """The components of a per-replica value on this machine's replicas."""
        return self.strategy.experimental_local_results(value)

    def iterator(self, dataset):
        """An initializable iterator of `dataset` (of global batches) whose
        get_next gives each replica its part of the batch; with several
        workers each reads its own shard of the one stream."""
        if not self.distributed:
            return v1.data.make_initializable_iterator(dataset.prefetch(tf.data.AUTOTUNE))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.make_dataset_iterator(dataset.with_options(options))

    def local_all(self, structure):
        """Every local component of every value in a (nested) structure, flattened."""
        return [component for value in tf.nest.flatten(structure) for component in self.local(value)]

    def mean(self, value):
        """The mean of a per-replica value over all replicas."""
        return self.strategy.reduce(ReduceOp.MEAN, value, axis=None) if self.distributed else value

    def all(self, condition):
        """True on every replica: a per-replica boolean decided in cross-replica context
        (the same answer on every worker, so every worker takes the same branch)."""
        if not self.distributed:
            return condition
        as_number = self.run(lambda value: tf.cast(value, tf.float32), condition)  # booleans do not reduce
        true_count = self.strategy.reduce(ReduceOp.SUM, as_number, axis=None)
        return tf.equal(true_count, float(self.count))

    def concat(self, value):
        """This machine's replicas' batches as one batch (histograms, fetched fakes)."""
        return tf.concat(self.local(value), axis=0) if self.distributed else value

    def update(self, variable, fn, *args):
        """fn(copy, *args) on each local copy of `variable`, with that replica's part of `args`."""
        return self.strategy.extended.update(variable, fn, args=args)

    def replica_id(self):
        """Inside `run`: this replica's index among all replicas (of every worker); 0 without a strategy."""
        if not self.distributed:
            return 0
        return int(tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group))

    def global_batch(self, batch):
        """The images of one step over all replicas, from one replica's batch size (a tensor)."""
        return self.local(batch)[0] * self.count if self.distributed else batch

    def check_devices(self, session):
        """UserError unless every replica's device exists in `session`: soft
        placement would otherwise run every replica on one device, silently."""
        listed = {device.name.lower() for device in session.list_devices()}
        for device in self.devices:
            kind, index = device[1:].split(":")
            if not any(name.endswith(f"/device:{kind}:{index}") for name in listed):
                raise UserError(f"--devices: {device} is not among this session's devices "
                                f"({', '.join(sorted(listed))})")

    def session_config(self, base, worker_timeout=None):
        """`base` (tf_runtime.session_config) with the devices and cluster options these replicas need.

        With several workers every blocking op (a collective waiting for a
        worker that is gone) fails after `worker_timeout` seconds instead of
        hanging: the run then stops with one line (`worker_failures`)."""
        config = v1.ConfigProto()
        config.CopyFrom(base)
        if self.cpu_devices > 1:
            config.device_count["CPU"] = self.cpu_devices
        if self.distributed:
            config = self.strategy.update_config_proto(config)
        if self.cluster and worker_timeout:
            config.operation_timeout_in_ms = worker_timeout * 1000
        return config

    def session(self, options):
        """The training session; with several workers, on this worker's own
        tf.distribute.Server (the others' collectives reach it there)."""
        if not self.cluster:
            return v1.Session(config=options)
        spec = tf.train.ClusterSpec({"worker": list(self.cluster.workers)})
        try:
            self._server = tf.distribute.Server(spec, job_name="worker", task_index=self.cluster.index,
                                                config=options, start=True)
        except tf.errors.OpError as e:  # e.g. the port is taken
            raise UserError(f"TF_CONFIG: cannot start {self.cluster.name(self.cluster.index)}: "
                            f"{e.message.splitlines()[0]}") from None
        return v1.Session(self._server.target, config=options)

    @contextlib.contextmanager
    def worker_outputs(self, config):
        """Yields the Config whose folders this process writes: `config` itself,
        except on a worker other than the chief, whose samples, summaries and
        checkpoints (which it must save too) go to a scratch folder deleted at the end."""
        if self.is_chief:
            yield config
            return
        with tempfile.TemporaryDirectory(prefix=f"dcgan-worker{self.cluster.index}-") as scratch:
            yield dataclasses.replace(config, out_dir=scratch)

    def unreachable_workers(self):
        """The other workers whose port refuses a connection (their process is gone)."""
        gone = []
        for index, address in enumerate(self.cluster.workers):
            if index == self.cluster.index:
                continue
            host, port = address.rsplit(":", 1)
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
            except OSError:
                gone.append(self.cluster.name(index))
        return gone

    @contextlib.contextmanager
    def worker_failures(self, latest_checkpoint):
        """With several workers: a step that fails because a worker is gone (or
        silent for --worker_timeout) becomes one line naming it and the
        checkpoint a restart of every worker resumes from."""
        if not self.cluster:
            yield
            return
        try:
            yield
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                tf.errors.CancelledError, tf.errors.InternalError) as e:
            gone = self.unreachable_workers()
            who = ", ".join(gone) + " is gone" if gone else "a worker did not answer within --worker_timeout"
            raise UserError(f"{who} (TensorFlow: {type(e).__name__}); restart every worker to resume from "
                            f"{latest_checkpoint() or 'the start (nothing was saved yet)'}") from None


def build(config, tf_config=None, available_gpus=None):
    """The Replicas for `config`'s --devices / --num_replicas and the TF_CONFIG
    environment value `tf_config` (default: this process's); UserError (one line)
    for impossible requests."""
    if tf_config is None:
        tf_config = os.environ.get("TF_CONFIG", "")
    if available_gpus is None:
        available_gpus = len(tf.config.list_physical_devices("GPU"))
    cluster = cluster_from_tf_config(tf_config)
    if cluster is not None:
        if config.devices or config.num_replicas:
            raise UserError("--devices/--num_replicas apply to one machine; with TF_CONFIG each worker uses all "
                            "its GPUs (set CUDA_VISIBLE_DEVICES to choose them)")
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec({"worker": list(cluster.workers)}), task_type="worker", task_id=cluster.index,
            rpc_layer="grpc")
        communication = getattr(tf.distribute.experimental.CollectiveCommunication, config.all_reduce.upper())
        strategy = v1.distribute.experimental.MultiWorkerMirroredStrategy(communication=communication,
                                                                          cluster_resolver=resolver)
        replicas = Replicas(strategy, cluster=cluster)
        if config.fid_every:
            raise UserError("--fid_every/--keep_best run on one machine only; measure FID afterwards with --eval")
    else:
        devices = _local_devices(config, available_gpus)
        strategy = v1.distribute.MirroredStrategy(devices=devices) if devices else None
        replicas = Replicas(strategy, devices)
    if replicas.count > 1:
        for flag in ("image_pool", "mixed_precision"):
            if getattr(config, flag):
                raise UserError(f"--{flag} is not available with {replicas.count} replicas (its state is one "
                                "device's); train without it or on one device")
    if config.batch_size % replicas.count:
        nearest = replicas.count * max(1, round(config.batch_size / replicas.count))
        raise UserError(f"--batch_size {config.batch_size} (the global batch) must be divisible by the "
                        f"{replicas.count} replicas; e.g. --batch_size {nearest}")
    return replicas
