"""bench/flops.py's per-layer FLOP count against tf.compat.v1.profiler on the project's own step graph."""

import pytest
from conftest import tiny_config

from bench import flops
from bench.throughput import build_project_step


def test_forward_flops_of_a_layer_by_hand(tmp_path):
    config = tiny_config(tmp_path, dataset="celebA", c_dim=3, kernel_size=4)
    by_name = {layer.name: layer for layer in flops.layers(config)}
    # d_h1_conv: 4x4 kernel, 4 -> 8 channels, 16x16 input strided to 8x8... 16 >> 2 = 4x4 output.
    assert by_name["d_h1_conv"].forward_flops == 2 * 4 * 4 * 4 * 8 * 4 * 4
    # g_h4: 5x5 would differ; 4x4 kernel, 4 -> 3 channels, from 8x8 to 16x16 (the small side is 8x8).
    assert by_name["g_h4"].forward_flops == 2 * 4 * 4 * 4 * 3 * 8 * 8
    assert by_name["g_h0_lin"].forward_flops == 2 * 8 * (4 * 8 * 1 * 1)


def test_step_counts_each_pass_by_its_rule(tmp_path):
    config = tiny_config(tmp_path, dataset="celebA", c_dim=3)
    forward = {layer.name: layer.forward_flops * config.batch_size for layer in flops.layers(config)}
    counts = flops.step_layer_flops(config, ["d", "g"])
    # D trained on real and fake (no input gradient on the first layer), then G's loss through D (no weights).
    assert counts["d_h0_conv"] == (2 + 2 + 2) * forward["d_h0_conv"]
    assert counts["d_h1_conv"] == (3 + 3 + 2) * forward["d_h1_conv"]
    assert counts["g_h1"] == (1 + 3) * forward["g_h1"]  # G forward for D's batch, then trained
    assert counts["g_h0_lin"] == (1 + 2) * forward["g_h0_lin"]  # z needs no gradient
    built = flops.step_layer_flops(config, ["d", "g"], built=True)
    assert built["d_h0_conv"] == (3 + 3 + 3) * forward["d_h0_conv"]
    torch_counts = flops.step_layer_flops(config, ["torch"])
    assert torch_counts["d_h0_conv"] == (2 + 2 + 3) * forward["d_h0_conv"]
    assert torch_counts["g_h0_lin"] == 2 * forward["g_h0_lin"]


@pytest.mark.parametrize("overrides", [
    dict(dataset="celebA", c_dim=3, kernel_size=4, fused_update=True, g_steps=1),
    dict(dataset="celebA", c_dim=3, g_steps=2, fused_update=False),  # carpedm20: 1 D + 2 G, separate runs, 5x5
    dict(fused_update=True, d_steps=2, minibatch_stddev=True),  # conditional MNIST model
])
def test_counter_matches_profiler_on_the_project_step(tmp_path, overrides):
    config = tiny_config(tmp_path, **overrides)
    step = build_project_step(config)
    built = flops.step_layer_flops(config, step.runs, built=True)
    profiled = flops.profiler_layer_flops(step.graph, step.fetches)
    assert set(profiled) == {layer.name for layer in flops.layers(config)}
    assert built == profiled
    assert all(value > 0 for value in built.values())


@pytest.mark.parametrize("overrides", [
    dict(dataset="celebA", c_dim=3, kernel_size=4, fused_update=True, g_steps=1),
    dict(dataset="celebA", c_dim=3, g_steps=2, fused_update=False),
    dict(fused_update=True, d_steps=2),
])
def test_executed_count_matches_what_a_traced_step_runs(tmp_path, overrides):
    """Grappler prunes the backward products no fetch consumes: the ops a traced step executes add up
    to the executed count, less than the built graph's."""
    from runtime.tf_runtime import session_config, tf

    config = tiny_config(tmp_path, **overrides)
    step = build_project_step(config)
    with step.graph.as_default():
        initializers = [tf.compat.v1.global_variables_initializer(), tf.compat.v1.local_variables_initializer()]
    with tf.compat.v1.Session(graph=step.graph, config=session_config(False)) as session:
        session.run(initializers)
        executed = flops.executed_op_names(session, step.fetches)
    traced = flops.profiler_layer_flops(step.graph, step.fetches, executed)
    counted = flops.step_layer_flops(config, step.runs)
    assert traced == counted
    assert sum(counted.values()) < sum(flops.step_layer_flops(config, step.runs, built=True).values())
