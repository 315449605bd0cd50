"""`--export_tflite`: the LiteRT model, run by the LiteRT interpreter, draws the SavedModel's images.

The interpreter is `ai_edge_litert`'s (requirements-dev.txt): TF 2.21's `tf.lite.Interpreter` warns on every
construction that it is deprecated and "scheduled for deletion", and points to this package.
"""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, tiny_config

import config as config_lib
import main
from runtime.errors import UserError
from tools import export, litert_export
from training import train
from training.inference import fixed_z

litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed "
                                                                   "(requirements-dev.txt)")
v1 = tf.compat.v1
BATCH = 3
# Largest differences allowed from the SavedModel's uint8 images, in grey levels, and the fraction of pixels
# that may differ at all.  float32: the same arithmetic in another kernel order (XNNPACK) can move a value
# across a rounding boundary, one level; float16 weights (relative error 2^-11) move a few more by one level.
TOLERANCE = {"none": (1, 0.01), "float16": (2, 0.05)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny conditional MNIST generator trained 2 steps, its SavedModel, and both LiteRT files.

    Its dense layer (--gfc_dim 512, about 1 MB of weights) outweighs the file's fixed overhead, so the
    float16 file's size shows the weights halved."""
    root = tmp_path_factory.mktemp("litert")
    config = tiny_config(root, max_steps=2, z_dim=4, gfc_dim=512)
    train.train(config)
    saved_model = str(root / "saved")
    export.export_saved_model(config, saved_model)
    files = {}
    for quantize in ("none", "float16"):
        files[quantize] = str(root / f"generator_{quantize}.tflite")
        main.run(dataclasses.replace(config, export_tflite=files[quantize], tflite_batch_size=BATCH,
                                     tflite_quantize=quantize))
    return config, saved_model, files


def saved_model_images(directory, z, labels):
    with tf.Graph().as_default(), v1.Session() as session:
        signature = v1.saved_model.loader.load(session, ["serve"], directory).signature_def["serving_default"]
        return session.run(signature.outputs["images"].name,
                           {signature.inputs["z"].name: z, signature.inputs["labels"].name: labels})


def litert_images(path, z, labels):
    interpreter = litert.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    inputs = {detail["name"]: detail for detail in interpreter.get_input_details()}
    interpreter.set_tensor(inputs["z"]["index"], z)
    interpreter.set_tensor(inputs["labels"]["index"], labels)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("quantize", ["none", "float16"])
def test_litert_images_equal_the_saved_models_within_tolerance(run, quantize):
    config, saved_model, files = run
    z, labels = fixed_z(BATCH, config, seed=5), np.array([3, 1, 4], np.int64)
    expected = saved_model_images(saved_model, z, labels)
    images = litert_images(files[quantize], z, labels)
    assert images.dtype == np.uint8 and images.shape == expected.shape == (BATCH, 16, 16, 1)
    difference = np.abs(images.astype(int) - expected.astype(int))
    max_levels, max_fraction = TOLERANCE[quantize]
    assert difference.max() <= max_levels and np.mean(difference > 0) <= max_fraction
    # The labels reach the model: another class draws another image.
    assert not np.array_equal(litert_images(files[quantize], z, (labels + 1) % 10), images)


def test_metadata_names_the_fixed_batch_and_the_interface(run):
    config, _, files = run
    metadata = litert_export.read_metadata(files["float16"])
    assert metadata["batch_size"] == BATCH and metadata["weights"] == "float16"
    assert metadata["inputs"] == {"z": [[BATCH, 4], "float32"], "labels": [[BATCH], "int64"]}
    assert metadata["outputs"] == {"images": [[BATCH, 16, 16, 1], "uint8"]}
    assert {key: metadata[key] for key in ("z_dim", "z_dist", "height", "width", "channels", "classes")} == {
        "z_dim": 4, "z_dist": "uniform", "height": 16, "width": 16, "channels": 1, "classes": 10}
    assert litert_export.read_metadata(files["none"])["weights"] == "float32"
    interpreter = litert.Interpreter(model_path=files["none"])
    shapes = {d["name"]: (list(d["shape"]), d["dtype"]) for d in interpreter.get_input_details()}
    assert shapes == {"z": ([BATCH, 4], np.float32), "labels": ([BATCH], np.int64)}


def test_float16_weights_halve_the_file(run):
    _, _, files = run
    ratio = os.path.getsize(files["float16"]) / os.path.getsize(files["none"])
    assert 0.45 < ratio < 0.6


def test_a_style_generator_is_refused_in_one_line(tmp_path):
    """The style generator's noise is seeded per sample from its z (string hashing and stateless random ops):
    LiteRT has no kernels for them, so the export says so instead of failing inside the converter."""
    config = tiny_config(tmp_path, arch="style", mapping_layers=2, w_dim=8, y_dim=0, max_steps=1)
    train.train(config)
    path = str(tmp_path / "style.tflite")
    with pytest.raises(UserError, match=r"^--export_tflite: the style generator .*--export DIR\) instead$"):
        litert_export.export_tflite(dataclasses.replace(config, export_tflite=path), path)
    assert not os.path.exists(path)


@pytest.mark.parametrize("overrides, message", [
    (dict(export_tflite="g.tflite", tflite_quantize="int8"), "--tflite_quantize must be none or float16 (got 'int8')"),
    (dict(export_tflite="g.tflite", tflite_batch_size=0), "--tflite_batch_size must be at least 1 (got 0)"),
    (dict(export_tflite="generator.pb"), "--export_tflite generator.pb: name the LiteRT file FILE.tflite"),
    (dict(tflite_quantize="float16"), "--tflite_quantize applies to --export_tflite FILE.tflite; add it"),
])
def test_bad_values_are_one_line_errors(overrides, message):
    with pytest.raises(UserError) as error:
        config_lib.resolve(config_lib.Config(dataset="mnist", **overrides))
    assert str(error.value) == message


def test_existing_file_is_refused_and_kept(run):
    config, _, files = run
    before = open(files["none"], "rb").read()
    with pytest.raises(UserError, match="already exists; remove it or choose another path"):
        litert_export.export_tflite(dataclasses.replace(config, export_tflite=files["none"]), files["none"])
    assert open(files["none"], "rb").read() == before


def test_bare_flag_says_which_path_to_add():
    assert main.bare_path_flag(["main.py", "--export_tflite", "--dataset", "mnist"]) == "export_tflite"


def test_command_line_export_prints_no_warning(run, tmp_path):
    config, _, _ = run
    path = tmp_path / "generator.tflite"
    result = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--dataset", "mnist", "--out_dir", config.out_dir, "--batch_size",
         str(config.batch_size), "--output_height", str(config.output_height), "--export_tflite", str(path),
         "--tflite_quantize", "float16"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].endswith(f"wrote LiteRT model to {path} ({path.stat().st_size} bytes, batch 1, float16 weights)")
    assert [line for line in lines if "warn" in line.lower() or not line[:1].isdigit()] == []  # only log lines
