"""Would the collapse watchdog see it?  Its two diversity signals on every checkpoint of a finished run.

For each checkpoint, the restored G makes `--batches` fake batches of 64 (seeded z, cycling labels for a
conditional model) both as the training graph makes them (BatchNorm on the batch's own statistics: what
the watchdog sees) and as the sample grids show them (BatchNorm moving averages); each is scored against
a batch of 64 real training images (the first 64 x batches in file order) by the watchdog's own in-graph
measures: the mean pairwise distance of fakes over reals (`low_diversity` fires under 1/3) and the
fraction of fake pairs closer than the real batch's q-quantile pair distance (`near_duplicates`, q =
watchdog.NEAR_DUPLICATE_QUANTILE, fires over watchdog.MAX_NEAR_DUPLICATES).  The first row scores real
batches against other real batches: what data without collapse gives.

    python -m bench.watchdog_signals --dataset mnist --y_dim 0 --output_height 32 \\
        --run /tmp/ablation/runs/mnist_unconditional/default/seed1_budget19200
"""

import argparse
import dataclasses

import numpy as np

import config as config_lib
from bench import harness
from datasets import pipeline as data
from evaluation import quality as evaluation
from networks import generator_for, network_spec
from runtime.errors import UserError, run_command
from runtime.tf_runtime import tf
from training import watchdog
from training.checkpoints import checkpoint_paths, checkpoint_step
from training.diversity import mean_pairwise_distance, near_duplicate_fraction
from training.inference import fixed_z, restored_generator, sample_labels

v1 = tf.compat.v1
BATCH = 64


class Measures:
    """The watchdog's measures on fed (fake, real) batches of floats in [-1, 1], in the current graph."""

    def __init__(self, shape, quantiles):
        self.fake = v1.placeholder(tf.float32, [None, *shape])
        self.real = v1.placeholder(tf.float32, [None, *shape])
        self.quantiles = quantiles
        self.fetches = {"ratio": mean_pairwise_distance(self.fake) / mean_pairwise_distance(self.real)}
        self.fetches.update({q: near_duplicate_fraction(self.fake, self.real, q) for q in quantiles})

    def score(self, session, fakes, reals):
        """[{"ratio": r, q: fraction, ...}] for each (fake batch, real batch) pair."""
        return [session.run(self.fetches, {self.fake: f, self.real: r}) for f, r in zip(fakes, reals, strict=True)]


def row(name, scores, quantiles):
    alarm_q = watchdog.NEAR_DUPLICATE_QUANTILE
    cells = [name, f"{np.mean([s['ratio'] for s in scores]):.2f}"]
    cells += [f"{np.mean([s[q] for s in scores]):.3f} (max {np.max([s[q] for s in scores]):.3f})" for q in quantiles]
    over = sum(s[alarm_q] > watchdog.MAX_NEAR_DUPLICATES for s in scores) if alarm_q in quantiles else "—"
    low = sum(s["ratio"] < watchdog.MIN_DIVERSITY for s in scores)
    return harness.table_row(cells + [f"{over}/{len(scores)}", f"{low}/{len(scores)}"])


def fake_batches(restored, batches, training_mode):
    """`batches` fake batches of G as floats, with BatchNorm on batch statistics or on its moving averages."""
    config = restored.config
    z = v1.placeholder(tf.float32, [None, config.z_dim])
    onehot = v1.placeholder(tf.float32, [None, config.y_dim]) if config.conditional else None
    spec = network_spec(config)
    images = generator_for(spec)(z, onehot, spec, is_training=training_mode, update_moving_stats=False)
    out = []
    for seed in range(batches):
        feed = {z: fixed_z(BATCH, config, seed)}
        if onehot is not None:
            feed[onehot] = np.eye(config.y_dim, dtype=np.float32)[sample_labels(BATCH, config)]
        out.append(restored.session.run(images, feed))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the run's --out_dir (holding checkpoint/<run name>/)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_dir", default=str(harness.SHARED_DATA))
    parser.add_argument("--output_height", type=int, default=0)
    parser.add_argument("--input_height", type=int, default=0)
    parser.add_argument("--y_dim", type=int, default=-1)
    parser.add_argument("--batches", type=int, default=10, help="fake/real batch pairs per checkpoint")
    parser.add_argument("--quantiles", default="0.01,0.02,0.05", help="real pair-distance quantiles")
    args = parser.parse_args(argv)
    quantiles = [float(q) for q in args.quantiles.split(",")]
    config = config_lib.resolve(config_lib.Config(
        dataset=args.dataset, data_dir=args.data_dir, out_dir=args.run, batch_size=BATCH, y_dim=args.y_dim,
        output_height=args.output_height, input_height=args.input_height))
    config = dataclasses.replace(config, c_dim=data.open_source(config).c_dim)
    paths = sorted(checkpoint_paths(config.checkpoint_path), key=checkpoint_step)
    if not paths:
        raise UserError(f"--run: no checkpoint in {config.checkpoint_path}")
    reals = harness.to_float(evaluation.real_images_uint8(config, BATCH * (args.batches + 1)))
    reals = [reals[i * BATCH:(i + 1) * BATCH] for i in range(args.batches + 1)]
    shape = reals[0].shape[1:]
    print(f"run {args.run}: {args.batches} batches of {BATCH} per row; near-duplicate alarm over "
          f"{watchdog.MAX_NEAR_DUPLICATES} at q = {watchdog.NEAR_DUPLICATE_QUANTILE}, low diversity under "
          f"{watchdog.MIN_DIVERSITY:.3f}\n")
    print(harness.table_header(["batches", "mean distance / real", *(f"near-dup. fraction, q = {q}" for q in quantiles),
                                "near-dup. alarm batches", "low-diversity batches"]))
    with tf.Graph().as_default(), v1.Session() as session:
        measures = Measures(shape, quantiles)
        print(row("real vs other real", measures.score(session, reals[1:], reals[:-1]), quantiles), flush=True)
    for path in paths:
        with restored_generator(config, checkpoint=path) as restored:
            if restored.config.g_ema:
                raise UserError("--run: a --g_ema run samples another G than it trains; not supported here")
            measures = Measures(shape, quantiles)
            for training_mode, mode in ((True, "batch statistics"), (False, "moving averages")):
                fakes = fake_batches(restored, args.batches, training_mode)
                print(row(f"step {checkpoint_step(path)}, BN {mode}", measures.score(restored.session, fakes,
                                                                                     reals[:-1]), quantiles),
                      flush=True)
    return 0


if __name__ == "__main__":
    run_command(main)
