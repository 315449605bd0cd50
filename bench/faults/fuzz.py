"""Untrusted inputs: fuzzed IDX bytes, image folders and flag values may only give a UserError (or, for
image folders, clean batches with bad files skipped); and the runner that counts failures for the table."""

import dataclasses
import io
import struct
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

import config as config_lib
from bench.faults.runs import tiny_config
from datasets import formats
from datasets import pipeline as data
from runtime.errors import UserError
from runtime.tf_runtime import tf

v1 = tf.compat.v1


_IDX_ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}  # the IDX format's type codes


def _idx_file(type_code, shape):
    header = struct.pack(">BBBB", 0, 0, type_code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    return header + bytes(int(np.prod(shape)) * _IDX_ITEM_BYTES[type_code])


def _mutate(raw, how, position, extra):
    """Truncates, extends, overwrites bytes, or sets one header word to a huge value."""
    position %= max(len(raw), 1)
    if how == 0:
        return raw[:position]
    if how == 1:
        return raw + extra
    if how == 2:
        return raw[:position] + extra + raw[position + len(extra):]
    word = 4 + 4 * (position % max((len(raw) - 4) // 4, 1))
    return raw[:word] + b"\xff\xff\xff\xf0" + raw[word + 4:]


def mutated(files):
    return st.builds(_mutate, files, st.integers(0, 3), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8))


def idx_bytes():
    """Random bytes, valid small IDX files, and mutated ones."""
    valid = st.builds(_idx_file, st.sampled_from(sorted(_IDX_ITEM_BYTES)),
                      st.lists(st.integers(0, 6), min_size=1, max_size=4))
    return st.one_of(st.binary(max_size=64), valid, mutated(valid))


def check_idx(raw):
    """formats.parse_idx returns an array or raises UserError, nothing else."""
    try:
        return type(formats.parse_idx(raw, source="fuzzed")).__name__
    except UserError:
        return "refused"


_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"RIFF\x1a\0\0\0WEBPVP8X", b"")


def _encode(image_format, mode, width, height, seed):
    if image_format == "JPEG" and mode not in ("L", "RGB"):
        mode = "RGB"
    pixels = np.random.RandomState(seed).randint(0, 256, (height, width, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, image_format)
    return buffer.getvalue()


def image_files():
    """Small valid PNG/JPEG/GIF/BMP/WebP files, mutated ones, and junk behind a real magic number."""
    valid = st.builds(_encode, st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP"]),
                      st.sampled_from(["L", "RGB", "RGBA", "P"]), st.integers(1, 40), st.integers(1, 40),
                      st.integers(0, 1000))
    junk = st.builds(lambda magic, body: magic + body, st.sampled_from(_MAGIC), st.binary(max_size=300))
    return st.lists(st.one_of(valid, mutated(valid), junk), min_size=1, max_size=4)


def check_image_folder(work_dir, files):
    """Writes `files` as an image folder and reads it as training does: list
    it, open it, pull three batches.  Allowed: a UserError, clean batches, or
    (datasets/pipeline.py's contract when TF decodes none of the files) the end of the data."""
    folder = Path(work_dir) / "fuzz"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for index, contents in enumerate(files):
        (folder / f"{index}.{('png', 'jpg', 'gif', 'bmp', 'webp')[index % 5]}").write_bytes(contents)
    config = tiny_config(work_dir, dataset="fuzz", data_dir=str(work_dir), batch_size=1,
                         input_fname_pattern="*.png,*.jpg,*.gif,*.bmp,*.webp")
    try:
        source = data.open_source(config)
    except UserError:
        return "refused"
    config = dataclasses.replace(config, c_dim=source.c_dim)
    with tf.Graph().as_default():
        batches = data.input_batches(source, config)
        with v1.Session() as session:
            session.run(batches.initializer, batches.feed_dict)
            try:
                for _ in range(3):
                    images = session.run(batches.images)
                    assert images.shape == (1, 16, 16, config.c_dim) and np.all(np.abs(images) <= 1), images.shape
            except tf.errors.OutOfRangeError:
                return "nothing decodable"
    return "read"


def config_values():
    """Values of each Config field's own type (what absl's typed flags deliver):
    the default, small numbers, extreme ones, NaN/Inf, any text."""
    def values(field):
        default = field.default
        if field.name == "crop":
            return st.none() | st.booleans()
        if isinstance(default, bool):
            return st.booleans()
        if isinstance(default, int):
            return st.just(default) | st.integers(-3, 70) | st.integers(-(1 << 64), 1 << 64)
        if isinstance(default, float):
            return st.just(default) | st.floats(-2, 2) | st.floats()
        return st.just(default) | st.text(max_size=12)

    return st.fixed_dictionaries({f.name: values(f) for f in dataclasses.fields(config_lib.Config)})


def check_config(values):
    """config.resolve accepts (and the paths derived from it work) or raises UserError, nothing else."""
    try:
        config = config_lib.resolve(config_lib.Config(**values))
    except UserError:
        return "refused"
    config.architecture()
    assert config.checkpoint_path and config.sample_path and config.log_path and config.visualize_options()
    return "accepted"


def fuzz(check, strategy, examples, random_seed):
    """Runs `check` on `examples` inputs drawn by hypothesis and carries on
    past failures, for the table (tests let hypothesis stop and shrink).
    Returns (inputs tried, [(exception, input)] for those that failed)."""
    tried, failures = [], []

    @seed(random_seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value):
        tried.append(value)
        try:
            check(value)
        except Exception as e:  # every kind of failure is what is counted
            failures.append((f"{type(e).__name__}: {str(e).splitlines()[0][:80]}", repr(value)[:120]))

    run()
    return len(tried), failures
