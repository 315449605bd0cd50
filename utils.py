"""Image helpers: crop/resize, grids, PNG/GIF saving, and the loss-curve plot.

Pure NumPy + Pillow + imageio (no `scipy.misc`, removed in SciPy 1.3), so the
visualizations work on any Python 3 install of the requirements.
"""

import contextlib
import gzip
import hashlib
import math
import os

import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageDraw


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


def image_grid(images, padding=1):
    """Tiles N images (uint8 NHWC, any N) into one image; empty cells stay black."""
    images = np.asarray(images)
    count, height, width, channels = images.shape
    rows, cols = grid_shape(count)
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


_CURVE_COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def plot_curves(path, steps, panels, size=(640, 240)):
    """Draws line plots, one panel per {title: {name: values}}, stacked vertically.

    Written with Pillow so people who never open TensorBoard still get the
    loss curves as a PNG, without a plotting dependency.
    """
    width, height = size
    margin = 40
    canvas = Image.new("RGB", (width, height * len(panels)), "white")
    draw = ImageDraw.Draw(canvas)
    steps = np.asarray(steps, np.float64)
    x_range = (steps.min(), max(steps.max(), steps.min() + 1)) if len(steps) else (0, 1)
    for panel_index, (title, series) in enumerate(panels.items()):
        top = panel_index * height
        values = np.concatenate([np.asarray(v, np.float64) for v in series.values()]) if series else np.zeros(1)
        values = values[np.isfinite(values)]
        low, high = (values.min(), values.max()) if values.size else (0.0, 1.0)
        high = high if high > low else low + 1.0
        box = (margin, top + 20, width - 10, top + height - 20)
        draw.rectangle(box, outline=(160, 160, 160))
        draw.text((margin, top + 4), title, fill="black")
        draw.text((2, box[1]), f"{high:.2f}", fill="black")
        draw.text((2, box[3] - 10), f"{low:.2f}", fill="black")
        draw.text((box[0], box[3] + 4), f"step {int(x_range[0])}", fill="black")
        draw.text((box[2] - 80, box[3] + 4), f"step {int(x_range[1])}", fill="black")
        for series_index, (name, ys) in enumerate(series.items()):
            color = _CURVE_COLORS[series_index % len(_CURVE_COLORS)]
            xs_px = box[0] + (steps - x_range[0]) / (x_range[1] - x_range[0]) * (box[2] - box[0])
            ys_px = box[3] - (np.asarray(ys, np.float64) - low) / (high - low) * (box[3] - box[1])
            points = [(x, y) for x, y in zip(xs_px, ys_px, strict=True) if np.isfinite(y)]
            if len(points) > 1:
                draw.line(points, fill=color, width=1)
            draw.text((box[0] + 100 + 90 * series_index, top + 4), name, fill=color)
    buffer = encode_png(np.asarray(canvas))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_atomically(path, buffer, mode="wb")
