"""End to end against the bare step: `main.py --train` on a real face folder, as a user runs it, beside the same
model's step on a constant batch (bench.throughput's worker) and the PyTorch reference.

    .venv/bin/python -m bench.end_to_end [--rounds 3] [--steps 110] [--work_dir /tmp/faceablation]

The end-to-end run is `python main.py --dataset celebA --train` on the shared first 10,000 CelebA faces (89x109
JPEGs, extracted under --work_dir once; `--input_height 54`, carpedm20's 108 px crop at half resolution) with
every other flag at its default: JPEG decoding, crop and resize in the input pipeline, TensorBoard summaries
every 10 steps, a sample grid every 100, the watchdog, G's moving average, and a checkpoint at the end.  Its
img/s is read from the run's own log, from the progress line of step 10 (graph building, the first steps'
warm-up and the data's first pass are behind) to the "done" line after the final checkpoint: so the window
holds steps 11-`--steps`, one sample grid per 100 steps and one checkpoint (at the default --ckpt_freq 500 a
checkpoint comes 5 times less often: the figure slightly overstates the overhead).

The PyTorch reference trains bench/torch_dcgan.py's step on the same faces, preprocessed by the project's
pipeline into memory (no decoding at all), timed from its step-10 sample file to its last.  Every contender
runs in its own process, in rounds with the order reversed every other round; peak RSS is the child's own
(wait4 from a small
process in between).  The precision the project's runs chose is read from their "precision:" log line.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import types

from bench import harness, throughput
from bench.ablation import plan
from bench.ablation.run import exported_images

FIRST_TIMED_STEP = 10
# (label, main.py flags beside the data's) of the project's end-to-end contenders: today's defaults, and the
# switches that change speed.
PROJECT = [
    ("main.py --train, defaults", []),
    ("main.py --train --kernel_size 4 --bfloat16", ["--kernel_size=4", "--bfloat16"]),
]
_PROGRESS = re.compile(r" step (\d+) \|")


# Runs argv[2:] as its child and writes the child's peak RSS (KiB) to argv[1]: a small process in between, as a
# forked child's ru_maxrss starts from its parent's high-water mark (which survives exec), and the parent here
# may hold TensorFlow.
_PEAK_RSS_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as result:
    result.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def timed_lines(command, env):
    """Runs `command` from the repository root; returns ([(seconds since launch, line)] of its merged output,
    return code, its own peak RSS in MiB)."""
    start = time.monotonic()
    lines = []
    with tempfile.NamedTemporaryFile("r") as peak:
        wrapped = [sys.executable, "-c", _PEAK_RSS_WRAPPER, peak.name, *command]
        with subprocess.Popen(wrapped, cwd=harness.REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) as process:
            for line in process.stdout:
                lines.append((time.monotonic() - start, line.rstrip()))
        return lines, process.returncode, int(peak.read() or 0) / 1024


def window_rate(lines, is_start, is_end, images):
    """Images per second between the first line `is_start` accepts and the last `is_end` accepts."""
    start = next(t for t, line in lines if is_start(line))
    end = [t for t, line in lines if is_end(line)][-1]
    return images / (end - start)


def project_run(flags, args, data_dir):
    with tempfile.TemporaryDirectory() as out_dir:
        command = harness.main_command(
            "--train", "--dataset=celebA", f"--data_dir={data_dir}", *plan.DATASETS["celebA"]["flags"], *flags,
            f"--max_steps={args.steps}", f"--out_dir={out_dir}", "--seed=1")
        lines, code, rss = timed_lines(command, dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if code != 0:
        return {"error": lines[-1][1] if lines else f"exit {code}"}
    steps = args.steps - FIRST_TIMED_STEP
    return {
        "images_per_second": window_rate(
            lines, lambda line: (m := _PROGRESS.search(line)) and int(m.group(1)) == FIRST_TIMED_STEP,
            lambda line: " done at step " in line, steps * plan.BATCH_SIZE),
        "precision": next((line.split("precision: ", 1)[1].split()[0] for _, line in lines if "precision: " in line),
                          "?"),
        "peak_rss_mib": rss}


def reference_run(args, images_path):
    with tempfile.TemporaryDirectory() as out_dir:
        command = harness.module_command(
            "bench.torch_dcgan", "--images", images_path, "--out_dir", out_dir, "--steps", str(args.steps),
            "--sample_steps", f"{FIRST_TIMED_STEP},{args.steps}", "--samples", "64", "--kernel_size", "4",
            python=harness.TORCH_PYTHON)
        lines, code, rss = timed_lines(command, dict(os.environ))
    if code != 0:
        return {"error": lines[-1][1] if lines else f"exit {code}"}
    saved = [t for t, line in lines if " saved " in line]
    steps = args.steps - FIRST_TIMED_STEP
    return {"images_per_second": steps * plan.BATCH_SIZE / (saved[-1] - saved[0]), "peak_rss_mib": rss}


def default_bfloat16():
    """Whether a default CelebA run on this machine trains in bfloat16 (training/precision.py's decision), so the
    bare steps run the precision their end-to-end runs chose."""
    import config as config_lib
    from runtime.tf_runtime import cpu_has_bfloat16, tf
    from training import precision

    config = config_lib.resolve(config_lib.Config(dataset="celebA"))
    return precision.decide(config, tf.config.list_physical_devices("GPU"), cpu_has_bfloat16())[0]


def bare_step(flags, bfloat16):
    """bench.throughput's worker timing the step of the model `flags` give, in the precision `bfloat16` says
    unless the flags say otherwise."""
    fields = {"dataset": "celebA", "c_dim": 3, "bfloat16": bfloat16}
    for flag in flags:
        name, _, value = flag.lstrip("-").partition("=")
        if name in ("bfloat16", "nobfloat16"):
            fields["bfloat16"] = name == "bfloat16"
        else:
            fields[name] = int(value)
    return throughput.run_child(dict(kind="project", steps=8, warmup=3, config=fields))


def contenders(args, data_dir, images_path):
    """{label: a function of no arguments timing it once}."""
    bfloat16, runs = default_bfloat16(), {}
    for label, flags in PROJECT:
        runs[label] = lambda flags=flags: project_run(flags, args, data_dir)
        runs[f"bare step of '{label}'"] = lambda flags=flags: bare_step(flags, bfloat16)
    runs["PyTorch reference, bare step (constant batch, as bench.throughput)"] = lambda: throughput.run_child(
        dict(kind="torch", kernel_size=4, steps=8, warmup=3))
    runs["PyTorch reference (bench/torch_dcgan.py, 4x4, fp32), training on the faces in memory"] = (
        lambda: reference_run(args, images_path))
    return runs


def print_table(results):
    reference = results[list(results)[-1]]
    print(harness.table_header(["contender", "precision", "img/s median (min–max)", "vs PyTorch, per round",
                                "vs its bare step, per round", "peak RSS MiB"], "llrrrr"))
    for label, runs in results.items():
        ok = throughput._ok(runs)
        if not ok:
            print(harness.table_row([label, "", f"failed: {runs[0]['error'][:100]}", "", "", ""]))
            continue
        bare = results.get(f"bare step of '{label}'")
        print(harness.table_row([
            label, ok[0].get("precision", ""), throughput.spread([r["images_per_second"] for r in ok]),
            throughput.spread(throughput._ratios(runs, reference), 2) + "×" if runs is not reference else "",
            throughput.spread(throughput._ratios(runs, bare), 3) + "×" if bare else "",
            f"{max(r['peak_rss_mib'] for r in ok):.0f}"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=110, help="steps per run (timed from step 10)")
    parser.add_argument("--data_dir", default=str(harness.SHARED_DATA))
    parser.add_argument("--work_dir", default="/tmp/faceablation", help="where the faces are extracted once")
    args = parser.parse_args()
    folders = types.SimpleNamespace(data_dir=args.data_dir, work_dir=args.work_dir, eval_samples=64)
    data_dir = plan.data_dir_for("celebA", folders)
    images_path = exported_images("celebA", folders)
    model, flags = harness.cpu_description()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; CPU: {model}, {os.cpu_count()} logical CPUs; "
          f"{args.rounds} rounds x {args.steps} steps; command: python -m bench.end_to_end {' '.join(sys.argv[1:])}")
    print(f"CPU flags: {flags}\n")
    runs = contenders(args, data_dir, images_path)
    results = {label: [] for label in runs}
    for round_index in range(args.rounds):
        for label in runs if round_index % 2 == 0 else reversed(runs):
            results[label].append(runs[label]())
            print(f"round {round_index + 1}: {label}: {json.dumps(results[label][-1])}", file=sys.stderr, flush=True)
    print_table(results)


if __name__ == "__main__":
    main()
