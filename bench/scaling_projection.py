"""Projected data-parallel scaling on GPUs: a paper estimate, not a measurement.

No GPU is reachable where this project is developed, so the multi-GPU figures
of docs/scaling.md are computed, from two counted quantities and stated
assumptions:

* counted: the FLOPs of one step per replica (bench.flops' per-layer
  count, checked against TensorFlow's profiler by tests/test_flops.py) and the
  gradient bytes each network all-reduces per update (the float32 sizes of the
  trainable variables of the project's own graph, built here);
* assumed (flags, printed with the table): a GPU's sustained fp32 rate, the
  ring all-reduce bandwidth inside a node (NVLink) and between nodes (100 Gb/s),
  and a per-message latency.

The step also all-reduces a few scalars per run (the finite-update decision
and the logged means), each costing an all-reduce's latency.

Weak scaling: every GPU keeps --per_gpu_batch images, the global batch grows
with the GPU count.  A step is its compute plus its all-reduces (training/train.py's
graph does not overlap them: each network's gradients are reduced when its
update is applied, after its backward pass).  One all-reduce of B bytes over
n GPUs in a ring moves 2 (n-1)/n x B per GPU; on 64 GPUs (8 nodes of 8) it is
hierarchical: reduce-scatter in the node over NVLink, the node's 1/8 shard
all-reduced between nodes by each of its 8 GPUs over the node's one link
(so the link carries 2 (m-1)/m x B for m nodes), all-gather in the node.

    python -m bench.scaling_projection [--gpu_tflops 19.5 --utilization 0.5 ...]
"""

import argparse

from bench import flops, harness

GPUS_PER_NODE = 8


def graph_figures(config):
    """From the project's graph: {"G": bytes, "D": bytes}, the float32 trainable variables each
    network all-reduces per update, and {"d": n, "g": n}, the scalar all-reduces of each run (the
    cross-replica finite decision, and the mean of every logged scalar but the applied flag)."""
    import numpy as np

    import model
    from runtime.tf_runtime import tf
    from training import updates

    with tf.Graph().as_default():
        images = tf.zeros([config.batch_size, config.output_height, config.output_width, config.c_dim])
        labels = tf.zeros([config.batch_size], tf.int64) if config.conditional else None
        gan = model.DCGAN(config, images, labels)
        sizes = {name: 4 * sum(int(np.prod(v.shape)) for v in updates.scope_variables(scope))
                 for name, scope in (("G", model.GENERATOR_SCOPE), ("D", model.DISCRIMINATOR_SCOPE))}
        return sizes, {"d": len(gan.d_fetches), "g": len(gan.g_fetches)}


def ring_seconds(size, gpus, bytes_per_second, latency):
    """One ring all-reduce of `size` bytes over `gpus` participants."""
    if gpus == 1:
        return 0.0
    return 2 * (gpus - 1) / gpus * size / bytes_per_second + 2 * (gpus - 1) * latency


def allreduce_seconds(size, gpus, args):
    """One all-reduce on `gpus` GPUs: NVLink ring inside a node, hierarchical across nodes."""
    nvlink, network = args.nvlink_gbytes * 1e9, args.network_gbits * 1e9 / 8
    if gpus <= GPUS_PER_NODE:
        return ring_seconds(size, gpus, nvlink, args.nvlink_latency_us * 1e-6)
    nodes = gpus // GPUS_PER_NODE
    # A ring all-reduce is a reduce-scatter then an all-gather: the same time as a ring inside the node.
    inside = ring_seconds(size, GPUS_PER_NODE, nvlink, args.nvlink_latency_us * 1e-6)
    # The node's 8 shards, B/8 each, cross the node's one link at once: 2 (m-1)/m x B through it.
    between = ring_seconds(size, nodes, network, args.network_latency_us * 1e-6)
    return inside + between


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per_gpu_batch", type=int, default=64)
    parser.add_argument("--gpu_tflops", type=float, default=19.5, help="A100 SXM4 fp32 peak (NVIDIA's figure)")
    parser.add_argument("--utilization", type=float, default=0.5, help="assumed fraction of the peak sustained")
    parser.add_argument("--nvlink_gbytes", type=float, default=200.0,
                        help="assumed ring all-reduce bus bandwidth per GPU inside a node, GB/s")
    parser.add_argument("--network_gbits", type=float, default=100.0, help="link per node between nodes, Gb/s")
    parser.add_argument("--nvlink_latency_us", type=float, default=10.0)
    parser.add_argument("--network_latency_us", type=float, default=30.0)
    parser.add_argument("--gpus", default="1,8,64")
    args = parser.parse_args()

    import config as config_lib

    config = config_lib.resolve(config_lib.Config(dataset="celebA", c_dim=3, batch_size=args.per_gpu_batch))
    runs = ["d"] * config.d_steps + ["g"] * config.g_steps  # training/train.py's default step plan (1 D + 2 G)
    step_flops = sum(flops.step_layer_flops(config, runs).values())
    sizes, scalars = graph_figures(config)
    reductions = [sizes["D"]] * config.d_steps + [sizes["G"]] * config.g_steps  # one per applied update
    # The scalars (4 bytes each) cost their latency only, but one all-reduce each.
    reductions += [4] * (scalars["d"] * config.d_steps + scalars["g"] * config.g_steps)
    compute = step_flops / (args.gpu_tflops * 1e12 * args.utilization)

    print(f"CelebA 64x64 DCGAN (carpedm20 widths, 5x5 kernels), default step: {config.d_steps} D + "
          f"{config.g_steps} G updates; per GPU batch {args.per_gpu_batch}")
    print(f"counted: {step_flops / 1e9:.1f} GFLOP per step per GPU; gradients G {sizes['G'] / 1e6:.2f} MB, "
          f"D {sizes['D'] / 1e6:.2f} MB per update; {scalars['d']} + {scalars['g']} scalar all-reduces per D + G run")
    print(f"assumed: {args.gpu_tflops} TFLOP/s x {args.utilization:.0%} sustained = {compute * 1e3:.1f} ms compute "
          f"per step; NVLink {args.nvlink_gbytes:g} GB/s, {args.nvlink_latency_us:g} us; between nodes "
          f"{args.network_gbits:g} Gb/s, {args.network_latency_us:g} us; {GPUS_PER_NODE} GPUs per node")
    print()
    print(harness.table_header(["GPUs", "nodes", "global batch", "compute ms/step", "all-reduce ms/step",
                                "all-reduce share", "projected img/s", "scaling efficiency"], "r" * 8))
    base = None
    for gpus in (int(g) for g in args.gpus.split(",")):
        communication = sum(allreduce_seconds(size, gpus, args) for size in reductions)
        step = compute + communication
        images_per_second = gpus * args.per_gpu_batch / step
        base = base or images_per_second / gpus
        print(harness.table_row([gpus, max(1, gpus // GPUS_PER_NODE), gpus * args.per_gpu_batch, f"{compute * 1e3:.1f}",
                                 f"{communication * 1e3:.2f}", f"{communication / step:.1%}",
                                 f"{images_per_second:,.0f}", f"{images_per_second / (gpus * base):.0%}"]))


if __name__ == "__main__":
    main()
