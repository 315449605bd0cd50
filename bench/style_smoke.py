"""Smoke comparison of --arch style against the DCGAN generator: conditional MNIST at 32x32, one seed, a short
budget of equal steps (= equal images seen).  Not the measurement issue 16 asks for (four datasets, equal images
and equal wall time, several seeds: see the TODO in docs/style.md); it shows that the style generator trains and
where it stands after a few hundred steps.

    python -m bench.style_smoke --steps 200 --batch_size 32 --style_gf_dim 16 --w_dim 128 --out /tmp/style_smoke

The style generator at the default widths (--gf_dim 64: 8 convolutions of about 38 M multiply-adds each at
32x32) costs over ten times the conditional MNIST DCGAN generator per image; --style_gf_dim and --w_dim shrink
it for a CPU budget, and the table says what was run.

Per generator: training wall time (graph building included), then --samples images from the final checkpoint,
resized 32 -> 28 (the pipeline's antialiased bilinear resize) for the MNIST classifier: its FID (features of the
penultimate layer, against the first --samples MNIST training images at 28x28) and the share of samples recognised as
their requested class.  A row of real digits taken through the same 28 -> 32 -> 28 round trip gives the floor the
resizing alone costs.  Sample grids are written to --out.
"""

import argparse
import os
import time

import config as config_lib
import utils
from bench import harness
from evaluation import classifier as classifier_training
from evaluation import extractors, formulas
from evaluation import quality as evaluation
from runtime.tf_runtime import tf
from training import train
from training.inference import fixed_z, restored_generator, sample_labels

v1 = tf.compat.v1


def resized(images_uint8, size):
    """uint8 NHWC images resized like data._crop_and_resize (antialiased bilinear, rounded)."""
    with tf.Graph().as_default(), v1.Session() as session:
        out = tf.image.resize(tf.cast(images_uint8, tf.float32), [size, size], antialias=True)
        return session.run(tf.cast(tf.round(tf.clip_by_value(out, 0.0, 255.0)), tf.uint8))


def quality(images_28, labels, real_stats, classifier):
    features, probabilities = classifier.features_and_probabilities(images_28)
    mu, sigma = formulas.feature_statistics(features)
    statistics = formulas.class_statistics(probabilities, labels)
    return formulas.frechet_distance(mu, sigma, real_stats[0], real_stats[1]), statistics


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--style_gf_dim", type=int, default=64, help="--gf_dim of the style generator")
    parser.add_argument("--w_dim", type=int, default=512, help="--w_dim of the style generator")
    parser.add_argument("--data_dir", default="data", help="holds mnist/ (else the embedded copy is used)")
    parser.add_argument("--out", default="/tmp/style_smoke")
    args = parser.parse_args()

    classifier_dir = os.path.join(args.out, "checkpoint")
    if not extractors.classifier_is_trained(classifier_dir, "mnist"):
        classifier_training.train_classifier_from_directory("mnist", args.data_dir, classifier_dir)
    classifier = extractors.ClassifierExtractor(classifier_dir, "mnist")
    real_28 = evaluation.real_images_uint8(
        config_lib.resolve(config_lib.Config(dataset="mnist", data_dir=args.data_dir)), args.samples)
    real_stats = formulas.feature_statistics(classifier.features(real_28))

    rows = []
    generators = {"dcgan": {}, "style": {"gf_dim": args.style_gf_dim, "w_dim": args.w_dim}}
    for arch, sizes in generators.items():
        config = config_lib.resolve(config_lib.Config(
            dataset="mnist", data_dir=args.data_dir, output_height=32, arch=arch, max_steps=args.steps, **sizes,
            batch_size=args.batch_size, seed=args.seed, out_dir=os.path.join(args.out, arch),
            sample_freq=args.steps, ckpt_freq=args.steps, summary_freq=args.steps, log_freq=50, watchdog=False))
        start = time.perf_counter()
        train.train(config)
        seconds = time.perf_counter() - start
        labels = sample_labels(args.samples, config)
        with restored_generator(config) as restored:
            images = restored.generator.generate(restored.session, fixed_z(args.samples, config, args.seed + 2),
                                                 labels)
        utils.save_grid(images[:100], os.path.join(args.out, f"{arch}_samples.png"))
        fid, statistics = quality(resized(images, 28), labels, real_stats, classifier)
        images_seen = args.steps * args.batch_size * config.d_steps
        name = " ".join([f"--arch {arch}"] + [f"--{k} {v}" for k, v in sizes.items()])
        rows.append((name, args.steps, images_seen, seconds, images_seen / seconds, fid, statistics))

    real_round_trip = resized(resized(real_28, 32), 28)
    fid, statistics = quality(real_round_trip, None, real_stats, classifier)
    print(f"MNIST 32x32 conditional, seed {args.seed}, batch {args.batch_size}, {args.samples} samples per row; "
          "FID on MNIST classifier features (not comparable with Inception FIDs)\n")
    print(harness.table_header(["generator", "steps", "images seen", "train wall s", "img/s (wall)", "FID",
                                "class accuracy", "classes present"], "lrrrrrrr"))
    for name, steps, seen, seconds, rate, fid_value, stats in rows:
        print(harness.table_row([name, steps, seen, f"{seconds:.0f}", f"{rate:.1f}", f"{fid_value:.1f}",
                                 f"{stats['class_accuracy']:.3f}", stats["classes_present"]]))
    print(harness.table_row(["real digits 28 -> 32 -> 28 (resize floor)", "", "", "", "", f"{fid:.1f}", "",
                             statistics["classes_present"]]))
    print(f"\nsample grids: {args.out}/dcgan_samples.png, {args.out}/style_samples.png")


if __name__ == "__main__":
    main()
