"""Is the unconditional MNIST collapse this project's or DCGAN's?  The PyTorch reference DCGAN trained on the
project's own 32x32 MNIST pixels, scored by the ablation's meter.

`bench.ablation` finds the unconditional 32x32 MNIST model collapsing at 300 steps (1-5 classes).  This
trains `bench.torch_dcgan`'s networks (the same architecture, 2x2 -> 32x32) with pytorch/examples' step,
batch 64, Adam(2e-4, beta1 0.5), z uniform in [-1, 1], on the very images training reads (exported by the
project's own pipeline: 28 -> 32 bilinear, scaled to [-1, 1] as datasets/pipeline.py does), and scores 5000 samples
exactly as the ablation scores a checkpoint (MNIST classifier features of images resized back to 28x28, the
same cached real statistics, z from `fixed_z(seed + 2)`).  Samples are scored twice: G with BatchNorm's
running statistics (eval mode, what the project's meter uses) and with each batch's own statistics (train
mode, how pytorch/examples draws its grids).  Three steps, in two virtualenvs (torch is bench-only):

    .venv/bin/python -m bench.mnist_reference prepare --work_dir /tmp/diag
    .venv-bench/bin/python -m bench.mnist_reference train --work_dir /tmp/diag --kernel_size 5 --seed 1
    .venv/bin/python -m bench.mnist_reference score --work_dir /tmp/diag

    .venv/bin/python main.py --train --dataset mnist --y_dim 0 --output_height 32 --learning_rate 0.0002 \
        --seed 1 --max_steps 300 --ckpt_freq 300 --out_dir /tmp/diag/runs/project_k5_s1 --data_dir ../shared/data
    .venv/bin/python -m bench.mnist_reference score_project --run_dir /tmp/diag/runs/project_k5_s1 --seed 1
    .venv/bin/python -m bench.mnist_reference table

`prepare` copies the classifier and cached statistics from --meter_dir (the ablation's work dir) into
--work_dir, so nothing is written there.  `score` (PyTorch sample files) and `score_project` (this
project's checkpoints, the same two BatchNorm modes) append one JSON line per score to
docs/ablation/mnist_reference.jsonl; `table` writes docs/ablation/mnist_reference.md from that file alone.
"""

import argparse
import dataclasses
import glob
import json
import os
import shutil
import time

import numpy as np

from bench import harness

RESULTS_PATH = os.path.join(harness.REPO, "docs", "ablation", "mnist_reference.jsonl")
TABLE_PATH = os.path.join(harness.REPO, "docs", "ablation", "mnist_reference.md")
DATASET = "mnist_unconditional"  # the ablation's table: --y_dim=0 --output_height=32
REAL_FILE = "mnist_train_32x32_uint8.npy"
Z_DIM = 100
BATCH_SIZE = 64


def ablation_config(args, seed=0):
    from bench.ablation.plan import run_config

    return run_config(DATASET, seed, args.work_dir, args)


def command_prepare(args):
    """The real training images, as the project's pipeline preprocesses them, and a copy of the meter."""
    from evaluation import quality as evaluation

    for name in ("checkpoint/classifier_mnist", "checkpoint/real_statistics"):
        target = os.path.join(args.work_dir, name)
        if not os.path.exists(target):
            shutil.copytree(os.path.join(args.meter_dir, name), target)
    config = ablation_config(args)
    images = evaluation.real_images_uint8(dataclasses.replace(config, eval_samples=60000), 60000)
    np.save(os.path.join(args.work_dir, REAL_FILE), images)
    print(f"{images.shape} {images.dtype} -> {os.path.join(args.work_dir, REAL_FILE)}")


def command_train(args):
    """pytorch/examples' DCGAN step on the exported images; saves eval- and train-mode samples."""
    import torch

    from bench import torch_dcgan

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    pixels = np.load(os.path.join(args.work_dir, REAL_FILE))
    real_all = torch.from_numpy(harness.to_float(pixels)).permute(0, 3, 1, 2)
    size = real_all.shape[-1]
    net_g = torch_dcgan.generator(Z_DIM, args.width, 1, args.kernel_size, base=size // 16)
    net_d = torch_dcgan.discriminator(args.width, 1, args.kernel_size, base=size // 16)
    net_g.apply(torch_dcgan.initialize)
    net_d.apply(torch_dcgan.initialize)
    opt_g, opt_d = torch_dcgan.optimizers(net_g, net_d)
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(real_all), generator=generator)
    start, log = time.time(), []
    for step in range(args.steps):
        batch = order[(step * BATCH_SIZE) % len(order):][:BATCH_SIZE]
        z = torch.rand(BATCH_SIZE, Z_DIM, generator=generator) * 2 - 1
        d_loss, g_loss = torch_dcgan.train_step(net_g, net_d, opt_g, opt_d, real_all[batch], z)
        if (step + 1) % 50 == 0:
            log.append({"step": step + 1, "d_loss": round(d_loss, 4), "g_loss": round(g_loss, 4),
                        "seconds": round(time.time() - start, 1)})
            print(json.dumps(log[-1]), flush=True)
    # evaluation.fixed_z's draw for the ablation's meter; train mode: each batch of 64 normalised by its own statistics
    samples = torch_dcgan.uint8_samples(net_g, torch_dcgan.fixed_z(args.samples, Z_DIM, args.seed + 2), BATCH_SIZE)
    name = f"torch_k{args.kernel_size}_seed{args.seed}_steps{args.steps}"
    np.savez(os.path.join(args.work_dir, name + ".npz"), **samples,
             meta=json.dumps({"kernel_size": args.kernel_size, "seed": args.seed, "steps": args.steps,
                              "width": args.width, "log": log, "torch": torch.__version__}))
    print(f"saved {name}.npz")


def command_score(args):
    """Scores every PyTorch sample file under --work_dir not yet in the results file (and draws seed 1's
    first 64 eval-mode samples)."""
    import utils
    from bench.ablation import score

    done = {record.get("file") for record in read_results()}
    for path in sorted(glob.glob(os.path.join(args.work_dir, "*.npz"))):
        if os.path.basename(path) in done:
            continue
        files = np.load(path)
        meta = json.loads(str(files["meta"]))
        meter = score.meter_for(ablation_config(args, meta["seed"]), args)
        if meta["seed"] == 1:  # one picture per kernel size, beside the table
            utils.save_grid(files["eval"][:64], os.path.join(os.path.dirname(TABLE_PATH),
                                                             f"mnist_reference_torch_k{meta['kernel_size']}_{meta['steps']}steps.png"))
        append_result({"contender": "pytorch", "file": os.path.basename(path),
                       **{k: v for k, v in meta.items() if k != "log"},
                       **{mode: scores(files[mode], meter, meta["seed"]) for mode in ("eval", "train")}})


def project_samples(restored, count, seed):
    """{"eval", "train"}: `count` uint8 images of a restored project G from `fixed_z(seed + 2)`, with BatchNorm's
    moving averages (the project's meter) and with each batch of 64's own statistics (a second G on the same
    variables, in training mode, updating nothing)."""
    from networks import generator_for, network_spec
    from runtime.tf_runtime import tf
    from training import inference

    config, session = restored.config, restored.session
    z = inference.fixed_z(count, config, seed + 2)
    z_batch = tf.compat.v1.placeholder(tf.float32, [None, config.z_dim])
    spec = network_spec(config)
    batch_statistics = inference.to_uint8(generator_for(spec)(z_batch, None, spec, True, update_moving_stats=False))
    return {"eval": restored.generator.generate(session, z),
            "train": np.concatenate([session.run(batch_statistics, {z_batch: z[start:start + BATCH_SIZE]})
                                     for start in range(0, count, BATCH_SIZE)])}


def command_score_project(args):
    """Scores every checkpoint of a project run (--run_dir: main.py --train's --out_dir) in both BatchNorm modes."""
    from bench.ablation import score
    from training.checkpoints import checkpoint_paths, checkpoint_step
    from training.inference import restored_generator

    config = dataclasses.replace(ablation_config(args, args.seed), out_dir=args.run_dir)
    for path in checkpoint_paths(config.checkpoint_path):
        with restored_generator(config, checkpoint=path) as restored:
            samples = project_samples(restored, args.eval_samples, args.seed)
        meter = score.meter_for(config, args)
        append_result({"contender": "project", "run": os.path.basename(os.path.normpath(args.run_dir)),
                       "kernel_size": restored.config.kernel_size, "seed": args.seed, "steps": checkpoint_step(path),
                       **{mode: scores(images, meter, args.seed) for mode, images in samples.items()}})


def scores(images, meter, seed):
    """The ablation's metrics of uint8 `images`, as `QualityMeter.measure` computes them for an unconditional G."""
    from bench.ablation import score
    from evaluation import extractors, formulas

    results = extractors.evaluate(images, meter.real_stats, meter.extractor, seed=seed)
    results.update(formulas.class_statistics(meter.classifier.class_probabilities(images)))
    return {key: round(float(results[key]), 4) for key in score.METRICS if key in results}


def read_results():
    if not os.path.exists(RESULTS_PATH):
        return []
    with open(RESULTS_PATH) as f:
        return [json.loads(line) for line in f]


def append_result(record):
    print(json.dumps(record), flush=True)
    with open(RESULTS_PATH, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def mean_and_values(records, mode, key, digits):
    values = [record[mode][key] for record in records]
    return f"{np.mean(values):.{digits}f} ({', '.join(f'{value:.{digits}f}' for value in values)})"


def command_table(args):
    """docs/ablation/mnist_reference.md: one row per (contender, kernel, steps), mean and per-seed values."""
    groups = {}
    for record in read_results():
        groups.setdefault((record["contender"], record["kernel_size"], record["steps"]), []).append(record)
    lines = ["# Unconditional MNIST 32x32: the PyTorch reference DCGAN against this project", "",
             "Written by `python -m bench.mnist_reference table` from `mnist_reference.jsonl`.",
             "Both contenders: the same",
             "networks (2x2 -> 32x32, 4 stride-2 transposed convolutions), batch 64, Adam(2e-4, beta1 0.5) for both,",
             "one D and one G update per step on the same fake batch, z uniform; scored on 5000 samples by the",
             "ablation's meter (MNIST classifier features; its real-vs-real floor is in ../ablation.md).",
             "*eval*: G with BatchNorm's moving averages (what the project's meter uses); *train*: each batch of 64",
             "normalised by its own statistics.",
             "Per-seed values in brackets, seeds in order.  Seed 1's PyTorch samples (eval mode) at 300 steps:",
             "[kernel 5](mnist_reference_torch_k5_300steps.png), [kernel 4](mnist_reference_torch_k4_300steps.png),",
             "kernel 5 at 937 steps: [one epoch](mnist_reference_torch_k5_937steps.png); the project's (the ablation's",
             "carpedm20 recipe): [mnist_unconditional_carpedm20.png](mnist_unconditional_carpedm20.png).", "",
             *harness.table_header(["contender", "kernel", "steps", "seeds", "FID eval", "FID train", "classes eval",
                                    "precision eval", "recall eval"]).splitlines()]
    for (contender, kernel, steps), records in sorted(groups.items()):
        records.sort(key=lambda r: r["seed"])
        cells = [mean_and_values(records, mode, key, digits) for mode, key, digits in (
            ("eval", "fid", 0), ("train", "fid", 0), ("eval", "classes_present", 0), ("eval", "precision", 2),
            ("eval", "recall", 3))]
        lines.append(harness.table_row([contender, kernel, steps, ",".join(str(r["seed"]) for r in records), *cells]))
    with open(TABLE_PATH, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("prepare", "train", "score", "score_project", "table"))
    parser.add_argument("--work_dir", default="/tmp/diag", help="exported images, samples and scores")
    parser.add_argument("--meter_dir", default="/tmp/ablation", help="the ablation's classifier and statistics")
    parser.add_argument("--data_dir", default=str(harness.SHARED_DATA))
    parser.add_argument("--eval_samples", type=int, default=5000, help="as bench.ablation")
    parser.add_argument("--samples", type=int, default=5000, help="generated images saved by train")
    parser.add_argument("--kernel_size", type=int, choices=(4, 5), default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--width", type=int, default=64, help="gf_dim = df_dim")
    parser.add_argument("--run_dir", help="score_project: the --out_dir of a main.py --train run of this table")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    {"prepare": command_prepare, "train": command_train, "score": command_score,
     "score_project": command_score_project, "table": command_table}[args.command](args)
    return 0


if __name__ == "__main__":
    main()
