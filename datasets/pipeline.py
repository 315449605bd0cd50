"""Datasets: readers for the layouts users already have, and the tf.data pipeline.

Everything here returns images scaled to [-1, 1] (the range of the generator's
tanh) and never loads anything with pickle: IDX files and CIFAR-10's binary
batches are parsed with NumPy, and image folders are decoded by TensorFlow's
image decoders after every file passed a cheap check with Pillow, so a bad file
is skipped (and counted) before training starts instead of failing mid-epoch.
"""

import collections
import contextlib
import dataclasses
import fcntl
import fnmatch
import glob
import gzip
import hashlib
import io
import json
import logging
import math
import os
import struct
import typing
import warnings
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError

from config import MNIST_LIKE
from runtime.errors import UserError
from runtime.tf_runtime import tf
from training.replicas import Replicas

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    # Python ints cannot overflow; zero dimensions are counted as 1 so a header like
    # (0, 2**31, 2**31) cannot slip past as "0 bytes" and break NumPy's reshape.
    expected = math.prod(shape) * dtype.itemsize
    if math.prod(max(d, 1) for d in shape) * dtype.itemsize > _IDX_MAX_BYTES:
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
            # Read at most one byte past the limit: a gzip bomb stops here, not in memory.
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as compressed:
                raw = compressed.read(_IDX_MAX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read ({e}); the file is corrupt, download it again") from None
    if len(raw) > _IDX_MAX_BYTES:
        raise UserError(f"{path}: decompresses to more than {_IDX_MAX_BYTES} bytes, refusing")
    return parse_idx(raw, source=path)


def _find_idx(directory, stem, dataset):
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise UserError(
        f"{directory}: no {stem}[.gz] found; put the {dataset} IDX files there "
        f"(python download.py {dataset} fetches them)"
    )


def load_mnist_like(directory, split="train", dataset="mnist"):
    """Loads MNIST / Fashion-MNIST from the standard IDX files in `directory`.

    `dataset` only names the download in the error for a missing file.
    Returns (images uint8 [N, 28, 28, 1], labels int64 [N]).
    """
    image_stem, label_stem = _IDX_NAMES[split]
    images = read_idx(_find_idx(directory, image_stem, dataset))
    labels = read_idx(_find_idx(directory, label_stem, dataset))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(
            f"{directory}: images {images.shape} and labels {labels.shape} do not match; "
            "the IDX files are from different datasets or corrupt"
        )
    if labels.size and labels.max() > 9:
        raise UserError(f"{directory}: labels outside 0..9, not an MNIST-style label file")
    return images[..., np.newaxis], labels.astype(np.int64)


# --------------------------------------------------------------------------
# CIFAR-10, binary version (https://www.cs.toronto.edu/~kriz/cifar.html)

# Each record is one label byte, then the 1024 red, 1024 green and 1024 blue
# bytes of a 32x32 image, rows top to bottom.
_CIFAR_RECORD_BYTES = 1 + 3 * 32 * 32
_CIFAR_SUBDIR = "cifar-10-batches-bin"  # what download.py unpacks into data/cifar10/
_CIFAR_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}


def read_cifar_batch(path):
    """Reads one CIFAR-10 binary batch file: (images uint8 [N, 32, 32, 3], labels int64 [N]).

    The size is checked before reading, so a truncated download or another
    dataset's file (CIFAR-100 records have two label bytes) gets a clear error
    instead of a silently shifted image/label pairing.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if not size or size % _CIFAR_RECORD_BYTES:
                raise UserError(
                    f"{path}: {size} bytes is not a whole number of {_CIFAR_RECORD_BYTES}-byte CIFAR-10 records; "
                    "the file is truncated or not a CIFAR-10 binary batch, download it again "
                    "(python download.py cifar10)"
                )
            records = np.frombuffer(f.read(), np.uint8).reshape(-1, _CIFAR_RECORD_BYTES)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    labels = records[:, 0]
    if labels.max() > 9:
        raise UserError(f"{path}: labels outside 0..9, not a CIFAR-10 binary batch (python download.py cifar10)")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def load_cifar10(directory, split="train"):
    """(images uint8 [N, 32, 32, 3], labels int64 [N]) of CIFAR-10 in `directory`, from either layout
    `read_cifar10` reads."""
    return read_cifar10(directory, split)[:2]


class LabelledImages(typing.NamedTuple):
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int64 [N]
    origin: str  # what the pixels are, for logs and the names of numbers computed from them


def read_cifar10(directory, split="train"):
    """CIFAR-10 from `directory`: the official binary version (cifar-10-batches-bin/) if it is there, else
    class folders (`split`/<class name>/*.jpg|png, the layout of torchvision ImageFolder exports, Kaggle's
    PNG copy and YoongiKim's JPEG copy).  The binary version comes first because its pixels are the
    original ones; a JPEG copy is lossy, which `origin` says."""
    if os.path.isdir(os.path.join(directory, _CIFAR_SUBDIR)):
        paths = [os.path.join(directory, _CIFAR_SUBDIR, name) for name in _CIFAR_FILES[split]]
        for path in paths:
            if not os.path.isfile(path):
                raise UserError(
                    f"{path}: not found; put the CIFAR-10 binary version (cifar-10-batches-bin/) in {directory} "
                    "(python download.py cifar10 fetches it; the pickled python version is not read)"
                )
        images, labels = zip(*(read_cifar_batch(path) for path in paths), strict=True)
        return LabelledImages(np.concatenate(images), np.concatenate(labels), "binary batches")
    folder = os.path.join(directory, split)
    if os.path.isdir(folder) and _subfolder_names(folder):
        return _read_cifar_class_folders(folder)
    raise UserError(
        f"{directory}: no CIFAR-10 there: neither the binary version ({_CIFAR_SUBDIR}/, python download.py "
        f"cifar10 fetches it) nor class folders ({split}/<class name>/*.jpg or *.png, e.g. unzipped from a "
        "JPEG/PNG copy)"
    )


# Label order of the binary version (its batches.meta.txt): folder copies are labelled by these names.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR_FOLDER_PATTERN = "*.png,*.jpg,*.jpeg"
_LOSSY_SUFFIXES = (".jpg", ".jpeg")


def _read_cifar_class_folders(folder):
    """Every image under `folder`/<class name>/ with the class's label, decoded by the training pipeline's
    decoder (`_decode_rgb`, so the pixels equal those of the same files read as an image folder).

    The files are listed in sorted order and then interleaved class by class (the first file of every
    class, then the second of every class...), so any prefix holds all classes evenly like the shuffled
    binary batches do: evaluation takes the first N images as its real set.
    """
    for name in _subfolder_names(folder):
        if name.lower() not in CIFAR10_CLASSES:
            raise UserError(f"{os.path.join(folder, name)}: not a CIFAR-10 class folder; name the class folders "
                            f"{', '.join(CIFAR10_CLASSES)}")
    listing = list_image_files(folder, _CIFAR_FOLDER_PATTERN)
    labels = []
    for path, (width, height) in zip(listing.files, listing.sizes, strict=True):
        parts = os.path.relpath(path, folder).split(os.sep)
        if len(parts) < 2:
            raise UserError(f"{path}: not inside a class folder; put each image in {folder}/<class name>/")
        if (width, height) != (32, 32):
            raise UserError(f"{path}: {width}x{height} pixels, but CIFAR-10 images are 32x32")
        labels.append(CIFAR10_CLASSES.index(parts[0].lower()))
    images, decoded = _decode_same_size_files(listing.files, (32, 32, 3))
    labels = np.asarray(labels, np.int64)[decoded]
    rank_in_class = np.zeros(len(labels), np.int64)
    for label in np.unique(labels):
        rank_in_class[labels == label] = np.arange(np.sum(labels == label))
    order = np.lexsort((labels, rank_in_class))
    lossy = sum(path.lower().endswith(_LOSSY_SUFFIXES) for path in listing.files)
    origin = ("lossy JPEG class folders" if lossy == len(listing.files) else "PNG class folders" if not lossy
              else "JPEG and PNG class folders (JPEG is lossy)")
    return LabelledImages(images[order], labels[order], origin)


def _subfolder_names(folder):
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries if entry.is_dir())


def _decode_same_size_files(files, shape):
    """(uint8 [N, *shape] of the files that decode, the indices of those files), decoded in parallel by
    `_decode_rgb` in a graph of its own; a file that passed `_inspect_image` but fails to decode (or has
    another size than its header said) is left out with a warning, as the training pipeline does."""
    with tf.Graph().as_default():
        dataset = tf.data.Dataset.from_tensor_slices(files).enumerate().map(
            lambda index, path: (index, tf.ensure_shape(_decode_rgb(tf.io.read_file(path)), shape)),
            num_parallel_calls=tf.data.AUTOTUNE)
        next_batch = v1.data.make_one_shot_iterator(dataset.ignore_errors(log_warning=True).batch(1000)).get_next()
        indices, chunks = [], []
        with v1.Session() as session:
            while True:
                try:
                    index, images = session.run(next_batch)
                except tf.errors.OutOfRangeError:
                    break
                indices.append(index)
                chunks.append(images)
    indices = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    if len(indices) < len(files):
        log.warning("%d of %d files did not decode and are left out", len(files) - len(indices), len(files))
    images = np.concatenate(chunks) if chunks else np.zeros((0, *shape), np.uint8)
    return images, indices


# --------------------------------------------------------------------------
# Image folders

# The formats tf.io.decode_image reads (TensorFlow 2.21: JPEG, PNG, GIF, BMP and
# WebP; not TIFF, PPM or JPEG XL).  Pillow is told to try only these, so no other
# Pillow plugin ever parses a file from the folder.
_DECODABLE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
READABLE_FORMATS = "JPEG/PNG/GIF/BMP/WebP"
# Files whose header claims more pixels than this are skipped before anything
# decodes them: a few-kB PNG can claim 100k x 100k pixels (a "decompression
# bomb") and decode_image would try to allocate 30 GB.  50 Mpixel is far above
# any photo worth shrinking to a DCGAN's 64x64.
MAX_IMAGE_PIXELS = 50_000_000
_JPEG_END = b"\xff\xd9"


def _inspect_image(path):
    """Returns ((width, height), None) for a file TensorFlow can decode, else (None, why not).

    Runs on every file before training, so it must be cheap.  Measured on the
    10k half-size CelebA jpgs (2 shared cores, 2026-11-23), per file: header
    only 26 us, Image.verify() 24 us (a no-op for JPEG: it misses truncation),
    reading the last two bytes 5 us, a JPEG decode at 1/8 scale (draft) 112 us,
    a full decode 189 us.  So a JPEG counts as complete when it ends with the
    end-of-image marker; only one that does not (truncated, or with trailing
    data after the marker, which is still valid) is decoded at 1/8 scale to
    decide.  The whole check takes 29 us per file (0.3 s for those 10k, ~6 s
    for all of CelebA; more when the files are not in the page cache yet).  A
    PNG's chunk CRCs are verified up to IEND (no decompression); GIF and BMP
    are rare enough to decode fully.  Corruption inside a complete JPEG can
    still pass; the pipeline's ignore_errors drops such a file.
    """
    try:
        with open(path, "rb") as f:
            length = f.seek(0, os.SEEK_END)
            if length == 0:
                return None, "zero-byte"
            f.seek(max(length - 2, 0))
            ends_like_jpeg = f.read() == _JPEG_END
            f.seek(0)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_IMAGE_PIXELS is lower
                    image = Image.open(f, formats=_DECODABLE_FORMATS)
                with image:
                    size = image.size
                    if size[0] * size[1] > MAX_IMAGE_PIXELS:
                        return None, "over the pixel limit"
                    if getattr(image, "is_animated", False) and image.format == "WEBP":
                        return None, "animated WebP"  # see _decode_rgb
                    # TF's BMP decoder ignores palettes and compression.
                    if image.format == "BMP" and (image.info.get("compression") or image.mode not in ("RGB", "L")):
                        return None, "unsupported BMP"
                    if image.format == "PNG":
                        image.verify()
                    elif image.format != "JPEG" or not ends_like_jpeg:
                        image.draft(None, (1, 1))
                        image.load()
                return size, None
            except Image.DecompressionBombError:
                return None, "over the pixel limit"
            except UnidentifiedImageError:
                return None, "not an image"
            except Exception:  # Pillow raises OSError, SyntaxError, ValueError, struct.error... on bad data
                return None, "truncated/corrupt"
    except OSError:
        return None, "unreadable"


class ImageListing(typing.NamedTuple):
    """Usable image files (sorted) and their (width, height)."""

    files: list
    sizes: list


def list_image_files(directory, pattern, limit=0):
    """Every usable file under `directory` (recursively) whose name matches one
    of the comma-separated glob `pattern`s, sorted so runs with one seed see one
    order; stops after `limit` usable files (0 = no limit).

    Files that cannot be decoded (see `_inspect_image`) are skipped with one
    warning counting them by reason; nothing usable is a UserError.
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
    listing, skipped, first_skipped = ImageListing([], []), collections.Counter(), None
    for path in matches:
        if limit and len(listing.files) == limit:
            break
        size, reason = _inspect_image(path)
        if reason:
            skipped[reason] += 1
            first_skipped = first_skipped or f"{path}: {reason}"
        else:
            listing.files.append(path)
            listing.sizes.append(size)
    summary = ", ".join(f"{count} {reason}" for reason, count in skipped.items())
    if not listing.files:
        raise UserError(f"{directory}: no images matching --input_fname_pattern={pattern!r}"
                        + (f" (skipped {summary}; first {first_skipped})" if skipped else "")
                        + f"; add {READABLE_FORMATS} files or change the pattern")
    if skipped:
        log.warning("skipped %d of %d files in %s: %s (first %s)", sum(skipped.values()),
                    len(listing.files) + sum(skipped.values()), directory, summary, first_skipped)
    return listing


def _channels_of(path):
    with Image.open(path) as image:
        return 1 if image.mode in ("1", "L", "LA", "I", "I;16", "F") else 3


def _check_crop(config, listing):
    """Refuses a --crop larger than every image; warns about the ones it exceeds
    (they are cropped to their own size, as _crop_and_resize does)."""
    crop = f"{config.input_height}x{config.input_width}"
    too_small = sum(config.input_height > height or config.input_width > width for width, height in listing.sizes)
    if too_small == len(listing.files):
        width, height = listing.sizes[0]
        raise UserError(
            f"--input_height/--input_width {crop} is larger than the images ({listing.files[0]} is "
            f"{height}x{width}); pass a smaller crop or omit --crop"
        )
    if too_small:
        log.warning("%d of %d images are smaller than the %s crop; each is cropped to its own size instead",
                    too_small, len(listing.files), crop)


# --------------------------------------------------------------------------
# Sources and the input pipeline

# Folder names accepted for a dataset, first = download.py's; Fashion-MNIST is
# often unpacked as fashion-mnist/ (the name of Zalando's repository).
_FOLDER_ALIASES = {"fashion": ("fashion", "fashion-mnist")}


@dataclasses.dataclass
class Source:
    """A dataset resolved from the config: where it is and what it holds."""

    description: str
    num_examples: int
    c_dim: int
    files: list = None  # image folders
    arrays: tuple = None  # MNIST-like and CIFAR-10 (uint8 images, int64 labels)


def dataset_directory(dataset, data_dir):
    """data_dir/dataset (or an alias folder); MNIST falls back to the copy embedded in the repo."""
    candidates = [os.path.join(data_dir, name) for name in _FOLDER_ALIASES.get(dataset, (dataset,))]
    for directory in candidates:
        if os.path.isdir(directory):
            return directory
    embedded = os.path.join(EMBEDDED_DATA_DIR, dataset)
    if os.path.isdir(embedded):
        log.info("%s not found; using the embedded copy in %s", candidates[0], embedded)
        return embedded
    return candidates[0]


def _array_source(config, description, images, labels):
    if config.train_size:
        images, labels = images[: config.train_size], labels[: config.train_size]
    return Source(description, len(images), config.c_dim or images.shape[-1], arrays=(images, labels))


def _folder_source(config, directory):
    listing = list_image_files(directory, config.input_fname_pattern, limit=config.train_size)
    if config.crop:
        _check_crop(config, listing)
    sizes = collections.Counter(listing.sizes)
    if len(sizes) > 1:
        (width, height), count = sizes.most_common(1)[0]
        log.info("images come in %d sizes (%d of %d are %dx%d); all are resized to %dx%d", len(sizes), count,
                 len(listing.files), height, width, config.output_height, config.output_width)
    c_dim = config.c_dim or _channels_of(listing.files[0])
    return Source(f"{len(listing.files)} images in {directory}", len(listing.files), c_dim, files=listing.files)


def open_source(config):
    """Finds and checks the data for `config`; raises UserError if unusable."""
    directory = dataset_directory(config.dataset, config.data_dir)
    if config.dataset == "cifar10":
        images, labels, origin = read_cifar10(directory)
        source = _array_source(config, f"CIFAR-10 {origin} in {directory}", images, labels)
    elif config.dataset in MNIST_LIKE:
        source = _array_source(config, f"{config.dataset} IDX files in {directory}",
                               *load_mnist_like(directory, dataset=config.dataset))
    else:
        source = _folder_source(config, directory)
    if source.num_examples < config.batch_size:
        raise UserError(
            f"{directory}: {source.num_examples} examples is fewer than one batch (--batch_size={config.batch_size})"
        )
    if config.conditional:
        _check_labels(config, source)
    return source


def _check_labels(config, source):
    """A conditional model (--y_dim > 0) needs labels from the data, each below --y_dim: an image folder
    would give every example class 0, and tf.one_hot turns a label >= --y_dim into an all-zero vector
    without a word.  Checked here because the labels are in memory once the source is open."""
    if source.arrays is None:
        raise UserError(f"--y_dim {config.y_dim}: {source.description} has no labels (an image folder), so a "
                        "conditional model would see class 0 only; pass --y_dim 0")
    largest = int(source.arrays[1].max())
    if largest >= config.y_dim:
        raise UserError(f"--y_dim {config.y_dim}: the labels of {source.description} go up to {largest}; "
                        f"pass --y_dim {largest + 1} or more (or 0: unconditional)")


def _match_channels(image, c_dim):
    """Grayscale <-> RGB, so any image fits the model's --c_dim."""
    if image.shape[-1] == c_dim:
        return image
    return tf.image.rgb_to_grayscale(image) if c_dim == 1 else tf.image.grayscale_to_rgb(image)


def _crop_and_resize(image, config):
    """Centre crop (--crop) and antialiased bilinear resize of one uint8 image to
    the output size, rounded back to uint8 like utils.center_crop_resize.

    uint8 rather than floats so caches and shuffle buffers of decoded images
    take a quarter of the memory; the scaling to [-1, 1] happens per batch.
    """
    if config.crop:
        # Clipped to the image, so one odd-sized file cannot stop the run.
        shape = tf.shape(image)
        height, width = tf.minimum(config.input_height, shape[0]), tf.minimum(config.input_width, shape[1])
        top, left = (shape[0] - height) // 2, (shape[1] - width) // 2
        image = image[top:top + height, left:left + width]
    elif image.shape[:2] == (config.output_height, config.output_width):  # e.g. MNIST at 28x28
        return image
    resized = tf.image.resize(tf.cast(image, tf.float32), [config.output_height, config.output_width],
                              method="bilinear", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def _decode_rgb(raw):
    """uint8 [H, W, 3] from the bytes of any file tf.io.decode_image reads.

    A still WebP goes to decode_webp: decode_image(channels=3) refuses one with
    an alpha channel, and decode_webp gives the file's own channels (3 or 4,
    gray included) with a leading frame axis.  An animated WebP never does:
    decode_webp corrupts the heap on some (TF 2.21, "malloc(): unaligned tcache
    chunk"), so it goes to decode_image, which refuses it cleanly (the listing
    skips them anyway).  The WebP and VP8X headers are read from fixed offsets.
    """
    head = tf.strings.substr(raw, 0, 21) + "\0" * 21  # padded: substr past the end of a short file fails
    is_webp = tf.logical_and(tf.equal(tf.strings.substr(head, 0, 4), "RIFF"),
                             tf.equal(tf.strings.substr(head, 8, 4), "WEBP"))
    vp8x_flags = tf.io.decode_raw(tf.strings.substr(head, 20, 1), tf.uint8)[0]
    is_animated = tf.logical_and(tf.equal(tf.strings.substr(head, 12, 4), "VP8X"),
                                 tf.not_equal(tf.bitwise.bitwise_and(vp8x_flags, 2), 0))
    image = tf.cond(tf.logical_and(is_webp, tf.logical_not(is_animated)),
                    lambda: tf.io.decode_webp(raw)[0, :, :, :3],
                    lambda: tf.io.decode_image(raw, channels=3, expand_animations=False))
    image.set_shape([None, None, 3])
    return image


def _load_image(path, config):
    """Reads, decodes, crops and resizes one file: uint8 [output_height, output_width, c_dim].

    Decodes to 3 channels whatever the file holds (RGBA loses alpha, gray is
    repeated, a GIF or WebP animation gives its first frame) because TF's GIF, BMP and CMYK JPEG
    decoders cannot produce one channel; _match_channels then makes it gray.
    """
    image = _decode_rgb(tf.io.read_file(path))
    image = _crop_and_resize(_match_channels(image, config.c_dim), config)
    image.set_shape([config.output_height, config.output_width, config.c_dim])
    return image


# With --cache, decoded images are shuffled after the cache in a buffer of at
# most this many: a buffer of the whole dataset would hold all of it in memory
# again (defeating a file cache) and would decode every image before the first
# step.  The file order is shuffled once before decoding, so the cache itself
# is in random order.
CACHED_SHUFFLE_BUFFER = 10_000


def cache_path(config, files):
    """The tf.data cache argument for --cache: "" (in memory) for "memory", else
    the --cache prefix plus a digest of the files (path, size, mtime), the
    preprocessing flags and the seed, so a changed dataset or flag never reads
    a stale cache written for something else.  Creates the prefix's folder."""
    if config.cache == "memory":
        return ""
    key = hashlib.sha256(json.dumps([config.output_height, config.output_width, config.c_dim, config.crop,
                                     config.input_height, config.input_width, config.seed]).encode())
    for path in files:
        stat = os.stat(path)
        key.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    prefix = f"{config.cache}-{key.hexdigest()[:16]}"
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    return prefix


# The cache prefixes whose writer lock this process holds, with the open lock files:
# an flock is released only when its file is closed, i.e. when the process ends.
_CACHE_LOCKS = {}


def claim_file_cache(prefix):
    """Makes the file cache at `prefix` usable after a writer was killed.

    TensorFlow writes a cache as `<prefix>_<shard>.*` files guarded by a
    `<prefix>_<shard>.lockfile`, and merges them into `<prefix>.index/.data-*`
    only at the end of the first epoch; a writer killed before that (kill -9,
    power loss) leaves the lockfile, and every later run fails on it
    ("concurrent caching iterator running").  Each process that may write holds
    an flock on `<prefix>.lock` until it exits (the kernel releases it however
    the process ends), so whoever takes the flock knows that no live process
    is writing: it deletes the dead writer's files and writes the cache anew.
    If a live process holds it, a complete cache is read; an incomplete one
    (still being written) is a UserError rather than TensorFlow's error.
    """
    if prefix in _CACHE_LOCKS:
        return
    complete = os.path.exists(prefix + ".index")
    try:
        lock = open(prefix + ".lock", "a")
    except OSError as e:
        raise UserError(f"--cache {prefix}: cannot write there ({e.strerror}); pass another --cache prefix") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        if complete:
            return
        raise UserError(f"--cache {prefix}: another running process is writing this cache; wait until its first "
                        "epoch ends or pass another --cache prefix") from None
    _CACHE_LOCKS[prefix] = lock
    leftovers = [] if complete else glob.glob(glob.escape(prefix) + "_*")
    for path in leftovers:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    if leftovers:
        log.warning("removed the unfinished cache a killed run left (%s); writing it again",
                    ", ".join(sorted(os.path.basename(p) for p in leftovers)))


def _epoch_order(num_examples, seed, start, epochs):
    """Example indices from position `start` of the stream on, in a fresh
    permutation per epoch drawn from (seed, epoch) alone.

    So the order never depends on how many epochs this process has run: a
    run resumed at `start` (images seen) reads exactly what the uninterrupted
    run would have read.  `epochs` bounds the stream (None = endless), which
    also ends it when every file fails to decode instead of spinning forever.
    """
    first_epoch = start // num_examples
    last_epoch = first_epoch + epochs if epochs else tf.int64.max

    def permutation(epoch):
        keys = tf.random.stateless_uniform([num_examples], tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys))

    order = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(permutation)
    return order.skip(start % num_examples)


def _file_examples(source, config, start, epochs):
    """(uint8 image, label 0) pairs decoded from the image files from stream position `start` on."""
    files = tf.constant(source.files)
    if config.cache:
        # Decoded images are kept after the first pass; a resumed run skips
        # through the cache (the first pass decodes what it skips).
        dataset = tf.data.Dataset.from_tensor_slices(source.files).shuffle(source.num_examples, seed=config.seed)
        dataset = dataset.map(lambda path: _load_image(path, config), num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.ignore_errors(log_warning=True)
        path = cache_path(config, source.files)
        if path:
            claim_file_cache(path)
        log.info("caching decoded images in %s", path or "memory")
        dataset = dataset.cache(path).shuffle(min(source.num_examples, CACHED_SHUFFLE_BUFFER), seed=config.seed)
        dataset = dataset.repeat(epochs).skip(start)
    else:
        dataset = _epoch_order(source.num_examples, config.seed, start, epochs).map(
            lambda index: _load_image(tf.gather(files, index), config), num_parallel_calls=tf.data.AUTOTUNE)
        # The last line of defence for a file that passed _inspect_image but does not decode.
        dataset = dataset.ignore_errors(log_warning=True)
    return dataset.map(lambda image: (image, tf.constant(0, tf.int64)))


def _array_examples(source, config, start, epochs):
    """(uint8 image, label) pairs from in-memory arrays from stream position
    `start` on, and the feed_dict that initialises them.

    The arrays enter through placeholders fed once at iterator initialisation,
    so the pixels never become graph constants (which would be copied into
    every checkpoint's .meta file).
    """
    if config.cache:
        log.info("--cache ignored: %s is already held in memory", config.dataset)
    images, labels = source.arrays
    images_ph = v1.placeholder(tf.uint8, images.shape, name="array_images")
    labels_ph = v1.placeholder(tf.int64, labels.shape, name="array_labels")

    def example(index):
        image = _crop_and_resize(_match_channels(tf.gather(images_ph, index), config.c_dim), config)
        return image, tf.gather(labels_ph, index)

    dataset = _epoch_order(source.num_examples, config.seed, start, epochs).map(
        example, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset, {images_ph: images, labels_ph: labels}


@dataclasses.dataclass
class InputBatches:
    images: tf.Tensor
    labels: tf.Tensor
    initializer: tf.Operation
    feed_dict: dict
    start: tf.Tensor  # feed the number of examples already consumed (a resumed run's images seen)

    def initialize(self, session, start=0):
        session.run(self.initializer, {**self.feed_dict, self.start: start})


def input_batches(source, config, epochs=None, replicas=None):
    """Builds the tf.data pipeline: a seeded permutation per epoch, decoded in
    parallel, batched with drop_remainder, scaled to [-1, 1] and prefetched,
    so decoding overlaps the training step.  `epochs` bounds the stream
    (None = endless); `InputBatches.initialize(session, start)` starts it at
    example `start` of the stream.

    With several `replicas` (training/replicas.py) the strategy's iterator splits each
    global batch between them (images and labels are then per-replica values)
    and, with several workers, gives each worker its own examples of the one
    stream (sharded by element: the stream's order is deterministic)."""
    start = v1.placeholder_with_default(tf.constant(0, tf.int64), [], name="start_example")
    if source.arrays is not None:
        dataset, feed_dict = _array_examples(source, config, start, epochs)
    else:
        dataset, feed_dict = _file_examples(source, config, start, epochs), {}
    dataset = dataset.batch(config.batch_size, drop_remainder=True)
    dataset = dataset.map(lambda images, labels: (tf.cast(images, tf.float32) / 127.5 - 1.0, labels),
                          num_parallel_calls=tf.data.AUTOTUNE)
    iterator = (replicas or Replicas()).iterator(dataset)
    images, labels = iterator.get_next()
    return InputBatches(images, labels if config.conditional else None, iterator.initializer, feed_dict, start)
