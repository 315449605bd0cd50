"""The one configuration object, built from flags and passed down.

`main.py` turns flags into a `Config`; everything else receives the Config and
never reads flags, so tests build a Config directly with tiny sizes.
Each option is declared once, with its default and --help text, in the class
of its role (runtime/options.py): main.py's flags, ARCHITECTURE_FIELDS,
RECIPE_FIELDS and the flag tables (python -m tools.flag_table) come from there.
`resolve()` fills dataset-dependent defaults and rejects combinations the
architecture cannot build, with a one-line `UserError` naming the flag.
"""

import dataclasses
import math
import os
import re

from networks.options import ArchitectureOptions
from runtime.errors import UserError
from runtime.options import option, option_names
from training.losses import LOSSES as LOSS_TABLE

MNIST_LIKE = ("mnist", "fashion")
VISUALIZE_OPTIONS = ("samples", "sweeps", "interpolation", "sweep_gifs", "merged_gif", "style_mixing", "truncation",
                     "noise")
# Visualizations of the style generator only (--arch style).
STYLE_VISUALIZE_OPTIONS = ("style_mixing", "truncation", "noise")
# The DCGAN paper's analyses (section 6), asked for by name: not in the default
# set, as d_filters also restores D and arithmetic reads --arithmetic_groups.
PAPER_ANALYSES = ("arithmetic", "d_filters", "walk")
NAN_POLICIES = ("stop", "skip")
# With --nan_policy skip, this many non-finite steps in a row mean the run has
# diverged rather than hit a bad batch, and it stops as with --nan_policy stop.
NAN_SKIP_LIMIT = 10

LOSSES = tuple(LOSS_TABLE)  # --loss's choices; each loss is declared once, in training/losses.py
LOSSES_WITH_TARGETS = tuple(name for name, loss in LOSS_TABLE.items() if loss.has_targets)
D_BATCHNORM = ("separate", "combined")
# (D's, G's) Adam learning rates when no rate flag is given, by model, from docs/ablation.md: the
# conditional MNIST / Fashion-MNIST model trains best with the two time-scale update rule (D 4x faster);
# with it the unconditional DCGAN (CelebA, image folders, --y_dim 0) saturated D and collapsed by step 50
# on CelebA at 3 of 3 seeds, so unconditional models keep the DCGAN paper's single rate.
# A --learning_rate sets both networks' rates.
DEFAULT_LEARNING_RATES = {"conditional": (4e-4, 1e-4), "unconditional": (2e-4, 2e-4)}
ON_COLLAPSE = ("warn", "stop", "rollback")
# --on_collapse rollback multiplies both learning rates by this factor at each
# rollback, and after this many rollbacks in one run folder stops as `stop` does:
# a collapse that lower rates could not cure a fourth time needs a new recipe.
ROLLBACK_RATE_FACTOR = 0.5
ROLLBACK_LIMIT = 3
# dcgan and mlp name a family of both networks; style is StyleGAN's generator
# with the DCGAN discriminator.
ARCHS = ("dcgan", "mlp", "style")
G_UPSAMPLE = ("deconv", "resize_conv")
D_HEADS = ("dense", "gap")
NORMS = ("batch", "instance", "layer", "none")
# --g_norm/--d_norm "" means the architecture's own choice: BatchNorm in both
# DCGAN networks (the paper), BatchNorm in the MLP G and none in the MLP D,
# which regularises with dropout instead (the vanilla GAN of documents 002/003).
DEFAULT_NORMS = {"dcgan": ("batch", "batch"), "mlp": ("batch", "none"), "style": ("batch", "batch")}
PROBE_DATASETS = ("mnist", "fashion", "cifar10")
TFLITE_QUANTIZATIONS = ("none", "float16")
# What a checkpoint folder written before these architecture fields existed
# was built with: its architecture file lacks them, and they are read as these.
ARCHITECTURE_BEFORE_FIELDS = {"arch": "dcgan", "g_upsample": "deconv", "d_head": "dense", "g_norm": "batch",
                              "d_norm": "batch", "spectral_norm": False, "g_ema": 0.0, "kernel_size": 5,
                              "minibatch_stddev": False, "z_dist": "uniform", "conditioning": "concat"}
STYLE_UPSAMPLING = ("nearest", "bilinear")
# tf.distribute.experimental.CollectiveCommunication of several machines' all-reduce.
ALL_REDUCE = ("auto", "ring", "nccl")
# --diffaugment's transforms (training/diffaugment.py), in the order they are applied whatever order they are listed in.
DIFFAUGMENT_TRANSFORMS = ("color", "translation", "cutout")


@dataclasses.dataclass
class RecipeOptions:
    """Stored beside the checkpoints (recipe.json): a resumed run that changes one is refused unless
    --allow_recipe_change."""

    loss: str = option("non_saturating", f"GAN loss: {', '.join(LOSSES)} (wasserstein needs --gp_lambda)")
    learning_rate: float = option(0.0, "Adam learning rate of both networks (0 = the defaults: conditional models "
                                       "D {:g}, G {:g}, the two time-scale update rule; unconditional models {:g} "
                                       "for both)".format(*DEFAULT_LEARNING_RATES["conditional"],
                                                          DEFAULT_LEARNING_RATES["unconditional"][0]))
    d_learning_rate: float = option(0.0, "D's learning rate (0 = --learning_rate, else D's default)")
    g_learning_rate: float = option(0.0, "G's learning rate (0 = --learning_rate, else G's default)")
    beta1: float = option(0.5, "Adam beta1 (0.5 per the DCGAN paper; 0 for WGAN-GP)")
    beta2: float = option(0.999, "Adam beta2 (0.9 for WGAN-GP)")
    d_steps: int = option(1, "discriminator updates per step (each on a fresh real batch)")
    g_steps: int = option(1, "generator updates per step (carpedm20 uses 2 so D does not win outright)")
    fused_update: bool = option(True, "one D and one G update in a single session.run on the same fake batch, G's "
                                      "loss through the updated D (the PyTorch reference DCGAN's step; G's forward "
                                      "pass runs once)")
    real_label: float = option(1.0, "target for real images; 0.9 = one-sided label smoothing")
    label_flip: float = option(0.0, "fraction of D's targets flipped at random (noisy labels)")
    instance_noise: float = option(0.0, "std of Gaussian noise added to D's inputs (images in [-1, 1]); 0 = off")
    instance_noise_steps: int = option(0, "decay --instance_noise linearly to 0 over this many steps (0 = constant)")
    gp_lambda: float = option(0.0, "weight of the WGAN-GP gradient penalty (10 in the paper); 0 = off")
    r1_gamma: float = option(0.0, "weight of the R1 gradient penalty on real data; 0 = off")
    feature_matching: bool = option(False, "add the feature matching loss to G (Salimans et al. 2016)")
    d_batchnorm: str = option("separate", "separate: D normalises the real and the fake batch apart (carpedm20); "
                                          "combined: one batch")
    bn_momentum: float = option(0.9, "momentum of G's BatchNorm moving averages (0.8 in the Keras anime-faces "
                                     "recipe)")
    historical_averaging: float = option(0.0, "weight of the penalty on each network's distance from its past mean "
                                              "weights (Salimans et al. 2016); 0 = off")
    image_pool: int = option(0, "D sees fakes from a pool of this many earlier ones half the time (Shrivastava et "
                                "al. 2017); 0 = off")
    style_mixing: float = option(0.9, "--arch style: probability that a training batch feeds two w, switched at a "
                                      "random layer (style mixing regularisation; 0 = off)")
    diffaugment: str = option("", "differentiable augmentation of every image D sees, real and fake, in both "
                                  "networks' updates (Zhao et al. 2020; for small data sets): a comma-separated list "
                                  f"of {', '.join(DIFFAUGMENT_TRANSFORMS)}, applied in that order; '' = off")


@dataclasses.dataclass
class RunOptions:
    """What this run does and where it reads and writes: free to change between runs."""

    # Data
    dataset: str = option("celebA", "mnist, fashion, cifar10, celebA, or the name of a folder of images under "
                                    "--data_dir")
    data_dir: str = option("data", "folder holding one sub-folder per dataset")
    input_fname_pattern: str = option("*.jpg,*.jpeg,*.png,*.webp", "comma-separated globs of image files (searched "
                                      "recursively); JPEG, PNG, GIF, BMP and WebP files are read (e.g. "
                                      "'*.jpg,*.png,*.webp')")
    train_size: int = option(0, "use only the first N images (0 = all)")
    input_height: int = option(0, "centre-crop height with --crop (0 = dataset default: 108 celebA, 28 mnist, else "
                                  "output)")
    input_width: int = option(0, "centre-crop width (0 = input_height)")
    crop: bool | None = option(None, "centre-crop input_height x input_width before resizing (default: on for "
                                     "celebA)")
    cache: str = option("", "image folders: keep decoded, resized images after the first epoch in 'memory' or in "
                            "files at this path prefix (a digest of the files and flags is appended); default: "
                            "decode every epoch")
    # Training
    train: bool = option(False, "train (resuming from the newest checkpoint); without it, visualize")
    epoch: int = option(25, "epochs to train")
    max_steps: int = option(0, "stop after this many steps instead (0 = epoch * steps per epoch)")
    batch_size: int = option(64, "images per batch")
    watchdog: bool = option(True, "warn when training collapses: D saturated, D not discriminating, low diversity, "
                                  "exploding gradients")
    on_collapse: str = option("warn", "what the watchdog does: warn (log and TensorBoard), stop (exit 4, nothing "
                                      "saved) or rollback (restore the newest good checkpoint, multiply both "
                                      f"learning rates by {ROLLBACK_RATE_FACTOR:g} and go on; stops as `stop` after "
                                      f"{ROLLBACK_LIMIT} rollbacks)")
    allow_recipe_change: bool = option(False, "resume even though recipe flags (loss, learning rates, ...) differ "
                                              "from the checkpoint's")
    nan_policy: str = option("stop", "on a NaN/Inf loss or gradient: stop (exit 3, nothing saved) or skip that "
                                     f"update (stops after {NAN_SKIP_LIMIT} steps in a row)")
    seed: int = option(0, "random seed (same seed + same machine = same run)")
    # Compute
    data_format: str = option("NHWC", "NHWC (CPU) or NCHW (often faster on NVIDIA GPUs)")
    mixed_precision: bool = option(False, "float16 mixed precision with loss scaling (GPU)")
    bfloat16: bool | None = option(None, "bfloat16 compute with float32 weights through oneDNN (CPUs with "
                                         "AVX512_BF16 or AMX); default: on when training on such a CPU with no GPU "
                                         "for the models docs/ablation.md found as good in it (training/precision.py); "
                                         "--nobfloat16 = float32")
    xla: bool = option(False, "compile with XLA")
    # Scale-out (training/replicas.py, docs/scaling.md); several machines are named by TF_CONFIG
    num_replicas: int = option(0, "synchronous data-parallel replicas on this machine, one per GPU (the global "
                                  "--batch_size is split between them); 0 = every GPU when there are several, else "
                                  "one device. Several machines: TF_CONFIG (docs/scaling.md)")
    devices: str = option("", "the replicas' devices, e.g. /gpu:0,/gpu:1 (/cpu:0,/cpu:1 tries replicas on the CPU); "
                              "default: from --num_replicas")
    worker_timeout: int = option(600, "several machines: seconds a step waits for the other workers before the run "
                                      "stops, naming the worker that is gone")
    all_reduce: str = option("auto", "several machines: the collective all-reduce, auto (TensorFlow's choice), ring "
                                     "(gRPC) or nccl (NVIDIA GPUs: NCCL within and between machines)")
    # Output
    out_dir: str = option(".", "root folder for checkpoint/, samples/ and logs/")
    checkpoint_dir: str = option("checkpoint", "checkpoint folder (under out_dir)")
    sample_dir: str = option("samples", "samples folder (under out_dir)")
    summary_dir: str = option("logs", "TensorBoard folder (under out_dir)")
    sample_freq: int = option(100, "save a sample grid every N steps")
    ckpt_freq: int = option(500, "save a checkpoint every N steps")
    summary_freq: int = option(10, "write TensorBoard summaries every N steps")
    log_freq: int = option(10, "print a progress line every N steps")
    max_to_keep: int = option(5, "checkpoints kept")
    n_samples: int = option(64, "images per sample grid and visualization (independent of batch size)")
    # Quality metrics
    eval: bool = option(False, "print FID, KID, IS, precision/recall (and with --face_metrics FD_face and the face "
                               "detection rate) of the newest checkpoint and save them as JSON")
    eval_samples: int = option(10000, "generated (and real) images per evaluation")
    fid_every: int = option(0, "during training, measure FID/KID (and the face metrics) every N steps and log them "
                               "to TensorBoard (0 = never)")
    keep_best: bool = option(False, "keep the checkpoint with the best FID (FD_face for faces without an FID "
                                    "network) in checkpoint/<run>/best/ (needs --fid_every)")
    inception_graph: str = option("", "TTUR's classify_image_graph_def.pb for Inception features (python "
                                      "download.py inception)")
    face_metrics: bool | None = option(None, "also score samples as faces: FD_face (Frechet distance of dlib "
                                             "ResNet-128 face embeddings) and the share of samples in which dlib's "
                                             "CNN detector finds a face; on by default for celebA, pass it for a "
                                             "face folder (needs the pip packages dlib-bin and "
                                             "face-recognition-models)")
    best: bool = option(False, "visualize/eval/export the best-FID checkpoint (checkpoint/<run>/best/) instead of "
                               "the newest")
    # Explorer and the paper's analyses
    serve: bool = option(False, "start the latent explorer: a web page on --host:--port showing the run's generator")
    serve_model: str = option("", "with --serve: serve this exported SavedModel (--export DIR) instead of the run's "
                                  "checkpoint")
    host: str = option("127.0.0.1", "address the explorer listens on (127.0.0.1: this machine only)")
    port: int = option(8000, "port the explorer listens on (0 = any free port, printed at start)")
    arithmetic_groups: str = option("0,1,2;3,4,5;6,7,8", "--visualize_option arithmetic: groups A;B;C of "
                                    "test_samples.png indices for A - B + C (e.g. smiling woman;neutral "
                                    "woman;neutral man)")
    # Other modes
    visualize_option: str = option(",".join(VISUALIZE_OPTIONS), "comma-separated: " + ",".join(VISUALIZE_OPTIONS)
                                   + "; the DCGAN paper's analyses (by name only): " + ",".join(PAPER_ANALYSES))
    truncation_psi: float = option(1.0, "--arch style: sample from w_avg + psi * (w - w_avg), w_avg the average w "
                                        "tracked in training (samples, visualize, eval, export default; 1 = off)")
    linear_probe: bool = option(False, "mnist/fashion/cifar10: train a linear classifier on the trained D's features "
                                       "and on a random D's, print both test accuracies and exit")
    export: str = option("", "write the generator as a SavedModel to this folder and exit")
    freeze: str = option("", "write the generator as a frozen GraphDef .pb to this path and exit")
    export_tflite: str = option("", "write the generator as a LiteRT (TensorFlow Lite) model to this .tflite file "
                                    "and exit: z (+ labels) in, uint8 images out, on batches of --tflite_batch_size")
    tflite_batch_size: int = option(1, "--export_tflite: the model's batch size, fixed at export (LiteRT shapes are "
                                       "static)")
    tflite_quantize: str = option("none", "--export_tflite weights: none (float32) or float16 (half the file; "
                                          "computed in float32)")


@dataclasses.dataclass
class Config(RunOptions, RecipeOptions, ArchitectureOptions):
    """Every option: the fields of the option classes, architecture's first (Config declares none itself)."""

    @property
    def conditional(self):
        return self.y_dim > 0

    @property
    def run_name(self):
        """Folder name shared by checkpoint/, samples/ and logs/.

        Deterministic from the flags (no timestamp), so `python main.py` with the
        training flags finds the checkpoints that training wrote.
        """
        return f"{self.dataset.replace(os.sep, '_')}_{self.batch_size}_{self.output_height}_{self.output_width}"

    def _run_path(self, folder):
        return os.path.normpath(os.path.join(self.out_dir, folder, self.run_name))

    @property
    def checkpoint_path(self):
        return self._run_path(self.checkpoint_dir)

    @property
    def sample_path(self):
        return self._run_path(self.sample_dir)

    @property
    def log_path(self):
        return self._run_path(self.summary_dir)

    def architecture(self):
        return {name: getattr(self, name) for name in ARCHITECTURE_FIELDS}

    def recipe(self):
        return {name: getattr(self, name) for name in RECIPE_FIELDS}

    @property
    def precision(self):
        """Compute precision of the training session (weights are always float32)."""
        return "float16" if self.mixed_precision else "bfloat16" if self.bfloat16 else "float32"

    def learning_rates(self):
        """(D's, G's) Adam learning rates: --d/g_learning_rate, else --learning_rate, else the model's
        defaults (DEFAULT_LEARNING_RATES). Every flag given counts: none is overridden by a default."""
        d_default, g_default = DEFAULT_LEARNING_RATES["conditional" if self.conditional else "unconditional"]
        return (self.d_learning_rate or self.learning_rate or d_default,
                self.g_learning_rate or self.learning_rate or g_default)

    def arithmetic_index_groups(self):
        return _parse_arithmetic_groups(self.arithmetic_groups)

    def visualize_options(self):
        options = [o.strip() for o in self.visualize_option.split(",") if o.strip()]
        known = VISUALIZE_OPTIONS + PAPER_ANALYSES
        unknown = [o for o in options if o not in known]
        if unknown or not options:
            raise UserError(f"--visualize_option: unknown {unknown}; choose from {','.join(known)}")
        return options


# The option classes by role: what changing one of their options between two runs on one checkpoint
# folder does (each class's docstring says it).
ROLES = {"architecture": ArchitectureOptions, "recipe": RecipeOptions, "run": RunOptions}
# Stored beside the checkpoints and compared when a run restores them (training/checkpoints.py).
ARCHITECTURE_FIELDS = option_names(ArchitectureOptions)
RECIPE_FIELDS = option_names(RecipeOptions)


def _parse_arithmetic_groups(text):
    """'0,1,2;3,4,5;6,7,8' -> three lists of sample indices, or UserError."""
    message = (f"--arithmetic_groups {text!r}: give three groups A;B;C of comma-separated indices into "
               "test_samples.png, e.g. 0,1,2;3,4,5;6,7,8")
    groups = text.split(";")
    _require(len(groups) == 3, message)
    try:
        parsed = [[int(index) for index in group.split(",")] for group in groups]
    except ValueError:
        raise UserError(message) from None
    _require(all(index >= 0 for group in parsed for index in group), message)
    return parsed


_DEVICE = re.compile(r"^/(cpu|gpu):(\d+)$", re.IGNORECASE)


def parse_devices(text):
    """--devices '/gpu:0,/gpu:1' -> ['/gpu:0', '/gpu:1'] (lower case), or UserError naming the flag."""
    devices = [d.strip().lower() for d in text.split(",") if d.strip()]
    bad = [d for d in devices if not _DEVICE.match(d)]
    if bad:
        raise UserError(f"--devices: {bad[0]!r} is not a device; write them as /gpu:0,/gpu:1 (or /cpu:0,/cpu:1)")
    _require(len(set(devices)) == len(devices), f"--devices {text}: a device is listed twice")
    return devices


def with_defaults(recorded, names):
    """The values of `names` in a checkpoint's recorded architecture or recipe.

    A field the record lacks was added to Config after the run was written, so
    that run was built with the field's default (e.g. --arch dcgan)."""
    defaults = {field.name: field.default for field in dataclasses.fields(Config)}
    return {name: recorded.get(name, defaults[name]) for name in names}


def diffaugment_policy(text):
    """--diffaugment 'cutout, color' -> 'color,cutout': the transforms named, once each, in the order
    they are applied (so a listing order cannot make two recipes differ), or UserError."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(DIFFAUGMENT_TRANSFORMS))
    if unknown:
        raise UserError(f"--diffaugment: unknown transform {unknown[0]!r}; give a comma-separated list of "
                        f"{', '.join(DIFFAUGMENT_TRANSFORMS)} (or '' for none)")
    return ",".join(name for name in DIFFAUGMENT_TRANSFORMS if name in names)


def _require(condition, message):
    if not condition:
        raise UserError(message)


def default_upsampling(c):
    """G's upsampling when --g_upsample is not given: resize + convolution for the unconditional DCGAN
    on MNIST-like digits, where the transposed-convolution generator collapsed with every recipe tried
    (1-7 of 10 classes) and resize_conv kept 8-10 at 3 of 3 seeds at about the same wall time
    (docs/ablation.md); transposed convolutions elsewhere (carpedm20's, and half the step time at 64x64)."""
    digits = c.dataset in MNIST_LIKE and not c.conditional
    return "resize_conv" if c.arch == "dcgan" and digits else "deconv"


def resolve(config):
    """Returns a copy with dataset defaults filled in, or raises UserError."""
    c = dataclasses.replace(config)
    if c.dataset in MNIST_LIKE:
        c.input_height = c.input_height or 28
        c.output_height = c.output_height or 28
        c.y_dim = 10 if c.y_dim < 0 else c.y_dim
        c.c_dim = c.c_dim or 1
        c.crop = bool(c.crop)
    elif c.dataset.lower() == "celeba":
        c.input_height = c.input_height or 108
        c.crop = True if c.crop is None else c.crop
    elif c.dataset == "cifar10":  # unconditional 32x32 RGB unless asked otherwise
        c.output_height = c.output_height or 32
        c.c_dim = c.c_dim or 3
    c.y_dim = 0 if c.y_dim == -1 else c.y_dim
    c.output_height = c.output_height or 64
    c.input_height = c.input_height or c.output_height
    c.input_width = c.input_width or c.input_height
    c.output_width = c.output_width or c.output_height
    c.crop = bool(c.crop)
    c.face_metrics = c.dataset.lower() == "celeba" if c.face_metrics is None else c.face_metrics

    for name in ("batch_size", "epoch", "z_dim", "gf_dim", "df_dim", "gfc_dim", "dfc_dim", "d_steps", "g_steps",
                 "sample_freq", "ckpt_freq", "summary_freq", "log_freq", "max_to_keep", "n_samples",
                 "eval_samples"):
        _require(getattr(c, name) >= 1, f"--{name} must be at least 1 (got {getattr(c, name)})")
    for name in ("train_size", "max_steps", "seed", "fid_every", "instance_noise_steps", "image_pool"):
        _require(getattr(c, name) >= 0, f"--{name} must be 0 or more (got {getattr(c, name)})")
    for names, zero_means in ((("learning_rate", "d_learning_rate", "g_learning_rate"), "the default"),
                              (("gp_lambda", "r1_gamma", "instance_noise", "historical_averaging"), "off")):
        for name in names:
            value = getattr(c, name)
            _require(0 <= value < math.inf, f"--{name} must be 0 ({zero_means}) or a positive number (got {value})")
    for name in ("beta1", "beta2"):
        _require(0 <= getattr(c, name) < 1, f"--{name} must be in [0, 1) (got {getattr(c, name)})")
    _require(0 < c.bn_momentum < 1, f"--bn_momentum must be in (0, 1) (got {c.bn_momentum})")
    _require(0.5 < c.real_label <= 1, f"--real_label must be in (0.5, 1] (got {c.real_label}); 0.9 is usual smoothing")
    _require(0 <= c.label_flip < 0.5, f"--label_flip must be in [0, 0.5) (got {c.label_flip}); 0.05 is usual")
    _require(c.loss in LOSSES, f"--loss must be one of {', '.join(LOSSES)} (got {c.loss!r})")
    if c.loss not in LOSSES_WITH_TARGETS:
        for name, neutral in (("real_label", 1.0), ("label_flip", 0.0)):
            _require(getattr(c, name) == neutral,
                     f"--{name} has no meaning with --loss {c.loss} (it has no targets); leave it at {neutral}")
    _require(c.loss != "wasserstein" or c.gp_lambda > 0,
             "--loss wasserstein needs --gp_lambda (10 in WGAN-GP; see recipes/wgan_gp.flags): "
             "an unconstrained critic diverges")
    _require(c.conditioning in ("concat", "acgan"), f"--conditioning must be concat or acgan (got {c.conditioning!r})")
    _require(c.conditioning == "concat" or c.conditional,
             "--conditioning acgan needs labelled data and --y_dim > 0 (mnist, fashion, cifar10)")
    _require(not c.image_pool or c.image_pool >= c.batch_size,
             f"--image_pool {c.image_pool} must hold at least one batch (--batch_size {c.batch_size}), or be 0 (off)")
    c.diffaugment = diffaugment_policy(c.diffaugment)
    _require(c.kernel_size in (4, 5), f"--kernel_size must be 4 or 5 (got {c.kernel_size})")
    _require(c.d_batchnorm in D_BATCHNORM, f"--d_batchnorm must be {' or '.join(D_BATCHNORM)} (got {c.d_batchnorm!r})")
    _require(c.on_collapse in ON_COLLAPSE, f"--on_collapse must be {', '.join(ON_COLLAPSE)} (got {c.on_collapse!r})")
    _require(not (c.bfloat16 and c.mixed_precision),
             "--bfloat16 and --mixed_precision (float16, GPU) exclude each other; pick one")
    _require(c.z_dist in ("uniform", "gaussian"), f"--z_dist must be uniform or gaussian (got {c.z_dist!r})")
    _require(c.nan_policy in NAN_POLICIES, f"--nan_policy must be {' or '.join(NAN_POLICIES)} (got {c.nan_policy!r})")
    _require(c.data_format in ("NHWC", "NCHW"), f"--data_format must be NHWC or NCHW (got {c.data_format!r})")
    _require(c.num_replicas >= 0, f"--num_replicas must be 0 (every GPU) or more (got {c.num_replicas})")
    _require(c.worker_timeout >= 1, f"--worker_timeout must be at least 1 second (got {c.worker_timeout})")
    parse_devices(c.devices)
    _require(c.all_reduce in ALL_REDUCE, f"--all_reduce must be {', '.join(ALL_REDUCE)} (got {c.all_reduce!r})")
    _require(c.c_dim in (0, 1, 3), f"--c_dim must be 1 (grayscale) or 3 (RGB) (got {c.c_dim})")
    _require(c.y_dim >= 0, f"--y_dim must be 0 (unconditional) or more (got {c.y_dim})")
    # The unconditional G upsamples 4 times by 2 and the conditional one twice; the MLP G makes any size.
    multiple = 1 if c.arch == "mlp" else 4 if c.conditional else 16
    for name in ("output_height", "output_width"):
        value = getattr(c, name)
        _require(
            value >= multiple and value % multiple == 0,
            f"--{name}={value}: this generator needs a multiple of {multiple} "
            f"(e.g. {max(multiple, round(value / multiple) * multiple)})",
        )
    _require(not c.keep_best or c.fid_every, "--keep_best needs --fid_every N (how often to measure FID)")
    _require(0 <= c.port <= 65535, f"--port must be in 0..65535 (0 = any free port) (got {c.port})")
    if "arithmetic" in c.visualize_options():
        largest = max(max(group) for group in c.arithmetic_index_groups())
        _require(largest < c.n_samples, f"--arithmetic_groups picks sample {largest} but test_samples.png has "
                                        f"--n_samples {c.n_samples}; pick indices below {c.n_samples}")
    c.visualize_options()
    _require(c.arch in ARCHS, f"--arch must be {' or '.join(ARCHS)} (got {c.arch!r})")
    c.g_upsample = c.g_upsample or default_upsampling(c)
    _require(c.g_upsample in G_UPSAMPLE, f"--g_upsample must be {' or '.join(G_UPSAMPLE)} (got {c.g_upsample!r})")
    _require(c.d_head in D_HEADS, f"--d_head must be {' or '.join(D_HEADS)} (got {c.d_head!r})")
    default_g_norm, default_d_norm = DEFAULT_NORMS[c.arch]
    c.g_norm, c.d_norm = c.g_norm or default_g_norm, c.d_norm or default_d_norm
    for name in ("g_norm", "d_norm"):
        _require(getattr(c, name) in NORMS, f"--{name} must be one of {', '.join(NORMS)} (got {getattr(c, name)!r})")
    if c.arch == "mlp":
        for name, convolutional_only in (("g_upsample", "deconv"), ("d_head", "dense"), ("kernel_size", 5),
                                         ("minibatch_stddev", False)):
            _require(getattr(c, name) == convolutional_only,
                     f"--{name} has no meaning with --arch mlp (no convolutions); leave it at {convolutional_only}")
        for name in ("g_norm", "d_norm"):
            _require(getattr(c, name) != "instance",
                     f"--{name} instance needs feature maps; --arch mlp has none (use layer, batch or none)")
        _require(min(c.gfc_dim, c.dfc_dim) >= 4, "--arch mlp: --gfc_dim and --dfc_dim must be at least 4 "
                                                 "(its layers are width/4, width/2 and width)")
    if c.arch == "dcgan":
        # Instance norm standardises each map over its own positions: a 1x1 map
        # (G's first, D's last, at 16x16 unconditional) would become all zeros.
        smallest_map = min(c.output_height, c.output_width) // (4 if c.conditional else 16)
        for name in ("g_norm", "d_norm"):
            _require(getattr(c, name) != "instance" or smallest_map > 1,
                     f"--{name} instance would zero the {smallest_map}x{smallest_map} feature maps of a "
                     f"{c.output_height}x{c.output_width} DCGAN; use layer norm or a larger --output_height")
    _require(0 <= c.g_ema < 1, f"--g_ema must be 0 (off) or a decay in (0, 1), e.g. 0.999 (got {c.g_ema})")
    if c.linear_probe:
        _require(c.dataset in PROBE_DATASETS,
                 f"--linear_probe needs a labelled dataset: {', '.join(PROBE_DATASETS)} (got {c.dataset!r})")
        _require(not c.conditional, "--linear_probe needs an unconditional D (--y_dim 0): a conditional D is "
                                    "given the label the probe has to predict")
    _require(c.tflite_quantize in TFLITE_QUANTIZATIONS,
             f"--tflite_quantize must be {' or '.join(TFLITE_QUANTIZATIONS)} (got {c.tflite_quantize!r})")
    _require(c.tflite_batch_size >= 1, f"--tflite_batch_size must be at least 1 (got {c.tflite_batch_size})")
    if c.export_tflite:
        _require(c.export_tflite.endswith(".tflite"),
                 f"--export_tflite {c.export_tflite}: name the LiteRT file FILE.tflite")
    else:
        _require(c.tflite_quantize == "none", "--tflite_quantize applies to --export_tflite FILE.tflite; add it")
    _require(c.style_upsample in STYLE_UPSAMPLING,
             f"--style_upsample must be {' or '.join(STYLE_UPSAMPLING)} (got {c.style_upsample!r})")
    for name in ("mapping_layers", "w_dim"):
        _require(getattr(c, name) >= 1, f"--{name} must be at least 1 (got {getattr(c, name)})")
    _require(0 < c.mapping_lr_multiplier <= 1,
             f"--mapping_lr_multiplier must be in (0, 1] (got {c.mapping_lr_multiplier}); 0.01 in StyleGAN")
    _require(0 <= c.style_mixing <= 1, f"--style_mixing must be a probability in [0, 1] (got {c.style_mixing})")
    _require(math.isfinite(c.truncation_psi), f"--truncation_psi must be a finite number (got {c.truncation_psi})")
    if c.arch == "style":
        size = c.output_height
        _require(c.output_width == size and size >= 16 and size & (size - 1) == 0,
                 f"--arch style grows a 4x4 constant by doublings: --output_height and --output_width must be equal "
                 f"powers of two from 16 (16, 32, 64, ...; got {c.output_height}x{c.output_width}; "
                 f"MNIST/Fashion-MNIST: --output_height 32 resizes the 28x28 digits)")
    return c
