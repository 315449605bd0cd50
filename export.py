"""Exports the trained generator for serving: SavedModel and frozen GraphDef.

Both take z vectors of any batch size (plus integer labels for a conditional
model) and return uint8 images, so a consumer needs no knowledge of [-1, 1]
scaling or of this code base.
"""

import logging
import os
import shutil
import tempfile

from checkpoints import restored_generator
from errors import UserError
from tf_runtime import tf
from utils import write_atomically

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

OUTPUT_NODE = "images_uint8"


def _refuse_existing(path, flag):
    if os.path.exists(path):
        raise UserError(f"--{flag} {path} already exists; remove it or choose another path")


def export_saved_model(config, directory):
    """Writes a SavedModel with signature `serving_default`: z (+labels) -> images.

    A style generator's also has `truncation`: the same plus a float scalar
    `truncation_psi` (serving_default samples at the export's --truncation_psi),
    so ψ is an input a consumer may give or leave out."""
    _refuse_existing(directory, "export")
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        with restored_generator(config) as restored:
            session, generator = restored.session, restored.generator
            inputs = {"z": v1.saved_model.build_tensor_info(generator.z)}
            if generator.labels is not None:
                inputs["labels"] = v1.saved_model.build_tensor_info(generator.labels)
            signature = v1.saved_model.build_signature_def(
                inputs=inputs,
                outputs={"images": v1.saved_model.build_tensor_info(generator.images_uint8)},
                method_name=v1.saved_model.signature_constants.PREDICT_METHOD_NAME,
            )
            signatures = {"serving_default": signature}
            if generator.truncation_psi is not None:
                signatures["truncation"] = v1.saved_model.build_signature_def(
                    inputs={**inputs, "truncation_psi": v1.saved_model.build_tensor_info(generator.truncation_psi)},
                    outputs=signature.outputs, method_name=signature.method_name)
            builder = v1.saved_model.Builder(os.path.join(staging, "model"))
            builder.add_meta_graph_and_variables(
                session, [v1.saved_model.tag_constants.SERVING], signature_def_map=signatures
            )
            builder.save()
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
