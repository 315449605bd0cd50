"""Damaged or hostile files that the project itself writes: architecture.json, checkpoint manifests and the
real-statistics cache (wrong types, negative or huge sizes, truncation).  Only a UserError, a rejected manifest
or, for a cache, the fallback of recomputing it."""

import functools
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

import config as config_lib
from bench.faults.fuzz import mutated
from bench.faults.runs import tiny_config
from evaluation import extractors
from runtime.errors import UserError
from training import checkpoints, inference, train

_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10)
# Sizes and types that a damaged or hand-edited file might hold.
_ODD_NUMBERS = st.sampled_from([0, -1, -(1 << 40), 1 << 14, (1 << 14) + 1, 1 << 40, 10**30, True, 2.5, "4", None, []])


def _json_files(objects):
    """Encoded `objects`, any JSON, nesting deeper than Python's recursion limit, mutated bytes, junk."""
    texts = st.one_of(objects.map(json.dumps), _ANY_JSON.map(json.dumps),
                      st.integers(1, 100_000).map(lambda depth: "[" * depth + "]" * depth))
    encoded = texts.map(str.encode)
    return st.one_of(encoded, mutated(encoded), st.binary(max_size=64))


def architecture_files():
    """architecture.json contents: the real keys with small, odd or huge values, and anything else."""
    values = st.integers(1, 40) | _ODD_NUMBERS | _ANY_JSON
    return _json_files(st.fixed_dictionaries({name: values for name in config_lib.ARCHITECTURE_FIELDS}))


@functools.cache
def _trained_run(work_dir):
    """A tiny run trained for two steps (checkpoints 1 and 2); returns its config."""
    config = tiny_config(work_dir, max_steps=2)
    train.train(config)
    return config


def check_architecture(work_dir, raw):
    """A damaged architecture.json beside real checkpoints: visualizing restores G
    or refuses with one line; never another exception or a huge allocation."""
    config = _trained_run(str(work_dir))
    architecture = Path(config.checkpoint_path, checkpoints.ARCHITECTURE_FILE)
    genuine = architecture.read_bytes()
    architecture.write_bytes(raw)
    try:
        with inference.restored_generator(config) as restored:
            assert restored.config.architecture() == config.architecture(), restored.config.architecture()
    except UserError as e:
        assert "\n" not in str(e), str(e)
        return "refused"
    finally:
        architecture.write_bytes(genuine)
    return "restored"


def manifest_files(names):
    """A checkpoint manifest: the real file names (`names`) or others, with odd sizes and digests."""
    entry = st.fixed_dictionaries({"bytes": st.integers(0, 1 << 24) | _ODD_NUMBERS,
                                   "sha256": st.text(max_size=64) | _ODD_NUMBERS}) | _ANY_JSON
    files = st.dictionaries(st.sampled_from(names) | st.text(max_size=12), entry, max_size=3) | _ANY_JSON
    return _json_files(st.fixed_dictionaries({"files": files}) | _ANY_JSON)


def _manifest_names(work_dir):
    config = _trained_run(str(work_dir))
    return sorted(os.path.basename(p) for p in checkpoints.checkpoint_files(
        checkpoints.checkpoint_paths(config.checkpoint_path)[0]))


def check_manifest(work_dir, raw):
    """A damaged manifest on the newest checkpoint: verification answers (vouching
    only for files that match), never raises."""
    config = _trained_run(str(work_dir))
    newest = checkpoints.checkpoint_paths(config.checkpoint_path)[0]
    manifest = Path(newest + checkpoints.MANIFEST_SUFFIX)
    genuine = manifest.read_bytes()
    manifest.write_bytes(raw)
    try:
        problem = checkpoints.verify(newest)
    finally:
        manifest.write_bytes(genuine)
    assert problem is None or isinstance(problem, str), problem
    if problem is None:  # it vouched: then it must describe the files exactly
        expected = {name: entry["bytes"] for name, entry in json.loads(genuine)["files"].items()}
        assert {name: entry["bytes"] for name, entry in json.loads(raw)["files"].items()} == expected
        return "vouched"
    return "rejected"


def _npy(array, claimed_shape=None, descr=None):
    """The .npy bytes of `array`, optionally with a header claiming another shape or dtype."""
    buffer = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(array)
    header.update({k: v for k, v in (("shape", claimed_shape), ("descr", descr)) if v is not None})
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + array.tobytes()


def _npz(dim, count, claims, compressed):
    """A statistics cache file; `claims` maps array names to (claimed shape, claimed dtype)."""
    features = np.random.RandomState(dim).rand(count, dim)
    arrays = {"mu": features.mean(0), "sigma": np.cov(features, rowvar=False).reshape(dim, dim),
              "features": features}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            archive.writestr(name + ".npy", _npy(array, *claims.get(name, (None, None))))
    return buffer.getvalue()


def statistics_files():
    """Real-statistics .npz files: valid, with headers claiming huge, negative or inconsistent shapes or
    other dtypes (object, int, text), compressed members, and mutated bytes."""
    shapes = st.lists(st.integers(-2, 6) | st.sampled_from([1 << 40, 1 << 62]), max_size=3).map(tuple)
    descrs = st.sampled_from([None, "<f8", "<f4", "|O", "<i8", "<U4", "|b1", ">f8"])
    claims = st.dictionaries(st.sampled_from(["mu", "sigma", "features"]), st.tuples(shapes | st.none(), descrs),
                             max_size=2)
    valid = st.builds(_npz, st.integers(1, 4), st.integers(2, 5), claims, st.booleans())
    return st.one_of(valid, mutated(valid), st.binary(max_size=64))


class _FixedFeatures:
    """A stand-in feature extractor: the pixels are the features."""

    digest = "0" * 64

    def features(self, images):
        return images.reshape(len(images), -1).astype(np.float64)


def check_statistics(work_dir, raw):
    """A damaged cache file is recomputed (one warning line), a valid one used;
    nothing else is raised and nothing is allocated beyond what the file holds."""
    cache = Path(work_dir) / "stats"
    cache.mkdir(parents=True, exist_ok=True)
    path = Path(extractors.statistics_cache_path(str(cache), "fuzz", 2, _FixedFeatures.digest))
    path.write_bytes(raw)
    images = np.arange(24, dtype=np.uint8).reshape(6, 2, 2, 1)
    stats = extractors.real_statistics(_FixedFeatures(), images, str(cache), "fuzz", 2)
    dim = stats["mu"].shape[0]
    assert stats["sigma"].shape == (dim, dim) and stats["features"].shape[1:] == (dim,)
    return "used" if not np.array_equal(stats["features"], _FixedFeatures().features(images)) else "recomputed"
