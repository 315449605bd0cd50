"""Visualizations of a trained generator (carpedm20's test-mode options).

  samples        one grid of --n_samples random samples
  sweeps         per z dimension, a grid: rows are random z, columns move that
                 dimension from -1 to 1 (shows what each dimension controls)
  interpolation  a GIF walking between random z points (spherical interpolation)
  sweep_gifs     per z dimension, a GIF of a sample grid as that dimension moves
  merged_gif     one GIF, one cell per z dimension, all dimensions moving at once
  style_mixing   (--arch style) per crossover resolution, a grid: row r takes
                 the coarse styles of source A_r, column c the fine ones of B_c
  truncation     (--arch style) rows are random z, columns ψ from 0 to 1
  noise          (--arch style) rows are one w each under different noise,
                 the last column the per-pixel standard deviation it causes

The DCGAN paper's analyses (section 6), asked for by name:
  arithmetic     A - B + C on z averaged over groups of test_samples.png (--arithmetic_groups), fig. 7
  d_filters      guided backpropagation of D's last conv layer filters on generated images, fig. 5
  walk           linear walks through random z with the size of each step's change in pixels: smooth
                 change means no memorisation, a sharp jump would show G copying training images, fig. 4

Everything is generated in chunks from fed z vectors, so counts never depend
on --batch_size.
"""

import dataclasses
import json
import logging
import os
import re

import numpy as np
from tensorflow.core.protobuf import rewriter_config_pb2

import utils
from config import STYLE_VISUALIZE_OPTIONS, Config
from networks import DISCRIMINATOR_SCOPE, discriminator, network_spec, style
from runtime.errors import UserError
from runtime.tf_runtime import tf
from training.inference import fixed_z, restored_generator, to_uint8
from training.updates import scope_variables

log = logging.getLogger("dcgan")

SWEEP_STEPS = 8
GIF_FRAMES = 16
WALKS = 4
WALK_KEY_POINTS = 4
WALK_STEPS = 8  # frames from one key point to the next
# A walk step whose pixel change exceeds this multiple of the walk's median step is reported as sharp.
SHARP_TRANSITION_RATIO = 4.0
D_FILTERS_SHOWN = 6  # the paper's figure 5 shows 6 filters
D_FILTER_TOP_IMAGES = 8
ARITHMETIC_NOISE = 0.25
ARITHMETIC_VARIANTS = 8

def slerp(a, b, t):
    """Spherical interpolation (White 2016), which keeps z at a typical norm."""
    a_unit, b_unit = a / np.linalg.norm(a), b / np.linalg.norm(b)
    omega = np.arccos(np.clip(np.dot(a_unit, b_unit), -1.0, 1.0))
    if omega < 1e-6:
        return (1.0 - t) * a + t * b
    return (np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def _sweep_values(count):
    return np.linspace(-1.0, 1.0, count, dtype=np.float32)


def class_labels(config, layout, class_axis):
    """Labels for images whose z vectors are laid out as `layout` (row-major), or None if unconditional.

    A sweep or a GIF must show one class under a changing z, otherwise the
    change of class hides what the z dimension does.  So the class depends only
    on the index along `class_axis` (a sweep's row, a GIF's cell), cycling
    0..y_dim-1 over it, and stays the same along every other axis (a sweep's
    columns, a GIF's frames, the z dimension being swept).
    """
    if not config.conditional:
        return None
    classes = np.arange(layout[class_axis]) % config.y_dim
    along_class_axis = [1] * len(layout)
    along_class_axis[class_axis] = layout[class_axis]
    return np.broadcast_to(classes.reshape(along_class_axis), layout).reshape(-1)


def sweep_grid_inputs(config, dim, seed):
    """z and labels of the sweep grid of z dimension `dim`: row r is random z number r (with class r),
    column c sets `dim` to the c-th value from -1 to 1.  Row-major, SWEEP_STEPS x SWEEP_STEPS."""
    z = np.repeat(fixed_z(SWEEP_STEPS, config, seed), SWEEP_STEPS, axis=0)
    z[:, dim] = np.tile(_sweep_values(SWEEP_STEPS), SWEEP_STEPS)
    return z, class_labels(config, (SWEEP_STEPS, SWEEP_STEPS), class_axis=0)


def interpolation_inputs(config, seed, key_points=4):
    """z [frames * cells, z_dim] (frame-major) and labels: each grid cell loops through its own
    `key_points` random z by slerp, keeping its class in every frame."""
    cells = min(config.n_samples, 16)
    keys = fixed_z(key_points * cells, config, seed).reshape(key_points, cells, config.z_dim)
    z = [
        [slerp(keys[k, cell], keys[(k + 1) % key_points, cell], t) for cell in range(cells)]
        for k in range(key_points)
        for t in np.linspace(0.0, 1.0, GIF_FRAMES, endpoint=False)
    ]
    z = np.asarray(z, np.float32)
    return z.reshape(-1, config.z_dim), class_labels(config, z.shape[:2], class_axis=1)


def sweep_gif_inputs(config, seed):
    """z [z_dim * GIF_FRAMES * cells, z_dim] and labels: z[dim, frame, cell] is the cell's random z with
    dimension `dim` set to the frame's value; a cell keeps its class across frames and dimensions."""
    cells = min(config.n_samples, 16)
    layout = (config.z_dim, GIF_FRAMES, cells)
    z = np.broadcast_to(fixed_z(cells, config, seed), (*layout, config.z_dim)).copy()
    values = _sweep_values(GIF_FRAMES)
    for dim in range(config.z_dim):
        z[dim, :, :, dim] = values[:, np.newaxis]
    return z.reshape(-1, config.z_dim), class_labels(config, layout, class_axis=2)


def visualize(config):
    """Writes the requested visualizations under samples/<run>/; returns the paths."""
    options = config.visualize_options()
    with restored_generator(config) as restored:
        session, generator, config = restored.session, restored.generator, restored.config
        out = config.sample_path
        rng_seed = config.seed + 1  # differs from the training sample grid's z
        n = config.n_samples
        image_shape = (config.output_height, config.output_width, config.c_dim)
        written = []

        def generate(z, labels):
            return generator.generate(session, z, labels)

        if "samples" in options:
            path = os.path.join(out, "test_samples.png")
            utils.save_grid(generate(fixed_z(n, config, rng_seed), class_labels(config, (n,), 0)), path)
            written.append(path)
        if "sweeps" in options:
            for dim in range(config.z_dim):
                path = os.path.join(out, f"test_sweep_{dim:03d}.png")
                utils.save_grid(generate(*sweep_grid_inputs(config, dim, rng_seed)), path)
                written.append(path)
        if "interpolation" in options:
            path = os.path.join(out, "test_interpolation.gif")
            images = generate(*interpolation_inputs(config, rng_seed))
            frames = images.reshape(-1, min(n, 16), *image_shape)
            utils.save_gif([utils.image_grid(frame) for frame in frames], path)
            written.append(path)
        if "sweep_gifs" in options or "merged_gif" in options:
            images = generate(*sweep_gif_inputs(config, rng_seed))
            written += _save_sweep_gifs(images.reshape(config.z_dim, GIF_FRAMES, -1, *image_shape), out, options)
        written += paper_analyses(options, restored, rng_seed)
        written += style_visualizations(restored, options, rng_seed)
        log.info("wrote %d visualization files to %s", len(written), out)
        return written


def _save_sweep_gifs(images, out, options):
    """Per-dimension GIFs and/or the merged one from images[dim, frame, cell]."""
    written = []
    if "sweep_gifs" in options:
        for dim in range(len(images)):
            path = os.path.join(out, f"test_sweep_{dim:03d}.gif")
            utils.save_gif([utils.image_grid(frame) for frame in images[dim]], path)
            written.append(path)
    if "merged_gif" in options:
        path = os.path.join(out, "test_merged_sweeps.gif")
        utils.save_gif([utils.image_grid(images[:, frame, 0]) for frame in range(GIF_FRAMES)], path)
        written.append(path)
    return written


# ---- The DCGAN paper's analyses ----


def arithmetic_z(a, b, c, seed, variants=ARITHMETIC_VARIANTS, noise=ARITHMETIC_NOISE):
    """mean(A) - mean(B) + mean(C), then `variants` copies with uniform noise of ±`noise` added:
    the DCGAN paper's figure 7 shows the same vector with that noise gives nearly the same picture."""
    result = a.mean(axis=0) - b.mean(axis=0) + c.mean(axis=0)
    rng = np.random.RandomState(seed)
    jitter = rng.uniform(-noise, noise, (variants, result.size)).astype(np.float32)
    return np.concatenate([result[np.newaxis], result + jitter]).astype(np.float32)


def arithmetic_grid(config, generate, seed):
    """Rows: group A's samples, B's, C's (from test_samples.png), then A - B + C and its noisy variants;
    a conditional model draws every result in the class of C's first sample."""
    groups = config.arithmetic_index_groups()
    z = fixed_z(config.n_samples, config, seed)
    labels = class_labels(config, (config.n_samples,), 0)
    results = arithmetic_z(*(z[group] for group in groups), seed)
    cols = max(len(results), *(len(group) for group in groups))
    rows = []
    for group in groups:
        images = generate(z[group], None if labels is None else labels[group])
        rows.append(np.concatenate([images, np.zeros((cols - len(group), *images.shape[1:]), np.uint8)]))
    rows.append(generate(results, None if labels is None else np.full(len(results), labels[groups[2][0]])))
    return utils.image_grid(np.concatenate(rows), cols=cols)


def walk_inputs(config, seed):
    """z [WALKS * frames, z_dim] (walk-major) and labels: walk w goes linearly through WALK_KEY_POINTS
    random z in WALK_STEPS steps each (the paper's figure 4), keeping one class."""
    keys = fixed_z(WALKS * WALK_KEY_POINTS, config, seed).reshape(WALKS, WALK_KEY_POINTS, config.z_dim)
    t = np.arange(WALK_STEPS, dtype=np.float32)[:, np.newaxis] / WALK_STEPS
    walks = [np.concatenate([(1 - t) * keys[w, k] + t * keys[w, k + 1] for k in range(WALK_KEY_POINTS - 1)]
                            + [keys[w, -1:]]) for w in range(WALKS)]
    z = np.asarray(walks, np.float32)
    return z.reshape(-1, config.z_dim), class_labels(config, z.shape[:2], class_axis=0)


def transition_sizes(frames):
    """Mean absolute pixel change (0-255) between consecutive frames of each walk: [walks, frames - 1]."""
    frames = np.asarray(frames, np.float64)
    return np.abs(np.diff(frames, axis=1)).mean(axis=tuple(range(2, frames.ndim)))


def sharpest_transitions(sizes):
    """Per walk, the largest step's change over the median step's: 1 for an even walk."""
    median = np.median(sizes, axis=1)
    return sizes.max(axis=1) / np.maximum(median, 1e-12)


def _save_walk(config, generate, seed, out):
    z, labels = walk_inputs(config, seed)
    frames = generate(z, labels).reshape(WALKS, -1, config.output_height, config.output_width, config.c_dim)
    strip_path, gif_path = os.path.join(out, "test_walk.png"), os.path.join(out, "test_walk.gif")
    utils.save_png(utils.image_grid(frames.reshape(-1, *frames.shape[2:]), cols=frames.shape[1]), strip_path)
    utils.save_gif([utils.image_grid(frames[:, i]) for i in range(frames.shape[1])], gif_path)
    sizes = transition_sizes(frames)
    ratios = sharpest_transitions(sizes)
    report_path = os.path.join(out, "test_walk_transitions.json")
    utils.write_atomically(report_path, json.dumps({
        "sharp_transition_ratio": SHARP_TRANSITION_RATIO, "largest_over_median_step": ratios.round(3).tolist(),
        "mean_abs_pixel_change_per_step": sizes.round(3).tolist()}, indent=2) + "\n")
    sharp = int((ratios > SHARP_TRANSITION_RATIO).sum())
    log.info("walk: largest step / median step per walk %s; %d of %d walks with a sharp transition (> %g)",
             ", ".join(f"{r:.2f}" for r in ratios), sharp, WALKS, SHARP_TRANSITION_RATIO)
    return [strip_path, gif_path, report_path]


@tf.RegisterGradient("GuidedLeakyRelu")
def _guided_leaky_relu_gradient(op, grad):
    """Guided backpropagation (Springenberg et al. 2015): only positive gradients pass, and only where
    the unit was active, so the map shows what excites the filter rather than what inhibits it."""
    return tf.where((op.inputs[0] > 0) & (grad > 0), grad, tf.zeros_like(grad))


def _last_conv_output(graph):
    """D's last convolution layer (before BN): the BiasAdd of the highest-numbered d_h*_conv."""
    pattern = re.compile(rf"^{DISCRIMINATOR_SCOPE}/d_h(\d+)_conv/BiasAdd$")
    matches = [(int(m.group(1)), op) for op in graph.get_operations() if (m := pattern.match(op.name))]
    return max(matches, key=lambda match: match[0])[1].outputs[0]


def d_filter_maps(config, checkpoint, images_uint8, labels):
    """Guided-backprop maps [filters, D_FILTER_TOP_IMAGES, H, W, C] (uint8, grey 128 = 0) of the first
    D_FILTERS_SHOWN filters of D's last conv layer, each on the images that excite it most."""
    v1 = tf.compat.v1
    config = dataclasses.replace(config, data_format="NHWC")  # D's weights do not depend on the layout
    session_config = v1.ConfigProto()
    # Grappler's remapper would fuse conv + bias + LeakyRelu, whose gradient here reads the unfused BiasAdd.
    session_config.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
    with tf.Graph().as_default() as graph, v1.Session(config=session_config) as session:
        images = v1.placeholder(tf.float32, [None, config.output_height, config.output_width, config.c_dim])
        # D as training built it: AC-GAN's D is not shown the labels (it predicts them), the concat D is.
        shown_labels = config.conditional and config.conditioning == "concat"
        onehot = tf.one_hot(labels, config.y_dim) if shown_labels else None
        with graph.gradient_override_map({"LeakyRelu": "GuidedLeakyRelu"}):
            discriminator(images, onehot, network_spec(config))
        responses = _last_conv_output(graph)
        shown = min(D_FILTERS_SHOWN, responses.shape[-1])
        peaks = tf.reduce_max(responses[..., :shown], axis=[1, 2])  # [images, filters]
        maps = [tf.gradients(peaks[:, f], images)[0] for f in range(shown)]
        v1.train.Saver(scope_variables(DISCRIMINATOR_SCOPE, v1.GraphKeys.GLOBAL_VARIABLES)).restore(
            session, checkpoint)
        peak_values, gradient_maps = session.run([peaks, maps], {images: images_uint8 / 127.5 - 1.0})
    top = np.argsort(-peak_values, axis=0)[:D_FILTER_TOP_IMAGES]  # [top, filters]
    chosen = np.stack([gradient_maps[f][top[:, f]] for f in range(shown)])
    scale = np.abs(chosen).max(axis=(2, 3, 4), keepdims=True)
    return utils.to_uint8(chosen / np.maximum(scale, 1e-12))


def _save_d_filters(config, checkpoint, generate, seed, out):
    count = max(config.n_samples, D_FILTER_TOP_IMAGES)
    labels = class_labels(config, (count,), 0)
    maps = d_filter_maps(config, checkpoint, generate(fixed_z(count, config, seed), labels), labels)
    path = os.path.join(out, "test_d_filters.png")
    utils.save_png(utils.image_grid(maps.reshape(-1, *maps.shape[2:]), cols=maps.shape[1]), path)
    return [path]


def paper_analyses(options, restored, seed):
    """Writes the requested analyses of the paper under samples/<run>/; returns the paths."""
    config, out = restored.config, restored.config.sample_path

    def generate(z, labels):
        return restored.generator.generate(restored.session, z, labels)

    written = []
    if "arithmetic" in options:
        path = os.path.join(out, "test_arithmetic.png")
        utils.save_png(arithmetic_grid(config, generate, seed), path)
        written.append(path)
    if "walk" in options:
        written += _save_walk(config, generate, seed, out)
    if "d_filters" in options:
        written += _save_d_filters(config, restored.path, generate, seed, out)
    return written


STYLE_SOURCES = 5  # sources per side of a style mixing grid
NOISE_ROWS = 6
NOISE_REALIZATIONS = 32  # images behind each standard deviation map; the first NOISE_ROWS - 1 are shown


def style_visualizations(restored, options, seed):
    """The --arch style visualizations among `options`; for another generator they
    are skipped when they came with the default (all) and refused when named."""
    session, generator, config = restored.session, restored.generator, restored.config
    requested = [o for o in options if o in STYLE_VISUALIZE_OPTIONS]
    if config.arch != "style":
        if requested and config.visualize_option != Config.visualize_option:
            raise UserError(f"--visualize_option {','.join(requested)} needs a style generator (--arch style); "
                            f"{config.checkpoint_path} holds a --arch {config.arch} one")
        return []
    with session.graph.as_default():
        tools = StyleTools(session, generator, config)
    out, written = config.sample_path, []
    if "style_mixing" in options:
        for resolution, grid in tools.style_mixing_grids(seed):
            written.append(os.path.join(out, f"test_style_mixing_{resolution:03d}.png"))
            utils.save_grid(grid, written[-1])
    if "truncation" in options:
        written.append(os.path.join(out, "test_truncation.png"))
        utils.save_grid(tools.truncation_grid(seed), written[-1])
    if "noise" in options:
        written.append(os.path.join(out, "test_noise.png"))
        utils.save_grid(tools.noise_grid(seed), written[-1])
    return written


class StyleTools:
    """Feeds a restored style generator below z: w (truncated by the generator's
    ψ) and the noise seeds of z, and images from fed per-layer styles and noise
    seeds, on the generator's variables (the averaged G's with --g_ema, as its
    samples).  An image made from one z's w and seeds is that z's sample."""

    def __init__(self, session, generator, config):
        self.session, self.generator, self.config = session, generator, config
        spec = generator.spec
        self.layers = style.num_layers(spec)
        self.styles = tf.compat.v1.placeholder(tf.float32, [None, self.layers, config.w_dim], name="layer_styles")
        self.noise_seeds = tf.compat.v1.placeholder(tf.int64, [None], name="layer_noise_seeds")
        with generator.variables():
            self.w = style.truncate(style.mapping(generator.z, generator.labels_onehot, spec),
                                    style.average_w(spec), generator.truncation_psi)
            self.seeds = style.noise_seeds(generator.z)
            self.images = to_uint8(style.synthesis(self.styles, spec, style.inference_noise(self.noise_seeds, spec)))

    def w_of(self, count, seed, extra_feed=None):
        """(w [count, w_dim], noise seeds [count]) of `count` z drawn with `seed`."""
        config = self.config
        feed = self.generator.feed(fixed_z(count, config, seed), class_labels(config, (count,), 0))
        return self.session.run((self.w, self.seeds), {**feed, **(extra_feed or {})})

    def synthesize(self, styles, noise_seeds):
        return self.session.run(self.images, {self.styles: styles, self.noise_seeds: noise_seeds})

    def style_mixing_grids(self, seed):
        """[(resolution, images)]: for each resolution but the output's, a
        (1 + STYLE_SOURCES)² grid whose cell (r, c) takes the layers up to that
        resolution from source A_r and the rest from B_c; the first row shows
        the B sources, the first column the A sources, the corner is blank.  A cell
        takes B_c's noise, as the fine layers (where noise acts most) are B's."""
        coarse, coarse_seeds = self.w_of(STYLE_SOURCES, seed)
        fine, fine_seeds = self.w_of(STYLE_SOURCES, seed + 1)
        pure = self.synthesize(np.repeat(np.concatenate([coarse, fine])[:, None], self.layers, axis=1),
                               np.concatenate([coarse_seeds, fine_seeds]))
        blank = np.zeros_like(pure[:1])
        grids = []
        for index, resolution in enumerate(style.resolutions(self.generator.spec)[:-1]):
            crossover = 2 * (index + 1)  # two layers per resolution
            first = np.arange(self.layers)[None, None, :, None] < crossover
            mixed = np.where(first, coarse[:, None, None], fine[None, :, None]).reshape(-1, self.layers,
                                                                                        self.config.w_dim)
            cells = self.synthesize(mixed, np.tile(fine_seeds, STYLE_SOURCES)).reshape(
                STYLE_SOURCES, STYLE_SOURCES, *pure.shape[1:])
            rows = [np.concatenate([blank, pure[STYLE_SOURCES:]])]
            rows += [np.concatenate([pure[r:r + 1], cells[r]]) for r in range(STYLE_SOURCES)]
            grids.append((resolution, np.concatenate(rows)))
        return grids

    def truncation_grid(self, seed, steps=SWEEP_STEPS):
        """Row r: random z number r at ψ = 0, 1/(steps-1), ..., 1 (ψ = 0: the average w in every row), all
        with z number r's noise, so only ψ changes along a row."""
        columns = [self.w_of(steps, seed, {self.generator.truncation_psi: psi})[0] for psi in np.linspace(0, 1, steps)]
        seeds = self.w_of(steps, seed)[1]
        return self.synthesize(np.repeat(np.stack(columns, axis=1).reshape(-1, 1, self.config.w_dim),
                                         self.layers, axis=1), np.repeat(seeds, steps))

    def noise_grid(self, seed):
        """Row r: one w under NOISE_ROWS - 1 different noise draws (the first is
        its z's own: the sample), then the per-pixel standard deviation over
        NOISE_REALIZATIONS draws (averaged over channels, scaled so the grid's
        largest is white): where noise acts."""
        rows = []
        for w, own_seed in zip(*self.w_of(NOISE_ROWS, seed), strict=True):
            images = self.synthesize(np.broadcast_to(w, (NOISE_REALIZATIONS, self.layers, len(w))),
                                     np.concatenate([[own_seed], np.arange(1, NOISE_REALIZATIONS)]))
            deviation = images.astype(np.float64).std(axis=0).mean(axis=-1, keepdims=True)
            rows.append((images[:NOISE_ROWS - 1], deviation))
        brightest = max(max(d.max() for _, d in rows), 1e-12)
        channels = rows[0][0].shape[-1]
        grid = []
        for images, deviation in rows:
            deviation_image = np.round(np.repeat(deviation, channels, axis=-1) * 255.0 / brightest).astype(np.uint8)
            grid += [*images, deviation_image]
        return np.stack(grid)
