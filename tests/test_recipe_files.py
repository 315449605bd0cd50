"""The recipe flagfiles: every line names a real flag with a valid value, and main.py trains with them."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

import config as config_lib

RECIPES = sorted((REPO / "recipes").glob("*.flags"))
FIELDS = {field.name: field for field in dataclasses.fields(config_lib.Config)}


def recipe_values(path):
    """{field: value} from an absl flagfile (`--name=value`, `--name` / `--noname` for booleans, # comments)."""
    values = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert line.startswith("--"), line
        name, _, text = line[2:].partition("=")
        if not text and name.startswith("no") and name[2:] in FIELDS:
            values[name[2:]] = False
            continue
        assert name in FIELDS, f"{path.name}: unknown flag --{name}"
        kind = type(FIELDS[name].default)
        values[name] = True if not text and kind is bool else kind(text)
    return values


def test_every_recipe_is_documented_at_its_top():
    assert len(RECIPES) >= 6
    for path in RECIPES:
        assert path.read_text().startswith("# "), f"{path.name} does not say where it comes from"


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_names_real_flags_with_valid_values(path, tmp_path):
    values = recipe_values(path)
    assert values
    resolved = config_lib.resolve(config_lib.Config(dataset="mnist", out_dir=str(tmp_path), **values))
    assert all(getattr(resolved, name) == value for name, value in values.items())


def test_main_trains_with_a_recipe_file_and_later_flags_override_it(tmp_path):
    tiny = ["--dataset", "mnist", "--train", "--max_steps", "2", "--batch_size", "4", "--train_size", "64",
            "--gf_dim", "4", "--df_dim", "4", "--gfc_dim", "8", "--dfc_dim", "8", "--z_dim", "4",
            "--output_height", "16", "--out_dir", str(tmp_path)]
    command = [sys.executable, str(REPO / "main.py"), "--flagfile", str(REPO / "recipes" / "wgan_gp.flags"),
               *tiny, "--d_steps", "2"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    recorded = (tmp_path / "checkpoint" / "mnist_4_16_16" / "recipe.json").read_text()
    assert '"loss": "wasserstein"' in recorded and '"gp_lambda": 10.0' in recorded
    assert '"d_steps": 2' in recorded  # the flag after the flagfile won over its --d_steps=5
