"""Training-step throughput: this project against a PyTorch DCGAN of the same architecture, and the machine's limit.

    .venv/bin/python -m bench.throughput [--rounds 3] [--steps 8] [--warmup 3]
    .venv/bin/python -m bench.throughput --extras   # threads, XLA, remapper, summary/sample-grid cost

The PyTorch contender needs its own venv (never a project dependency):
    python3 -m venv .venv-bench && .venv-bench/bin/pip install -r bench/requirements-bench.txt
Without it the torch rows say so and the rest still runs.

Every contender runs in its own process (TF_ENABLE_ONEDNN_OPTS=1), one after
the other within a round, the order reversed every other round; a figure is the
median over rounds with the min-max, and a ratio "vs torch" is taken within
each round, so load from other processes on the machine hits both sides.  The
project's step is `build_project_step`: `model.DCGAN` on a constant in-graph
batch, running exactly the runs of training/train.py's step plan, without summaries
(their cost is in --extras).  FLOPs per step come from bench.flops'
per-layer count, checked here against tf.compat.v1.profiler on the same graph.
"""

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import types

from bench import harness

MATMUL_SIZE = 2048

# Published dense peaks for the GPU projection (NVIDIA A100 SXM4 datasheet, TFLOP/s, no sparsity).
GPU_NAME = "NVIDIA A100 SXM4 40GB"
GPU_PEAK_TFLOPS = {"float32": 19.5, "tf32": 156.0, "bfloat16": 312.0}

REFERENCE = dict(fused_update=True, g_steps=1)  # pytorch/examples semantics: 1 D + 1 G, one G forward
SETTINGS = {  # name -> Config fields shared by its contenders
    "64x64, 4x4 kernels": dict(dataset="celebA", c_dim=3, kernel_size=4),
    "64x64, 5x5 kernels": dict(dataset="celebA", c_dim=3, kernel_size=5),
    "28x28 MNIST (conditional)": dict(dataset="mnist"),
}
CONTENDERS = [  # (label, switches); "torch" runs bench.torch_dcgan
    ("project, 1 D + 1 G fused (reference semantics), fp32", REFERENCE),
    ("project, 1 D + 1 G fused, bfloat16 rewrite", dict(REFERENCE, bfloat16=True)),
    ("project, carpedm20 schedule (1 D + 2 G, separate runs), fp32", dict(fused_update=False, g_steps=2)),
    ("PyTorch reference (bench/torch_dcgan.py), fp32", "torch"),
]
EXTRAS = [  # (label, switches, session/env variations) on the 64x64 4x4 reference-semantics step
    ("baseline: threads from TF (intra 0, inter 0), remapper off", {}),
    ("intra 2, inter 1", dict(intra=2, inter=1)),
    ("intra 1, inter 1", dict(intra=1, inter=1)),
    ("--xla (session global_jit_level only)", dict(xla=True)),
    ("--xla + TF_XLA_FLAGS=--tf_xla_cpu_global_jit", dict(xla=True, env={"TF_XLA_FLAGS": "--tf_xla_cpu_global_jit"})),
    ("remapper on, LeakyReLU as tf.nn.leaky_relu (ops.py)", dict(remapper=True)),
    ("remapper on, LeakyReLU as maximum(x, 0.2x) (bench-only patch)", dict(remapper=True, lrelu="maximum")),
]


def project_config(**fields):
    """A resolved Config from `fields`, dropping switches this checkout's Config lacks
    (kernel_size, fused_update, bfloat16 arrived with issue 13)."""
    import config as config_lib

    known = {f.name for f in dataclasses.fields(config_lib.Config)}
    return config_lib.resolve(config_lib.Config(**{k: v for k, v in fields.items() if k in known}))


@dataclasses.dataclass
class ProjectStep:
    config: object
    graph: object
    model: object
    fetches: list  # one entry per session.run of a step, as training/train.py's loop makes them
    runs: list  # bench.flops' name of each run: "d", "g" or "fused"


def build_project_step(config):
    """The project's training step on a constant in-graph batch: the runs of
    training/train.py's step plan (d_steps D updates, g_steps G updates, the last D and
    first G fused with --fused_update), each a `session.run` of its fetches."""
    import numpy as np

    from model import DCGAN
    from runtime.tf_runtime import tf
    from training import train

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(config.seed)
        rng = np.random.RandomState(0)
        shape = (config.batch_size, config.output_height, config.output_width, config.c_dim)
        images = tf.constant(rng.uniform(-1, 1, shape).astype(np.float32))
        labels = tf.constant(np.arange(config.batch_size) % config.y_dim, tf.int64) if config.conditional else None
        model = DCGAN(config, images, labels)
    plan = train.step_plan(config, model)
    names = {id(model.d_fetches): "d", id(model.g_fetches): "g", id(getattr(model, "fused_fetches", None)): "fused"}
    return ProjectStep(config, graph, model, [fetches for fetches, _ in plan], [names[id(f)] for f, _ in plan])


def _peak_rss_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _session_options(config, spec):
    from runtime.tf_runtime import session_config

    xla, precision = spec.get("xla", False), getattr(config, "precision", "float32")
    options = session_config(xla, precision) if precision != "float32" else session_config(xla)
    options.intra_op_parallelism_threads = spec.get("intra", 0)
    options.inter_op_parallelism_threads = spec.get("inter", 0)
    if spec.get("remapper"):
        rewrite = options.graph_options.rewrite_options
        rewrite.remapping = rewrite.DEFAULT
    return options


def _timed(function, warmup, repeats):
    for _ in range(warmup):
        function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def project_worker(spec):
    """Child process: times the project's step for `spec` (Config fields plus session switches)."""
    from runtime.tf_runtime import tf

    if spec.get("lrelu") == "maximum":
        import ops

        ops.lrelu = lambda x, leak=0.2, name="lrelu": tf.maximum(x, leak * x, name=name)
    config = project_config(**spec["config"])
    step = build_project_step(config)
    with tf.compat.v1.Session(graph=step.graph, config=_session_options(config, spec)) as session:
        session.run(step.model.initializer)
        last = {}

        def run_step():
            for fetches in step.fetches:
                last.update(session.run(fetches))
            session.run(step.model.advance_step)

        seconds = _timed(run_step, spec["warmup"], spec["steps"])
        result = {"images_per_second": config.batch_size / seconds, "seconds_per_step": seconds,
                  "finite": bool(all(abs(float(last[k])) < float("inf") for k in ("d_loss", "g_loss")))}
        if spec.get("summaries"):
            result.update(_summary_costs(config, step, session, run_step, seconds))
    result["peak_rss_mib"] = _peak_rss_mib()
    return result


def _summary_costs(config, step, session, run_step, plain_seconds, repeats=3):
    """Extra seconds of a step that also fetches and writes the summaries, and of
    one sample grid, made by training/train.py's own `_Loop._sample`."""
    import model as model_lib
    from training import summaries as run_summaries
    from training import train

    summaries = [summary for _, summary in train.step_plan(config, step.model)]
    with tempfile.TemporaryDirectory() as folder:
        writer = run_summaries.SummaryWriter(folder)

        def summary_step():
            for fetches, summary in zip(step.fetches, summaries, strict=True):
                out = session.run({"values": fetches, "summary": summary})
                writer.add_summary(out["summary"], 1)
            session.run(step.model.advance_step)

        loop = types.SimpleNamespace(
            model=step.model, session=session, steps_per_epoch=1000,
            config=dataclasses.replace(config, out_dir=folder), sample_z=model_lib.fixed_z(config.n_samples, config, 0),
            sample_labels=model_lib.sample_labels(config.n_samples, config))
        os.makedirs(loop.config.sample_path, exist_ok=True)
        summary_seconds = _timed(summary_step, 1, repeats)
        grid_seconds = _timed(lambda: train._Loop._sample(loop, 1, writer), 1, repeats)
        writer.close()
    overhead = ((summary_seconds - plain_seconds) / config.summary_freq + grid_seconds / config.sample_freq)
    return {"summary_extra_s": summary_seconds - plain_seconds, "grid_s": grid_seconds,
            "summary_freq": config.summary_freq, "sample_freq": config.sample_freq,
            "overhead_fraction": overhead / plain_seconds}


def matmul_worker(spec):
    """Child process: GFLOP/s of a 2048x2048 tf.matmul in `spec["dtype"]`, the session options of training."""
    import numpy as np

    from runtime.tf_runtime import session_config, tf

    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph:
        values = np.random.RandomState(0).standard_normal((2, MATMUL_SIZE, MATMUL_SIZE)).astype(np.float32)
        a, b = (v1.Variable(tf.cast(v, spec["dtype"])) for v in values)
        product = tf.matmul(a, b).op
    with v1.Session(graph=graph, config=session_config()) as session:
        session.run(v1.global_variables_initializer())
        seconds = _timed(lambda: session.run(product), spec["warmup"], spec["steps"])
    return {"gflops": 2 * MATMUL_SIZE ** 3 / seconds / 1e9, "peak_rss_mib": _peak_rss_mib()}


def run_child(spec):
    """Runs one contender in a fresh process; returns its JSON result, or {"error": last stderr line}."""
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1", TF_CPP_MIN_LOG_LEVEL="2", **spec.get("env", {}))
    if spec["kind"] == "torch":
        if not os.path.exists(harness.TORCH_PYTHON):
            return {"error": "no .venv-bench (see the set-up line in bench/throughput.py)"}
        command = harness.module_command("bench.torch_dcgan", "--kernel_size", str(spec["kernel_size"]),
                                         "--steps", str(spec["steps"]), "--warmup", str(spec["warmup"]),
                                         python=harness.TORCH_PYTHON)
    else:
        command = harness.module_command("bench.throughput", "--worker", json.dumps(spec))
    out, lines = harness.run_child(command, env)
    if "error" not in out:
        out["mutation_apply_error"] = any("Mutation::Apply" in line for line in lines)
    return out


def interleaved(specs, rounds):
    """{key: [result per round]}, running every spec once per round, order reversed every other round."""
    results = {key: [] for key in specs}
    for round_index in range(rounds):
        order = list(specs) if round_index % 2 == 0 else list(reversed(specs))
        for key in order:
            results[key].append(run_child(specs[key]))
            print(f"round {round_index + 1}/{rounds}: {key}: {results[key][-1]}", file=sys.stderr, flush=True)
    return results


def spread(values, digits=1):
    """'median (min–max)' of a list of numbers."""
    if not values:
        return "n/a"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def _ok(results):
    return [r for r in results if "error" not in r]


def _ratios(results, reference):
    return [r["images_per_second"] / t["images_per_second"] for r, t in zip(results, reference, strict=True)
            if "error" not in r and "error" not in t]


def contender_specs(args):
    """{(setting, label): spec} for the main table; torch only at 64x64 (the conditional MNIST
    model would need its own PyTorch port, left out)."""
    specs = {}
    for setting, fields in SETTINGS.items():
        for label, switches in CONTENDERS:
            base = dict(steps=args.steps, warmup=args.warmup)
            if switches == "torch":
                if "kernel_size" in fields:
                    specs[(setting, label)] = dict(base, kind="torch", setting=setting,
                                                   kernel_size=fields["kernel_size"])
            else:
                specs[(setting, label)] = dict(base, kind="project", config=dict(fields, **switches))
    for dtype in ("float32", "bfloat16"):
        specs[("machine", f"tf.matmul {MATMUL_SIZE}² {dtype}")] = dict(kind="matmul", dtype=dtype, steps=args.steps * 2,
                                                                        warmup=2)
    return specs


def step_flops(spec):
    """(FLOPs of one step, profiler agrees) for a contender spec (None for the matmul ones)."""
    from bench import flops

    if spec["kind"] == "matmul":
        return None, None
    if spec["kind"] == "torch":
        config = project_config(**SETTINGS[spec["setting"]], **REFERENCE)
        return sum(flops.step_layer_flops(config, ["torch"]).values()), None
    step = build_project_step(project_config(**spec["config"]))
    built = flops.step_layer_flops(step.config, step.runs, built=True)
    executed = flops.step_layer_flops(step.config, step.runs)
    return sum(executed.values()), built == flops.profiler_layer_flops(step.graph, step.fetches)


def print_main_table(specs, results):
    matmul = {dtype: [r["gflops"] for r in _ok(results[("machine", f"tf.matmul {MATMUL_SIZE}² {dtype}")])]
              for dtype in ("float32", "bfloat16")}
    print(harness.table_header(["setting", "contender", "img/s median (min–max)", "vs PyTorch, per round",
                                "GFLOP/step executed", "profiler check (built graph)", "GFLOP/s", "% of fp32 matmul",
                                "% of bf16 matmul", "peak RSS MiB"], "llrrrlrrrr"))
    for (setting, label), spec in specs.items():
        if setting == "machine":
            continue
        runs = results[(setting, label)]
        ok = _ok(runs)
        if not ok:
            print(harness.table_row([setting, label, f"failed: {runs[0]['error'][:100]}", *[""] * 7]))
            continue
        torch_key = (setting, CONTENDERS[-1][0])
        versus = spread(_ratios(runs, results[torch_key]), 2) + "×" if torch_key in results and spec[
            "kind"] != "torch" else ""
        flops_per_step, agrees = step_flops(spec)
        batch = 64
        gflops = [r["images_per_second"] / batch * flops_per_step / 1e9 for r in ok]
        percent = {d: f"{100 * statistics.median(gflops) / statistics.median(m):.0f}%" if m else "n/a"
                   for d, m in matmul.items()}
        check = "n/a (torch)" if agrees is None else ("matches" if agrees else "DIFFERS")
        finite = "" if all(r.get("finite", True) for r in ok) else " (non-finite loss!)"
        print(harness.table_row([setting, label + finite, spread([r["images_per_second"] for r in ok]), versus,
                                 f"{flops_per_step / 1e9:.1f}", check, spread(gflops, 0), percent["float32"],
                                 percent["bfloat16"], f"{max(r['peak_rss_mib'] for r in ok):.0f}"]))
    for dtype, values in matmul.items():
        print(harness.table_row(["machine", f"tf.matmul {MATMUL_SIZE}² {dtype}", *[""] * 4, spread(values, 0),
                                 *[""] * 3]))


def print_layer_table():
    """Per-layer FLOPs of the reference-semantics step of each setting, counted and profiled."""
    from bench import flops

    print("\n" + harness.table_header(["setting", "layer", "forward MFLOP/image", "step GFLOP executed",
                                       "step GFLOP built, counted", "step GFLOP built, tf.compat.v1.profiler"],
                                      "llrrrr"))
    for setting, fields in SETTINGS.items():
        step = build_project_step(project_config(**fields, **REFERENCE))
        executed = flops.step_layer_flops(step.config, step.runs)
        built = flops.step_layer_flops(step.config, step.runs, built=True)
        profiled = flops.profiler_layer_flops(step.graph, step.fetches)
        for layer in flops.layers(step.config):
            print(harness.table_row([setting, layer.name, f"{layer.forward_flops / 1e6:.2f}",
                                     f"{executed[layer.name] / 1e9:.3f}", f"{built[layer.name] / 1e9:.3f}",
                                     f"{profiled.get(layer.name, 0) / 1e9:.3f}"]))
        print(harness.table_row([setting, f"**step total** ({' + '.join(step.runs)})", "",
                                 f"{sum(executed.values()) / 1e9:.3f}", f"{sum(built.values()) / 1e9:.3f}",
                                 f"{sum(profiled.values()) / 1e9:.3f}"]))


def print_gpu_projection():
    """Img/s a GPU would reach at its published peak, and at this CPU's measured fraction of matmul."""
    from bench import flops

    config = project_config(**SETTINGS["64x64, 4x4 kernels"], **REFERENCE)
    flops_per_image = sum(flops.step_layer_flops(config, ["fused"]).values()) / config.batch_size
    print(f"\nPROJECTION (not measured): {GPU_NAME}, 64x64 4x4 reference-semantics step, "
          f"{flops_per_image / 1e9:.2f} GFLOP/image counted.")
    print(harness.table_header(["precision", "published peak TFLOP/s", "img/s at peak (ceiling)",
                                "img/s at 50% of peak"], "lrrr"))
    for precision, peak in GPU_PEAK_TFLOPS.items():
        ceiling = peak * 1e12 / flops_per_image
        print(harness.table_row([precision, f"{peak:g}", f"{ceiling:,.0f}", f"{ceiling / 2:,.0f}"]))


def print_extras(args):
    base = dict(kind="project", steps=args.steps, warmup=args.warmup,
                config=dict(SETTINGS["64x64, 4x4 kernels"], **REFERENCE))
    specs = {label: dict(base, **switches) for label, switches in EXTRAS}
    specs[EXTRAS[0][0]]["summaries"] = True
    results = interleaved(specs, args.rounds)
    baseline = results[EXTRAS[0][0]]
    print("\n" + harness.table_header(["64x64 4x4, 1 D + 1 G fused, fp32", "img/s median (min–max)",
                                       "vs baseline, per round", "'Mutation::Apply' error logged"], "lrrl"))
    for label, runs in results.items():
        ok = _ok(runs)
        if not ok:
            print(harness.table_row([label, f"failed: {runs[0]['error'][:100]}", "", ""]))
            continue
        mutation = "yes" if any(r["mutation_apply_error"] for r in ok) else "no"
        print(harness.table_row([label, spread([r["images_per_second"] for r in ok]),
                                 spread(_ratios(runs, baseline), 2) + "×", mutation]))
    costs = [r for r in _ok(baseline) if "overhead_fraction" in r]
    if costs:
        first = costs[0]
        print(f"\nSummaries every {first['summary_freq']} steps and a sample grid every {first['sample_freq']} steps "
              "(training/train.py's defaults): extra per summary step "
              f"{spread([r['summary_extra_s'] for r in costs], 3)} s, "
              f"per grid {spread([r['grid_s'] for r in costs], 3)} s, "
              f"amortized {spread([100 * r['overhead_fraction'] for r in costs], 2)}% of training time.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per contender per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--extras", action="store_true", help="the session-switch table instead of the main one")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(matmul_worker(spec) if spec["kind"] == "matmul" else project_worker(spec)))
        return
    model, flags = harness.cpu_description()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; CPU: {model}, {os.cpu_count()} logical CPUs; "
          f"TF_ENABLE_ONEDNN_OPTS=1; {args.rounds} rounds x {args.steps} steps (+{args.warmup} warm-up); "
          f"command: python -m bench.throughput {' '.join(sys.argv[1:])}")
    print(f"CPU flags: {flags}\n")
    if args.extras:
        print_extras(args)
        return
    specs = contender_specs(args)
    results = interleaved(specs, args.rounds)
    print_main_table(specs, results)
    print_layer_table()
    print_gpu_projection()


if __name__ == "__main__":
    main()
