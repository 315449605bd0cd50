"""`--export_tflite FILE.tflite`: the generator as a LiteRT (TensorFlow Lite) model for phones and edge devices.

TensorFlow's own converter (`tf.compat.v1.lite.TFLiteConverter`, the one for graph-mode models) turns the
restored generator into a flatbuffer with the SavedModel's interface: `z` float32 [N, z_dim] (+ `labels`
int64 [N] for a conditional model) in, `images` uint8 [N, height, width, channels] out.  LiteRT runs best on
static shapes, so N is fixed at export (`--tflite_batch_size`, 1 by default) and recorded, with the
generator's description (`export.describe`: z_dim, z_dist, size, classes), in the model's metadata under
"dcgan" (`read_metadata`).  `--tflite_quantize float16` stores the weights as float16, half the file; the
interpreter computes in float32 either way.

Variables become constants (the frozen graph of `--freeze`) before conversion.  The style generator is
refused: its inference noise is drawn per sample from a seed hashed from that sample's z (so the same z
renders the same in any batch), and the string and stateless-random ops that does have no LiteRT kernels.
"""

import json
import logging
import os

import numpy as np
from absl import logging as absl_logging
from tensorflow.lite.python import schema_py_generated as tflite_schema
from tensorflow.lite.tools import flatbuffer_utils
from tensorflow.python.framework import convert_to_constants
from tensorflow.python.util import deprecation

from runtime.errors import UserError
from runtime.tf_runtime import tf
from tools.export import OUTPUT_NODE, describe
from training.inference import restored_generator
from utils import write_atomically

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

METADATA_NAME = "dcgan"


def _frozen_generator(restored):
    """The restored generator's GraphDef with its variables as constants (any batch size).

    Freezing a Session's graph has only TF1 APIs, each marked deprecated; the one used here calls
    `extract_sub_graph`, whose warning would be the only one of a healthy export, so it is silenced."""
    with deprecation.silence():
        return convert_to_constants.convert_variables_to_constants_from_session_graph(
            restored.session, restored.session.graph.as_graph_def(), [OUTPUT_NODE])


def _fixed_batch_inputs(config, batch_size):
    inputs = {"z": v1.placeholder(tf.float32, [batch_size, config.z_dim], name="z")}
    if config.conditional:
        inputs["labels"] = v1.placeholder(tf.int64, [batch_size], name="labels")
    return inputs


def fixed_batch_graph(frozen, config, batch_size):
    """(GraphDef, inputs, images) of the generator on a batch of `batch_size`."""
    with tf.Graph().as_default() as graph:
        inputs = _fixed_batch_inputs(config, batch_size)
        (images,) = tf.import_graph_def(frozen, input_map={f"{name}:0": tensor for name, tensor in inputs.items()},
                                        return_elements=[f"{OUTPUT_NODE}:0"], name="generator")
        images = tf.identity(images, name="images")
        return graph.as_graph_def(), inputs, images


def convert(frozen, config, batch_size, quantize):
    """The LiteRT flatbuffer (bytes) of the frozen generator; `quantize` "float16" stores float16 weights."""
    graph_def, inputs, images = fixed_batch_graph(frozen, config, batch_size)
    converter = v1.lite.TFLiteConverter(graph_def, list(inputs.values()), [images])
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    # Every conversion logs "Using experimental converter: If you encountered a problem please file a bug" at
    # absl's INFO level, which main.py's absl prints: it says nothing about this export, so it is held back.
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        return converter.convert()
    except Exception as e:  # ConverterError and friends: name the first line, not MLIR's dump
        raise UserError(f"--export_tflite: TensorFlow's converter failed: {str(e).strip().splitlines()[0]}") from None
    finally:
        absl_logging.set_verbosity(verbosity)


def description(config, batch_size, quantize):
    """What a LiteRT client needs to feed the model: the SavedModel's description plus the fixed batch."""
    height, width, channels = config.output_height, config.output_width, config.c_dim
    inputs = {"z": [[batch_size, config.z_dim], "float32"]}
    if config.conditional:
        inputs["labels"] = [[batch_size], "int64"]
    info = {key: value for key, value in describe(config).items() if key != "signatures"}
    return {**info, "format": "litert", "batch_size": batch_size,
            "weights": "float16" if quantize == "float16" else "float32",
            "inputs": inputs, "outputs": {"images": [[batch_size, height, width, channels], "uint8"]}}


def with_metadata(model, name, text):
    """The flatbuffer `model` with `text` stored as its metadata entry `name` (replacing one of that name)."""
    model_object = flatbuffer_utils.convert_bytearray_to_object(model)
    buffer = tflite_schema.BufferT()
    buffer.data = np.frombuffer(text.encode(), np.uint8)
    model_object.buffers.append(buffer)
    entry = tflite_schema.MetadataT()
    entry.name, entry.buffer = name.encode(), len(model_object.buffers) - 1
    model_object.metadata = [m for m in model_object.metadata or [] if m.name != entry.name] + [entry]
    return flatbuffer_utils.convert_object_to_bytearray(model_object)


def read_metadata(path, name=METADATA_NAME):
    """The JSON metadata entry `name` of a .tflite file (None if it has none)."""
    with open(path, "rb") as f:
        model = tflite_schema.Model.GetRootAs(f.read(), 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if entry.Name().decode() == name:
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return None


def export_tflite(config, path):
    """Writes the generator of `config`'s run to `path` as a LiteRT model (see the module docstring)."""
    if os.path.exists(path):
        raise UserError(f"--export_tflite {path} already exists; remove it or choose another path")
    with restored_generator(config) as restored:
        if restored.config.arch == "style":
            raise UserError("--export_tflite: the style generator (--arch style) draws each sample's noise from a "
                            "seed hashed from its z, with ops LiteRT has no kernels for; export a SavedModel "
                            "(--export DIR) instead")
        frozen, generator_config = _frozen_generator(restored), restored.config
    batch_size, quantize = config.tflite_batch_size, config.tflite_quantize
    model = convert(frozen, generator_config, batch_size, quantize)
    info = description(generator_config, batch_size, quantize)
    model = with_metadata(model, METADATA_NAME, json.dumps(info, sort_keys=True))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomically(path, model, mode="wb")
    log.info("wrote LiteRT model to %s (%d bytes, batch %d, %s weights)", path, len(model), batch_size,
             info["weights"])
    return info
