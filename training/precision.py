"""Which compute precision a training run uses, and why: the first thing a run logs.

Weights are always float32; `--bfloat16` turns on oneDNN's bfloat16 rewrite of the session (matmuls and
convolutions in bfloat16), `--mixed_precision` the float16 rewrite with loss scaling (GPUs).  Left unset,
`--bfloat16` is decided here, once, when training starts:

1. a flag given wins (`--bfloat16`, `--nobfloat16`, or `--mixed_precision`, which excludes bfloat16);
2. a visible GPU trains in float32: the oneDNN rewrite is a CPU rewrite, and float16 on a GPU changes the
   numbers enough that it stays the user's choice (`--mixed_precision`);
3. a CPU without AVX512_BF16 or AMX trains in float32: oneDNN would emulate bfloat16, slower than float32;
4. otherwise bfloat16, for the models whose quality in bfloat16 docs/ablation.md measured as level with
   float32's at 3 seeds (BFLOAT16_MODELS), float32 for the others.  The list is empty until those checks
   are in: faces (`k4_bf16` / `bf16` against `default`) and conditional MNIST at one epoch (`bf16`).

A resumed run decides again, on the same machine the same way, so resuming stays bit-exact there.
"""

import dataclasses
import logging

from runtime.errors import UserError
from runtime.tf_runtime import cpu_has_bfloat16, tf

log = logging.getLogger("dcgan")

# The models bfloat16 is the default for on a bfloat16 CPU, by `model_kind`: those docs/ablation.md measured at
# 3 seeds with bfloat16 inside float32's seed spread.
BFLOAT16_MODELS = ()


def model_kind(config):
    """"conditional" (labelled models: MNIST, Fashion-MNIST, CIFAR-10 with --y_dim) or "unconditional"
    (faces, image folders): the two models the ablation measures bfloat16 on."""
    return "conditional" if config.conditional else "unconditional"


def decide(config, gpus, cpu_bfloat16):
    """(bfloat16 on?, the reason, as the log says it) for `config`, given the visible GPUs and whether the CPU
    runs bfloat16 natively."""
    if config.bfloat16 is not None:
        if config.bfloat16 and not cpu_bfloat16:
            raise UserError("--bfloat16: this CPU has neither AVX512_BF16 nor AMX, so oneDNN would emulate bfloat16 "
                            "more slowly than float32; train without --bfloat16")
        return config.bfloat16, "--bfloat16" if config.bfloat16 else "--nobfloat16"
    if config.mixed_precision:
        return False, "--mixed_precision"
    if gpus:
        return False, "a GPU is visible (float16 with --mixed_precision)"
    if not cpu_bfloat16:
        return False, "this CPU has neither AVX512_BF16 nor AMX"
    if model_kind(config) not in BFLOAT16_MODELS:
        return False, (f"bfloat16 is not the default for {model_kind(config)} models (docs/ablation.md); "
                       "--bfloat16 to use it")
    return True, "this CPU has AVX512_BF16 or AMX and docs/ablation.md found bfloat16 as good here; --nobfloat16 " \
                 "for float32"


def training_precision(config):
    """`config` with --bfloat16 decided (see the module docstring), after logging which precision runs and why."""
    bfloat16, reason = decide(config, tf.config.list_physical_devices("GPU"), cpu_has_bfloat16())
    config = dataclasses.replace(config, bfloat16=bfloat16)
    log.info("precision: %s compute, float32 weights (%s)", config.precision, reason)
    return config
