"""Datasets: readers for the layouts users already have, and the tf.data pipeline.

Everything here returns images scaled to [-1, 1] (the range of the generator's
tanh) and never loads anything with pickle: IDX files are parsed by hand and
image folders are decoded by TensorFlow's image decoders.
"""

import dataclasses
import fnmatch
import gzip
import logging
import os
import struct

import numpy as np
import tensorflow as tf
from PIL import Image

from config import MNIST_LIKE
from errors import UserError

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
EMBEDDED_DATA_DIR = os.path.join(REPO_DIR, "embedded_data")

# IDX element type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# Larger than any real IDX file (MNIST train images are 47 MB uncompressed); a
# header claiming more is corrupt or hostile, and we refuse before allocating.
_IDX_MAX_BYTES = 2 << 30

_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def parse_idx(raw, source="IDX data"):
    """Parses the bytes of an IDX file into a NumPy array.

    Validates the header against the payload length so a truncated or corrupt
    file gives a clear error instead of a reshape failure later.
    """
    if len(raw) < 4:
        raise UserError(f"{source}: too short to be an IDX file ({len(raw)} bytes)")
    zero1, zero2, type_code, ndim = struct.unpack(">BBBB", raw[:4])
    if zero1 != 0 or zero2 != 0 or type_code not in _IDX_DTYPES or not 1 <= ndim <= 4:
        raise UserError(f"{source}: not an IDX file (bad magic number {raw[:4].hex()})")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise UserError(f"{source}: truncated IDX header")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header_len])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if expected > _IDX_MAX_BYTES:
        raise UserError(f"{source}: IDX header claims {expected} bytes, refusing (limit {_IDX_MAX_BYTES})")
    if len(raw) - header_len != expected:
        raise UserError(
            f"{source}: IDX payload is {len(raw) - header_len} bytes but the header says {expected}; "
            "the file is truncated or corrupt, download it again"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)


def read_idx(path):
    """Reads an IDX file, gzip-compressed (`.gz`) or raw."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    return parse_idx(raw, source=path)


def _find_idx(directory, stem):
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise UserError(
        f"{directory}: no {stem}[.gz] found; put the standard MNIST-format IDX files there "
        "(python download.py mnist fetches them)"
    )


def load_mnist_like(directory, split="train"):
    """Loads MNIST / Fashion-MNIST from the standard IDX files in `directory`.

    Returns (images uint8 [N, 28, 28, 1], labels int64 [N]).
    """
    image_stem, label_stem = _IDX_NAMES[split]
    images = read_idx(_find_idx(directory, image_stem))
    labels = read_idx(_find_idx(directory, label_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(
            f"{directory}: images {images.shape} and labels {labels.shape} do not match; "
            "the IDX files are from different datasets or corrupt"
        )
    if labels.size and labels.max() > 9:
        raise UserError(f"{directory}: labels outside 0..9, not an MNIST-style label file")
    return images[..., np.newaxis], labels.astype(np.int64)


# --------------------------------------------------------------------------
# Image folders

# First bytes of the formats tf.io.decode_image reads; anything else matching
# the pattern (a stray .txt renamed .jpg, a zero-byte file) is skipped up front.
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def _looks_like_image(path):
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return any(head.startswith(magic) for magic in _IMAGE_MAGIC)


def list_image_files(directory, pattern):
    """Every file under `directory` (recursively) whose name matches one of the
    comma-separated glob `pattern`s, sorted so runs with one seed see one order.

    Files that are not images (by their first bytes) are skipped with a counted
    warning rather than failing mid-epoch.
    """
    if not os.path.isdir(directory):
        raise UserError(
            f"{directory}: no such folder; put the images there or pass --data_dir/--dataset "
            "(python download.py celebA mnist fashion cifar10 fetches the standard sets)"
        )
    patterns = [p.strip().lower() for p in pattern.split(",") if p.strip()]
    matches = []
    for root, dirs, files in os.walk(directory, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            if any(fnmatch.fnmatch(name.lower(), p) for p in patterns):
                matches.append(os.path.join(root, name))
    images = [path for path in matches if _looks_like_image(path)]
    if len(images) < len(matches):
        log.warning("skipped %d of %d files in %s that are not images", len(matches) - len(images), len(matches),
                    directory)
    if not images:
        raise UserError(f"{directory}: no images matching --input_fname_pattern={pattern!r}")
    return images


def _channels_of(path):
    with Image.open(path) as image:
        return 1 if image.mode in ("1", "L", "LA", "I", "I;16", "F") else 3


def _load_image(path, config):
    """Decodes, centre-crops (--crop) and resizes one file to [-1, 1] floats."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=config.c_dim, expand_animations=False)
    if config.crop:
        # Centred crop, clipped to the image so one odd-sized file cannot stop the run.
        shape = tf.shape(image)
        height, width = tf.minimum(config.input_height, shape[0]), tf.minimum(config.input_width, shape[1])
        top, left = (shape[0] - height) // 2, (shape[1] - width) // 2
        image = image[top:top + height, left:left + width]
    image = tf.image.resize(tf.cast(image, tf.float32), [config.output_height, config.output_width],
                            method="bilinear", antialias=True)
    image.set_shape([config.output_height, config.output_width, config.c_dim])
    return image / 127.5 - 1.0


# --------------------------------------------------------------------------
# Sources and the input pipeline


@dataclasses.dataclass
class Source:
    """A dataset resolved from the config: where it is and what it holds."""

    description: str
    num_examples: int
    c_dim: int
    files: list = None  # image folders
    arrays: tuple = None  # MNIST-like (uint8 images, int64 labels)


def dataset_directory(config):
    """data_dir/dataset; MNIST falls back to the copy embedded in the repo."""
    directory = os.path.join(config.data_dir, config.dataset)
    embedded = os.path.join(EMBEDDED_DATA_DIR, config.dataset)
    if not os.path.isdir(directory) and os.path.isdir(embedded):
        log.info("%s not found; using the embedded copy in %s", directory, embedded)
        return embedded
    return directory


def open_source(config):
    """Finds and checks the data for `config`; raises UserError if unusable."""
    directory = dataset_directory(config)
    if config.dataset in MNIST_LIKE:
        images, labels = load_mnist_like(directory)
        if config.train_size:
            images, labels = images[: config.train_size], labels[: config.train_size]
        source = Source(f"{config.dataset} IDX files in {directory}", len(images), 1, arrays=(images, labels))
    else:
        files = list_image_files(directory, config.input_fname_pattern)
        if config.train_size:
            files = files[: config.train_size]
        c_dim = config.c_dim or _channels_of(files[0])
        if config.crop:
            with Image.open(files[0]) as first:
                width, height = first.size
            if config.input_height > height or config.input_width > width:
                raise UserError(
                    f"--input_height/--input_width {config.input_height}x{config.input_width} is larger than "
                    f"the images ({files[0]} is {height}x{width}); pass a smaller crop or omit --crop"
                )
        source = Source(f"{len(files)} images in {directory}", len(files), c_dim, files=files)
    if source.num_examples < config.batch_size:
        raise UserError(
            f"{directory}: {source.num_examples} examples is fewer than one batch (--batch_size={config.batch_size})"
        )
    return source


@dataclasses.dataclass
class InputBatches:
    images: tf.Tensor
    labels: tf.Tensor
    initializer: tf.Operation
    feed_dict: dict


def input_batches(source, config):
    """Builds the tf.data pipeline: shuffled (seeded, per epoch), repeated,
    decoded in parallel, batched with drop_remainder, and prefetched.

    MNIST arrays enter through placeholders fed once at iterator
    initialisation, so the 47 MB of pixels never become graph constants (which
    would be copied into every checkpoint's .meta file).
    """
    autotune = tf.data.AUTOTUNE
    feed_dict = {}
    if source.arrays is not None:
        images, labels = source.arrays
        images_ph = v1.placeholder(tf.uint8, images.shape, name="mnist_images")
        labels_ph = v1.placeholder(tf.int64, labels.shape, name="mnist_labels")
        feed_dict = {images_ph: images, labels_ph: labels}
        dataset = tf.data.Dataset.from_tensor_slices((images_ph, labels_ph))
        dataset = dataset.shuffle(source.num_examples, seed=config.seed, reshuffle_each_iteration=True).repeat()
        dataset = dataset.batch(config.batch_size, drop_remainder=True)

        def to_float(batch_images, batch_labels):
            batch_images = tf.cast(batch_images, tf.float32)
            if batch_images.shape[1:3] != (config.output_height, config.output_width):
                batch_images = tf.image.resize(batch_images, [config.output_height, config.output_width],
                                               antialias=True)
            return batch_images / 127.5 - 1.0, batch_labels

        dataset = dataset.map(to_float, num_parallel_calls=autotune)
    else:
        dataset = tf.data.Dataset.from_tensor_slices(source.files)
        dataset = dataset.shuffle(source.num_examples, seed=config.seed, reshuffle_each_iteration=True).repeat()
        dataset = dataset.map(lambda path: (_load_image(path, config), tf.constant(0, tf.int64)),
                              num_parallel_calls=autotune)
        dataset = dataset.ignore_errors(log_warning=True)
        dataset = dataset.batch(config.batch_size, drop_remainder=True)
    iterator = v1.data.make_initializable_iterator(dataset.prefetch(autotune))
    images, labels = iterator.get_next()
    return InputBatches(images, labels if config.conditional else None, iterator.initializer, feed_dict)
