"""Does the input pipeline keep up with training?  Images/s of datasets/pipeline.py vs. what a training step eats.

    python -m bench.input_pipeline --celeba_tar ../shared/data/celebA_first10k_89x109.tar [--images 2000] [--steps 20]

Prints a markdown table (issue #4 wants the pipeline at 5x or more of what training consumes):

* the pipeline alone, fetching batches of 64 in a loop after one warm-up
  epoch: `--images` CelebA jpgs (extracted from the tar into a temporary
  folder) centre-cropped to 54 px and resized to 64x64, without and with
  `--cache memory`; and MNIST (the embedded copy unless data/mnist exists);
* what training consumes: the DCGAN of model.py with the default widths, batch
  64, one D and two G updates per step as in training/train.py, fed a constant batch
  (so no input cost), for `--steps` steps after warm-up; the 64x64 model for
  CelebA, the conditional 28x28 one for MNIST;
* the share of a training step spent waiting for input: the same model fed by
  the pipeline, (D update time with the pipeline - with the constant) / step
  time with the pipeline.  Only the D update reads a batch; G's loss needs no
  real images.  This counts both waiting and the pipeline's refilling
  competing with the model for the CPU.

The machine is shared and noisy, so everything runs in one process, the
pipelines are timed in interleaved rounds and the two inputs of each model in
alternating steps, and medians are reported; compare the ratios, not the
absolute numbers, across machines.
"""

import argparse
import dataclasses
import itertools
import os
import statistics
import sys
import tarfile
import tempfile
import time

from runtime.tf_runtime import session_config, tf  # (first: sets TensorFlow's environment)

# isort: split
import numpy as np

import config as config_lib
from bench import harness
from datasets import pipeline as data
from model import DCGAN

v1 = tf.compat.v1
BATCH = 64


def extract_jpgs(tar_path, count, target):
    """The first `count` jpgs of the tar into target/<their folder>; returns that folder's name."""
    with tarfile.open(tar_path) as tar:
        members = list(itertools.islice((m for m in tar if m.isfile() and m.name.endswith(".jpg")), count))
        tar.extractall(target, members=members, filter="data")
    return os.path.dirname(members[0].name)


def resolved(**values):
    """A resolved Config whose c_dim comes from the data, as train.train does."""
    config = config_lib.resolve(config_lib.Config(batch_size=BATCH, **values))
    source = data.open_source(config)
    return dataclasses.replace(config, c_dim=source.c_dim), source


class Pipeline:
    """data.input_batches in its own graph and session, fetching one pixel per batch
    so the timing is the pipeline's, not the copy of 3 MB into Python."""

    def __init__(self, config, source):
        self.graph = tf.Graph()
        with self.graph.as_default():
            batches = data.input_batches(source, config)
            self.fetch = batches.images[0, 0, 0, 0]
            self.session = v1.Session(config=session_config())
            self.session.run(batches.initializer, batches.feed_dict)
        self.run(source.num_examples // BATCH + 1)  # one epoch: fills shuffle buffers and the cache

    def run(self, batches):
        for _ in range(batches):
            self.session.run(self.fetch)

    def images_per_second(self, batches):
        start = time.perf_counter()
        self.run(batches)
        return batches * BATCH / (time.perf_counter() - start)


class Trainer:
    """The DCGAN on the pipeline's batches or on a constant batch of the same shape."""

    def __init__(self, config, source, constant):
        self.graph = tf.Graph()
        with self.graph.as_default():
            v1.set_random_seed(0)
            feed_dict = {}
            if constant:
                shape = (BATCH, config.output_height, config.output_width, config.c_dim)
                images = tf.constant(np.random.default_rng(0).uniform(-1, 1, shape), tf.float32)
                labels = tf.constant(np.arange(BATCH) % 10, tf.int64) if config.conditional else None
            else:
                batches = data.input_batches(source, config)
                images, labels, feed_dict = batches.images, batches.labels, batches.feed_dict
            self.model = DCGAN(config, images, labels)
            self.session = v1.Session(config=session_config())
            self.session.run(v1.global_variables_initializer())
            if not constant:
                self.session.run(batches.initializer, feed_dict)
        self.config = config
        self.d_times, self.step_times = [], []

    def steps(self, count, record=True):
        for _ in range(count):
            start = time.perf_counter()
            for _ in range(self.config.d_steps):
                self.session.run(self.model.d_train_op)
            d_done = time.perf_counter()
            for _ in range(self.config.g_steps):
                self.session.run(self.model.g_train_op)
            if record:
                self.d_times.append(d_done - start)
                self.step_times.append(time.perf_counter() - start)


def time_training(config, source, steps, warmup=3):
    """(images/s consumed with a constant input, share of a step waiting for the pipeline,
    D update ms with the pipeline, D update ms with the constant), from medians
    over `steps` steps of each model, alternated step by step so both see the
    same load.  The share is not clipped at 0: a negative one shows the noise."""
    fed, constant = Trainer(config, source, constant=False), Trainer(config, source, constant=True)
    for trainer in (fed, constant):
        trainer.steps(warmup, record=False)
    for _ in range(steps):
        for trainer in (fed, constant):
            trainer.steps(1)
    for trainer in (fed, constant):
        trainer.session.close()
    median = statistics.median
    consumed = BATCH * config.d_steps / median(constant.step_times)
    waiting = (median(fed.d_times) - median(constant.d_times)) / median(fed.step_times)
    return consumed, waiting, 1000 * median(fed.d_times), 1000 * median(constant.d_times)


def pipeline_rates(pipelines, batches, rounds=3):
    """Median images/s of each pipeline over `rounds` interleaved rounds."""
    rates = {name: [] for name in pipelines}
    for _ in range(rounds):
        for name, pipeline in pipelines.items():
            rates[name].append(pipeline.images_per_second(batches))
    for pipeline in pipelines.values():
        pipeline.session.close()
    return {name: statistics.median(values) for name, values in rates.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--celeba_tar", required=True, help="tar of CelebA jpgs (e.g. the 10k half-size 89x109 one)")
    parser.add_argument("--images", type=int, default=2000, help="jpgs to extract from the tar")
    parser.add_argument("--input_height", type=int, default=54,
                        help="centre crop before resizing to 64 (54 = the usual 108 on half-size CelebA)")
    parser.add_argument("--data_dir", default=os.path.join(harness.REPO, "data"),
                        help="folder holding mnist/ (falls back to the embedded copy)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per model and input")
    parser.add_argument("--batches", type=int, default=60, help="timed batches per pipeline and round")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        name = extract_jpgs(args.celeba_tar, args.images, folder)
        jpg = dict(dataset=name, data_dir=folder, input_height=args.input_height, crop=True, output_height=64)
        celeba, celeba_source = resolved(**jpg)
        cached, cached_source = resolved(**jpg, cache="memory")
        mnist, mnist_source = resolved(dataset="mnist", data_dir=args.data_dir)
        print(f"timing pipelines ({args.images} jpgs, MNIST {mnist_source.num_examples})", file=sys.stderr)
        rates = pipeline_rates({"jpg": Pipeline(celeba, celeba_source), "cached": Pipeline(cached, cached_source),
                                "mnist": Pipeline(mnist, mnist_source)}, args.batches)
        print(f"timing training ({args.steps} steps per model and input)", file=sys.stderr)
        celeba_training = time_training(celeba, celeba_source, args.steps)
        mnist_training = time_training(mnist, mnist_source, args.steps)

    crop = f"{args.input_height} px crop -> 64x64"
    print(harness.table_header(["measurement", "images/s", "pipeline / training"], "lrr"))
    for label, rate, consumed in (
            (f"pipeline alone: {args.images} CelebA jpgs, {crop}", rates["jpg"], celeba_training[0]),
            ("pipeline alone: the same with --cache memory", rates["cached"], celeba_training[0]),
            ("pipeline alone: MNIST 28x28", rates["mnist"], mnist_training[0])):
        print(harness.table_row([label, f"{rate:,.0f}", f"{rate / consumed:.1f}x"]))
    for label, (consumed, waiting, fed_ms, constant_ms) in (
            ("DCGAN 64x64", celeba_training), ("conditional DCGAN 28x28 (MNIST)", mnist_training)):
        print(harness.table_row([f"training consumes: {label}, batch {BATCH}, 1 D + 2 G updates per step",
                                 f"{consumed:,.1f}", "1x"]))
        print(harness.table_row([f"waiting for input: {label} fed by its pipeline (no cache); D update "
                                 f"{fed_ms:.0f} ms vs {constant_ms:.0f} ms on a constant batch", "",
                                 f"{100 * waiting:.1f}% of a step"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
