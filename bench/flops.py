"""FLOPs of one training step, counted per layer from the architecture, and the
same count read from `tf.compat.v1.profiler` to check it.

Only convolutions, transposed convolutions and matmuls are counted (they are
>99% of the arithmetic; BatchNorm, activations, Adam are left out).  A layer's
forward pass costs 2 x multiply-adds per image: 2*k*k*C_in*C_out*H*W with H, W
the smaller (strided) side of the layer for a conv or a transposed conv, and
2*in*out for a linear layer.  Its two backward products (input gradient,
weight gradient) cost one forward each.  A pass of a network is one of:

  forward  G making the fake batch of D's separate update         1x forward
  train    the network the loss updates: forward, weight gradient, input
           gradient except on the first layer (its input, the real batch,
           the detached fake or z, needs none)                     3x, 2x first layer
  through  D in G's update: forward and input gradients only (D's
           weights are not updated by G's loss)                    2x
  through_with_weights  the same in PyTorch, whose autograd also computes
           D's weight gradients in G's step (they are zeroed
           before D's next update)                                 3x

That is what runs.  What TensorFlow *builds* is more: `compute_gradients`
makes both backward products of every layer (3x everywhere), and Grappler
prunes the ones no fetch consumes before the step runs (checked from a run's
trace in `tests/test_flops.py`).  `step_layer_flops(..., built=True)` counts
the built graph, which is what `tf.compat.v1.profiler` reads, to check the
per-layer arithmetic against it; the executed count is the one for GFLOP/s.

A run of the training loop is a list of passes (`RUN_PASSES`); one step is
the runs of training/train.py's step plan.
"""

import dataclasses
import re

RUN_PASSES = {
    # model.d_fetches: G forward for the fake batch, D trained on the real and the fake batch.
    "d": (("G", "forward"), ("D", "train"), ("D", "train")),
    # model.g_fetches: G trained through D on a fresh fake batch.
    "g": (("G", "train"), ("D", "through")),
    # model.fused_fetches: one G forward; D trained on it; G trained through the updated D on it.
    "fused": (("G", "train"), ("D", "train"), ("D", "train"), ("D", "through")),
    # pytorch/examples dcgan step: D on real, D on fake.detach(), then G (from z) through the updated D.
    "torch": (("G", "train"), ("D", "train"), ("D", "train"), ("D", "through_with_weights")),
}
COUNTED_OP_TYPES = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MatMul")
# A layer's ops, forward and gradient, have its scope in their names, e.g.
# "gradients_1/generator_1/g_h1/conv2d_transpose_grad/Conv2D" belongs to g_h1.
_LAYER_IN_NAME = re.compile(r"(?:^|/)(?:generator|discriminator)(?:_\d+)?/([^/]+)/")


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    network: str  # "G" or "D"
    forward_flops: int  # per image


def _conv(name, network, kernel, c_in, c_out, small_h, small_w):
    return Layer(name, network, 2 * kernel * kernel * c_in * c_out * small_h * small_w)


def _linear(name, network, n_in, n_out):
    return Layer(name, network, 2 * n_in * n_out)


def layers(config):
    """The conv/deconv/linear layers of `networks/dcgan.py` for a resolved Config, in forward order per network."""
    k = getattr(config, "kernel_size", 5)
    h, w, gf, df, c, y = (config.output_height, config.output_width, config.gf_dim, config.df_dim,
                          config.c_dim, config.y_dim)
    stddev_channel = 1 if getattr(config, "minibatch_stddev", False) else 0
    if not y:
        g = [_linear("g_h0_lin", "G", config.z_dim, gf * 8 * (h // 16) * (w // 16))]
        widths = (gf * 8, gf * 4, gf * 2, gf, c)
        g += [_conv(f"g_h{i}", "G", k, widths[i - 1], widths[i], h >> (5 - i), w >> (5 - i)) for i in range(1, 5)]
        widths = (c, df, df * 2, df * 4, df * 8)
        d = [_conv(f"d_h{i}_conv", "D", k, widths[i], widths[i + 1], h >> (i + 1), w >> (i + 1)) for i in range(4)]
        d += [_linear("d_h4_lin", "D", (h // 16) * (w // 16) * (df * 8 + stddev_channel), 1)]
        return g + d
    g = [_linear("g_h0_lin", "G", config.z_dim + y, config.gfc_dim),
         _linear("g_h1_lin", "G", config.gfc_dim + y, gf * 2 * (h // 4) * (w // 4)),
         _conv("g_h2", "G", k, gf * 2 + y, gf * 2, h // 4, w // 4),
         _conv("g_h3", "G", k, gf * 2 + y, c, h // 2, w // 2)]
    d = [_conv("d_h0_conv", "D", k, c + y, c + y, h // 2, w // 2),
         _conv("d_h1_conv", "D", k, c + 2 * y, df + y, h // 4, w // 4),
         _linear("d_h2_lin", "D", (h // 4) * (w // 4) * (df + y + stddev_channel) + y, config.dfc_dim),
         _linear("d_h3_lin", "D", config.dfc_dim + y, 1)]
    return g + d


def _products(mode, first_layer, built):
    """Forward-pass equivalents one layer costs in a pass: the forward, plus each backward product run."""
    if mode == "forward":
        return 1
    if built or mode == "through_with_weights":
        return 3
    input_gradient = 0 if mode == "train" and first_layer else 1
    weight_gradient = 1 if mode == "train" else 0
    return 1 + input_gradient + weight_gradient


def step_layer_flops(config, runs, built=False):
    """{layer name: FLOPs} of one step made of `runs` (keys of RUN_PASSES), for the whole batch: the
    products that run, or with `built` every product TensorFlow's gradient builds (the profiler's view)."""
    all_layers = layers(config)
    counts = {layer.name: 0 for layer in all_layers}
    for run in runs:
        for network, mode in RUN_PASSES[run]:
            net_layers = [layer for layer in all_layers if layer.network == network]
            for index, layer in enumerate(net_layers):
                counts[layer.name] += _products(mode, index == 0, built) * layer.forward_flops * config.batch_size
    return counts


def _ops_run_by(fetches):
    """Every op a session.run of `fetches` executes: the transitive inputs and control inputs."""
    import tensorflow as tf

    pending = [f.op if hasattr(f, "op") else f for f in tf.nest.flatten(fetches)]
    seen = set()
    while pending:
        op = pending.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        pending += [t.op for t in op.inputs] + list(op.control_inputs)
    return seen


def executed_op_names(session, fetches_per_run):
    """Names of the ops a traced `session.run` of each fetch executed (after Grappler's pruning).

    oneDNN's layout pass fuses some forward ops (a Conv2D with its BiasAdd) under new names, so a
    forward op can be missing from the trace though it ran; gradient ops keep their names."""
    import tensorflow as tf

    v1 = tf.compat.v1
    names = []
    for fetches in fetches_per_run:
        metadata = v1.RunMetadata()
        session.run(fetches, options=v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE), run_metadata=metadata)
        names.append({node.node_name.split(":")[0] for device in metadata.step_stats.dev_stats
                      for node in device.node_stats})
    return names


def profiler_layer_flops(graph, fetches_per_run, executed=None):
    """{layer name: FLOPs} by `tf.compat.v1.profiler` float_ops of the counted op types, summed over
    the ops each run of `fetches_per_run` reaches (an op run twice counts twice): the built graph.

    With `executed` (executed_op_names of the same runs) a gradient op counts only if it ran, so the
    sum is what the step computes once Grappler has pruned the backward products no fetch consumes.
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    options = (v1.profiler.ProfileOptionBuilder(v1.profiler.ProfileOptionBuilder.float_operation())
               .with_empty_output().build())
    root = v1.profiler.profile(graph, cmd="scope", options=options)
    float_ops, pending = {}, list(root.children)
    while pending:
        node = pending.pop()
        float_ops[node.name] = node.float_ops
        pending += list(node.children)
    counts = {}
    for run, fetches in enumerate(fetches_per_run):
        for name in _ops_run_by(fetches):
            match = _LAYER_IN_NAME.search(name)
            pruned = executed is not None and name.startswith("gradients") and name not in executed[run]
            if match and not pruned and graph.get_operation_by_name(name).type in COUNTED_OP_TYPES:
                counts[match.group(1)] = counts.get(match.group(1), 0) + float_ops.get(name, 0)
    return counts
