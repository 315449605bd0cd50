"""Shared test set-up: graph mode, tiny configs, and real data from ../shared."""

import tarfile
from pathlib import Path

import pytest

import config as config_lib
import tf_runtime  # noqa: F401  (graph mode and TensorFlow's environment, as in main.py)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EMBEDDED_MNIST = REPO / "embedded_data" / "mnist"
CELEBA_TAR = SHARED_DATA / "celebA_first10k_89x109.tar"


def tiny_config(tmp_path, **overrides):
    """A resolved Config with tiny layer sizes writing under tmp_path."""
    values = dict(
        dataset="mnist", data_dir=str(tmp_path / "no_data"), out_dir=str(tmp_path / "out"),
        output_height=16, batch_size=4, z_dim=8, gf_dim=4, df_dim=4, gfc_dim=16, dfc_dim=16,
        train_size=64, max_steps=2, sample_freq=1, ckpt_freq=1, summary_freq=1, log_freq=1, n_samples=6,
        seed=1,
    )
    values.update(overrides)
    return config_lib.resolve(config_lib.Config(**values))


@pytest.fixture
def celeba_dir(tmp_path):
    """A folder of 24 real CelebA jpgs (89x109) taken from ../shared/data."""
    if not CELEBA_TAR.exists():
        pytest.skip(f"{CELEBA_TAR} not available")
    target = tmp_path / "data"
    with tarfile.open(CELEBA_TAR) as tar:
        members = []
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                members.append(member)
            if len(members) == 24:
                break
        tar.extractall(target, members=members, filter="data")
    return target  # holds celebA/000001.jpg ...
