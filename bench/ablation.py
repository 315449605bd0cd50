"""Which training recipe should be the default?  Each recipe trained at the same budget, scored by the same meter.

Every (dataset, recipe, seed, budget) run trains `main.py --train` in a subprocess
outside the repository, timing each saved checkpoint from the launch of the
process (what a user waits for, start-up included) and counting the collapse
watchdog's warnings; then each checkpoint is scored in this process by
`evaluation.QualityMeter` (the dataset's domain classifier: FID, KID,
precision/recall and class statistics; CIFAR-10's classifier is trained on the
shared lossy JPEG copy, extracted under --work_dir).  CelebA has no FID network offline
(no Inception weights), so its checkpoints are scored by the diversity of 256
samples against 256 real faces in pixel space (`diversity_scores`), and as faces:
FD_face (dlib ResNet-128 embeddings) and the face detection rate of 500 samples
against the first 500 real faces (`face_scores`, face_metrics.py).  One JSON line per finished run is
appended to docs/ablation/results.jsonl, and a run already there is skipped,
so the table can be completed across sessions; `render` rewrites
docs/ablation.md and its charts from that file alone.

    python bench/ablation.py run --dataset mnist --recipes all --seeds 1 --budget 25000
    python bench/ablation.py run --dataset mnist --recipes default,ttur --seeds 1,2,3 --budget 25000
    python bench/ablation.py run --dataset celebA --recipes default,ttur --seeds 1,2,3 --budget 19200
    python bench/ablation.py run --dataset cifar10 --recipes default,resize_conv --seeds 1 --budget 25000
    python bench/ablation.py render
    python bench/ablation.py compare_average --dataset celebA --recipes default --seeds 1 --budget 32000
      (the same checkpoints scored from G itself and from its --g_ema moving average; prints a table)

Every recipe trains with batch 64, so images seen and steps mean the same thing
across rows: dcgan_paper's 128 is overridden to 64 (its other flags are kept).
A step consumes d_steps batches, so a budget of B images is B / (64 x d_steps) steps.
"""

import argparse
import dataclasses
import glob
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import zipfile

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_DIR)

import numpy as np  # noqa: E402

import config as config_lib  # noqa: E402
from errors import UserError, run_command  # noqa: E402

BATCH_SIZE = 64
CHECKPOINTS_PER_RUN = 4
RESULTS_PATH = os.path.join(REPO_DIR, "docs", "ablation", "results.jsonl")
DOC_PATH = os.path.join(REPO_DIR, "docs", "ablation.md")
DISCUSSION_PATH = os.path.join(REPO_DIR, "docs", "ablation", "discussion.md")
RECIPE_FILES = ("carpedm20", "dcgan_paper", "anime_faces", "wgan_gp", "hinge_r1", "ttur")
# Variants of a recipe, as extra flags; "{half_steps}" is half the run's steps.  The first three vary
# carpedm20's recipe (the project's default until the TTUR default was chosen from this table).
CARPEDM20 = f"--flagfile={os.path.join(REPO_DIR, 'recipes', 'carpedm20.flags')}"
TTUR = f"--flagfile={os.path.join(REPO_DIR, 'recipes', 'ttur.flags')}"
VARIANTS = {
    "combined_bn": [CARPEDM20, "--d_batchnorm=combined"],
    "smooth_noise": [CARPEDM20, "--real_label=0.9", "--instance_noise=0.1", "--instance_noise_steps={half_steps}"],
    "fused_k4": [CARPEDM20, "--fused_update", "--g_steps=1", "--kernel_size=4"],
    # ttur with the PyTorch reference's 4x4 kernels (1.56x less convolution work than 5x5)
    "ttur_k4": [TTUR, "--kernel_size=4"],
    # ttur with bfloat16 compute (float32 weights): does the faster CPU precision cost quality?
    "ttur_bf16": [TTUR, "--bfloat16"],
    # Architecture options (issues 15 and 16), each on the default recipe.
    "arch_mlp": ["--arch=mlp"],
    "arch_style": ["--arch=style"],
    "resize_conv": ["--g_upsample=resize_conv"],
    "gap_head": ["--d_head=gap"],
    "spectral_norm": ["--spectral_norm"],
    "g_ema": ["--g_ema=0.999"],
    "minibatch_stddev": ["--minibatch_stddev"],
    # Normalisation (document 000: "no BN in D"; instance norm where batch norm is not possible).
    "d_norm_none": ["--d_norm=none"],
    "instance_norm": ["--g_norm=instance", "--d_norm=instance"],
    "layer_norm": ["--g_norm=layer", "--d_norm=layer"],
    # The default's schedule (fused 1 D + 1 G, 5x5) with one rate of 2e-4 for both networks instead of TTUR's.
    "equal_rates": ["--learning_rate=0.0002"],
}
# Model settings per table: the flags that pick the data and the model, beside the recipe's.  "epoch": the
# training images of one epoch and whose (the section titles count the budget in them); MNIST's by default.
DATASETS = {
    "mnist": {"dataset": "mnist", "flags": []},
    # The unconditional G upsamples 4 times by 2, so it needs a multiple of 16: MNIST is trained at 32x32.
    "mnist_unconditional": {"dataset": "mnist", "flags": ["--y_dim=0", "--output_height=32"]},
    "fashion": {"dataset": "fashion", "flags": []},
    "fashion_unconditional": {"dataset": "fashion", "flags": ["--y_dim=0", "--output_height=32"]},
    # The shared first 10,000 aligned faces at half resolution (89x109): a 54 px centre crop is carpedm20's
    # 108 px crop of the full-size images, resized to 64x64.  Extracted from the tar under --work_dir once.
    # Checkpoints every 50 steps, as the targets start at step 100.
    "celebA": {"dataset": "celebA", "flags": ["--input_height=54", "--output_height=64"],
               "archive": "celebA_first10k_89x109.tar", "scoring": "diversity", "checkpoint_every": 50},
    # Unconditional 32x32 RGB (cifar10's defaults) from the shared lossy JPEG copy's class folders, extracted
    # under --work_dir once; scored with its own CIFAR-10 classifier, trained on that copy.
    "cifar10": {"dataset": "cifar10", "flags": ["--y_dim=0"], "archive": "cifar10_jpg_YoongiKim.zip",
                "epoch": (50000, "CIFAR-10")},
}
CLASSIFIER_SIZE = 28  # the MNIST / Fashion-MNIST classifiers take 28x28x1 (CIFAR-10's takes its 32x32 as they are)
RECIPES = ("default", *RECIPE_FILES, *VARIANTS)
METRICS = ("fid", "kid_mean", "precision", "recall", "class_accuracy", "classes_present", "class_kl_uniform")
# Diversity scoring (datasets without a feature network): this many samples against as many real images,
# near-duplicates = sample pairs closer than this quantile of the real-real pair distances (issue 14).
DIVERSITY_SAMPLES = 256
NEAR_DUPLICATE_QUANTILE = 0.01
# max_ratio: samples spread much wider than real faces are noise, not diversity (the style generator's
# saturated colour noise at CelebA step 100 scored 1.32); 1.25 = 1 / 0.8 bounds the ratio from both sides.
# Face scoring (--face_metrics datasets): FD_face and the detection rate of this many samples, FD_face against
# as many real faces (the first ones in file order): issue 26's protocol, 500 against 500.
FACE_SAMPLES = 500
DIVERSITY_TARGETS = {"from_step": 100, "min_ratio": 0.8, "max_ratio": 1.25, "max_near_duplicates": 0.05}


# ---------------------------------------------------------------------------
# Pure parts (tests/test_ablation.py).
# ---------------------------------------------------------------------------


def recipe_flags(recipe):
    """The command-line flags of a recipe by name (before "{half_steps}" is filled in)."""
    if recipe == "default":
        return []
    if recipe in RECIPE_FILES:
        return [f"--flagfile={os.path.join(REPO_DIR, 'recipes', recipe + '.flags')}"]
    if recipe in VARIANTS:
        return list(VARIANTS[recipe])
    raise UserError(f"--recipes: unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")


def expanded_flags(flags):
    """`flags` with each --flagfile replaced by its lines (comments and blank lines dropped), in order."""
    expanded = []
    for flag in flags:
        if flag.startswith("--flagfile="):
            with open(flag.split("=", 1)[1]) as f:
                expanded += [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
        else:
            expanded.append(flag)
    return expanded


def flag_value(flags, name):
    """The value the last `--name=V` (or `--name` / `--noname` for a boolean) in `flags` gives, else the
    Config default: what absl will parse, read without defining the flags."""
    value = getattr(config_lib.Config, name)
    for flag in flags:
        if flag.startswith(f"--{name}="):
            text = flag.split("=", 1)[1]
            if isinstance(value, bool):
                value = text.lower() in ("true", "1")
            else:
                value = text if isinstance(value, str) else type(value)(text)
        elif flag in (f"--{name}", f"--no{name}"):
            value = flag == f"--{name}"
    return value


def run_plan(recipe, budget):
    """(steps, flags) of one run: the recipe's flags at batch 64 and the steps that see `budget` images."""
    flags = expanded_flags(recipe_flags(recipe))
    d_steps = flag_value(flags, "d_steps")
    steps = max(1, budget // (BATCH_SIZE * d_steps))
    flags = [flag.replace("{half_steps}", str(steps // 2)) for flag in flags] + [f"--batch_size={BATCH_SIZE}"]
    return steps, flags


def settings(recipe):
    """Every recipe, architecture and precision setting a recipe's flags give (the Config defaults where they say
    nothing)."""
    _, flags = run_plan(recipe, BATCH_SIZE)
    values = {name: flag_value(flags, name) for name in config_lib.RECIPE_FIELDS + config_lib.ARCHITECTURE_FIELDS
              + ("bfloat16", "mixed_precision")}
    # The rates the optimizers get, not the flags that give them (--learning_rate 0 means the model's
    # defaults, which differ between conditional and unconditional models: both are compared).
    values["learning_rates"] = tuple(config_lib.Config(**dict(values, y_dim=y_dim)).learning_rates()
                                     for y_dim in (10, 0))
    for name in ("learning_rate", "d_learning_rate", "g_learning_rate"):
        del values[name]
    return values


def distinct_recipes(recipes):
    """(recipes to train, {recipe: the earlier recipe it equals}): a recipe whose flags change nothing in the
    defaults (carpedm20's flags are the project's defaults) would train the very same run again."""
    kept, same_as = [], {}
    for recipe in recipes:
        twin = next((k for k in kept if settings(k) == settings(recipe)), None)
        if twin is None:
            kept.append(recipe)
        else:
            same_as[recipe] = twin
    return kept, same_as


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


def mean_std(values):
    """(mean, sample standard deviation, n) of the finite values; std is None below 2 values, mean None at 0."""
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None, 0
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return float(np.mean(values)), std, len(values)


def checkpoint_at_time(checkpoints, seconds):
    """The last checkpoint saved at or before `seconds` of wall time (checkpoints sorted by step), or None."""
    chosen = None
    for checkpoint in checkpoints:
        if checkpoint["seconds"] <= seconds:
            chosen = checkpoint
    return chosen


def equal_time(runs):
    """T = the median run's length among `runs` (the low median of the seconds to their last checkpoints):
    every run is compared at T, a run that finished earlier at its last checkpoint.  Not the shortest run:
    one cheap recipe (the MLP GAN's 24 s) would leave every other run without a checkpoint by then.
    None when no run saved a checkpoint."""
    lengths = [run["checkpoints"][-1]["seconds"] for run in runs if run["checkpoints"]]
    return statistics.median_low(lengths) if lengths else None


def diversity_scores(samples, real, quantile=NEAR_DUPLICATE_QUANTILE):
    """{"diversity_ratio", "near_duplicates"} of uint8 samples against uint8 real images of the same size:
    the samples' mean pairwise (pixel-space L2) distance over the real images', and the fraction of sample
    pairs closer than the real pairs' `quantile` distance.  The collapse watchdog's own in-graph measures
    (model.py), so a table and a training log mean the same thing by them."""
    from model import mean_pairwise_distance, near_duplicate_fraction
    from tf_runtime import tf

    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        fake, real = (tf.constant(images, tf.float32) / 127.5 - 1.0 for images in (samples, real))
        ratio = mean_pairwise_distance(fake) / mean_pairwise_distance(real)
        ratio, fraction = session.run([ratio, near_duplicate_fraction(fake, real, quantile)])
    return {"diversity_ratio": float(ratio), "near_duplicates": float(fraction)}


def meets_diversity_target(run):
    """Issue 14's CelebA target for one run: every checkpoint from step 100 on has a diversity ratio of at
    least 0.8 (and at most 1.25: wider than real faces is noise) and at most 5% near-duplicate pairs ("a few
    percent"); False for a run with no such checkpoint."""
    judged = [c for c in run["checkpoints"] if c["step"] >= DIVERSITY_TARGETS["from_step"]]
    return bool(judged) and all(
        DIVERSITY_TARGETS["min_ratio"] <= c["diversity_ratio"] <= DIVERSITY_TARGETS["max_ratio"]
        and c["near_duplicates"] <= DIVERSITY_TARGETS["max_near_duplicates"] for c in judged)


def format_mean_std(values, digits):
    mean, std, n = mean_std(values)
    if n == 0:
        return "—"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


# ---------------------------------------------------------------------------
# Running and scoring.
# ---------------------------------------------------------------------------


def data_dir_for(dataset, args):
    """The --data_dir of a dataset's runs: --data_dir itself, or for a dataset shipped as a tar or zip in it,
    the folder under --work_dir it is extracted to (once; a half-done extraction is never taken for done)."""
    archive_name = DATASETS[dataset].get("archive")
    if archive_name is None:
        return args.data_dir
    target = os.path.join(args.work_dir, "data", os.path.splitext(archive_name)[0])
    if not os.path.isdir(target):
        archive_path = os.path.join(args.data_dir, archive_name)
        if not os.path.exists(archive_path):
            raise UserError(f"--data_dir: {archive_path} not found; pass the folder holding {archive_name}")
        partial = target + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        if archive_name.endswith(".zip"):
            with zipfile.ZipFile(archive_path) as archive:  # member names with .. or a leading / are sanitised
                archive.extractall(partial)
        else:
            with tarfile.open(archive_path) as archive:
                archive.extractall(partial, filter="data")
        os.rename(partial, target)
    return target


def train_command(dataset, recipe, seed, budget, data_dir, out_dir):
    """(steps, the `main.py --train` command line) of one run: the dataset's and the recipe's flags, a
    checkpoint (and sample grid) every `checkpoint_every` steps or a CHECKPOINTS_PER_RUN-th of the run,
    all of them kept for scoring."""
    steps, flags = run_plan(recipe, budget)
    settings = DATASETS[dataset]
    ckpt_freq = settings.get("checkpoint_every") or max(1, steps // CHECKPOINTS_PER_RUN)
    return steps, [
        sys.executable, os.path.join(REPO_DIR, "main.py"), "--train", f"--dataset={settings['dataset']}",
        f"--data_dir={data_dir}", *settings["flags"], *flags, f"--seed={seed}", f"--max_steps={steps}",
        f"--out_dir={out_dir}", f"--ckpt_freq={ckpt_freq}", f"--sample_freq={ckpt_freq}",
        f"--max_to_keep={steps // ckpt_freq + 2}", "--log_freq=50"]


def train_run(dataset, recipe, seed, budget, args):
    """Trains one run in a subprocess; returns (record without scores, run folder)."""
    settings = DATASETS[dataset]
    flags = run_plan(recipe, budget)[1]
    out_dir = os.path.join(args.work_dir, "runs", dataset, recipe, f"seed{seed}_budget{budget}")
    steps, command = train_command(dataset, recipe, seed, budget, data_dir_for(dataset, args), out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)  # a run cut short is redone: its wall times would not add up
    os.makedirs(out_dir)
    print(f"[{time.strftime('%H:%M:%S')}] {dataset} {recipe} seed {seed}: {steps} steps", file=sys.stderr, flush=True)
    saved, watchdog_lines, tail = [], [], []
    start = time.time()
    with open(os.path.join(out_dir, "train.log"), "w") as log, subprocess.Popen(
            command, cwd=REPO_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
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
        "architecture": run_architecture(out_dir),
    }
    return record, out_dir, saved


def run_architecture(out_dir):
    """The architecture the run resolved its defaults to (its architecture.json), so a "default" row says
    which default it measured after the defaults change; None if training wrote no checkpoint."""
    from checkpoints import read_architecture

    paths = glob.glob(os.path.join(out_dir, "checkpoint", "*", "architecture.json"))
    return read_architecture(os.path.dirname(paths[0])) if paths else None


def run_config(dataset, seed, out_dir, args):
    """The Config naming a run (its checkpoints are read with the architecture stored beside them)."""
    settings = DATASETS[dataset]
    return config_lib.resolve(config_lib.Config(
        dataset=settings["dataset"], data_dir=data_dir_for(dataset, args), out_dir=out_dir, batch_size=BATCH_SIZE,
        y_dim=flag_value(settings["flags"], "y_dim"), output_height=flag_value(settings["flags"], "output_height"),
        input_height=flag_value(settings["flags"], "input_height"), seed=seed, eval_samples=args.eval_samples))


def resized_classifier(checkpoint_dir, dataset):
    """The dataset's 28x28 classifier for a model trained at another size (the unconditional MNIST G makes
    32x32): every image, real (which training resized 28 -> 32) and generated alike, is resized back to 28x28
    by PIL's antialiased bilinear filter before the classifier, so both sides take the same path."""
    from PIL import Image

    import metrics

    class ResizedClassifier(metrics.ClassifierExtractor):
        def _prepare(self, batch):
            resized = [np.asarray(Image.fromarray(image[:, :, 0]).resize((CLASSIFIER_SIZE, CLASSIFIER_SIZE),
                                                                          Image.BILINEAR)) for image in batch]
            return super()._prepare(np.stack(resized)[:, :, :, np.newaxis])

    extractor = ResizedClassifier(checkpoint_dir, dataset)
    extractor.name += f", images resized to {CLASSIFIER_SIZE}x{CLASSIFIER_SIZE}"
    return extractor


_EXTRACTORS = {}


def meter_for(config, args):
    """The quality meter of a run's config, with the classifier and real statistics kept under --work_dir
    (the classifier loaded once per dataset and size, the real statistics read from their cache)."""
    import evaluation
    import metrics

    config = dataclasses.replace(config, out_dir=args.work_dir)
    key = (config.dataset, config.output_height)
    if key not in _EXTRACTORS:
        native = config.output_height == metrics.CLASSIFIERS[config.dataset].input_shape[0]
        _EXTRACTORS[key] = (evaluation.load_extractor(config) if native
                            else resized_classifier(os.path.join(config.out_dir, config.checkpoint_dir),
                                                    config.dataset))
    return evaluation.QualityMeter(config, _EXTRACTORS[key])


def score_checkpoints(config, saved, args, average=True):
    """Each saved checkpoint's scores, with its step, images seen and wall time (`average=False`: of G's own
    weights in a run trained with --g_ema, instead of their moving average)."""
    from checkpoints import checkpoint_step, restored_generator

    scored = []
    for path, seconds in saved:
        with restored_generator(config, checkpoint=path, average=average) as restored:
            results = meter_for(restored.config, args).measure(restored.session, restored.generator)
        step = checkpoint_step(path)
        entry = {"step": step, "seconds": round(seconds, 1), "n_samples": int(results["n_samples"]),
                 "extractor": results["extractor"]}
        entry.update({key: float(results[key]) for key in METRICS if key in results})
        scored.append(entry)
    return scored


_REAL_IMAGES = {}


def with_data_channels(config):
    """`config` with the data's channel count (a run's config leaves it to the data, the real images need it)."""
    import data

    return dataclasses.replace(config, c_dim=data.open_source(config).c_dim)


def real_images_for_diversity(config, count, offset=0):
    """Real images [offset, offset + count) in file order, preprocessed as training does (uint8), read once."""
    import evaluation

    key = (config.dataset, config.data_dir, config.input_height, config.output_height)
    if key not in _REAL_IMAGES:
        _REAL_IMAGES[key] = evaluation.real_images_uint8(with_data_channels(config), 2 * DIVERSITY_SAMPLES)
    return _REAL_IMAGES[key][offset:offset + count]


_FACE_METRICS = {}


def face_scores(config, samples, args):
    """FD_face and the face detection rate of uint8 `samples` (face_metrics.FaceMetrics.scores) against the
    first FACE_SAMPLES real faces, their statistics cached under --work_dir; the networks are loaded once."""
    import evaluation

    if "faces" not in _FACE_METRICS:
        _FACE_METRICS["faces"] = evaluation.load_face_metrics(dataclasses.replace(config, face_metrics=True))
    faces = _FACE_METRICS["faces"]
    real = dataclasses.replace(with_data_channels(config), out_dir=args.work_dir, eval_samples=FACE_SAMPLES)
    return faces.scores(samples, evaluation.cached_real_statistics(real, faces.embedder))


def score_diversity(config, saved, args, average=True):
    """Each saved checkpoint's diversity scores (DIVERSITY_SAMPLES samples against as many real images) and,
    for faces (--face_metrics), its `face_scores` (FACE_SAMPLES samples, the first DIVERSITY_SAMPLES of them
    the same), with its step and wall time (`average` as in score_checkpoints)."""
    import evaluation
    from checkpoints import checkpoint_step, restored_generator

    real = real_images_for_diversity(config, DIVERSITY_SAMPLES)
    count = max(DIVERSITY_SAMPLES, FACE_SAMPLES) if config.face_metrics else DIVERSITY_SAMPLES
    scored = []
    for path, seconds in saved:
        with restored_generator(config, checkpoint=path, average=average) as restored:
            samples = evaluation.generate_uint8(restored.session, restored.generator, restored.config,
                                                count, config.seed + 2)
        entry = {"step": checkpoint_step(path), "seconds": round(seconds, 1), "n_samples": DIVERSITY_SAMPLES,
                 "extractor": "pixels", **diversity_scores(samples[:DIVERSITY_SAMPLES], real)}
        if config.face_metrics:
            entry.update(face_scores(config, samples[:FACE_SAMPLES], args), face_samples=FACE_SAMPLES)
        scored.append(entry)
    return scored


def copy_sample_grid(config, dataset, recipe, budget):
    """The run's last sample grid, as docs/ablation/<dataset>_<recipe>_<budget>.png (the budget in the name:
    a longer run of the same recipe must not replace the grid shown beside the shorter one's table)."""
    grids = sorted(f for f in os.listdir(config.sample_path) if f.startswith("train_") and f.endswith(".png"))
    if not grids:
        return None
    target = os.path.join(os.path.dirname(RESULTS_PATH), f"{dataset}_{recipe}_{budget}.png")
    shutil.copyfile(os.path.join(config.sample_path, grids[-1]), target)
    return os.path.relpath(target, os.path.dirname(DOC_PATH))


def append_record(record):
    os.makedirs(os.path.dirname(RESULTS_PATH), exist_ok=True)
    with open(RESULTS_PATH, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def ensure_floor(dataset, args, records):
    """Once per dataset and sample count: real vs real (train [n, 2n) against the reference [0, n)); for
    faces also FD_face's and the detection rate's floor (kind "face_floor", n = FACE_SAMPLES)."""
    diversity = DATASETS[dataset].get("scoring") == "diversity"
    n = DIVERSITY_SAMPLES if diversity else args.eval_samples
    import evaluation
    import metrics

    config = run_config(dataset, 0, args.work_dir, args)
    if config.face_metrics and not any(r.get("kind") == "face_floor" and r["dataset"] == dataset
                                       and r["n"] == FACE_SAMPLES for r in records):
        real = evaluation.real_images_uint8(with_data_channels(config), 2 * FACE_SAMPLES)
        append_record({"kind": "face_floor", "dataset": dataset, "n": FACE_SAMPLES,
                       **face_scores(config, real[FACE_SAMPLES:], args)})
    if any(r.get("kind") == "floor" and r["dataset"] == dataset and r["n"] == n for r in records):
        return
    if diversity:
        scores = diversity_scores(real_images_for_diversity(config, n, offset=n), real_images_for_diversity(config, n))
        append_record({"kind": "floor", "dataset": dataset, "n": n, "extractor": "pixels", **scores})
        return
    meter = meter_for(config, args)
    real = evaluation.real_images_uint8(dataclasses.replace(config, eval_samples=2 * args.eval_samples),
                                        2 * args.eval_samples)[args.eval_samples:]
    results = metrics.evaluate(real, meter.real_stats, meter.extractor)
    append_record({"kind": "floor", "dataset": dataset, "n": args.eval_samples, "extractor": results["extractor"],
                   **{key: float(results[key]) for key in ("fid", "kid_mean", "precision", "recall")}})


def ensure_classifier(dataset, args):
    if DATASETS[dataset].get("scoring") == "diversity":
        return  # scored in pixel space
    import metrics

    checkpoint_dir = os.path.join(args.work_dir, "checkpoint")
    name = DATASETS[dataset]["dataset"]
    if not metrics.classifier_is_trained(checkpoint_dir, name):
        print(f"training the {name} classifier first", file=sys.stderr)
        metrics.train_classifier_from_directory(name, data_dir_for(dataset, args), checkpoint_dir)


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
        scoring = score_diversity if DATASETS[dataset].get("scoring") == "diversity" else score_checkpoints
        record["checkpoints"] = scoring(config, saved, args)
        if not any(run_key(r)[:2] == (dataset, recipe) and r["budget"] == budget and r["seed"] < seed
                   for r in read_results(RESULTS_PATH) if r.get("kind") == "run"):  # the grid of the lowest seed
            record["sample_grid"] = copy_sample_grid(config, dataset, recipe, budget)
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


# ---------------------------------------------------------------------------
# Rendering docs/ablation.md.
# ---------------------------------------------------------------------------


def recipe_row(recipe, runs, pick):
    """One table row: mean ± std over seeds of the checkpoints `pick` chooses from each run."""
    chosen = [pick(run) for run in runs]
    chosen = [c for c in chosen if c is not None]
    column = {key: [c.get(key) for c in chosen] for key in METRICS + ("seconds", "step")}
    fired = sum(1 for run in runs if run["watchdog_warnings"])
    failed = sum(1 for run in runs if run["returncode"] != 0)
    cells = [recipe, f"{len(chosen)}/{len(runs)}", format_mean_std(column["fid"], 2),
             format_mean_std(column["kid_mean"], 2),
             format_mean_std(column["precision"], 3), format_mean_std(column["recall"], 3)]
    if any(v is not None for v in column["class_accuracy"]):
        cells.append(format_mean_std(column["class_accuracy"], 3))
    else:
        cells.append(format_mean_std(column["classes_present"], 1))
    cells += [format_mean_std(column["class_kl_uniform"], 3), format_mean_std(column["step"], 0),
              format_mean_std(column["seconds"], 0), f"{fired}/{len(runs)}", f"{failed}/{len(runs)}"]
    return "| " + " | ".join(cells) + " |"


def table(runs_by_recipe, pick, conditional):
    class_header = "requested-class acc." if conditional else "classes present (of 10)"
    lines = [f"| recipe | seeds | FID | KID | precision | recall | {class_header} | class KL to uniform | "
             "step | wall s | watchdog fired | failed |",
             "|" + "---|" * 12]
    order = sorted(runs_by_recipe, key=lambda r: mean_std([pick(run) and pick(run).get("fid")
                                                           for run in runs_by_recipe[r]])[0] or math.inf)
    return lines + [recipe_row(recipe, runs_by_recipe[recipe], pick) for recipe in order]


def fid_time_chart(path, runs_by_recipe, points=60):
    """FID against wall time, mean over seeds (each seed interpolated between its checkpoints, the curve
    drawn where every seed has one before and after), one curve per recipe (matplotlib)."""
    import utils

    end = max(run["checkpoints"][-1]["seconds"] for runs in runs_by_recipe.values() for run in runs
              if run["checkpoints"])
    grid = np.linspace(0, end, points)
    curves = {}
    for recipe, runs in sorted(runs_by_recipe.items()):
        per_seed = []
        for run in runs:
            times = [c["seconds"] for c in run["checkpoints"]]
            fids = [c["fid"] for c in run["checkpoints"]]
            if times:
                per_seed.append(np.interp(grid, times, fids, left=np.nan, right=np.nan))
        if per_seed:
            curves[recipe] = np.mean(per_seed, axis=0)  # NaN wherever one seed has no checkpoints around
    utils.plot_curves(path, {"FID (mean over seeds)": {recipe: (grid, fid) for recipe, fid in curves.items()}},
                      x_label="wall-clock seconds since launch")


def classifier_section(dataset, budget, runs_by_recipe, floors):
    """A dataset scored by its domain classifier: FID & co. at equal images and at equal wall time, and a chart."""
    lines = []
    conditional = flag_value(DATASETS[dataset]["flags"], "y_dim") != 0
    any_run = next(iter(runs_by_recipe.values()))[0]
    n_samples = any_run["checkpoints"][-1]["n_samples"] if any_run["checkpoints"] else 0
    epoch_images, epoch_name = DATASETS[dataset].get("epoch", (60000, "MNIST"))
    lines += [f"## {dataset}, budget {budget:,} images ({budget / epoch_images:.2f} {epoch_name} epochs)", ""]
    floor = floors.get((dataset, n_samples))
    extractor = any_run["checkpoints"][-1]["extractor"] if any_run["checkpoints"] else "?"
    lines.append(f"{n_samples} generated samples per checkpoint; features: {extractor}.")
    if floor:
        lines.append(f"Real-vs-real floor at {floor['n']} images (train [n, 2n) vs [0, n)): "
                     f"FID {floor['fid']:.2f}, KID {floor['kid_mean']:.2f}, "
                     f"precision {floor['precision']:.3f}, recall {floor['recall']:.3f}.")
    lines += ["", "### At equal images seen (final checkpoint), best mean FID first", ""]
    lines += table(runs_by_recipe, lambda run: run["checkpoints"][-1] if run["checkpoints"] else None, conditional)
    t = equal_time([run for rs in runs_by_recipe.values() for run in rs])
    if t is not None:
        lines += ["", f"### At equal wall-clock time, T = {t:.0f} s", "",
                  "T is the median run's length; a run that finished before T is shown at its last checkpoint, a "
                  "run with no checkpoint by T as —; the step and wall s columns say which checkpoint a row is.", ""]
        lines += table(runs_by_recipe, lambda run, t=t: checkpoint_at_time(run["checkpoints"], t), conditional)
        chart = f"ablation/{dataset}_{budget}_fid_vs_time.png"
        fid_time_chart(os.path.join(os.path.dirname(DOC_PATH), chart), runs_by_recipe)
        lines += ["", "FID (mean over seeds, each seed interpolated between its checkpoints) against wall-clock "
                  "seconds since launch; drawn with matplotlib:",
                  "", f"![FID against wall time, {dataset}]({chart})", ""]
    return lines


def diversity_section(dataset, budget, runs_by_recipe, floors):
    """A dataset scored by sample diversity in pixel space (CelebA): every checkpoint's mean ± std over seeds,
    and per recipe whether every seed met issue 14's target."""
    settings = DATASETS[dataset]
    steps = sorted({run["steps"] for runs in runs_by_recipe.values() for run in runs})
    first, min_ratio, max_ratio = (DIVERSITY_TARGETS[k] for k in ("from_step", "min_ratio", "max_ratio"))
    max_near = DIVERSITY_TARGETS["max_near_duplicates"]
    lines = [f"## {dataset}, budget {budget:,} images ({', '.join(map(str, steps))} steps)", "",
             f"Flags: `{' '.join(settings['flags'])} --ckpt_freq {settings['checkpoint_every']}`, the faces "
             f"extracted from `{settings['archive']}` (a {flag_value(settings['flags'], 'input_height')} px centre "
             "crop of the half-size 89x109 faces is carpedm20's 108 px crop at full size). No feature network "
             f"(no Inception weights offline), so no FID: each checkpoint's {DIVERSITY_SAMPLES} samples (seeded z) "
             f"are compared with the first {DIVERSITY_SAMPLES} real faces (file order, training's crop and resize) in "
             "pixel space. **ratio** = the samples' mean pairwise L2 distance / the real faces'; **near-dup.** = "
             f"the fraction of sample pairs closer than the {NEAR_DUPLICATE_QUANTILE:.0%} quantile of real-real pair "
             f"distances. Target (issue 14): from step {first} on, at every seed, ratio ≥ {min_ratio} and "
             f"near-duplicates a few percent (taken here as ≤ {max_near}); a ratio above {max_ratio} is counted "
             "as a miss too, since samples spread wider than real faces are noise (look at the grid)."]
    floor = floors.get((dataset, DIVERSITY_SAMPLES))
    if floor:
        n = floor["n"]
        lines.append(f"Real vs real (faces [{n}, {2 * n}) scored as samples against [0, {n})): "
                     f"ratio {floor['diversity_ratio']:.3f}, near-dup. {floor['near_duplicates']:.3f}.")
    lines += ["", "| recipe | step | seeds | ratio | near-dup. | wall s |", "|" + "---|" * 6]
    for recipe, runs in sorted(runs_by_recipe.items()):
        for step in sorted({c["step"] for run in runs for c in run["checkpoints"]}):
            chosen = [c for run in runs for c in run["checkpoints"] if c["step"] == step]
            lines.append(f"| {recipe} | {step} | {len(chosen)}/{len(runs)} | "
                         f"{format_mean_std([c['diversity_ratio'] for c in chosen], 3)} | "
                         f"{format_mean_std([c['near_duplicates'] for c in chosen], 3)} | "
                         f"{format_mean_std([c['seconds'] for c in chosen], 0)} |")
    lines += ["", f"| recipe | seeds | target met (from step {first}) | lowest ratio | highest near-dup. | "
              "whole run, wall s | watchdog fired | failed |", "|" + "---|" * 8]
    for recipe, runs in sorted(runs_by_recipe.items()):
        judged = [c for run in runs for c in run["checkpoints"] if c["step"] >= first]
        lowest = f"{min(c['diversity_ratio'] for c in judged):.3f}" if judged else "—"
        highest = f"{max(c['near_duplicates'] for c in judged):.3f}" if judged else "—"
        lines.append(f"| {recipe} | {len(runs)} | {sum(meets_diversity_target(run) for run in runs)}/{len(runs)} | "
                     f"{lowest} | {highest} | {format_mean_std([run['wall_seconds'] for run in runs], 0)} | "
                     f"{sum(1 for run in runs if run['watchdog_warnings'])}/{len(runs)} | "
                     f"{sum(1 for run in runs if run['returncode'] != 0)}/{len(runs)} |")
    return lines + [""]


def run_notes(runs_by_recipe):
    """The first watchdog warning of each run that fired, failed runs, and one sample grid per recipe."""
    lines = []
    warnings = [(run["recipe"], run["seed"], run["watchdog_examples"][0]) for rs in runs_by_recipe.values()
                for run in rs if run["watchdog_examples"]]
    if warnings:
        lines += ["Watchdog warnings (first of each run that fired):", ""]
        lines += [f"- {recipe} seed {seed}: `{text}`" for recipe, seed, text in warnings]
        lines.append("")
    failures = [(run["recipe"], run["seed"], run["error"]) for rs in runs_by_recipe.values() for run in rs
                if run["returncode"] != 0]
    lines += [f"- FAILED {recipe} seed {seed}: `{error}`" for recipe, seed, error in failures]
    grids = [(recipe, rs[0].get("sample_grid")) for recipe, rs in sorted(runs_by_recipe.items())
             if any(r.get("sample_grid") for r in rs)]
    if grids:
        lines += ["", "Samples at the final checkpoint (lowest seed):", "",
                  " ".join(f"{recipe}<br>![{recipe}]({path})" for recipe, path in grids), ""]
    return lines


def render(records):
    runs = [r for r in records if r.get("kind") == "run"]
    floors = {(r["dataset"], r["n"]): r for r in records if r.get("kind") == "floor"}
    lines = [
        "# Recipe ablation, measured",
        "",
        "Generated by `python bench/ablation.py render` from `docs/ablation/results.jsonl` (one line per run, "
        "appended by `python bench/ablation.py run ...`); do not edit by hand.",
        "",
        f"Machine: {cpu_model()}, 2 cores, **shared with three other agents' jobs while these ran** (load average "
        "often 4–8): wall times are what this machine gave, not the CPU's best, and differ between rows by "
        "more than the recipes do; compare them as rough ratios. Rendered "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Python {platform.python_version()}.",
        "",
        "How each run was made: `python main.py --train --dataset D --data_dir ../shared/data <recipe flags> "
        f"--batch_size {BATCH_SIZE} --seed S --max_steps <budget / ({BATCH_SIZE} × d_steps)> "
        f"--ckpt_freq <steps / {CHECKPOINTS_PER_RUN}>` (steps / 6 for the runs started first, before scoring "
        "turned out to cost more than training on this loaded machine: results.jsonl lists each run's checkpoints), "
        "every recipe at batch 64 (dcgan_paper's 128 overridden to 64). Wall time counts from the process launch "
        "(start-up and graph building included) to each `saved` line. Each checkpoint is scored on "
        "generated samples against the same number of real training images, with the dataset's domain-classifier "
        "features (`metrics.py --train_classifier`; their scale is not Inception's, so KID is in the hundreds). "
        "Equal images = the final checkpoint; equal time = each run's last checkpoint at or before T, "
        "T = the median run's length in the table (a run that finished earlier at its last checkpoint, a run "
        "with no checkpoint by T left out: see the seeds column). "
        "Watchdog fired = runs with at least one `watchdog:` warning; failed = runs that exited non-zero.",
        "",
    ]
    _, same_as = distinct_recipes(RECIPES)
    lines += [f"- `{recipe}` now gives exactly the settings of `{twin}` at batch {BATCH_SIZE} (every recipe and "
              "architecture flag), so `run` does not train it again; rows of it that exist were trained while "
              "the defaults differed." for recipe, twin in same_as.items()] + [""]
    groups = {}
    for run in runs:
        groups.setdefault((run["dataset"], run["budget"]), {}).setdefault(run["recipe"], []).append(run)
    for (dataset, budget), runs_by_recipe in sorted(groups.items()):
        section = diversity_section if DATASETS[dataset].get("scoring") == "diversity" else classifier_section
        lines += section(dataset, budget, runs_by_recipe, floors) + run_notes(runs_by_recipe)
    if os.path.exists(DISCUSSION_PATH):
        with open(DISCUSSION_PATH) as f:
            lines += ["", f.read()]
    with open(DOC_PATH, "w") as f:
        f.write("\n".join(lines) + "\n")


def cpu_model():
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith("Model name")),
                "unknown CPU")


def command_compare_average(args):
    """What sampling from G's moving average adds, measured on the same runs (no training): every kept
    checkpoint of each finished run scored from G's own weights and from their average."""
    from checkpoints import checkpoint_paths, checkpoint_step

    dataset = args.dataset
    if dataset not in DATASETS:
        raise UserError(f"--dataset: one of {', '.join(DATASETS)} (got {dataset!r})")
    diversity = DATASETS[dataset].get("scoring") == "diversity"
    score = score_diversity if diversity else score_checkpoints
    columns = ("diversity_ratio", "near_duplicates") if diversity else ("fid", "recall", "classes_present")
    print(f"| recipe | seed | step | {' | '.join(f'G itself: {c}' for c in columns)} | "
          f"{' | '.join(f'average: {c}' for c in columns)} |")
    print("|" + "---|" * (3 + 2 * len(columns)))
    for recipe in args.recipes.split(","):
        for seed in map(int, args.seeds.split(",")):
            out_dir = os.path.join(args.work_dir, "runs", dataset, recipe, f"seed{seed}_budget{args.budget}")
            config = run_config(dataset, seed, out_dir, args)
            if not (run_architecture(out_dir) or {}).get("g_ema"):
                raise UserError(f"{out_dir}: no run trained with --g_ema there; run it first (`run`)")
            saved = [(path, 0.0) for path in sorted(checkpoint_paths(config.checkpoint_path), key=checkpoint_step)]
            for own, averaged in zip(score(config, saved, args, average=False), score(config, saved, args),
                                     strict=True):
                cells = [f"{entry[c]:.3f}" if c != "fid" else f"{entry[c]:.1f}" for entry in (own, averaged)
                         for c in columns]
                print(f"| {recipe} | {seed} | {own['step']} | {' | '.join(cells)} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train and score the runs not yet in the results file, then render")
    run.add_argument("--dataset", default="mnist", help=f"comma-separated: {', '.join(DATASETS)}")
    run.add_argument("--recipes", default="all", help=f"'all' or comma-separated: {', '.join(RECIPES)}")
    run.add_argument("--seeds", default="1", help="comma-separated seeds")
    run.add_argument("--budget", type=int, default=25000, help="training images seen per run")
    run.add_argument("--eval_samples", type=int, default=5000, help="generated (and real) images per score")
    run.add_argument("--data_dir", default=os.path.join(os.path.dirname(REPO_DIR), "shared", "data"))
    run.add_argument("--work_dir", default="/tmp/ablation",
                     help="runs, the classifiers and cached real statistics (outside the repository)")
    compare = commands.add_parser(
        "compare_average", parents=[run], add_help=False, conflict_handler="resolve",
        help="score finished runs' checkpoints twice, G itself and its --g_ema average, and print the table")
    compare.add_argument("--recipes", default="default", help="comma-separated recipes trained with --g_ema")
    commands.add_parser("render", help="rewrite docs/ablation.md and its charts from the results file")
    args = parser.parse_args(argv)
    if args.command == "run":
        command_run(args)
    elif args.command == "compare_average":
        command_compare_average(args)
    else:
        render(read_results(RESULTS_PATH))
    return 0


if __name__ == "__main__":
    run_command(main)
