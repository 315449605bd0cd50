"""PyTorch DCGAN of this project's 64x64 architecture: the reference `bench.throughput` races.

Set-up (torch is a benchmark-only dependency, never the project's; it goes in its own venv):

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -r bench/requirements-bench.txt

    .venv-bench/bin/python -m bench.torch_dcgan --kernel_size 4 --steps 10
    .venv-bench/bin/python -m bench.torch_dcgan --images crops.npy --out_dir DIR --steps 156 --seed 1 \
        --sample_steps 50,100,150,156 --samples 500

Same networks as `networks/dcgan.py` (unconditional): G is a linear layer to
4x4x(8*gf) then four stride-2 transposed convolutions with BatchNorm + ReLU and
tanh at the end; D is four stride-2 convolutions with LeakyReLU 0.2 and
BatchNorm on all but the first, then a linear head.  Every conv/linear has a
bias, as in `ops.py`.  Padding gives exactly 4->8->16->32->64 for kernel 4 and 5.

One step is pytorch/examples `dcgan/main.py`'s: D updated on a real and a
(detached) fake batch, then G's loss through the updated D on the same fake
batch, with Adam(2e-4, beta1 0.5).  As there, G's backward also computes D's
weight gradients (they are zeroed before D's next update); `bench.flops`
counts that work for this contender.  Input is a constant in-memory batch, as
the TensorFlow contender's, so only the step is timed.  Prints one JSON line.

With --images (a uint8 NHWC .npy of real images, e.g. the project's own
preprocessed CelebA crops exported by `bench.ablation`, so both contenders see
the same pixels) it trains instead: the same step on shuffled batches of those
images (reshuffled each epoch, full batches only, z uniform in [-1, 1]), and
at each of --sample_steps saves `samples_step<N>.npz` (uint8 NHWC: "eval",
G with BatchNorm's running statistics as the project's meter samples, and
"train", each batch of 64 normalised by its own statistics as pytorch/examples
draws its grids) from the z the project's evaluation draws
(`evaluation.fixed_z`: NumPy's RandomState(seed + 2), uniform), printing
"saved <path>" as main.py does for a checkpoint.
"""

import argparse
import copy
import json
import os
import resource
import time

import numpy as np
import torch
from torch import nn

# ConvTranspose2d output = (in - 1) * stride - 2 * padding + kernel + output_padding = 2 * in for these.
PADDING = {4: (1, 0), 5: (2, 1)}  # kernel -> (padding, output_padding)


def generator(z_dim, gf, channels, kernel, base=4):
    """G for images of 16 x `base` pixels a side (4: 64x64; 2: the unconditional MNIST model's 32x32)."""
    padding, output_padding = PADDING[kernel]

    def up(c_in, c_out):
        return nn.ConvTranspose2d(c_in, c_out, kernel, 2, padding, output_padding)

    return nn.Sequential(
        nn.Linear(z_dim, gf * 8 * base * base), nn.Unflatten(1, (gf * 8, base, base)),
        nn.BatchNorm2d(gf * 8), nn.ReLU(True),
        up(gf * 8, gf * 4), nn.BatchNorm2d(gf * 4), nn.ReLU(True),
        up(gf * 4, gf * 2), nn.BatchNorm2d(gf * 2), nn.ReLU(True),
        up(gf * 2, gf), nn.BatchNorm2d(gf), nn.ReLU(True),
        up(gf, channels), nn.Tanh(),
    )


def discriminator(df, channels, kernel, base=4):
    """D for images of 16 x `base` pixels a side: its last feature maps are `base` x `base`."""
    padding = PADDING[kernel][0]

    def down(c_in, c_out):
        return nn.Conv2d(c_in, c_out, kernel, 2, padding)

    return nn.Sequential(
        down(channels, df), nn.LeakyReLU(0.2, True),
        down(df, df * 2), nn.BatchNorm2d(df * 2), nn.LeakyReLU(0.2, True),
        down(df * 2, df * 4), nn.BatchNorm2d(df * 4), nn.LeakyReLU(0.2, True),
        down(df * 4, df * 8), nn.BatchNorm2d(df * 8), nn.LeakyReLU(0.2, True),
        nn.Flatten(), nn.Linear(df * 8 * base * base, 1),
    )


def initialize(module):
    """DCGAN paper: weights N(0, 0.02), BatchNorm scale N(1, 0.02), biases 0 (pytorch/examples' weights_init)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def optimizers(net_g, net_d, learning_rate=2e-4, beta1=0.5):
    """(G's, D's) Adam, as pytorch/examples' dcgan."""
    return (torch.optim.Adam(net_g.parameters(), lr=learning_rate, betas=(beta1, 0.999)),
            torch.optim.Adam(net_d.parameters(), lr=learning_rate, betas=(beta1, 0.999)))


def train_step(net_g, net_d, opt_g, opt_d, real, z):
    """One pytorch/examples step on a real batch and z; returns (D's loss, G's loss) as floats."""
    criterion = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(len(real), 1), torch.zeros(len(real), 1)
    net_d.zero_grad()
    loss_d_real = criterion(net_d(real), ones)
    loss_d_real.backward()
    fake = net_g(z)
    loss_d_fake = criterion(net_d(fake.detach()), zeros)
    loss_d_fake.backward()
    opt_d.step()
    net_g.zero_grad()
    loss_g = criterion(net_d(fake), ones)
    loss_g.backward()
    opt_g.step()
    return loss_d_real.item() + loss_d_fake.item(), loss_g.item()


def measure(kernel_size, steps, warmup, batch_size=64, z_dim=100, width=64, channels=3, threads=2):
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    net_g, net_d = generator(z_dim, width, channels, kernel_size), discriminator(width, channels, kernel_size)
    net_g.apply(initialize)
    net_d.apply(initialize)
    opt_g, opt_d = optimizers(net_g, net_d)
    real = torch.rand(batch_size, channels, 64, 64) * 2 - 1

    def step():
        return train_step(net_g, net_d, opt_g, opt_d, real, torch.rand(batch_size, z_dim) * 2 - 1)

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        losses = step()
    seconds = (time.perf_counter() - start) / steps
    return {"images_per_second": batch_size / seconds, "seconds_per_step": seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "finite": all(map(lambda x: x == x and abs(x) != float("inf"), losses)), "torch": torch.__version__}


def to_uint8(images):
    """NCHW floats in [-1, 1] -> NHWC uint8, rounded as the project's `model.to_uint8`."""
    return images.clamp(-1, 1).add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def fixed_z(count, z_dim, seed):
    """The z the project's evaluation samples from (`evaluation.fixed_z`): RandomState(seed), uniform [-1, 1]."""
    return torch.from_numpy(np.random.RandomState(seed).uniform(-1.0, 1.0, (count, z_dim)).astype(np.float32))


def uint8_samples(net_g, z, batch_size=64):
    """{"eval", "train"}: G's uint8 images of `z`, with BatchNorm's running statistics and with each batch's own
    (on a copy of G, so the running statistics the training run keeps are not moved)."""
    samples = {}
    with torch.no_grad():
        for mode in ("eval", "train"):
            net = copy.deepcopy(net_g).train(mode == "train")
            samples[mode] = to_uint8(torch.cat([net(part) for part in z.split(batch_size)]))
    return samples


def train_on_images(pixels, out_dir, steps, seed, sample_steps, samples, kernel_size=4, width=64, z_dim=100,
                    batch_size=64, threads=2):
    """pytorch/examples' DCGAN on uint8 NHWC `pixels` (scaled to [-1, 1] as data.py does); saves
    samples_step<N>.npz at each of `sample_steps` and prints "saved <path>"."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    real_all = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    base = real_all.shape[-1] // 16
    net_g = generator(z_dim, width, real_all.shape[1], kernel_size, base=base)
    net_d = discriminator(width, real_all.shape[1], kernel_size, base=base)
    net_g.apply(initialize)
    net_d.apply(initialize)
    opt_g, opt_d = optimizers(net_g, net_d)
    stream = torch.Generator().manual_seed(seed)
    batches_per_epoch = len(real_all) // batch_size
    z_samples = fixed_z(samples, z_dim, seed + 2)
    os.makedirs(out_dir, exist_ok=True)
    for step in range(steps):
        if step % batches_per_epoch == 0:
            order = torch.randperm(len(real_all), generator=stream)
        batch = order[(step % batches_per_epoch) * batch_size:][:batch_size]
        z = torch.rand(batch_size, z_dim, generator=stream) * 2 - 1
        d_loss, g_loss = train_step(net_g, net_d, opt_g, opt_d, real_all[batch], z)
        if step + 1 in sample_steps:
            path = os.path.join(out_dir, f"samples_step{step + 1:06d}.npz")
            meta = {"step": step + 1, "seed": seed, "kernel_size": kernel_size, "width": width,
                    "d_loss": d_loss, "g_loss": g_loss, "torch": torch.__version__}
            np.savez(path, **uint8_samples(net_g, z_samples, batch_size), meta=json.dumps(meta))
            print(f"step {step + 1}: d_loss {d_loss:.4f} g_loss {g_loss:.4f}, saved {path}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel_size", type=int, choices=sorted(PADDING), default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3, help="timing only: untimed steps first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", help="train on this uint8 NHWC .npy instead of timing a constant batch")
    parser.add_argument("--out_dir", help="with --images: where the sample files go")
    parser.add_argument("--seed", type=int, default=1, help="with --images: weights, batch order and z")
    parser.add_argument("--sample_steps", default="", help="with --images: comma-separated steps to sample at")
    parser.add_argument("--samples", type=int, default=500, help="with --images: images per sample file")
    args = parser.parse_args()
    if args.images:
        sample_steps = {int(step) for step in args.sample_steps.split(",") if step}
        train_on_images(np.load(args.images), args.out_dir, args.steps, args.seed, sample_steps, args.samples,
                        args.kernel_size, threads=args.threads)
    else:
        print(json.dumps(measure(args.kernel_size, args.steps, args.warmup, threads=args.threads)))


if __name__ == "__main__":
    main()
