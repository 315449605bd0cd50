"""The tf.data input pipeline: which data a config names, and the stream of batches training reads.

`open_source` resolves --dataset/--data_dir to the arrays or image files that
`datasets/formats.py` reads and checks them against the config; `input_batches`
turns them into batches scaled to [-1, 1] (the range of the generator's tanh),
in a seeded order per epoch that a resumed run continues exactly, decoded in
parallel, optionally through a decoded-image cache (--cache).
"""

import collections
import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import json
import logging
import os

from config import MNIST_LIKE
from datasets.formats import channels_of, dataset_directory, decode_rgb, list_image_files, load_mnist_like, read_cifar10
from runtime.errors import UserError
from runtime.tf_runtime import tf
from training.replicas import Replicas

v1 = tf.compat.v1
log = logging.getLogger("dcgan")


# --------------------------------------------------------------------------
# Sources


@dataclasses.dataclass
class Source:
    """A dataset resolved from the config: where it is and what it holds."""

    description: str
    num_examples: int
    c_dim: int
    files: list = None  # image folders
    arrays: tuple = None  # MNIST-like and CIFAR-10 (uint8 images, int64 labels)


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
    c_dim = config.c_dim or channels_of(listing.files[0])
    return Source(f"{len(listing.files)} images in {directory}", len(listing.files), c_dim, files=listing.files)


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


# --------------------------------------------------------------------------
# One example: channels, crop and resize


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


def _load_image(path, config):
    """Reads, decodes, crops and resizes one file: uint8 [output_height, output_width, c_dim].

    Decodes to 3 channels whatever the file holds (RGBA loses alpha, gray is
    repeated, a GIF or WebP animation gives its first frame) because TF's GIF, BMP and CMYK JPEG
    decoders cannot produce one channel; _match_channels then makes it gray.
    """
    image = decode_rgb(tf.io.read_file(path))
    image = _crop_and_resize(_match_channels(image, config.c_dim), config)
    image.set_shape([config.output_height, config.output_width, config.c_dim])
    return image


# --------------------------------------------------------------------------
# The decoded-image cache (--cache)

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


# --------------------------------------------------------------------------
# The stream of batches


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
        # The last line of defence for a file that passed formats._inspect_image but does not decode.
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
