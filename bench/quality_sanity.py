"""Do the metrics move the right way?  Real vs real near 0; worse with every step of noise or blur.

A metric that cannot tell MNIST from blurred MNIST cannot rank generators
either, so before trusting FID/KID/IS/precision/recall on GAN samples this
script scores known degradations of real digits with the MNIST classifier
features (training the classifier first if it is missing):

* real vs real: train images [0, n) are the reference; train [n, 2n) ("train
  B") and test [0, n) should score far below every visible degradation, with
  KID within its std of 0.  FID's real-vs-real value is not 0 but its
  finite-sample bias, which falls like 1/n (train [0, n) vs [30000, 30000 + n)
  on these features: 46 at n=2500, 27 at 5000, 10 at 10000, 2.6 at 30000);
* Gaussian pixel noise, sigma in {0, 8, 16, 32, 64} on the uint8 scale, and
  Gaussian blur, radius (= std dev in pixels, as in PIL's GaussianBlur) in
  {0, 0.5, 1, 2}, both applied to train [n, 2n): FID and KID must grow at
  every step, which is checked and printed under the table.

    python -m bench.quality_sanity [--data_dir ../shared/data] [--checkpoint_dir checkpoint] [--n 10000]

Each group of rows comes from one function returning (title, [(label, uint8
images), ...], monotonic); `row_groups` lists them, so more comparisons (for
example a trained generator after 1 vs 5 epochs) are one more function there.
"""

import argparse
import glob
import os
import sys
import time

import numpy as np
from scipy import ndimage

import config as config_lib
from bench import harness
from datasets import formats
from evaluation import classifier as classifier_training
from evaluation import extractors, formulas
from evaluation import quality as evaluation
from runtime.errors import run_command
from training import checkpoints, inference

NOISE_SIGMAS = (0, 8, 16, 32, 64)
BLUR_RADII = (0, 0.5, 1, 2)


def quantized(images):
    """Floats on the uint8 scale -> uint8 pixels, rounded and clipped as a saved PNG holds them."""
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def add_noise(images, sigma, seed=0):
    """Adds N(0, sigma^2) per pixel on the uint8 scale, then re-quantizes like a saved PNG."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, images.shape)
    return quantized(images + noise)


def blur(images, radius):
    """Gaussian blur of each image (not across images or channels) with std dev `radius` pixels."""
    return quantized(ndimage.gaussian_filter(images.astype(np.float32), sigma=(0, radius, radius, 0)))


def real_vs_real_rows(train, test, n):
    return "real vs real", [(f"train B = [{n}, {2 * n}) vs reference", train[n:2 * n]),
                            (f"test [0, {n}) vs reference", test[:n])], None


def noise_rows(train, test, n):
    rows = [(f"train B + noise σ={s}", add_noise(train[n:2 * n], s)) for s in NOISE_SIGMAS]
    return "Gaussian noise", rows, "increasing"


def blur_rows(train, test, n):
    return "Gaussian blur", [(f"train B blurred r={r}", blur(train[n:2 * n], r)) for r in BLUR_RADII], "increasing"


def generator_rows(run_out_dir, n):
    """A trained MNIST generator at each of its run's checkpoints (oldest first)."""
    config = config_lib.resolve(config_lib.Config(dataset="mnist", out_dir=run_out_dir))
    rows = []
    # Every checkpoint on disk, not only those the state file lists (a resumed run lists its own).
    paths = [p[:-len(".index")] for p in glob.glob(os.path.join(config.checkpoint_path, "*.index"))]
    for path in sorted(paths, key=checkpoints.checkpoint_step):
        with inference.restored_generator(config, checkpoint=path) as restored:
            images = evaluation.generate_uint8(restored.session, restored.generator, restored.config, n, seed=2)
        step = checkpoints.checkpoint_step(path)
        rows.append((f"G at step {step} ({step * config.batch_size / 60000:.2f} epochs)", images))
    return "Trained generator", rows, "last_is_best"


def row_groups(run_out_dir=None):
    """The comparisons to run, in table order.

    Each returns (title, [(label, images)], expectation): "increasing" (FID and
    KID must grow row by row), "last_is_best" (the last row has a lower FID
    than the first) or None.
    """
    groups = [real_vs_real_rows, noise_rows, blur_rows]
    if run_out_dir:
        groups.append(lambda train, test, n: generator_rows(run_out_dir, n))
    return groups


def increases(values):
    return all(a < b for a, b in zip(values, values[1:], strict=False))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=str(harness.SHARED_DATA),
                        help="folder holding mnist/ (falls back to the repo's embedded_data/mnist)")
    parser.add_argument("--checkpoint_dir", default="checkpoint", help="where the MNIST classifier is (or goes)")
    parser.add_argument("--n", type=int, default=10000, help="images per set (train has 60000, so at most 30000)")
    parser.add_argument("--generator_run", default="",
                        help="--out_dir of a `main.py --dataset mnist --train` run: score each of its checkpoints")
    args = parser.parse_args(argv)

    if not extractors.classifier_is_trained(args.checkpoint_dir, "mnist"):
        print("no MNIST classifier yet; training it first")
        classifier_training.train_classifier_from_directory("mnist", args.data_dir, args.checkpoint_dir)
    extractor = extractors.load_extractor("mnist", checkpoint_dir=args.checkpoint_dir)
    directory = formats.dataset_directory("mnist", args.data_dir)
    train, _ = formats.load_mnist_like(directory, "train")
    test, _ = formats.load_mnist_like(directory, "test")
    reference = extractors.real_statistics(extractor, train[:args.n], os.path.join(args.checkpoint_dir, "stats_cache"),
                                        f"mnist-train-first{args.n}", 28)
    print(f"data: {directory}; reference: train [0, {args.n}); features: {extractor.name}\n")

    rows, checks = [], []
    for group in row_groups(args.generator_run):
        title, images_by_label, expectation = group(train, test, args.n)
        start = time.time()
        results = [(label, extractors.evaluate(images, reference, extractor)) for label, images in images_by_label]
        rows += results
        print(f"{title}: {len(results)} rows in {time.time() - start:.0f} s", file=sys.stderr)
        if expectation == "increasing":
            for key, metric in (("fid", "FID"), ("kid_mean", "KID")):
                verdict = "yes" if increases([r[key] for _, r in results]) else "NO"
                checks.append(f"- {metric} increases at every step of {title.lower()}: {verdict}")
        elif expectation == "last_is_best":
            verdict = "yes" if results[-1][1]["fid"] < results[0][1]["fid"] else "NO"
            checks.append(f"- the last generator checkpoint has a lower FID than the first: {verdict}")
    print(formulas.format_table(rows))
    print()
    print("\n".join(checks))
    return 0 if all(c.endswith("yes") for c in checks) else 1


if __name__ == "__main__":
    run_command(main)
