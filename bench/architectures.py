"""Training speed of each architecture option (issues 15 and 16), in images/s.

Every variant is the default full-size model with one option changed, fed a
constant batch so only the step is timed: the training loop's own step
(train.step_plan: the fused 1 D + 1 G run by default).  All variants are built first, each in its own graph
and session, then timed in interleaved rounds (variant 1, 2, ..., 1, 2, ...)
and reported by their median round, so a change in the machine's load during
the run (the cores may be shared) falls on every variant alike.

    python -m bench.architectures [--model celebA|mnist|mnist_unconditional|all] [--rounds 5] [--steps 2]

Prints a markdown table: images/s, seconds per step and the speed relative
to the default architecture, per model.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import config as config_lib  # noqa: E402
from bench import harness  # noqa: E402
from model import DCGAN  # noqa: E402
from runtime.errors import UserError  # noqa: E402
from runtime.tf_runtime import session_config, tf  # noqa: E402
from training import train  # noqa: E402

v1 = tf.compat.v1

# Each variant changes the model's defaults by these Config overrides.  Upsampling is varied to the one the
# model does not default to (config.default_upsampling picks resize_conv for unconditional digits).
OPTION_VARIANTS = [
    dict(kernel_size=4),
    "other upsampling",
    dict(d_head="gap"),
    dict(g_norm="instance", d_norm="instance"),
    dict(g_norm="layer", d_norm="layer"),
    dict(g_norm="none", d_norm="none"),
    dict(spectral_norm=True, d_norm="none"),
    dict(g_ema=0.0),  # the average is on by default
    dict(arch="mlp"),
    dict(arch="style"),
]
MODELS = {"celebA": dict(dataset="celebA", c_dim=3), "mnist": dict(dataset="mnist"),
          # the ablation's unconditional MNIST, where the style generator was compared with DCGAN's
          "mnist_unconditional": dict(dataset="mnist", y_dim=0, output_height=32)}


def variants_for(model_name):
    """(label, Config overrides) of the model's default and of each option variant of it."""
    default = config_lib.resolve(config_lib.Config(**MODELS[model_name]))
    other_upsampling = "deconv" if default.g_upsample == "resize_conv" else "resize_conv"
    overrides = [dict(g_upsample=other_upsampling) if o == "other upsampling" else o for o in OPTION_VARIANTS]
    label = (f"default: {default.arch}, {default.g_upsample}, kernel {default.kernel_size}, {default.d_head} head, "
             f"{default.g_norm} norm, g_ema {default.g_ema}")
    return [(label, {}), *((flags_label(o), o) for o in overrides)]


def flags_label(overrides):
    return " ".join(f"--{name}" if value is True else f"--{name} {value}" for name, value in overrides.items())


class Variant:
    """One variant's graph and session, ready to time."""

    def __init__(self, model_name, overrides):
        self.config = config_lib.resolve(config_lib.Config(**MODELS[model_name], **overrides))
        config = self.config
        shape = (config.batch_size, config.output_height, config.output_width, config.c_dim)
        self.graph = tf.Graph()
        with self.graph.as_default():
            v1.set_random_seed(0)
            images = tf.constant(np.random.RandomState(0).uniform(-1, 1, shape), tf.float32)
            labels = tf.constant(np.arange(config.batch_size) % 10, tf.int64) if config.conditional else None
            self.gan = DCGAN(config, images, labels)
            self.session = v1.Session(config=session_config())
            self.session.run(self.gan.initializer)
        self.plan = [fetches for fetches, _summary in train.step_plan(config, self.gan)]
        self.seconds = []

    def step(self):
        for fetches in self.plan:
            self.session.run(fetches)

    def time_round(self, steps):
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        self.seconds.append((time.perf_counter() - start) / steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=[*MODELS, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    args = parser.parse_args()
    models = list(MODELS) if args.model == "all" else [args.model]
    print(harness.table_header(["model", "variant", "img/s", "s/step", "vs default"], "llrrr"))
    for model_name in models:
        variants = []
        for label, overrides in variants_for(model_name):
            try:
                variants.append((label, Variant(model_name, overrides)))
            except UserError as error:  # e.g. the style generator at MNIST's 28x28
                print(harness.table_row([model_name, label, f"not built: {error}", "", ""]), flush=True)
        for _, variant in variants:
            variant.step()  # warm-up: graph optimisation and first allocations
        for _ in range(args.rounds):
            for _, variant in variants:
                variant.time_round(args.steps)
        batch = variants[0][1].config.batch_size
        baseline = statistics.median(variants[0][1].seconds)
        for label, variant in variants:
            seconds = statistics.median(variant.seconds)
            print(harness.table_row([f"{model_name} {variant.config.output_height}x{variant.config.output_width}",
                                     label, f"{batch / seconds:.1f}", f"{seconds:.3f}", f"{baseline / seconds:.2f}x"]),
                  flush=True)
            variant.session.close()


if __name__ == "__main__":
    main()
