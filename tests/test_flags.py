"""Flags are parsed strictly: a misspelled or unknown flag is one line and exit 2, never ignored.

`tf.compat.v1.app.run` parses with known_only=True, so `--learning_rat 0.5`
used to train at the default rate and exit 0.  In-process tests parse into a
fresh FlagValues with the project's flags; the subprocess tests run main.py.
"""

import os
import subprocess
import sys

import pytest
from absl import flags
from conftest import REPO

import main


@pytest.fixture
def flag_values():
    values = flags.FlagValues()
    main.define_flags(values)
    return values


def parse_error(argv, flag_values, capsys):
    """(exit code, stderr lines) of parse_flags on argv, which must exit."""
    with pytest.raises(SystemExit) as exited:
        main.parse_flags(["main.py", *argv], flag_values)
    return exited.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("mode", [["--train"], [], ["--eval"], ["--export", "out"], ["--freeze", "g.pb"]])
def test_misspelled_flag_is_one_line_naming_the_closest_in_every_mode(flag_values, capsys, mode):
    code, lines = parse_error(["--dataset", "mnist", *mode, "--learning_rat", "0.5"], flag_values, capsys)
    assert code == 2
    assert lines == ["main.py: error: unknown flag --learning_rat; did you mean --learning_rate? "
                     "(python main.py --helpfull lists every flag)"]


@pytest.mark.parametrize("argv, unknown, closest", [
    (["--manualSeed", "7"], "manualSeed", "seed"),  # pytorch/examples dcgan's flag gets the nearest of ours
    (["--batchsize=4"], "batchsize", "batch_size"),
    (["--nofeature_matchin"], "nofeature_matchin", "nofeature_matching"),  # absl's boolean negation
    (["--max_step=3"], "max_step", "max_steps"),
])
def test_unknown_flags_name_themselves_and_a_known_flag(flag_values, capsys, argv, unknown, closest):
    code, lines = parse_error(argv, flag_values, capsys)
    assert code == 2 and len(lines) == 1
    assert f"unknown flag --{unknown}; did you mean --{closest}?" in lines[0]


def test_unknown_flag_inside_a_flagfile(flag_values, capsys, tmp_path):
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("--dataset=mnist\n--z_dimm=8\n")
    code, lines = parse_error([f"--flagfile={flagfile}"], flag_values, capsys)
    assert code == 2 and lines == ["main.py: error: unknown flag --z_dimm; did you mean --z_dim? "
                                   "(python main.py --helpfull lists every flag)"]


@pytest.mark.parametrize("argv, message", [
    (["--batch_size", "abc"], "main.py: error: flag --batch_size=abc: invalid literal for int() with base 10: 'abc'"),
    (["--dataset", "mnist", "train"], "main.py: error: unexpected argument 'train'; flags are written --name=value "
                                      "or --name value"),
])
def test_bad_values_and_stray_arguments_are_one_line(flag_values, capsys, argv, message):
    assert parse_error(argv, flag_values, capsys) == (2, [message])


def test_missing_flagfile_is_one_line(flag_values, capsys, tmp_path):
    code, lines = parse_error([f"--flagfile={tmp_path / 'none.flags'}"], flag_values, capsys)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("main.py: error: --flagfile: Unable to open flagfile") and "none.flags" in lines[0]


def test_known_flags_flagfiles_and_undefok_still_parse(flag_values, tmp_path):
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("--dataset=fashion\n--z_dim=8\n")
    remaining = main.parse_flags(["main.py", f"--flagfile={flagfile}", "--learning_rate", "0.5", "--notrain",
                                  "--undefok=netG", "--netG=dcgan"], flag_values)
    assert remaining == ["main.py"]
    assert (flag_values.dataset, flag_values.z_dim, flag_values.learning_rate, flag_values.train) == (
        "fashion", 8, 0.5, False)


def run_main(*args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_main_refuses_a_misspelled_flag_before_training(tmp_path):
    result = run_main("--dataset", "mnist", "--train", "--max_steps", "1", "--output_height", "16", "--gf_dim", "4",
                      "--df_dim", "4", "--batch_size", "4", "--train_size", "8", "--learning_rat", "0.5",
                      "--out_dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "main.py: error: unknown flag --learning_rat; did you mean --learning_rate? "
        "(python main.py --helpfull lists every flag)"]
    assert os.listdir(tmp_path) == []  # nothing trained, nothing written


def test_main_refuses_an_unknown_flag_from_a_flagfile_in_export_mode(tmp_path):
    (tmp_path / "run.flags").write_text("--dataset=mnist\n--export=exported\n--ngf=64\n")
    result = run_main("--flagfile=run.flags", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "main.py: error: unknown flag --ngf; did you mean --gf_dim? (python main.py --helpfull lists every flag)"]
    assert os.listdir(tmp_path) == ["run.flags"]


def test_reading_the_options_does_not_import_tensorflow(tmp_path):
    """config.py (with the loss table it reads) and the option declarations load without TensorFlow, so
    whatever only reads options does not pay for it; main.py, which builds graphs, still loads it first."""
    imports = ("import config, networks, networks.options, runtime.options, sys; "
               "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; "
               "assert config.LOSSES_WITH_TARGETS == ('non_saturating', 'minimax', 'least_squares')")
    result = subprocess.run([sys.executable, "-c", imports], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    result = run_main("--help", cwd=tmp_path)  # exits 1, as absl's --help always does
    assert "--dataset" in result.stdout and "--loss" in result.stdout and result.stderr == ""
