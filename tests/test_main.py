"""main.py, the command line: bad input gets one clear line and exit code 2 and nothing saved is touched, a
healthy run prints no warnings, and flags are parsed strictly (each declared once, with its type, default and
help).

`tf.compat.v1.app.run` parses with known_only=True, so `--learning_rat 0.5` used to train at the default rate
and exit 0.  In-process tests parse into a fresh FlagValues with the project's flags; the subprocess tests run
main.py.
"""

import dataclasses
import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf
from absl import flags
from conftest import REPO

import config as config_lib
import main
from runtime import options

v1 = tf.compat.v1


def run_main(*args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_missing_dataset_folder_exits_2_with_one_line(tmp_path):
    result = run_main("--dataset", "faces", "--train", "--data_dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"main.py: error: {tmp_path / 'faces'}: no such folder; put the images there or pass --data_dir/--dataset "
        "(python download.py celebA mnist fashion cifar10 fetches the standard sets)"]
    assert not (tmp_path / "checkpoint").exists()


def test_visualize_without_checkpoint_exits_2(tmp_path):
    result = run_main("--dataset", "mnist", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no checkpoint in checkpoint/mnist_64_28_28" in lines[0]


def test_help_lists_the_flags():
    result = subprocess.run([sys.executable, str(REPO / "main.py"), "--helpfull"], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    for flag in ("--dataset", "--sample_freq", "--ckpt_freq", "--max_to_keep", "--z_dist", "--export", "--freeze"):
        assert flag in result.stdout


@pytest.mark.parametrize("argv, bare", [
    (["main.py", "--export"], "export"),
    (["main.py", "--freeze", "--dataset", "mnist"], "freeze"),
    (["main.py", "-serve", "--serve_model"], "serve_model"),
    (["main.py", "--export", "out/model", "--freeze", "g.pb"], None),
    (["main.py", "--export=out/model", "--serve"], None),
])
def test_bare_path_flags_are_found(argv, bare):
    assert main.bare_path_flag(argv) == bare


def test_export_without_a_path_says_which_path_to_add(tmp_path):
    result = run_main("--export", "--dataset", "mnist", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "main.py: error: --export needs a path: --export DIR (a new folder for the SavedModel)"]


def test_a_healthy_run_prints_no_warnings(tmp_path):
    """Issue 24: every new run printed TensorFlow's "Issue encountered when serializing random_streams /
    moving_average_updates" (four lines, when TensorBoard's writer exported the graph's collections, which
    hold Python objects).  Run as a user runs it (TensorFlow's own log level), saving at every step."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--dataset", "mnist", "--train", "--output_height", "16",
         "--batch_size", "4", "--z_dim", "8", "--gf_dim", "4", "--df_dim", "4", "--gfc_dim", "16", "--dfc_dim", "16",
         "--train_size", "64", "--max_steps", "3", "--ckpt_freq", "1", "--sample_freq", "1", "--log_freq", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("saved checkpoint") == 3
    assert "Issue encountered" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if re.match(r"(WARNING|ERROR)[:\s]|[WE]\d{4} ", line)]
    assert warnings == []
    # TensorBoard still gets the graph and the meta graph, with every collection TensorFlow can store.
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    (events,) = (tmp_path / "logs" / "mnist_4_16_16").glob("events.out.tfevents.*")
    kinds = {event.WhichOneof("what"): event for event in LegacyEventFileLoader(str(events)).Load()}
    assert "graph_def" in kinds
    meta_graph = v1.MetaGraphDef.FromString(kinds["meta_graph_def"].meta_graph_def)
    assert {"variables", "trainable_variables"} <= set(meta_graph.collection_def)
    assert not {"random_streams", "moving_average_updates"} & set(meta_graph.collection_def)


# --- Flags are parsed strictly: a misspelled or unknown flag is one line and exit 2, never ignored -------


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


def test_each_flag_has_its_declared_type_default_and_help():
    values = flags.FlagValues()
    main.define_flags(values)
    for field in dataclasses.fields(config_lib.Config):
        flag = values[field.name]
        assert (flag.default, flag.help) == (field.default, options.help_text(field)), field.name
        assert flag.boolean == (field.default is None or isinstance(field.default, bool)), field.name
    assert values["crop"].default is None and values["face_metrics"].default is None
    assert (values["epoch"].flag_type(), values["g_ema"].flag_type()) == ("int", "float")


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
