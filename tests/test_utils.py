"""utils.py: the plot's colours and the one file hash every module uses."""

import gzip
import hashlib

import imageio.v2 as imageio
import numpy as np
from conftest import REPO

import utils

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes, every byte value, so misplaced offsets show


def test_plot_curves_draws_each_series_in_its_own_colour(tmp_path):
    path = tmp_path / "plot.png"
    utils.plot_curves(str(path), {"one panel": {"a": ([0, 1, 2], [0.0, 1.0, 0.5]), "b": ([0, 2], [1.0, 0.0])}})
    image = imageio.imread(path)[..., :3].reshape(-1, 3).astype(int)
    # matplotlib's first two default colours (tab:blue, tab:orange) are both present: two lines, a legend
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(image - colour).sum(axis=1) == 0).sum() > 20


def test_one_file_hash_for_manifests_extractors_and_downloads(tmp_path):
    parts = [tmp_path / "a", tmp_path / "b"]
    parts[0].write_bytes(PAYLOAD)
    parts[1].write_bytes(b"tail")
    assert utils.file_digest(parts) == hashlib.sha256(PAYLOAD + b"tail").hexdigest()
    assert utils.file_digest(str(parts[0]), "md5") == hashlib.md5(PAYLOAD).hexdigest()
    compressed = tmp_path / "c.gz"
    compressed.write_bytes(gzip.compress(PAYLOAD))
    assert utils.file_digest(compressed, gunzip=True) == hashlib.sha256(PAYLOAD).hexdigest()
    for module in ("training/checkpoints", "download", "evaluation/extractors"):
        source = (REPO / f"{module}.py").read_text()
        assert "from utils import file_digest" in source.replace("file_digest, write_atomically", "file_digest")
        assert "digest.update(" not in source, f"{module}.py hashes files its own way"
