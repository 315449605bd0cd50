"""Damaged or hostile files of the project's own making (architecture.json,
checkpoint manifests, the real-statistics cache) and restoring a named
checkpoint: one line (or, for a cache, a recomputation), never a traceback or
an allocation of whatever size a file claims.  The fuzzing strategies live in
bench/faults/hostile_files.py; `python -m bench.faults` runs more examples for the README's table.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.faults import hostile_files, runs
from evaluation import extractors
from runtime.errors import UserError
from training import checkpoints, inference

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    """A folder holding a tiny run with checkpoints at steps 1 and 2 (bench.faults' run)."""
    work_dir = str(tmp_path_factory.mktemp("trained"))
    hostile_files._trained_run(work_dir)
    return work_dir


@pytest.fixture
def run(trained_dir, tmp_path):
    """A private copy of the trained run: (config, checkpoint folder)."""
    config = hostile_files._trained_run(trained_dir)
    copy = tmp_path / "run"
    shutil.copytree(trained_dir, copy)
    config = runs.tiny_config(copy, max_steps=2)
    return config, Path(config.checkpoint_path)


def _prefix(folder, step):
    return str(folder / f"{checkpoints.CHECKPOINT_PREFIX}-{step}")


# --- restored_generator(checkpoint=...) verifies like every other restore --------------------------------


def test_named_checkpoint_is_verified_against_its_manifest(run):
    config, folder = run
    data_file = next(folder.glob(f"{checkpoints.CHECKPOINT_PREFIX}-1.data-*"))
    raw = bytearray(data_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, one byte different
    data_file.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=r"DCGAN.model-1 is incomplete or damaged \(.*differs from the manifest\)"):
        with inference.restored_generator(config, checkpoint=_prefix(folder, 1)):
            pass


def test_named_checkpoint_restores_exactly_that_one(run):
    config, folder = run
    step1, step2 = runs.checkpoint_values(_prefix(folder, 1)), runs.checkpoint_values(_prefix(folder, 2))
    with inference.restored_generator(config, checkpoint=_prefix(folder, 1)) as restored:
        assert restored.path == _prefix(folder, 1)
        variables = restored.session.graph.get_collection("variables")
        values = dict(zip([v.op.name for v in variables], restored.session.run(variables), strict=True))
    assert values and all(np.array_equal(value, step1[name]) for name, value in values.items())
    assert any(not np.array_equal(value, step2[name]) for name, value in values.items())  # not the newest


def test_named_checkpoint_outside_the_run_is_refused(run, tmp_path):
    config, _ = run
    with pytest.raises(UserError, match="not a complete checkpoint in"):
        with inference.restored_generator(config, checkpoint=str(tmp_path / "elsewhere" / "DCGAN.model-1")):
            pass


# --- architecture.json ----------------------------------------------------------------------------------


def _architecture(**changes):
    values = dict(output_height=16, output_width=16, c_dim=1, y_dim=10, z_dim=8, gf_dim=4, df_dim=4,
                  gfc_dim=1024, dfc_dim=1024)
    values.update(changes)
    return json.dumps(values).encode()


@pytest.mark.parametrize("raw, message", [
    (b"[]", "not an object with keys among output_height"),
    (_architecture(z_dist=7), "z_dist is 7, not a str"),
    (_architecture(z_dist="u" * 100), "z_dist is \"uuuu"),
    (_architecture(minibatch_stddev=1), "minibatch_stddev is 1, not a bool"),
    (_architecture(gf_dim="4"), 'gf_dim is "4", not a whole number in [1, 16384]'),
    (_architecture(gf_dim=True), "gf_dim is true, not a whole number"),
    (_architecture(z_dim=-3), "z_dim is -3, not a whole number in [1, 16384]"),
    (_architecture(gfc_dim=1 << 40), "gfc_dim is 1099511627776, not a whole number"),
    (_architecture(c_dim=2), "c_dim is 2, not 1 or 3"),
    (_architecture(extra=1), "not an object with keys among"),
    (_architecture()[:-9], "unreadable (Unterminated string"),
    (b"[" * 100_000, "unreadable (nested too deeply)"),
    (b" " * (2 << 20), "unreadable (larger than 1048576 bytes)"),
])
def test_damaged_architecture_is_one_line_in_training_and_visualizing(run, raw, message):
    config, folder = run
    (folder / checkpoints.ARCHITECTURE_FILE).write_bytes(raw)
    expected = f"{folder / checkpoints.ARCHITECTURE_FILE}: "
    with pytest.raises(UserError) as visualizing:
        with inference.restored_generator(config):
            pass
    with pytest.raises(UserError) as training:
        checkpoints.Checkpoints(str(folder), None, config.architecture()).check_architecture()
    for error in (visualizing, training):
        assert str(error.value).startswith(expected) and message in str(error.value)
        assert "\n" not in str(error.value)


def test_architecture_the_generator_cannot_have_is_refused_before_building_it(run):
    config, folder = run
    (folder / checkpoints.ARCHITECTURE_FILE).write_bytes(_architecture(output_height=18))
    with pytest.raises(UserError, match=r"architecture.json: damaged \(--output_height=18: this generator needs a "
                                        r"multiple of 4"):
        with inference.restored_generator(config):
            pass


def test_main_prints_one_line_for_a_damaged_architecture(run):
    config, folder = run
    (folder / checkpoints.ARCHITECTURE_FILE).write_bytes(_architecture(gf_dim=-4))
    flags = [f"--{name}={getattr(config, name)}" for name in ("dataset", "batch_size", "output_height", "out_dir")]
    result = subprocess.run([sys.executable, str(REPO / "main.py"), *flags, "--visualize_option=samples"],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1:] == [
        f"main.py: error: {folder / checkpoints.ARCHITECTURE_FILE}: damaged (gf_dim is -4, not a whole number in "
        "[1, 16384]); restore it or use another --checkpoint_dir"]
    assert "Traceback" not in result.stderr


@FUZZ
@given(raw=hostile_files.architecture_files())
def test_fuzzed_architecture_files_restore_or_refuse_in_one_line(trained_dir, raw):
    hostile_files.check_architecture(trained_dir, raw)


# --- checkpoint manifests -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"[" * 100_000, b" " * (2 << 20), b'{"files": {"x": 1}}', b"\xff\xfe"])
def test_damaged_manifest_falls_back_to_the_older_checkpoint(run, caplog, raw):
    config, folder = run
    Path(_prefix(folder, 2) + checkpoints.MANIFEST_SUFFIX).write_bytes(raw)
    assert checkpoints.verify(_prefix(folder, 2)).startswith(("unreadable manifest", "files "))
    with caplog.at_level(logging.WARNING, logger="dcgan"), inference.restored_generator(config) as restored:
        assert restored.path == _prefix(folder, 1)
    assert "DCGAN.model-2 is incomplete or damaged" in caplog.text


@FUZZ
@given(data=st.data())
def test_fuzzed_manifests_are_answered_never_raised(trained_dir, data):
    raw = data.draw(hostile_files.manifest_files(hostile_files._manifest_names(trained_dir)))
    hostile_files.check_manifest(trained_dir, raw)


# --- the real-statistics cache --------------------------------------------------------------------------


@pytest.mark.parametrize("claims, reason", [
    ({"features": ((1 << 40, 3), None)}, "header claims shape (1099511627776, 3)"),  # 26 TB if allocated
    ({"mu": ((-1,), None)}, "header claims shape (-1,)"),
    ({"sigma": (None, "|O")}, "object array of shape"),
    ({"mu": ((3, 1), None)}, "not a float array of 1 dimensions"),
    ({"mu": ((2,), None)}, "header claims shape (2,)"),
])
def test_hostile_statistics_cache_is_recomputed_without_allocating_its_claims(tmp_path, caplog, claims, reason):
    raw = hostile_files._npz(3, 4, claims, compressed=False)
    with caplog.at_level(logging.WARNING, logger="dcgan"):
        assert hostile_files.check_statistics(tmp_path, raw) == "recomputed"
    assert "unusable real-statistics cache" in caplog.text and reason in caplog.text


def test_statistics_cache_with_inconsistent_shapes_or_compressed_members_is_recomputed(tmp_path, caplog):
    path = tmp_path / "stats.npz"
    np.savez(path, mu=np.zeros(3), sigma=np.zeros((2, 2)), features=np.zeros((5, 3)))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        extractors.load_statistics(path)
    np.savez_compressed(path, mu=np.zeros(3), sigma=np.zeros((3, 3)), features=np.zeros((5, 3)))
    with pytest.raises(ValueError, match="not stored as np.savez stores it"):
        extractors.load_statistics(path)
    np.savez(path, mu=np.ones(3), sigma=np.eye(3), features=np.ones((5, 3)))
    stats = extractors.load_statistics(path)
    np.testing.assert_array_equal(stats["sigma"], np.eye(3))


@FUZZ
@given(raw=hostile_files.statistics_files())
def test_fuzzed_statistics_files_are_used_or_recomputed(tmp_path, raw):
    hostile_files.check_statistics(tmp_path, raw)


def test_architecture_written_before_a_field_existed_reads_it_as_its_default(tmp_path):
    (tmp_path / checkpoints.ARCHITECTURE_FILE).write_bytes(_architecture())  # no kernel_size, z_dist, ...
    architecture = checkpoints.read_architecture(str(tmp_path))
    assert architecture["kernel_size"] == 5 and architecture["z_dist"] == "uniform" and architecture["gf_dim"] == 4
