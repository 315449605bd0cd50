"""Image helpers: crop/resize, grids, PNG/GIF saving, and the loss-curve plot.

NumPy + Pillow + imageio (no `scipy.misc`, removed in SciPy 1.3), so the
visualizations work on any Python 3 install of the requirements; plots use
matplotlib.
"""

import contextlib
import gzip
import hashlib
import io
import math
import os

import imageio.v2 as imageio
import numpy as np
from PIL import Image


def write_atomically(path, data, mode="w"):
    """Writes to a temporary file in the same folder, then renames it into place,
    so readers (and a crash) see the old file or the new one, never half of one.

    A failed write (e.g. a full disk) deletes the temporary before re-raising:
    left behind, it would hold on to the space that ran out.  An OSError from
    write() or fsync(), which names no file, is re-raised naming `path`.
    """
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        with open(temporary, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        if isinstance(e, OSError) and e.filename is None:
            raise OSError(e.errno, e.strerror, path) from None
        raise


def file_digest(paths, algorithm="sha256", gunzip=False):
    """Hex digest of the bytes of one file or of several in order (with `gunzip`,
    of their uncompressed content), read in 1 MB blocks so multi-GB files need
    no memory.  The one file hash of the project: checkpoint manifests, the
    identity of a feature extractor's weights and download checksums all use it,
    so they cannot drift apart.  May raise OSError, EOFError or zlib.error."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    for path in [paths] if isinstance(paths, str | os.PathLike) else paths:
        with (gzip.open if gunzip else open)(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def to_uint8(images):
    """[-1, 1] floats (generator output) -> uint8 pixels."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def center_crop_resize(image, crop_height, crop_width, output_height, output_width, crop=True):
    """The reference (Pillow) version of the input pipeline's crop + resize.

    Centre crop (clipped to the image) then bilinear resize with antialiasing,
    like `data._load_image`; uint8 HxWxC in, float32 in [-1, 1] out.
    """
    image = np.asarray(image)
    if crop:
        height, width = image.shape[:2]
        crop_height, crop_width = min(crop_height, height), min(crop_width, width)
        top, left = (height - crop_height) // 2, (width - crop_width) // 2
        image = image[top:top + crop_height, left:left + crop_width]
    squeeze = image.ndim == 3 and image.shape[2] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    resized = np.asarray(pil.resize((output_width, output_height), Image.BILINEAR), np.float32)
    if squeeze:
        resized = resized[..., np.newaxis]
    return resized / 127.5 - 1.0


def grid_shape(count):
    """(rows, cols) of the most square grid holding `count` images."""
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols


def image_grid(images, padding=1, cols=None):
    """Tiles N images (uint8 NHWC, any N) into one image, `cols` per row (default: the most square
    grid); empty cells stay black."""
    images = np.asarray(images)
    count, height, width, channels = images.shape
    rows, cols = grid_shape(count) if cols is None else (math.ceil(count / cols), cols)
    grid = np.zeros(((height + padding) * rows - padding, (width + padding) * cols - padding, channels), np.uint8)
    for index, image in enumerate(images):
        top, left = (index // cols) * (height + padding), (index % cols) * (width + padding)
        grid[top:top + height, left:left + width] = image
    return grid


def encode_png(image):
    image = np.asarray(image)
    return imageio.imwrite("<bytes>", image[..., 0] if image.shape[-1] == 1 else image, format="png")


def save_png(image, path):
    """Writes one HxWxC uint8 image as PNG, atomically."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_atomically(path, encode_png(image), mode="wb")


def save_grid(images_uint8, path):
    """Saves the images as one grid PNG and returns the grid."""
    grid = image_grid(images_uint8)
    save_png(grid, path)
    return grid


def save_gif(frames, path, seconds_per_frame=0.1):
    """Writes uint8 HxWxC frames as a looping GIF, atomically."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    frames = [f[..., 0] if f.shape[-1] == 1 else f for f in np.asarray(frames)]
    data = imageio.mimwrite("<bytes>", frames, format="gif", duration=seconds_per_frame * 1000, loop=0)
    write_atomically(path, data, mode="wb")


def plot_curves(path, panels, x_label="step"):
    """Writes a PNG of line plots, one panel per {title: {name: (xs, ys)}}, stacked vertically.

    Drawn with matplotlib (Agg: no display needed) so the plot has real axes,
    ticks, a legend and a grid; each series has its own x values, as FID is
    measured every --fid_every steps and losses every --log_freq.  Non-finite
    points are left out rather than breaking the line's scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(len(panels), 1, figsize=(8, 2.8 * len(panels)), squeeze=False, sharex=True)
    try:
        for axis, (title, series) in zip(axes[:, 0], panels.items(), strict=True):
            for name, (xs, ys) in series.items():
                xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
                finite = np.isfinite(ys)
                axis.plot(xs[finite], ys[finite], label=name, linewidth=1.2, marker="o" if finite.sum() < 20 else None)
            axis.set_title(title)
            axis.grid(True, alpha=0.4)
            axis.legend(loc="best")
        axes[-1, 0].set_xlabel(x_label)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
    finally:
        pyplot.close(figure)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_atomically(path, buffer.getvalue(), mode="wb")
