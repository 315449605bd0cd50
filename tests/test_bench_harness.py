"""bench/harness.py: the pieces every benchmark script relies on, checked by hand."""

import os
import sys

import numpy as np

import utils
from bench import harness


def test_markdown_header_aligns_the_columns_it_is_told_to_and_rows_keep_empty_cells():
    assert harness.table_header(["model", "img/s", "note"], "lr") == "| model | img/s | note |\n|---|---:|---|"
    assert harness.table_row(["x", "", 3]) == "| x |  | 3 |"


def test_to_float_is_the_inverse_of_utils_to_uint8_on_every_pixel_value():
    pixels = np.arange(256, dtype=np.uint8)
    floats = harness.to_float(pixels)
    assert floats.dtype == np.float32 and (floats[0], floats[255]) == (-1.0, 1.0)
    assert np.array_equal(utils.to_uint8(floats), pixels)


def test_run_child_returns_the_last_stdout_line_as_json_or_the_last_stderr_line():
    ok = [sys.executable, "-c", "import sys; print('warming up'); print('{\"img_per_s\": 2.5}'); "
                                "print('a warning', file=sys.stderr)"]
    assert harness.run_child(ok, dict(os.environ)) == ({"img_per_s": 2.5}, ["a warning"])
    failing = [sys.executable, "-c", "import sys; print('first', file=sys.stderr); sys.exit('out of memory')"]
    assert harness.run_child(failing, dict(os.environ))[0] == {"error": "out of memory"}


def test_a_benchmark_starts_its_own_module_from_the_repository_root():
    command = harness.module_command("bench.harness", "--flag")
    assert command == [sys.executable, "-m", "bench.harness", "--flag"]
    assert harness.main_command("--train")[1:] == [str(harness.REPO / "main.py"), "--train"]


def test_the_tiny_run_reads_no_data_folder_and_takes_overrides_last(tmp_path):
    values = harness.tiny_values(tmp_path, gfc_dim=1024, data_dir="elsewhere")
    assert values["out_dir"] == str(tmp_path) and values["data_dir"] == "elsewhere" and values["gfc_dim"] == 1024
    assert harness.tiny_values(tmp_path)["data_dir"] == str(tmp_path / "no_data")
    assert harness.as_flags({"batch_size": 4, "train": True}) == ["--batch_size=4", "--train=True"]
