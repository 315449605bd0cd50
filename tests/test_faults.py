"""Fault injection (issue #6): SIGKILL, NaN/Inf, full and read-only disks, a
second run on the same folder, damaged checkpoints and untrusted inputs.

The scenarios live in bench/faults/, which `python -m bench.faults` runs more often
for the README's table.  The default suite runs a few of each; `make test-slow` runs
every one and 20 random kills.
"""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import REPO
from hypothesis import HealthCheck, given, settings

from bench.faults import fuzz, nan, runs
from bench.faults.disk import DISK_FULL, disk_full_cases, read_only_cases, real_disk_full, tmpfs
from bench.faults.kills import KILL_POINTS, kill_points, random_kills
from training import checkpoints, train

# Derandomized, so the default suite is deterministic; `python -m bench.faults` tries more.
FUZZ = settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def slow(*values):
    return pytest.param(*values, marks=pytest.mark.slow)


def test_random_sigkills_lose_nothing_and_a_second_run_is_refused(tmp_path):
    kills = random_kills(tmp_path, kills=2, seed=1)
    assert [kill.lost for kill in kills] == [0, 0], kills


@pytest.mark.slow
def test_twenty_random_sigkills_lose_nothing(tmp_path):
    kills = random_kills(tmp_path, kills=20, seed=0)
    assert sum(kill.lost for kill in kills) == 0, kills
    assert any(kill.moment not in ("between saves", "during start-up (imports, graph, restore)")
               for kill in kills), "no kill landed inside a save"


@pytest.mark.parametrize("moments", [
    ("while TF writes the data file", "after data/index, before the manifest",
     "after the manifest, before the state file", "halfway through deleting the oldest"),
    slow(tuple(KILL_POINTS)),
])
def test_death_at_each_point_of_a_save_restores_the_newest_complete_checkpoint(tmp_path, moments):
    kills = kill_points(tmp_path, moments)
    assert [kill.moment for kill in kills] == list(moments)


@pytest.mark.parametrize("damage,restored", [
    ("flip a byte of the newest data file", 2),
    ("truncate the newest index", 2),
    ("delete the newest data file", 2),
    ("garble the newest manifest", 2),
    ("garble the state file", 3),  # manifests, not the state file, say what is complete
])
def test_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path, caplog, trained_run, damage, restored):
    shutil.copytree(trained_run, tmp_path, dirs_exist_ok=True)
    config = runs.tiny_config(tmp_path)
    newest = os.path.join(config.checkpoint_path, f"{checkpoints.CHECKPOINT_PREFIX}-3")
    data_file, index_file = newest + ".data-00000-of-00001", newest + ".index"
    if damage.startswith("flip"):
        contents = bytearray(open(data_file, "rb").read())
        contents[len(contents) // 2] ^= 1
        open(data_file, "wb").write(contents)
    elif damage.startswith("truncate"):
        os.truncate(index_file, os.path.getsize(index_file) // 2)
    elif damage.startswith("delete"):
        os.remove(data_file)
    else:
        path = newest + checkpoints.MANIFEST_SUFFIX if "manifest" in damage else os.path.join(
            config.checkpoint_path, checkpoints.STATE_FILE)
        open(path, "w").write("{not json or a proto")
    assert runs.restore_check(config) == restored
    if restored == 2:
        assert "DCGAN.model-3 is incomplete or damaged" in caplog.text


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run trained 3 steps (checkpoints 1-3), to be copied and damaged."""
    out_dir = tmp_path_factory.mktemp("trained")
    train.train(runs.tiny_config(out_dir, max_steps=3))
    return out_dir


@pytest.mark.parametrize("case", [
    "stop: Inf gradient, finite loss",
    f"skip: Inf loss {nan.LIMIT} times in a row",
    "skip: NaN input images",
    slow("stop: NaN loss"),
    slow("skip: NaN gradient once"),
])
def test_nan_policy_never_saves_a_non_finite_checkpoint(tmp_path, case):
    nan.nan_case(tmp_path, case)


def test_skipped_updates_leave_weights_and_adam_moments_untouched(tmp_path, caplog):
    assert nan.nan_case(tmp_path, "skip: NaN loss twice") == 5
    assert "step 4: non-finite loss or gradient" in caplog.text
    assert "update skipped (2 steps skipped so far, 2 in a row" in caplog.text
    directory = runs.tiny_config(tmp_path).checkpoint_path
    step = {n: runs.checkpoint_values(f"{directory}/{checkpoints.CHECKPOINT_PREFIX}-{n}") for n in (2, 4, 5)}
    trained = [name for name in step[2] if "moving_" not in name and name != "global_step"]
    g_names = [name for name in trained if name.startswith("generator")]
    d_names = [name for name in trained if name.startswith("discriminator")]
    assert g_names and d_names
    # Steps 3 and 4 skipped G's updates (weights and Adam moments) but not D's.
    assert all(np.array_equal(step[2][name], step[4][name]) for name in g_names)
    assert not any(np.array_equal(step[2][name], step[4][name]) for name in d_names if "power" not in name)
    assert not all(np.array_equal(step[4][name], step[5][name]) for name in g_names)  # step 5 applied


@pytest.mark.parametrize("kinds", [
    ("sample grid PNG", "TensorBoard events", "checkpoint data (TF SaveV2)"),
    slow(tuple(DISK_FULL)),
])
def test_disk_full_gives_one_line_and_keeps_the_last_checkpoint(tmp_path, kinds):
    messages = disk_full_cases(tmp_path, kinds)
    assert list(messages) == list(kinds)


def test_real_full_disk_from_the_command_line_prints_one_line(tmp_path):
    disk = tmp_path / "disk"
    with tmpfs(disk, 900) as mounted:
        if not mounted:
            pytest.skip("mounting a small tmpfs needs root")
        result = subprocess.run(runs.main_command(disk, max_steps=runs.FOREVER), cwd=disk, text=True,
                                capture_output=True, timeout=300)
        runs.restore_check(runs.tiny_config(disk))
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("main.py: error: cannot write ") and "No space left on device" in last, last
    assert "Traceback" not in result.stderr and "writer thread error" not in result.stderr, result.stderr


def test_real_full_disk_keeps_the_checkpoint_it_names(tmp_path):
    message = real_disk_full(tmp_path, 9000)  # room for the graph's events and two 5 MB checkpoints
    if message is None:
        pytest.skip("mounting a small tmpfs needs root")
    assert "Last good checkpoint: none" not in message, message


def test_read_only_folders_give_one_line_and_keep_checkpoints(tmp_path):
    messages = read_only_cases(tmp_path)
    if messages is None:
        pytest.skip("running as root without permission to mount: chmod cannot make a folder read-only")
    samples, start = messages
    assert f"{os.sep}samples{os.sep}" in samples and re.search("Read-only file system|Permission denied", samples)
    assert start.startswith("cannot write to ") and "in use" not in start


@FUZZ
@given(fuzz.idx_bytes())
def test_parse_idx_accepts_or_raises_user_error_only(raw):
    fuzz.check_idx(raw)


@FUZZ
@given(fuzz.config_values())
def test_any_flag_values_resolve_or_raise_user_error_only(values):
    fuzz.check_config(values)


@settings(FUZZ, max_examples=30, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(files=fuzz.image_files())
def test_fuzzed_image_folders_are_read_cleanly_or_refused(tmp_path, files):
    fuzz.check_image_folder(tmp_path, files)


def test_no_reader_can_run_code_from_a_file():
    """No pickle (or its relatives) anywhere: a data or checkpoint file must never be able to run code."""
    unsafe = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|dill|joblib|shelve|marshal)\b"
                        r"|allow_pickle\s*=\s*True|yaml\.load\(|torch\.load\(", re.MULTILINE)
    # The project's own files: hidden folders (.venv, .venv-bench, .git) hold installed packages, not ours.
    offenders = [str(path) for path in REPO.rglob("*.py")
                 if not any(part.startswith(".") for part in path.relative_to(REPO).parts)
                 and unsafe.search(path.read_text(errors="replace"))]
    assert not offenders
