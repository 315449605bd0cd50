import os

import imageio.v2 as imageio
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

import export
import train
import visualize
from checkpoints import restored_generator
from errors import UserError
from model import fixed_z, sample_labels

v1 = tf.compat.v1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    config = tiny_config(tmp_path_factory.mktemp("run"), max_steps=2, z_dim=4, n_samples=5)
    train.train(config)
    return config


def test_visualize_writes_every_option(trained):
    paths = visualize.visualize(trained)
    names = sorted(os.path.basename(p) for p in paths)
    z_dim = trained.z_dim
    expected = (["test_interpolation.gif", "test_merged_sweeps.gif", "test_samples.png"]
                + [f"test_sweep_{d:03d}.gif" for d in range(z_dim)] + [f"test_sweep_{d:03d}.png" for d in range(z_dim)])
    assert names == sorted(expected)
    samples = imageio.imread(os.path.join(trained.sample_path, "test_samples.png"))
    assert samples.shape[:2] == (2 * 16 + 1, 3 * 16 + 2)  # 5 samples: 2 rows x 3 cols, any count works
    sweep = imageio.imread(os.path.join(trained.sample_path, "test_sweep_000.png"))
    assert sweep.shape[:2] == (8 * 17 - 1, 8 * 17 - 1)
    frames = imageio.mimread(os.path.join(trained.sample_path, "test_interpolation.gif"))
    assert len(frames) == 4 * visualize.GIF_FRAMES
    merged = imageio.mimread(os.path.join(trained.sample_path, "test_merged_sweeps.gif"))
    assert len(merged) == visualize.GIF_FRAMES and not np.array_equal(merged[0], merged[-1])


def test_visualize_single_option_and_sample_count_independent_of_batch_size(trained):
    import dataclasses
    config = dataclasses.replace(trained, visualize_option="samples", n_samples=10)
    paths = visualize.visualize(config)
    assert [os.path.basename(p) for p in paths] == ["test_samples.png"]
    assert imageio.imread(paths[0]).shape[:2] == (3 * 17 - 1, 4 * 17 - 1)  # 10 > batch_size 4


def test_without_checkpoint_visualize_says_so(tmp_path):
    with pytest.raises(UserError, match="no checkpoint in .*train first"):
        visualize.visualize(tiny_config(tmp_path))


def reference_images(config, z, labels):
    with restored_generator(config) as restored:
        return restored.session.run(restored.generator.images_uint8, restored.generator.feed(z, labels))


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
