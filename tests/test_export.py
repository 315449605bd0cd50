"""tools/export.py: the SavedModel and the frozen graph draw what the generator draws, and the SavedModel
describes itself: the `sample` signature, dcgan.json, and the README's TF2 client."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, reference_images, tiny_config, trained_run

from runtime.errors import UserError
from tools import export
from training.inference import InferenceGenerator, fixed_z, restored_generator, sample_labels

v1 = tf.compat.v1


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny conditional (mnist) generator trained 2 steps and exported."""
    root = tmp_path_factory.mktemp("export")
    config = trained_run(root, max_steps=2, z_dim=4)
    directory = str(root / "saved")
    export.export_saved_model(config, directory)
    return config, directory


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny conditional generator trained 2 steps, without the weight average (--g_ema 0): G itself."""
    return trained_run(tmp_path_factory.mktemp("run"), max_steps=2, z_dim=4, n_samples=5, g_ema=0.0)


def run_signature(directory, name, feeds):
    with tf.Graph().as_default(), v1.Session() as session:
        signature = v1.saved_model.loader.load(session, ["serve"], directory).signature_def[name]
        outputs = session.run({key: t.name for key, t in signature.outputs.items()},
                              {signature.inputs[key].name: value for key, value in feeds.items()})
        return outputs, sorted(signature.inputs)


def test_sample_signature_draws_z_itself_and_matches_the_generator_bit_for_bit(exported):
    config, directory = exported
    labels = np.array([3, 1, 4, 1, 5], np.int64)
    sampled, inputs = run_signature(directory, "sample", {"count": 5, "seed": 7, "labels": labels})
    assert inputs == ["count", "labels", "seed"]
    assert sampled["images"].shape == (5, 16, 16, 1) and sampled["images"].dtype == np.uint8
    assert sampled["z"].shape == (5, 4) and np.all(np.abs(sampled["z"]) <= 1.0)
    again, _ = run_signature(directory, "sample", {"count": 5, "seed": 7, "labels": labels})
    other_seed, _ = run_signature(directory, "sample", {"count": 5, "seed": 8, "labels": labels})
    assert np.array_equal(again["z"], sampled["z"]) and not np.array_equal(other_seed["z"], sampled["z"])
    with restored_generator(config) as restored:
        expected = restored.generator.generate(restored.session, sampled["z"], labels)
    assert np.array_equal(sampled["images"], expected)
    served, _ = run_signature(directory, "serving_default", {"z": sampled["z"], "labels": labels})
    assert np.array_equal(served["images"], expected)


def test_description_records_the_training_flags(exported):
    config, directory = exported
    with open(os.path.join(directory, "assets.extra", "dcgan.json")) as f:
        description = json.load(f)
    assert description == export.read_description(directory)
    assert (description["generator"], description["truncation"]) == ("dcgan", False)
    assert set(description["signatures"]) == {"serving_default", "sample"}  # what the SavedModel has
    assert {k: description[k] for k in ("z_dim", "z_dist", "z_range", "height", "width", "channels", "classes")} == {
        "z_dim": 4, "z_dist": "uniform", "z_range": [-1.0, 1.0], "height": 16, "width": 16, "channels": 1,
        "classes": 10}


@pytest.mark.parametrize("z_dist", ["uniform", "gaussian"])
def test_sampled_z_follows_the_training_distribution(tmp_path, z_dist):
    config = tiny_config(tmp_path, y_dim=0, z_dist=z_dist, z_dim=50)
    with tf.Graph().as_default(), v1.Session() as session:
        inputs, outputs = export._sample_signature(config, InferenceGenerator(config))
        session.run(v1.global_variables_initializer())
        z = session.run(outputs["z"], {inputs["count"]: 200, inputs["seed"]: 1})
    assert z.shape == (200, 50)
    if z_dist == "uniform":  # 10,000 draws: U(-1, 1) has mean 0, std 1/sqrt(3)
        assert z.min() >= -1.0 and z.max() <= 1.0 and abs(z.std() - 3 ** -0.5) < 0.02
    else:
        assert abs(z.std() - 1.0) < 0.03 and np.abs(z).max() > 3.0  # beyond uniform's range
    assert abs(z.mean()) < 0.03


def test_serve_model_refuses_a_folder_that_is_not_an_export(tmp_path):
    with pytest.raises(UserError, match="not a SavedModel folder; write one with --export DIR"):
        export.read_description(str(tmp_path))


def readme_client():
    """The README's five-line TF2 client, between its <!-- tf2-client --> markers."""
    readme = (REPO / "README.md").read_text()
    return re.search(r"<!-- tf2-client -->\s*```python\n(.*?)```", readme, re.S).group(1)


def test_readme_client_needs_no_knowledge_of_this_code_base(exported, tmp_path):
    config, directory = exported
    code = readme_client()
    assert len(code.strip().splitlines()) <= 5
    os.symlink(directory, tmp_path / "generator")  # the path the README uses
    # A plain TF2 process (eager), outside the repository, with none of its modules importable.
    script = code + "\nimport numpy\nnumpy.save('images.npy', images)\n"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    images = np.load(tmp_path / "images.npy")
    assert images.shape == (16, 16, 16, 1) and images.dtype == np.uint8


@pytest.mark.parametrize("arch, truncation", [("dcgan", False), ("mlp", False), ("style", True)])
def test_description_names_the_generator_family_and_whether_it_truncates(tmp_path, arch, truncation):
    """Issue 24, bug 8: a style model's description said "dcgan" and no truncation beside a truncation signature."""
    description = export.describe(tiny_config(tmp_path, arch=arch, w_dim=8, mapping_layers=2))
    assert (description["generator"], description["truncation"]) == (arch, truncation)
    assert ("truncation" in description["signatures"]) == truncation


def test_saved_model_and_frozen_graph_reproduce_the_generator(trained, tmp_path):
    z = fixed_z(3, trained, seed=5)  # 3 != batch_size: the batch dimension is free
    labels = sample_labels(3, trained)
    expected = reference_images(trained, z, labels)

    saved_model_dir = str(tmp_path / "saved")
    export.export_saved_model(trained, saved_model_dir)
    with tf.Graph().as_default(), v1.Session() as session:
        meta = v1.saved_model.loader.load(session, ["serve"], saved_model_dir)
        signature = meta.signature_def["serving_default"]
        images = session.run(signature.outputs["images"].name, {
            signature.inputs["z"].name: z, signature.inputs["labels"].name: labels})
    assert images.dtype == np.uint8 and np.array_equal(images, expected)

    frozen_path = str(tmp_path / "generator.pb")
    export.freeze_graph(trained, frozen_path)
    graph_def = v1.GraphDef()
    with open(frozen_path, "rb") as f:
        graph_def.ParseFromString(f.read())
    assert not any(node.op in ("VarHandleOp", "VariableV2") for node in graph_def.node)
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
        with v1.Session(graph=graph) as session:
            images = session.run("images_uint8:0", {"z:0": z, "labels:0": labels})
    assert np.array_equal(images, expected)

    with pytest.raises(UserError, match="already exists"):
        export.export_saved_model(trained, saved_model_dir)
