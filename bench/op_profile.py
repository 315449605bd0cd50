"""Where a training step's time goes, by op type: a full trace of bench.throughput's step on a constant batch.

    .venv/bin/python -m bench.op_profile [--kernel_size 4] [--bfloat16] [--steps 3]

Runs the project's 64x64 step (the default step plan, as bench.throughput times it) with
`RunOptions(trace_level=FULL_TRACE)` after two warm-up steps, and sums each executed node's time
(`all_end_rel_micros` of the trace's step_stats) by op type over --steps traced steps.  With two cores the
ops overlap, so the shares are of summed op time, not of the wall clock; they say which kinds of op the
step spends its compute on (the convolutions' share against casts, BatchNorm, activations and Adam).
"""

import argparse
import collections
import os
import time

from bench import harness, throughput

# Op types grouped as the performance notes discuss them; anything else is reported under its own name.
GROUPS = {
    "convolutions and matmuls": ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MatMul", "_MklConv2D",
                                 "_MklNativeConv2D", "_MklNativeConv2DBackpropInput", "_MklNativeConv2DBackpropFilter",
                                 "_MklMatMul", "_MklNativeMatMul", "_MklNativeConv2DWithBias", "BatchMatMulV2"),
    "casts": ("Cast",),
    "BatchNorm": ("FusedBatchNormV3", "FusedBatchNormGradV3", "_MklNativeFusedBatchNormV3",
                  "_MklNativeFusedBatchNormGradV3", "_MklFusedBatchNormV3", "_MklFusedBatchNormGradV3"),
    "activations": ("LeakyRelu", "LeakyReluGrad", "Relu", "ReluGrad", "Tanh", "TanhGrad", "Sigmoid",
                    "_MklLeakyRelu", "_MklLeakyReluGrad", "_MklRelu", "_MklReluGrad"),
    "Adam and G's average": ("ResourceApplyAdam", "ApplyAdam", "AssignSubVariableOp", "AssignVariableOp",
                             "ResourceApplyAdamWithAmsgrad", "_MklNativeApplyAdam"),
    "bias adds": ("BiasAdd", "BiasAddGrad", "_MklNativeBiasAdd"),
}


def group_of(op_type):
    return next((group for group, types in GROUPS.items() if op_type in types), op_type)


def traced_op_micros(config, steps):
    """({op type: summed microseconds}, {node name: summed microseconds}) over `steps` traced steps, and the
    steps' wall seconds."""
    from runtime.tf_runtime import tf

    v1 = tf.compat.v1
    step = throughput.build_project_step(config)
    totals, nodes = collections.Counter(), collections.Counter()
    with v1.Session(graph=step.graph, config=throughput._session_options(config, {})) as session:
        session.run(step.model.initializer)
        for _ in range(2):
            for fetches in step.fetches:
                session.run(fetches)
        start = time.perf_counter()
        for _ in range(steps):
            for fetches in step.fetches:
                metadata = v1.RunMetadata()
                session.run(fetches, options=v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE),
                            run_metadata=metadata)
                for device in metadata.step_stats.dev_stats:
                    for node in device.node_stats:
                        op_type = node.timeline_label.split("(", 1)[0].split(" = ")[-1] or node.node_name
                        totals[op_type] += node.all_end_rel_micros
                        nodes[node.node_name] += node.all_end_rel_micros
        wall = time.perf_counter() - start
    return totals, nodes, wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel_size", type=int, default=5, choices=(4, 5))
    parser.add_argument("--bfloat16", action="store_true")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    config = throughput.project_config(dataset="celebA", c_dim=3, kernel_size=args.kernel_size,
                                       bfloat16=args.bfloat16)
    totals, nodes, wall = traced_op_micros(config, args.steps)
    model, _ = harness.cpu_description()
    print(f"{model}; 64x64, {args.kernel_size}x{args.kernel_size}, {config.precision}; {args.steps} traced steps, "
          f"{wall / args.steps:.2f} s per traced step")
    grouped = collections.Counter()
    for op_type, micros in totals.items():
        grouped[group_of(op_type)] += micros
    total = sum(grouped.values())
    print(harness.table_header(["op type (or group)", "ms per step, summed over threads", "share"], "lrr"))
    for name, micros in grouped.most_common(15):
        print(harness.table_row([name, f"{micros / 1000 / args.steps:.1f}", f"{100 * micros / total:.1f}%"]))
    detail = [(op, m) for op, m in totals.most_common() if group_of(op) == "convolutions and matmuls"]
    print("\nconvolution and matmul ops as executed: " + ", ".join(f"{op} {100 * m / total:.1f}%" for op, m in detail))
    print("\nslowest nodes: " + ", ".join(f"{name} {100 * m / total:.1f}%" for name, m in nodes.most_common(10)))


if __name__ == "__main__":
    main()
