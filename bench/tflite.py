"""LiteRT files against the SavedModel: size on disk and per-image latency of one generator, on this CPU.

For each model (the 64x64 RGB celebA generator and the 28x28 conditional MNIST one, default widths, their
initial weights: neither size nor speed depends on the weights' values) the script saves a checkpoint, then
writes what `python main.py --export DIR` and `--export_tflite FILE.tflite [--tflite_quantize float16]`
write, and times each generating one batch of --batch images: the SavedModel through a TF1 session (as
--serve_model loads it), the .tflite files through ai_edge_litert's interpreter, both with every core.
Each timing is the median (and the 90th percentile) of --repeats runs after --warmup untimed ones, divided
by the batch.

    python -m bench.tflite [--batch 1] [--repeats 30] [--warmup 3] [--model celebA|mnist|both]

Prints a markdown table.  The SavedModel's size counts every file of its folder (graph, variables, the
description); a .tflite file is self-contained.
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

import config as config_lib
from bench import harness
from runtime.tf_runtime import tf
from tools import export, litert_export
from training.checkpoints import Checkpoints
from training.inference import InferenceGenerator, fixed_z, sample_labels
from training.updates import scope_variables

v1 = tf.compat.v1
MODELS = {"celebA": dict(dataset="celebA", c_dim=3), "mnist": dict(dataset="mnist")}


def save_initial_checkpoint(config):
    """A checkpoint of the generator's initial weights, where --export and --export_tflite look for it."""
    with tf.Graph().as_default(), v1.Session() as session:
        generator = InferenceGenerator(config)
        session.run(v1.global_variables_initializer())
        saver = v1.train.Saver(scope_variables(generator.scope, v1.GraphKeys.GLOBAL_VARIABLES))
        Checkpoints(config.checkpoint_path, saver, config.architecture()).save(session, 0)


def folder_bytes(directory):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(directory) for name in names)


def timed(run, repeats, warmup):
    """(median, 90th percentile) seconds of `run()` over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return np.median(seconds), np.percentile(seconds, 90)


def saved_model_timing(directory, z, labels, repeats, warmup):
    with tf.Graph().as_default(), v1.Session() as session:
        signature = v1.saved_model.loader.load(session, ["serve"], directory).signature_def["serving_default"]
        feed = {signature.inputs["z"].name: z}
        if labels is not None:
            feed[signature.inputs["labels"].name] = labels
        images = signature.outputs["images"].name
        return timed(lambda: session.run(images, feed), repeats, warmup)


def litert_timing(path, z, labels, repeats, warmup):
    interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
    interpreter.allocate_tensors()
    inputs = {detail["name"]: detail["index"] for detail in interpreter.get_input_details()}
    interpreter.set_tensor(inputs["z"], z)
    if labels is not None:
        interpreter.set_tensor(inputs["labels"], labels)
    return timed(interpreter.invoke, repeats, warmup)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1, help="images per run (the .tflite files' fixed batch)")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per format")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before them")
    parser.add_argument("--model", default="both", choices=["celebA", "mnist", "both"])
    args = parser.parse_args()
    print(harness.cpu_description())
    print(f"CPU cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}, batch {args.batch}, "
          f"{args.repeats} timed runs after {args.warmup}")
    print("| model | format | size | ms per image (median) | ms per image (p90) |")
    print("|---|---|---:|---:|---:|")
    for name in ("celebA", "mnist") if args.model == "both" else (args.model,):
        with tempfile.TemporaryDirectory() as root:
            config = config_lib.resolve(config_lib.Config(**MODELS[name], out_dir=root, tflite_batch_size=args.batch))
            save_initial_checkpoint(config)
            z = fixed_z(args.batch, config, 0)
            labels = sample_labels(args.batch, config)
            saved_model = os.path.join(root, "saved_model")
            export.export_saved_model(config, saved_model)
            rows = [("SavedModel", folder_bytes(saved_model), saved_model_timing(saved_model, z, labels, args.repeats,
                                                                                  args.warmup))]
            for quantize in config_lib.TFLITE_QUANTIZATIONS:
                path = os.path.join(root, f"generator_{quantize}.tflite")
                litert_export.export_tflite(dataclasses.replace(config, export_tflite=path, tflite_quantize=quantize),
                                            path)
                weights = "float16" if quantize == "float16" else "float32"
                rows.append((f"LiteRT, {weights} weights", os.path.getsize(path),
                             litert_timing(path, z, labels, args.repeats, args.warmup)))
            for label, size, (median, p90) in rows:
                print(f"| {name} {config.output_height}x{config.output_width}x{config.c_dim} | {label} | "
                      f"{size / 1e6:.2f} MB | {1000 * median / args.batch:.2f} | {1000 * p90 / args.batch:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
