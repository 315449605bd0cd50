"""Bad input gets one clear line and exit code 2, and nothing saved is touched."""

import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf
from conftest import REPO, tiny_config

import config as config_lib
import main
from runtime.errors import UserError
from training import train

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


@pytest.mark.parametrize("overrides,message", [
    (dict(dataset="celebA", output_height=50), "--output_height=50: this generator needs a multiple of 16"),
    (dict(dataset="mnist", output_width=30), "--output_width=30: this generator needs a multiple of 4"),
    (dict(batch_size=0), "--batch_size must be at least 1"),
    (dict(z_dist="cauchy"), "--z_dist must be uniform or gaussian"),
    (dict(visualize_option="samples,movie"), "--visualize_option: unknown ['movie']"),
    (dict(port=70000), "--port must be in 0..65535"),
    (dict(visualize_option="arithmetic", arithmetic_groups="0,1;2"), "--arithmetic_groups '0,1;2': give three"),
    (dict(visualize_option="arithmetic", arithmetic_groups="0;x;2"), "--arithmetic_groups '0;x;2': give three"),
    (dict(visualize_option="arithmetic", n_samples=4, arithmetic_groups="0;1;7"),
     "--arithmetic_groups picks sample 7 but test_samples.png has --n_samples 4"),
])
def test_impossible_flags_are_refused(overrides, message):
    with pytest.raises(UserError) as error:
        config_lib.resolve(config_lib.Config(**overrides))
    assert message in str(error.value)


def test_empty_folder_and_non_images(tmp_path):
    (tmp_path / "faces").mkdir()
    config = tiny_config(tmp_path, dataset="faces", data_dir=str(tmp_path), c_dim=3, train=True)
    with pytest.raises(UserError, match="no images matching"):
        main.run(config)
    (tmp_path / "faces" / "notes.jpg").write_text("not a picture")
    with pytest.raises(UserError, match="no images matching"):
        main.run(config)


def test_batch_larger_than_data(tmp_path, celeba_like_dir):
    config = tiny_config(tmp_path, dataset="celebA", data_dir=str(celeba_like_dir), input_height=54, batch_size=32,
                         train=True)
    with pytest.raises(UserError, match="24 examples is fewer than one batch .--batch_size=32"):
        main.run(config)


def test_crop_larger_than_images(tmp_path, celeba_like_dir):
    config = tiny_config(tmp_path, dataset="celebA", data_dir=str(celeba_like_dir), train=True)  # default crop 108
    with pytest.raises(UserError, match="108x108 is larger than the images .* is 109x89"):
        main.run(config)


def test_checkpoint_from_another_architecture_is_refused_and_untouched(tmp_path):
    config = tiny_config(tmp_path, max_steps=1)
    train.train(config)
    files = {p: os.path.getmtime(os.path.join(config.checkpoint_path, p)) for p in os.listdir(config.checkpoint_path)}
    other = tiny_config(tmp_path, max_steps=2, gf_dim=8, train=True)
    with pytest.raises(UserError, match=r"built with gf_dim=4 \(now 8\); pass the same flags"):
        main.run(other)
    after = {p: os.path.getmtime(os.path.join(config.checkpoint_path, p)) for p in os.listdir(config.checkpoint_path)}
    assert after == files


def test_help_lists_the_flags():
    result = subprocess.run([sys.executable, str(REPO / "main.py"), "--helpfull"], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    for flag in ("--dataset", "--sample_freq", "--ckpt_freq", "--max_to_keep", "--z_dist", "--export", "--freeze"):
        assert flag in result.stdout


def test_folder_whose_images_all_fail_to_decode_gets_one_line(tmp_path):
    from PIL import Image

    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(8):
        path = folder / f"{i}.bmp"
        Image.new("RGB", (1, 1), "red").save(path)
        with open(path, "ab") as f:
            f.write(b"\x00")  # Pillow still reads it; TensorFlow's BMP decoder refuses the size mismatch
    config = tiny_config(tmp_path, dataset="broken", data_dir=str(tmp_path), input_fname_pattern="*.bmp",
                         train=True)
    with pytest.raises(UserError, match="no image could be decoded"):
        main.run(config)


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


def test_run_command_exits_with_main_code_or_one_line_for_a_user_error(capsys):
    from runtime.errors import UserError, run_command

    def refused():
        raise UserError("--flag: bad value; pass a good one")

    with pytest.raises(SystemExit) as exited:
        run_command(refused)
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: --flag: bad value; pass a good one\n"
    with pytest.raises(SystemExit) as exited:
        run_command(lambda: 0)
    assert exited.value.code == 0


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
