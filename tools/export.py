"""Exports the trained generator for serving: SavedModel and frozen GraphDef.

Both take z vectors of any batch size (plus integer labels for a conditional
model) and return uint8 images, so a consumer needs no knowledge of [-1, 1]
scaling or of this code base.  The SavedModel also describes itself: its
`sample` signature draws z from the training distribution (count + seed in,
images and z out), and `assets.extra/dcgan.json` records z_dim, z_dist, image
size, channels and classes, so a client needs to know nothing of the run.
"""

import json
import logging
import os
import shutil
import tempfile

from runtime.errors import UserError
from runtime.tf_runtime import tf
from tools import model_card
from training.inference import restored_generator, to_uint8
from utils import write_atomically

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

OUTPUT_NODE = "images_uint8"
DESCRIPTION_FILE = os.path.join("assets.extra", "dcgan.json")


def describe(config):
    """What a client needs to feed the generator: the training flags that define its inputs and outputs,
    the generator family (--arch), and whether it has the `truncation` signature (the style generator)."""
    labels = " + labels [n] int64" if config.conditional else ""
    signatures = {
        "serving_default": f"z [n, z_dim] float32{labels} -> images [n, height, width, channels] uint8",
        "sample": "count int32 + seed int64" + (" + labels [count] int64" if config.conditional else "")
                  + " -> images uint8, z (drawn from z_dist)",
    }
    truncation = config.arch == "style"
    if truncation:
        signatures["truncation"] = (f"z [n, z_dim] float32{labels} + truncation_psi float32 -> images "
                                    f"(w_avg + psi (w - w_avg); serving_default uses psi {config.truncation_psi:g})")
    return {
        "generator": config.arch, "z_dim": config.z_dim, "z_dist": config.z_dist,
        "z_range": [-1.0, 1.0] if config.z_dist == "uniform" else None,
        "height": config.output_height, "width": config.output_width, "channels": config.c_dim,
        "classes": config.y_dim, "truncation": truncation, "signatures": signatures,
    }


def read_description(directory):
    """The dcgan.json of a SavedModel written by --export, or UserError."""
    path = os.path.join(directory, DESCRIPTION_FILE)
    if not os.path.isdir(directory) or not os.path.exists(os.path.join(directory, "saved_model.pb")):
        raise UserError(f"--serve_model {directory}: not a SavedModel folder; write one with --export DIR")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"--serve_model {directory}: no {DESCRIPTION_FILE} (exported by an older version); "
                        "export it again with --export") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e}); export the model again with --export") from None


def _sample_signature(config, generator):
    """The `sample` signature's tensors: z drawn in the graph from --z_dist by a stateless
    generator (same count + seed, same z, on any machine), through `generator`'s variables."""
    count = v1.placeholder(tf.int32, [], name="sample_count")
    seed = v1.placeholder(tf.int64, [], name="sample_seed")
    shape, stateless_seed = tf.stack([count, config.z_dim]), tf.stack([seed, tf.constant(0, tf.int64)])
    if config.z_dist == "gaussian":
        z = tf.random.stateless_normal(shape, stateless_seed)
    else:
        z = tf.random.stateless_uniform(shape, stateless_seed, minval=-1.0, maxval=1.0)
    inputs = {"count": count, "seed": seed}
    labels_onehot = None
    if config.conditional:
        inputs["labels"] = v1.placeholder(tf.int64, [None], name="sample_labels")
        labels_onehot = tf.one_hot(inputs["labels"], config.y_dim)
    return inputs, {"images": to_uint8(generator.build(z, labels_onehot)), "z": z}


def _signature(inputs, outputs):
    info = v1.saved_model.build_tensor_info
    return v1.saved_model.build_signature_def(
        inputs={name: info(t) for name, t in inputs.items()}, outputs={name: info(t) for name, t in outputs.items()},
        method_name=v1.saved_model.signature_constants.PREDICT_METHOD_NAME)


def _refuse_existing(path, flag):
    if os.path.exists(path):
        raise UserError(f"--{flag} {path} already exists; remove it or choose another path")


def export_saved_model(config, directory):
    """Writes a SavedModel with signatures `serving_default` (z (+labels) -> images) and `sample`
    (count, seed (+labels) -> images, z), and its description in assets.extra/dcgan.json.

    A style generator's also has `truncation`: serving_default's inputs plus a
    float scalar `truncation_psi` (serving_default samples at the export's
    --truncation_psi), so ψ is an input a consumer may give or leave out."""
    _refuse_existing(directory, "export")
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        with restored_generator(config) as restored:
            session, generator = restored.session, restored.generator
            inputs = {"z": generator.z}
            if generator.labels is not None:
                inputs["labels"] = generator.labels
            signatures = {"serving_default": _signature(inputs, {"images": generator.images_uint8}),
                          "sample": _signature(*_sample_signature(restored.config, generator))}
            if generator.truncation_psi is not None:
                signatures["truncation"] = _signature({**inputs, "truncation_psi": generator.truncation_psi},
                                                      {"images": generator.images_uint8})
            builder = v1.saved_model.Builder(os.path.join(staging, "model"))
            builder.add_meta_graph_and_variables(
                session, [v1.saved_model.tag_constants.SERVING], signature_def_map=signatures)
            builder.save()
            description_path = os.path.join(staging, "model", DESCRIPTION_FILE)
            os.makedirs(os.path.dirname(description_path))
            write_atomically(description_path, json.dumps(describe(restored.config), indent=2) + "\n")
            model_card.write_model_card(os.path.join(staging, "model"), config, restored)
        os.replace(os.path.join(staging, "model"), directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote SavedModel to %s", directory)


def freeze_graph(config, path):
    """Writes a frozen GraphDef: feed `z:0` (and `labels:0`, and for a style
    generator optionally `truncation_psi:0`), fetch `images_uint8:0`."""
    _refuse_existing(path, "freeze")
    with restored_generator(config) as restored:
        frozen = v1.graph_util.convert_variables_to_constants(
            restored.session, restored.session.graph.as_graph_def(), [OUTPUT_NODE]
        )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomically(path, frozen.SerializeToString(), mode="wb")
    log.info("wrote frozen graph to %s", path)
