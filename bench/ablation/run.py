"""`run`: trains the runs not yet in docs/ablation/results.jsonl (one JSON line per finished run, so the table
fills in across sessions), each `main.py --train` in a subprocess timed from its launch, scores each saved
checkpoint and renders the doc again."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from bench import harness
from bench.ablation import score
from bench.ablation.plan import (
    BATCH_SIZE,
    CHECKPOINTS_PER_RUN,
    DATASETS,
    RECIPES,
    REFERENCE,
    data_dir_for,
    distinct_recipes,
    recipe_flags,
    run_architecture,
    run_config,
    run_plan,
    scored_by_diversity,
)
from bench.ablation.render import DOC_PATH, render
from bench.ablation.score import (
    ensure_classifier,
    face_floor_record,
    floor_record,
    floor_size,
    samples_count,
    score_checkpoints,
    score_diversity,
    score_samples,
)
from runtime.errors import UserError

RESULTS_PATH = os.path.join(harness.REPO, "docs", "ablation", "results.jsonl")


def run_key(record):
    return (record["dataset"], record["recipe"], int(record["seed"]), int(record["budget"]))


def read_results(path):
    """The records in the results file (a line cut short by a killed write is ignored)."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def pending_runs(records, datasets, recipes, seeds, budget):
    """The (dataset, recipe, seed, budget) runs not yet in `records`, in the order to run them."""
    done = {run_key(r) for r in records if r.get("kind") == "run"}
    return [(d, r, s, budget) for d in datasets for s in seeds for r in recipes if (d, r, s, budget) not in done]


def append_record(record):
    os.makedirs(os.path.dirname(RESULTS_PATH), exist_ok=True)
    with open(RESULTS_PATH, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def train_command(dataset, recipe, seed, budget, data_dir, out_dir):
    """(steps, the `main.py --train` command line) of one run: the dataset's and the recipe's flags, a
    checkpoint (and sample grid) every `checkpoint_every` steps or a CHECKPOINTS_PER_RUN-th of the run,
    all of them kept for scoring."""
    steps, flags = run_plan(recipe, budget)
    settings = DATASETS[dataset]
    ckpt_freq = settings.get("checkpoint_every") or max(1, steps // CHECKPOINTS_PER_RUN)
    return steps, [
        *harness.main_command("--train", f"--dataset={settings['dataset']}", f"--data_dir={data_dir}",
                              *settings["flags"], *flags, f"--seed={seed}", f"--max_steps={steps}",
                              f"--out_dir={out_dir}", f"--ckpt_freq={ckpt_freq}", f"--sample_freq={ckpt_freq}",
                              f"--max_to_keep={steps // ckpt_freq + 2}", "--log_freq=50")]


def exported_images(dataset, args):
    """A .npy under --work_dir of all the dataset's training images, preprocessed by the project's own pipeline
    (evaluation.real_images_uint8: training's crop and resize), written once: what the PyTorch reference trains
    on, so both contenders see the same pixels."""
    from evaluation import quality as evaluation

    config = score.with_data_channels(run_config(dataset, 0, args.work_dir, args))
    path = os.path.join(args.work_dir, "data", f"{dataset}_{config.input_height}_{config.output_height}_uint8.npy")
    if not os.path.exists(path):
        images = evaluation.real_images_uint8(dataclasses.replace(config, eval_samples=10 ** 9), 10 ** 9)
        np.save(path + ".partial.npy", images)
        os.rename(path + ".partial.npy", path)
    return path


def reference_command(dataset, seed, budget, args, out_dir):
    """(steps, the bench/torch_dcgan.py command line) of the PyTorch reference's run: batch 64, the budget's
    steps, sample files at the steps a project run of the dataset saves checkpoints (and the last)."""
    steps = max(1, budget // BATCH_SIZE)
    every = DATASETS[dataset].get("checkpoint_every") or max(1, steps // CHECKPOINTS_PER_RUN)
    sample_steps = sorted({*range(every, steps + 1, every), steps})
    config = run_config(dataset, seed, out_dir, args)
    if not os.path.exists(harness.TORCH_PYTHON):
        raise UserError(f"{REFERENCE}: no {harness.TORCH_PYTHON}; see the set-up lines in bench/torch_dcgan.py")
    return steps, harness.module_command(
        "bench.torch_dcgan", "--images", exported_images(dataset, args), "--out_dir", out_dir,
        "--steps", str(steps), "--seed", str(seed), "--kernel_size", "4", "--samples", str(samples_count(config)),
        "--sample_steps", ",".join(map(str, sample_steps)), python=harness.TORCH_PYTHON)


def train_run(dataset, recipe, seed, budget, args):
    """Trains one run in a subprocess (the PyTorch reference's for REFERENCE); returns (record without scores,
    run folder, [(saved checkpoint or sample file, seconds since launch)])."""
    settings = DATASETS[dataset]
    flags = run_plan(recipe, budget)[1]
    out_dir = os.path.join(args.work_dir, "runs", dataset, recipe, f"seed{seed}_budget{budget}")
    if recipe == REFERENCE:
        steps, command = reference_command(dataset, seed, budget, args, out_dir)
        flags = command[command.index("--steps"):]
    else:
        steps, command = train_command(dataset, recipe, seed, budget, data_dir_for(dataset, args), out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)  # a run cut short is redone: its wall times would not add up
    os.makedirs(out_dir)
    print(f"[{time.strftime('%H:%M:%S')}] {dataset} {recipe} seed {seed}: {steps} steps", file=sys.stderr, flush=True)
    saved, watchdog_lines, tail = [], [], []
    start = time.time()
    with open(os.path.join(out_dir, "train.log"), "w") as log, subprocess.Popen(
            command, cwd=harness.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            log.write(line)
            tail = (tail + [line.rstrip()])[-5:]
            if " saved " in line:
                saved.append((line.rsplit(" saved ", 1)[1].strip(), time.time() - start))
            elif "watchdog:" in line:
                watchdog_lines.append(line.strip())
    record = {
        "kind": "run", "dataset": dataset, "recipe": recipe, "seed": seed, "budget": budget, "steps": steps,
        "batch_size": BATCH_SIZE, "flags": settings["flags"] + flags, "returncode": process.returncode,
        "error": "" if process.returncode == 0 else tail[-1] if tail else "no output",
        "wall_seconds": time.time() - start, "watchdog_warnings": len(watchdog_lines),
        "watchdog_examples": watchdog_lines[:3], "cpu_seconds_note": "wall clock on a shared 2-core machine",
        "architecture": run_architecture(out_dir) if recipe != REFERENCE else {
            "framework": "PyTorch (bench/torch_dcgan.py, pytorch/examples dcgan)", "kernel_size": 4, "gf_dim": 64,
            "df_dim": 64, "optimizer": "Adam(2e-4, beta1 0.5) for both", "samples": "BatchNorm running statistics"},
    }
    return record, out_dir, saved


def copy_sample_grid(config, dataset, recipe, budget, saved):
    """The run's last sample grid, as docs/ablation/<dataset>_<recipe>_<budget>.png (the budget in the name:
    a longer run of the same recipe must not replace the grid shown beside the shorter one's table); for the
    PyTorch reference, drawn from the first 64 images of its last sample file."""
    target = os.path.join(os.path.dirname(RESULTS_PATH), f"{dataset}_{recipe}_{budget}.png")
    if recipe == REFERENCE:
        import utils

        if not saved:
            return None
        utils.save_grid(np.load(saved[-1][0])["eval"][:64], target)
    else:
        grids = sorted(f for f in os.listdir(config.sample_path) if f.startswith("train_") and f.endswith(".png"))
        if not grids:
            return None
        shutil.copyfile(os.path.join(config.sample_path, grids[-1]), target)
    return os.path.relpath(target, os.path.dirname(DOC_PATH))


def score_sample_files(config, saved, args):
    """score.score_samples of the PyTorch reference's sample files (their "eval" images: G with BatchNorm's
    running statistics, as this project's checkpoints are sampled), each with its seconds since launch."""
    sampled = []
    for path, seconds in saved:
        with np.load(path) as files:
            sampled.append((json.loads(str(files["meta"]))["step"], seconds, files["eval"]))
    return score_samples(config, sampled, args)


def ensure_floor(dataset, args, records):
    """Once per dataset and sample count: its real-vs-real floor (score.floor_record) in the results file, and
    for faces FD_face's (score.face_floor_record)."""
    def recorded(kind, size):
        return any(r.get("kind") == kind and r["dataset"] == dataset and r["n"] == size for r in records)

    if not recorded("floor", floor_size(dataset, args)):
        append_record(floor_record(dataset, args))
    face_floor = None if recorded("face_floor", score.FACE_SAMPLES) else face_floor_record(dataset, args)
    if face_floor:
        append_record(face_floor)


def command_run(args):
    datasets = args.dataset.split(",")
    recipes = RECIPES if args.recipes == "all" else tuple(args.recipes.split(","))
    for name in recipes:
        recipe_flags(name)  # an unknown name is refused before hours of training
    recipes, same_as = distinct_recipes(recipes)
    for recipe, twin in same_as.items():
        print(f"{recipe}: the same settings as {twin}, not trained again (see its row)", file=sys.stderr)
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise UserError(f"--dataset: unknown {unknown}; choose from {', '.join(DATASETS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    for dataset in datasets:
        ensure_classifier(dataset, args)
        ensure_floor(dataset, args, read_results(RESULTS_PATH))
    for dataset, recipe, seed, budget in pending_runs(read_results(RESULTS_PATH), datasets, recipes, seeds,
                                                      args.budget):
        if not pending_runs(read_results(RESULTS_PATH), [dataset], [recipe], [seed], budget):
            continue  # another worker finished it meanwhile
        record, out_dir, saved = train_run(dataset, recipe, seed, budget, args)
        config = run_config(dataset, seed, out_dir, args)
        if recipe == REFERENCE:
            scoring = score_sample_files
        else:
            scoring = score_diversity if scored_by_diversity(dataset) else score_checkpoints
        record["checkpoints"] = scoring(config, saved, args)
        if not any(run_key(r)[:2] == (dataset, recipe) and r["budget"] == budget and r["seed"] < seed
                   for r in read_results(RESULTS_PATH) if r.get("kind") == "run"):  # the grid of the lowest seed
            record["sample_grid"] = copy_sample_grid(config, dataset, recipe, budget, saved)
        append_record(record)
        final = record["checkpoints"][-1] if record["checkpoints"] else {}
        score = (f"diversity ratio {final['diversity_ratio']:.3f}, near-duplicates {final['near_duplicates']:.3f}"
                 if "diversity_ratio" in final else f"FID {final.get('fid', float('nan')):.2f}")
        if "fd_face" in final:
            score += (f", FD_face {final['fd_face']:.4f} [{final['face_extractor']}], face detection rate "
                      f"{final['face_detection_rate']:.3f}")
        print(f"  done in {record['wall_seconds']:.0f} s: {score}, "
              f"watchdog {record['watchdog_warnings']}, exit {record['returncode']}", file=sys.stderr, flush=True)
        render(read_results(RESULTS_PATH))
