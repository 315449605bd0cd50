"""What the benchmark scripts share: where the repository and the shared data are, the tiny training run
(tests/conftest.py's tiny_config too), pixels as the networks see them, command lines for `main.py` and for a
script's own child process, markdown tables and the CPU's description.

Loads only the standard library and NumPy (the project's modules on first use), so the PyTorch step of
`bench.mnist_reference` can import it from the bench-only virtualenv.
"""

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # benchmarks' and tests' data; the project never reads it
# The benchmark-only virtualenv holding torch (bench/requirements-bench.txt), never the project's.
TORCH_PYTHON = str(REPO / ".venv-bench" / "bin" / "python")

# The tiny run: conditional MNIST at 16x16, layer widths 4-16, batch 4, two steps, with a sample, a summary and
# a checkpoint every step.  Its data_dir (tiny_values) does not exist, so MNIST comes from the embedded copy.
TINY = dict(dataset="mnist", output_height=16, batch_size=4, z_dim=8, gf_dim=4, df_dim=4, gfc_dim=16, dfc_dim=16,
            train_size=64, max_steps=2, sample_freq=1, ckpt_freq=1, summary_freq=1, log_freq=1, n_samples=6, seed=1)


def tiny_values(out_dir, **overrides):
    """TINY writing under `out_dir`, reading data from `out_dir`/no_data (missing: the embedded MNIST), with
    `overrides` applied last."""
    return {**TINY, "out_dir": str(out_dir), "data_dir": str(Path(out_dir) / "no_data"), **overrides}


def tiny_config(out_dir, **overrides):
    """The resolved Config of tiny_values."""
    import config as config_lib

    return config_lib.resolve(config_lib.Config(**tiny_values(out_dir, **overrides)))


def to_float(images_uint8):
    """uint8 pixels -> float32 in [-1, 1], as datasets/pipeline.py scales what G and D see (the inverse of
    utils.to_uint8)."""
    return np.asarray(images_uint8).astype(np.float32) / 127.5 - 1.0


def as_flags(values):
    """{name: value} as main.py's flags, `--name=value`."""
    return [f"--{name}={value}" for name, value in values.items()]


def main_command(*arguments):
    """The argv of `main.py` with these arguments, run by this interpreter."""
    return [sys.executable, str(REPO / "main.py"), *arguments]


def module_command(module, *arguments, python=sys.executable):
    """The argv of `python -m module arguments`: a benchmark starting itself (or another) as a child process.
    Run it with cwd=REPO, where `bench` is importable."""
    return [python, "-m", module, *arguments]


def run_child(command, env):
    """Runs a child that prints its result as JSON on its last stdout line, from the repository root.
    Returns (that result, or {"error": the last line of its stderr} if it failed, its stderr's non-blank lines)."""
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if result.returncode != 0:
        return {"error": lines[-1] if lines else f"exit {result.returncode}"}, lines
    return json.loads(result.stdout.strip().splitlines()[-1]), lines


def table_row(cells):
    """One row of a markdown table."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def table_header(columns, align=""):
    """The header and separator lines of a markdown table; `align` holds "r" for each right-aligned column (the
    numbers), "l" or nothing for the others."""
    separators = ("---:" if side == "r" else "---" for side in align.ljust(len(columns), "l"))
    return table_row(columns) + "\n|" + "|".join(separators) + "|"


def cpu_description():
    """(model name, flags) as lscpu gives them; without lscpu, (the platform's processor name or "unknown CPU",
    "")."""
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        output = ""
    fields = dict(line.split(":", 1) for line in output.splitlines() if ":" in line)
    model = fields.get("Model name", "").strip() or platform.processor() or "unknown CPU"
    return model, fields.get("Flags", "").strip()
