"""Training-step speed under the CPU switches this project sets, as ratios from one run.

Each variant runs in its own process (TF_ENABLE_ONEDNN_OPTS is read when
TensorFlow loads) on the full-size model, fed a constant batch so only the
step itself is timed: one D update plus --g_steps G updates, as in training/train.py.

    python -m bench.step_time [--steps 10] [--model celebA|mnist|both]

Prints a markdown table: images/s and the speed relative to the project's
default (oneDNN on, remapper off, NHWC) for each model.
"""

import argparse
import dataclasses
import json
import os
import time

from bench import harness

VARIANTS = [  # (label, oneDNN, remapper, data_format)
    ("project default: oneDNN on, remapper off, NHWC", "1", False, "NHWC"),
    ("remapper on", "1", True, "NHWC"),
    ("oneDNN off", "0", False, "NHWC"),
    ("NCHW", "1", False, "NCHW"),
]
MODELS = {"celebA": dict(dataset="celebA", c_dim=3), "mnist": dict(dataset="mnist")}


def worker(model_name, remapper, data_format, steps):
    """Runs in the child process: builds the model and times `steps` steps."""
    import numpy as np

    import config as config_lib
    from model import DCGAN
    from runtime.tf_runtime import session_config, tf

    v1 = tf.compat.v1
    config = config_lib.resolve(config_lib.Config(data_format=data_format, **MODELS[model_name]))
    shape = (config.batch_size, config.output_height, config.output_width, config.c_dim)
    with tf.Graph().as_default():
        v1.set_random_seed(0)
        images = tf.constant(np.random.RandomState(0).uniform(-1, 1, shape), tf.float32)
        labels = tf.constant(np.arange(config.batch_size) % 10, tf.int64) if config.conditional else None
        gan = DCGAN(config, images, labels)
        session_options = session_config()
        if remapper:
            rewrite = session_options.graph_options.rewrite_options
            rewrite.remapping = rewrite.DEFAULT
        with v1.Session(config=session_options) as session:
            session.run(v1.global_variables_initializer())

            def step():
                session.run(gan.d_train_op)
                for _ in range(config.g_steps):
                    session.run(gan.g_train_op)

            for _ in range(3):
                step()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            seconds = (time.perf_counter() - start) / steps
    return {"images_per_second": config.batch_size / seconds, "seconds_per_step": seconds}


def run_variant(model_name, onednn, remapper, data_format, steps):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="3")
    command = harness.module_command("bench.step_time", "--worker", model_name, "--remapper", str(int(remapper)),
                                     "--data_format", data_format, "--steps", str(steps))
    return harness.run_child(command, env)[0]


@dataclasses.dataclass
class Row:
    model: str
    label: str
    result: dict


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--model", choices=["celebA", "mnist", "both"], default="both")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--remapper", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data_format", default="NHWC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, bool(args.remapper), args.data_format, args.steps)))
        return
    models = list(MODELS) if args.model == "both" else [args.model]
    rows = [Row(m, label, run_variant(m, onednn, remapper, fmt, args.steps))
            for m in models for label, onednn, remapper, fmt in VARIANTS]
    print(harness.table_header(["model", "variant", "img/s", "s/step", "vs default"], "llrrr"))
    for model_name in models:
        model_rows = [r for r in rows if r.model == model_name]
        baseline = model_rows[0].result.get("images_per_second")
        for r in model_rows:
            if "error" in r.result:
                print(harness.table_row([model_name, r.label, f"failed: {r.result['error'][:60]}", "", ""]))
                continue
            ips = r.result["images_per_second"]
            ratio = f"{ips / baseline:.2f}x" if baseline else "n/a"
            print(harness.table_row([model_name, r.label, f"{ips:.1f}", f"{r.result['seconds_per_step']:.3f}", ratio]))


if __name__ == "__main__":
    main()
