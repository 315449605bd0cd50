"""The one configuration object, built from flags and passed down.

`main.py` turns flags into a `Config`; everything else receives the Config and
never reads flags, so tests build a Config directly with tiny sizes.
`resolve()` fills dataset-dependent defaults and rejects combinations the
architecture cannot build, with a one-line `UserError` naming the flag.
"""

import dataclasses
import math
import os

from errors import UserError

MNIST_LIKE = ("mnist", "fashion")
VISUALIZE_OPTIONS = ("samples", "sweeps", "interpolation", "sweep_gifs", "merged_gif")
NAN_POLICIES = ("stop", "skip")
# With --nan_policy skip, this many non-finite steps in a row mean the run has
# diverged rather than hit a bad batch, and it stops as with --nan_policy stop.
NAN_SKIP_LIMIT = 10

# Fields that define the network's variables: a checkpoint written with other
# values cannot be restored, so they are stored beside it and compared.
ARCHITECTURE_FIELDS = (
    "output_height", "output_width", "c_dim", "y_dim", "z_dim", "gf_dim", "df_dim", "gfc_dim", "dfc_dim",
)


@dataclasses.dataclass
class Config:
    # Data
    dataset: str = "celebA"
    data_dir: str = "data"
    input_fname_pattern: str = "*.jpg,*.jpeg,*.png"
    train_size: int = 0  # 0 = use every image
    input_height: int = 0  # 0 = dataset default
    input_width: int = 0  # 0 = same as input_height
    output_height: int = 0
    output_width: int = 0
    crop: bool | None = None  # None = dataset default (celebA crops)
    c_dim: int = 0  # 0 = from the data
    y_dim: int = 0  # 0 = unconditional; mnist/fashion use 10
    cache: str = ""  # decoded images: "" = not cached, "memory", or a file path prefix
    # Architecture
    z_dim: int = 100
    z_dist: str = "uniform"
    gf_dim: int = 64
    df_dim: int = 64
    gfc_dim: int = 1024
    dfc_dim: int = 1024
    data_format: str = "NHWC"
    # Training
    train: bool = False
    epoch: int = 25
    max_steps: int = 0  # 0 = epoch * batches per epoch
    batch_size: int = 64
    learning_rate: float = 2e-4
    beta1: float = 0.5
    d_steps: int = 1
    g_steps: int = 2
    real_label: float = 1.0
    feature_matching: bool = False
    nan_policy: str = "stop"  # non-finite loss/gradient: "stop" the run, or "skip" that update
    seed: int = 0
    mixed_precision: bool = False
    xla: bool = False
    # Output
    out_dir: str = "."
    checkpoint_dir: str = "checkpoint"
    sample_dir: str = "samples"
    summary_dir: str = "logs"
    sample_freq: int = 100
    ckpt_freq: int = 500
    summary_freq: int = 10
    log_freq: int = 10
    max_to_keep: int = 5
    n_samples: int = 64
    # Quality metrics
    eval: bool = False
    eval_samples: int = 10000
    fid_every: int = 0  # 0 = never during training
    keep_best: bool = False
    inception_graph: str = ""
    best: bool = False
    # Other modes
    visualize_option: str = ",".join(VISUALIZE_OPTIONS)
    export: str = ""
    freeze: str = ""

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

    def visualize_options(self):
        options = [o.strip() for o in self.visualize_option.split(",") if o.strip()]
        unknown = [o for o in options if o not in VISUALIZE_OPTIONS]
        if unknown or not options:
            raise UserError(f"--visualize_option: unknown {unknown}; choose from {','.join(VISUALIZE_OPTIONS)}")
        return options


def _require(condition, message):
    if not condition:
        raise UserError(message)


def resolve(config):
    """Returns a copy with dataset defaults filled in, or raises UserError."""
    c = dataclasses.replace(config)
    if c.dataset in MNIST_LIKE:
        c.input_height = c.input_height or 28
        c.output_height = c.output_height or 28
        c.y_dim = c.y_dim or 10
        c.c_dim = c.c_dim or 1
        c.crop = bool(c.crop)
    elif c.dataset.lower() == "celeba":
        c.input_height = c.input_height or 108
        c.crop = True if c.crop is None else c.crop
    elif c.dataset == "cifar10":  # unconditional 32x32 RGB unless asked otherwise
        c.output_height = c.output_height or 32
        c.c_dim = c.c_dim or 3
    c.output_height = c.output_height or 64
    c.input_height = c.input_height or c.output_height
    c.input_width = c.input_width or c.input_height
    c.output_width = c.output_width or c.output_height
    c.crop = bool(c.crop)

    for name in ("batch_size", "epoch", "z_dim", "gf_dim", "df_dim", "gfc_dim", "dfc_dim", "d_steps", "g_steps",
                 "sample_freq", "ckpt_freq", "summary_freq", "log_freq", "max_to_keep", "n_samples",
                 "eval_samples"):
        _require(getattr(c, name) >= 1, f"--{name} must be at least 1 (got {getattr(c, name)})")
    for name in ("train_size", "max_steps", "seed", "fid_every"):
        _require(getattr(c, name) >= 0, f"--{name} must be 0 or more (got {getattr(c, name)})")
    _require(0 < c.learning_rate < math.inf, f"--learning_rate must be a positive number (got {c.learning_rate})")
    _require(0 <= c.beta1 < 1, f"--beta1 must be in [0, 1) (got {c.beta1})")
    _require(0.5 < c.real_label <= 1, f"--real_label must be in (0.5, 1] (got {c.real_label}); 0.9 is usual smoothing")
    _require(c.z_dist in ("uniform", "gaussian"), f"--z_dist must be uniform or gaussian (got {c.z_dist!r})")
    _require(c.nan_policy in NAN_POLICIES, f"--nan_policy must be {' or '.join(NAN_POLICIES)} (got {c.nan_policy!r})")
    _require(c.data_format in ("NHWC", "NCHW"), f"--data_format must be NHWC or NCHW (got {c.data_format!r})")
    _require(c.c_dim in (0, 1, 3), f"--c_dim must be 1 (grayscale) or 3 (RGB) (got {c.c_dim})")
    _require(c.y_dim >= 0, f"--y_dim must be 0 or more (got {c.y_dim})")
    # The unconditional G upsamples 4 times by 2 and the conditional one twice.
    multiple = 4 if c.conditional else 16
    for name in ("output_height", "output_width"):
        value = getattr(c, name)
        _require(
            value >= multiple and value % multiple == 0,
            f"--{name}={value}: this generator needs a multiple of {multiple} "
            f"(e.g. {max(multiple, round(value / multiple) * multiple)})",
        )
    _require(not c.keep_best or c.fid_every, "--keep_best needs --fid_every N (how often to measure FID)")
    c.visualize_options()
    return c
