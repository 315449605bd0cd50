"""Visualizations of a trained generator (carpedm20's test-mode options).

  samples        one grid of --n_samples random samples
  sweeps         per z dimension, a grid: rows are random z, columns move that
                 dimension from -1 to 1 (shows what each dimension controls)
  interpolation  a GIF walking between random z points (spherical interpolation)
  sweep_gifs     per z dimension, a GIF of a sample grid as that dimension moves
  merged_gif     one GIF, one cell per z dimension, all dimensions moving at once

Everything is generated in chunks from fed z vectors, so counts never depend
on --batch_size.
"""

import logging
import os

import numpy as np

import utils
from checkpoints import restored_generator
from model import fixed_z, sample_labels

log = logging.getLogger("dcgan")

SWEEP_STEPS = 8
GIF_FRAMES = 16

def slerp(a, b, t):
    """Spherical interpolation (White 2016), which keeps z at a typical norm."""
    a_unit, b_unit = a / np.linalg.norm(a), b / np.linalg.norm(b)
    omega = np.arccos(np.clip(np.dot(a_unit, b_unit), -1.0, 1.0))
    if omega < 1e-6:
        return (1.0 - t) * a + t * b
    return (np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def _sweep_values(count):
    return np.linspace(-1.0, 1.0, count, dtype=np.float32)


def visualize(config):
    """Writes the requested visualizations under samples/<run>/; returns the paths."""
    options = config.visualize_options()
    with restored_generator(config) as restored:
        session, generator, config = restored.session, restored.generator, restored.config
        out = config.sample_path
        rng_seed = config.seed + 1  # differs from the training sample grid's z
        n = config.n_samples
        written = []

        def generate(z):
            return generator.generate(session, z, sample_labels(len(z), config))

        if "samples" in options:
            path = os.path.join(out, "test_samples.png")
            utils.save_grid(generate(fixed_z(n, config, rng_seed)), path)
            written.append(path)
        if "sweeps" in options:
            base = fixed_z(SWEEP_STEPS, config, rng_seed)
            for dim in range(config.z_dim):
                z = np.repeat(base, SWEEP_STEPS, axis=0)
                z[:, dim] = np.tile(_sweep_values(SWEEP_STEPS), SWEEP_STEPS)
                path = os.path.join(out, f"test_sweep_{dim:03d}.png")
                utils.save_grid(generate(z), path)
                written.append(path)
        if "interpolation" in options:
            path = os.path.join(out, "test_interpolation.gif")
            utils.save_gif(_interpolation_frames(config, generate, rng_seed), path)
            written.append(path)
        if "sweep_gifs" in options or "merged_gif" in options:
            written += _sweep_gifs(config, generate, out, options, rng_seed)
        log.info("wrote %d visualization files to %s", len(written), out)
        return written


def _interpolation_frames(config, generate, seed, key_points=4):
    """Each grid cell loops through its own `key_points` random z by slerp."""
    cells = min(config.n_samples, 16)
    keys = fixed_z(key_points * cells, config, seed).reshape(key_points, cells, config.z_dim)
    z = [
        [slerp(keys[k, cell], keys[(k + 1) % key_points, cell], t) for cell in range(cells)]
        for k in range(key_points)
        for t in np.linspace(0.0, 1.0, GIF_FRAMES, endpoint=False)
    ]
    z = np.asarray(z, np.float32)
    images = generate(z.reshape(-1, config.z_dim))
    images = images.reshape(len(z), cells, config.output_height, config.output_width, config.c_dim)
    return [utils.image_grid(frame) for frame in images]


def _sweep_gifs(config, generate, out, options, seed):
    """Per-dimension GIFs and/or the merged one, from one batch of sweeps."""
    cells = min(config.n_samples, 16)
    base = fixed_z(cells, config, seed)
    values = _sweep_values(GIF_FRAMES)
    # z[dim, frame, cell]: `base` with dimension `dim` set to values[frame].
    z = np.broadcast_to(base, (config.z_dim, GIF_FRAMES, cells, config.z_dim)).copy()
    for dim in range(config.z_dim):
        z[dim, :, :, dim] = values[:, np.newaxis]
    image_shape = (config.output_height, config.output_width, config.c_dim)
    images = generate(z.reshape(-1, config.z_dim)).reshape(config.z_dim, GIF_FRAMES, cells, *image_shape)
    written = []
    if "sweep_gifs" in options:
        for dim in range(config.z_dim):
            path = os.path.join(out, f"test_sweep_{dim:03d}.gif")
            utils.save_gif([utils.image_grid(frame) for frame in images[dim]], path)
            written.append(path)
    if "merged_gif" in options:
        path = os.path.join(out, "test_merged_sweeps.gif")
        utils.save_gif([utils.image_grid(images[:, frame, 0]) for frame in range(GIF_FRAMES)], path)
        written.append(path)
    return written
