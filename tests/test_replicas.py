"""Synchronous data parallelism (training/replicas.py) on 2 CPU devices of one process."""

import dataclasses
import re

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

import model
import ops
from runtime.errors import UserError
from runtime.tf_runtime import session_config
from training import random_streams, train, updates
from training import replicas as replicas_lib

v1 = tf.compat.v1
TWO_CPUS = "/cpu:0,/cpu:1"
SHARD = 2  # images per replica in the equivalence test; the global batch is 4
BIASES_BEFORE_BATCHNORM = ("discriminator/d_h1_conv/b", "discriminator/d_h2_lin/b", "generator/g_h0_lin/b",
                           "generator/g_h1_lin/b", "generator/g_h2/b")  # the conditional DCGAN's


def two_cpu_session(replicas, graph):
    """A session with 2 CPU devices, refusing to run if the second is not really there."""
    session = v1.Session(graph=graph, config=replicas.session_config(session_config()))
    names = [device.name for device in session.list_devices()]
    assert any(name.endswith("/device:CPU:1") for name in names), names
    replicas.check_devices(session)
    return session


def shard_batches(steps, config):
    """Per step, a global batch made of 2 identical shards (so both replicas see what one
    device sees in each half) with labels, as a tf.data stream."""
    rng = np.random.RandomState(0)
    shards = rng.uniform(-1, 1, (steps, SHARD, config.output_height, config.output_width, 1)).astype(np.float32)
    # Two different classes per shard: a label column equal to 1 on every image of a batch would
    # have a zero gradient behind BatchNorm, and Adam would turn its float rounding into updates.
    first = rng.randint(0, config.y_dim, (steps, 1))
    labels = ((first + np.arange(SHARD)) % config.y_dim).astype(np.int64)
    return tf.data.Dataset.from_tensor_slices((np.concatenate([shards, shards], axis=1),
                                               np.concatenate([labels, labels], axis=1)))


def z_from_shards(self, batch, config):
    """random_streams.RandomStreams.z for the equivalence test: one shard's z, repeated to the batch, so the
    global fake batch is also 2 identical shards (a replica's batch is one of them)."""
    shard = self.uniform([SHARD, config.z_dim], -1.0, 1.0)
    return tf.tile(shard, [batch // SHARD, 1])


def train_steps(config, devices, steps, initial_checkpoint, final_checkpoint):
    """Builds the training graph on `devices` ("" = one device, no strategy), starts from
    `initial_checkpoint` (written here if absent), runs the training loop's plan
    (train.step_plan) for `steps` steps and saves to `final_checkpoint`.  Returns the
    devices ops were placed on, the images seen, and {moving variance: the values per channel
    its replica's batch statistics had}."""
    replicas = replicas_lib.build(dataclasses.replace(config, devices=devices), tf_config="", available_gpus=0)
    with tf.Graph().as_default() as graph:
        iterator = replicas.iterator(shard_batches(steps, config))
        images, labels = iterator.get_next()
        gan = model.DCGAN(config, images, labels, replicas, noise_per_replica=False)
        placed = {op.device for op in graph.get_operations()}
        counts = {}
        for op in graph.get_operations():
            layer = re.fullmatch(r"generator(?:_\d+)?/(\w+)/FusedBatchNormV3", op.name)
            if layer:
                height, width = op.inputs[0].shape[1:3]
                per_replica = config.batch_size // replicas.count
                counts[f"generator/{layer.group(1)}/moving_variance"] = per_replica * height * width
        with (two_cpu_session(replicas, graph) if replicas.distributed
              else v1.Session(config=session_config())) as session:
            session.run([gan.initializer, iterator.initializer])
            if initial_checkpoint.with_suffix(".index").exists():
                gan.saver.restore(session, str(initial_checkpoint))
            else:
                gan.saver.save(session, str(initial_checkpoint), write_meta_graph=False, write_state=False)
            plan = train.step_plan(config, gan)
            for _ in range(steps):
                for fetches, _summary in plan:
                    results = session.run(fetches)
                    assert all(results[key] for key in ("d_applied", "g_applied") if key in results)
                session.run(gan.advance_step)
            gan.saver.save(session, str(final_checkpoint), write_meta_graph=False, write_state=False)
            images_seen = session.run(gan.images_seen)
    return placed, images_seen, counts


def checkpoint_tensors(path):
    reader = tf.train.load_checkpoint(str(path))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def without_bessel_correction(value, count, updates, momentum):
    """A moving variance of fused_batch_norm with the n/(n-1) factor on its batch variances taken out.

    Starting from 1, after `updates` updates it is momentum^updates + c x S, with S the same for
    any replica count when every replica sees the same statistics; only c = n/(n-1) depends on the
    replica's n values per channel (twice as many on one device as on each of 2 replicas)."""
    return (value - momentum ** updates) * (count - 1) / count


@pytest.mark.parametrize("schedule", [{"fused_update": True, "g_steps": 1},  # the default
                                      {"fused_update": False, "g_steps": 2}],  # carpedm20's D, G, G
                         ids=["fused", "separate"])
def test_two_replicas_at_global_batch_b_equal_one_device_at_b(tmp_path, monkeypatch, schedule):
    monkeypatch.setattr(random_streams.RandomStreams, "z", z_from_shards)
    # Adam turns the float rounding of a zero gradient (a bias feeding BatchNorm has one) into an
    # update of up to learning_rate x |g| / epsilon, 2e-5 in one step at the default 2e-4: the rate
    # is lowered so that this noise, which any change of summation order makes, stays under 1e-5.
    config = tiny_config(tmp_path, batch_size=2 * SHARD, learning_rate=1e-5, **schedule)
    steps = 3
    one_placed, one_seen, one_counts = train_steps(config, "", steps, tmp_path / "initial", tmp_path / "one")
    two_placed, two_seen, two_counts = train_steps(config, TWO_CPUS, steps, tmp_path / "initial", tmp_path / "two")
    assert any(device.endswith("CPU:1") for device in two_placed)  # the second replica really is on cpu:1
    assert not any(device.endswith("CPU:1") for device in one_placed)
    assert one_seen == two_seen == steps * 2 * SHARD
    assert set(one_counts) == set(two_counts) and one_counts  # the convolutional layers' BatchNorm

    initial, one, two = (checkpoint_tensors(tmp_path / name) for name in ("initial", "one", "two"))
    assert set(one) == set(two) == set(initial)
    assert any("moving_mean" in name for name in one)  # BatchNorm averages are in the comparison
    moved = [name for name in one if np.issubdtype(one[name].dtype, np.floating)
             and not np.array_equal(one[name], initial[name])]
    assert len(moved) > len(one) // 2  # training changed most tensors: the comparison is not vacuous
    updates = steps * config.g_steps  # G's BatchNorm averages move once per G update, fused or not
    for name, count in one_counts.items():
        one[name] = without_bessel_correction(one[name], count, updates, config.bn_momentum)
        two[name] = without_bessel_correction(two[name], two_counts[name], updates, config.bn_momentum)
    # A bias that feeds BatchNorm (networks/dcgan.py: these layers) does nothing, BatchNorm subtracts
    # it: its gradient is zero but for rounding, which Adam scales up to a step of about the learning
    # rate in a random direction.  Both runs keep it within those steps; it is not compared further.
    for name in BIASES_BEFORE_BATCHNORM:
        assert name in one and np.abs(one.pop(name)).max() <= 4 * steps * config.learning_rate, name
        assert np.abs(two.pop(name)).max() <= 4 * steps * config.learning_rate, name
    # Each tensor as a whole within 1e-3 of its norm (plus 1e-5): oneDNN's multi-threaded kernels do not
    # sum in the same order from one run to the next, and on a loaded machine identical runs were seen to
    # differ by up to 1% in a few elements of 7,350 (elementwise 1e-4 tolerances failed one run in five),
    # a relative difference of the whole tensor of about 1e-4.  A summed instead of averaged gradient, or a
    # replica's gradient missing, would double or halve the moments: a difference of about 0.5.
    for name in sorted(one):
        difference, scale = np.linalg.norm(two[name] - one[name]), np.linalg.norm(one[name])
        assert difference <= 1e-3 * scale + 1e-5, f"{name}: |two - one| {difference:.3g}, |one| {scale:.3g}"


def test_batchnorm_statistics_are_per_replica_and_its_averages_the_mean_of_the_replicas(tmp_path):
    replicas = replicas_lib.build(tiny_config(tmp_path, devices=TWO_CPUS), tf_config="", available_gpus=0)
    rng = np.random.RandomState(0)
    halves = [rng.normal(3.0, 1.0, (2, 2, 2, 1)).astype(np.float32),
              rng.normal(-5.0, 2.0, (2, 2, 2, 1)).astype(np.float32)]
    with tf.Graph().as_default() as graph:
        batch = tf.data.Dataset.from_tensors(np.concatenate(halves)).repeat()
        iterator = replicas.iterator(batch)

        def normalize(x):
            with updates.collected_updates() as registered:
                y = ops.batch_norm(x, is_training=True, name="bn")
            with tf.control_dependencies(ops.moving_average_assignments(registered)):
                return tf.identity(y)

        with replicas.scope():
            outputs = replicas.local(replicas.run(normalize, iterator.get_next()))
            moving_mean = [v for v in v1.global_variables() if "moving_mean" in v.name][0]
            read_mean = tf.convert_to_tensor(moving_mean)
        with two_cpu_session(replicas, graph) as session:
            session.run([v1.global_variables_initializer(), iterator.initializer])
            normalized = session.run(outputs)
            saved_mean = session.run(read_mean)
    for half, out in zip(halves, normalized, strict=True):
        # each replica normalised with its own half's statistics
        np.testing.assert_allclose(out, (half - half.mean()) / np.sqrt(half.var() + 1e-5), atol=1e-4)
    # read outside the replicas: the mean of the replicas' averages, 0.1 x (mean of the two half means)
    np.testing.assert_allclose(saved_mean, [0.1 * np.mean([h.mean() for h in halves])], rtol=1e-5)


@pytest.mark.parametrize("overrides, message", [
    ({"num_replicas": 2}, "--num_replicas 2: this machine has 0 GPU"),
    ({"devices": "/gpu:0,/gpu:1"}, "--devices /gpu:0,/gpu:1: this machine has 0 GPU(s), so /gpu:0 does not exist"),
    ({"devices": TWO_CPUS, "batch_size": 5}, "--batch_size 5 (the global batch) must be divisible by the 2 replicas"),
    ({"devices": TWO_CPUS, "num_replicas": 3}, "--num_replicas 3 but --devices lists 2"),
    ({"devices": TWO_CPUS, "image_pool": 8}, "--image_pool is not available with 2 replicas"),
])
def test_impossible_replica_requests_are_one_line(tmp_path, overrides, message):
    with pytest.raises(UserError) as error:
        replicas_lib.build(tiny_config(tmp_path, **overrides), tf_config="", available_gpus=0)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("devices, message", [
    ("/tpu:0", "--devices: '/tpu:0' is not a device"),
    ("/cpu:0,/CPU:0", "a device is listed twice"),
])
def test_bad_device_lists_are_one_line(tmp_path, devices, message):
    with pytest.raises(UserError, match=message):
        tiny_config(tmp_path, devices=devices)


def test_one_device_builds_no_strategy(tmp_path):
    replicas = replicas_lib.build(tiny_config(tmp_path), tf_config="", available_gpus=0)
    assert not replicas.distributed and replicas.count == 1 and replicas.describe() == "1 device"
