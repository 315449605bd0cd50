"""What each run of the ablation is: the recipes (flag files and variants), the datasets' settings, the steps
and flags a budget of images gives, and a run's Config, data folder and resolved architecture."""

import glob
import os
import shutil
import tarfile
import zipfile

import config as config_lib
from bench import harness
from runtime.errors import UserError

BATCH_SIZE = 64
CHECKPOINTS_PER_RUN = 4
RECIPE_FILES = ("carpedm20", "dcgan_paper", "anime_faces", "wgan_gp", "hinge_r1", "ttur")
# Variants of a recipe, as extra flags; "{half_steps}" is half the run's steps.  The first three vary
# carpedm20's recipe (the project's default until the TTUR default was chosen from this table).
CARPEDM20 = f"--flagfile={os.path.join(harness.REPO, 'recipes', 'carpedm20.flags')}"
TTUR = f"--flagfile={os.path.join(harness.REPO, 'recipes', 'ttur.flags')}"
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
    # Differentiable augmentation (Zhao et al. 2020) of every image D sees, issue 26's data-efficient trick.
    "diffaugment": ["--diffaugment=color,translation,cutout"],
    # The default with bfloat16 compute (float32 weights): the precision check of issue 27 on faces.
    "bf16": ["--bfloat16"],
    # The default with the reference's 4x4 kernels and bfloat16 compute: the fastest step on a CPU with
    # AVX512_BF16 (issue 27), so the faster candidate for the face default at equal wall time.
    "k4_bf16": ["--kernel_size=4", "--bfloat16"],
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
# Not a recipe of this project: bench/torch_dcgan.py's PyTorch reference DCGAN (pytorch/examples' step and
# architecture, 4x4 kernels, batch 64) trained on the same preprocessed images, its samples scored the same way.
REFERENCE = "pytorch_reference"
RECIPES = ("default", *RECIPE_FILES, *VARIANTS, REFERENCE)


def scored_by_diversity(dataset):
    """Whether a dataset's checkpoints are scored by sample diversity in pixel space (no feature network for it
    offline) rather than by its domain classifier."""
    return DATASETS[dataset].get("scoring") == "diversity"


def recipe_flags(recipe):
    """The command-line flags of a recipe by name (before "{half_steps}" is filled in)."""
    if recipe in ("default", REFERENCE):
        return []
    if recipe in RECIPE_FILES:
        return [f"--flagfile={os.path.join(harness.REPO, 'recipes', recipe + '.flags')}"]
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
        if recipe == REFERENCE:  # no project flags, yet not the project's default
            kept.append(recipe)
            continue
        twin = next((k for k in kept if settings(k) == settings(recipe)), None)
        if twin is None:
            kept.append(recipe)
        else:
            same_as[recipe] = twin
    return kept, same_as


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


def run_config(dataset, seed, out_dir, args):
    """The Config naming a run (its checkpoints are read with the architecture stored beside them)."""
    settings = DATASETS[dataset]
    return config_lib.resolve(config_lib.Config(
        dataset=settings["dataset"], data_dir=data_dir_for(dataset, args), out_dir=out_dir, batch_size=BATCH_SIZE,
        y_dim=flag_value(settings["flags"], "y_dim"), output_height=flag_value(settings["flags"], "output_height"),
        input_height=flag_value(settings["flags"], "input_height"), seed=seed, eval_samples=args.eval_samples))


def run_architecture(out_dir):
    """The architecture the run resolved its defaults to (its architecture.json), so a "default" row says
    which default it measured after the defaults change; None if training wrote no checkpoint."""
    from training.checkpoints import read_architecture

    paths = glob.glob(os.path.join(out_dir, "checkpoint", "*", "architecture.json"))
    return read_architecture(os.path.dirname(paths[0])) if paths else None
