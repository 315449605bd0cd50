"""The model card `--export DIR` writes beside the SavedModel: DIR/README.md, in Hugging Face's format.

A YAML front matter (library_name, pipeline_tag, license, tags, datasets, and the run's numbers: dataset,
image size, steps, images seen, z) then Markdown text: what the generator was trained on and under which
licence (CelebA's terms allow non-commercial research only, and a model trained on it carries that
restriction; an image folder's licence is unknown and set by the user), for how long, with which recipe and
architecture flags, how good it is (measured at export when a feature extractor is at hand: FID & co. with the
extractor named, the classifier's class statistics for MNIST-like data, and face metrics through the
`face_figures` hook), the distribution z is drawn from, and how to call it from TF2, from the frozen graph and
from LiteRT.

The front matter uses only the part of YAML every reader agrees on: `key: scalar` and `key:` followed by
`- scalar` items, strings quoted (as JSON, which is valid YAML) whenever they are not plain words.
"""

import dataclasses
import importlib
import json
import logging
import os
import re

import config as config_lib
from evaluation import formulas
from evaluation import quality as evaluation
from runtime.errors import UserError
from runtime.tf_runtime import tf
from training.checkpoints import RECIPE_FILE, checkpoint_step, read_json
from utils import write_atomically

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

CARD_FILE = "README.md"


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """A dataset as a model card names it: its licence as a Hugging Face licence id, in words, and its Hub id."""

    name: str
    licence: str  # Hugging Face licence identifier ("other" with licence_name / licence_link)
    licence_text: str
    hub_id: str = ""
    licence_name: str = ""
    licence_link: str = ""


KNOWN_DATASETS = {
    "mnist": TrainingData("MNIST", "cc-by-sa-3.0", "CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)", "ylecun/mnist"),
    "fashion": TrainingData("Fashion-MNIST", "mit", "MIT (Zalando SE)", "zalando-datasets/fashion_mnist"),
    "cifar10": TrainingData("CIFAR-10", "unknown", "no licence stated by its authors (Krizhevsky 2009); ask them "
                                                   "before any use beyond research", "uoft-cs/cifar10"),
    "celeba": TrainingData(
        "CelebA", "other", "non-commercial research purposes only (the CelebA agreement of The Chinese University "
                           "of Hong Kong); a model trained on it is bound by the same terms",
        licence_name="celeba-non-commercial-research",
        licence_link="https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"),
}


def training_data(config):
    """The card's TrainingData for --dataset: a known one, or an image folder whose licence the user sets."""
    known = KNOWN_DATASETS.get(config.dataset.lower())
    if known:
        return known
    folder = os.path.join(config.data_dir, config.dataset)
    return TrainingData(f"the image folder {folder}", "unknown",
                        "unknown, set by the user: replace `license: unknown` above with the images' licence")


@dataclasses.dataclass(frozen=True)
class RunFacts:
    """What the checkpoint says about its training."""

    steps: int
    images_seen: int | None  # None: the checkpoint holds no counter (e.g. one written outside training)
    recipe: dict  # RECIPE_FIELDS as trained ({} when the run folder has no recipe.json)
    architecture: dict


def run_facts(config, restored):
    """Steps and images seen from the restored checkpoint, the recipe from the run folder's recipe.json."""
    names = dict(v1.train.list_variables(restored.path))
    images_seen = int(v1.train.load_variable(restored.path, "images_seen")) if "images_seen" in names else None
    recipe_path = os.path.join(config.checkpoint_path, RECIPE_FILE)
    try:
        recorded = read_json(recipe_path)
    except (OSError, ValueError):  # absent or damaged: the card says there is none
        recorded = None
    recipe = config_lib.with_defaults(recorded, config_lib.RECIPE_FIELDS) if isinstance(recorded, dict) else {}
    return RunFacts(checkpoint_step(restored.path), images_seen, recipe, restored.config.architecture())


def face_figures(restored):
    """The hook for face metrics: evaluation/faces.py (being written by a colleague) joins the card by defining
    `model_card_figures(session, generator, config)`, returning rows (name, value, what measured it), e.g.
    ("identity diversity", 0.62, "ArcFace, n=1000"); it decides itself whether the data are faces.
    Without that module or function the card has no face rows."""
    try:
        face_metrics = importlib.import_module("face_metrics")
    except ModuleNotFoundError as e:
        if e.name != "face_metrics":  # the module exists but an import inside it failed: say so
            raise
        return []
    figures = getattr(face_metrics, "model_card_figures", None)
    return list(figures(restored.session, restored.generator, restored.config)) if figures else []


def quality(restored):
    """(results of evaluation.QualityMeter, or None; why not measured, or None) for the restored generator."""
    try:
        meter = evaluation.QualityMeter(restored.config)
    except UserError as e:  # no extractor, or no real data to compare with
        return None, str(e)
    log.info("model card: measuring quality on %d samples (--eval_samples)", restored.config.eval_samples)
    return meter.measure(restored.session, restored.generator), None


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _yaml_scalar(value):
    if isinstance(value, bool) or value is None:
        raise TypeError(f"front matter value {value!r}: only numbers and strings are written")
    if isinstance(value, int | float):
        return repr(value)
    plain = _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS and not re.fullmatch(r"[0-9.e+-]+", value)
    return value if plain else json.dumps(value)


def front_matter(fields):
    """`---`-delimited YAML of {key: number | string | list of them}; empty strings and lists are left out."""
    lines = ["---"]
    for key, value in fields.items():
        if value in ("", [], None):
            continue
        if isinstance(value, list):
            lines += [f"{key}:"] + [f"- {_yaml_scalar(item)}" for item in value]
        else:
            lines.append(f"{key}: {_yaml_scalar(value)}")
    return "\n".join(lines + ["---"]) + "\n"


def _z_description(config):
    if config.z_dist == "uniform":
        return f"{config.z_dim} float32 values, each uniform in [-1, 1]"
    return f"{config.z_dim} float32 values, each standard normal N(0, 1)"


def _run_flags(config):
    """The flags that name the run's checkpoint folder (main.py's run name), for the export commands."""
    flags = f"--dataset {config.dataset} --batch_size {config.batch_size} --output_height {config.output_height}"
    if config.output_width != config.output_height:
        flags += f" --output_width {config.output_width}"
    if config.out_dir != ".":
        flags += f" --out_dir {config.out_dir}"
    return flags


def _usage(config):
    """Client code for the three formats, specialised to this generator's z and classes."""
    z_draw = "rng.uniform(-1, 1, (n, z_dim))" if config.z_dist == "uniform" else "rng.standard_normal((n, z_dim))"
    classes = f"np.arange(n, dtype=np.int64) % {config.y_dim}"
    conditional = config.conditional
    sample_labels = f", labels=tf.constant(np.arange(16) % {config.y_dim}, tf.int64)" if conditional else ""
    labels = f"labels = {classes}  # class indices\n" if conditional else ""
    feed_labels, call_labels = (', "labels:0"', ", tf.constant(labels)") if conditional else ("", "")
    litert_labels = f'interpreter.set_tensor(inputs["labels"]["index"], {classes})\n' if conditional else ""
    return f"""## How to use

The SavedModel from TF2 (nothing from the training code is needed; `sample` draws z itself):

```python
import numpy as np, tensorflow as tf
sample = tf.saved_model.load("generator").signatures["sample"]
images = sample(count=tf.constant(16), seed=tf.constant(0, tf.int64){sample_labels})["images"].numpy()  # uint8 NHWC
```

The frozen graph (`python main.py {_run_flags(config)} --freeze generator.pb`) from TF2:

```python
import numpy as np, tensorflow as tf
graph_def = tf.compat.v1.GraphDef.FromString(open("generator.pb", "rb").read())
graph = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
generate = graph.prune(feeds=["z:0"{feed_labels}], fetches="images_uint8:0")
n, z_dim, rng = 16, {config.z_dim}, np.random.default_rng(0)
z = {z_draw}.astype(np.float32)
{labels}images = generate(tf.constant(z){call_labels}).numpy()  # uint8 NHWC
```

LiteRT (`python main.py {_run_flags(config)} --export_tflite generator.tflite`; `pip install ai-edge-litert`):

```python
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path="generator.tflite")
interpreter.allocate_tensors()
inputs = {{detail["name"]: detail for detail in interpreter.get_input_details()}}
n, z_dim = inputs["z"]["shape"]  # the batch size is fixed at export (--tflite_batch_size)
rng = np.random.default_rng(0)
interpreter.set_tensor(inputs["z"]["index"], {z_draw}.astype(np.float32))
{litert_labels}interpreter.invoke()
images = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])  # uint8 NHWC
```
"""


def _quality_section(results, not_measured, face_rows):
    lines = ["## Quality (measured at export)", ""]
    if results is None:
        lines.append(f"Not measured: {not_measured}")
    else:
        lines += [formulas.format_table(results), ""]
        if "classes_present" in results:
            lines.append(f"Class statistics: {formulas.format_class_statistics(results)}.")
    if face_rows:
        lines += ["", "| face metric | value | measured with |", "|---|---:|---|"]
        lines += [f"| {name} | {value:.4g} | {measured_with} |" for name, value, measured_with in face_rows]
    return "\n".join(lines) + "\n"


def render(config, facts, data, results, not_measured, face_rows):
    """The card's text for the generator of `config` (the restored checkpoint's)."""
    c = config
    size = f"{c.output_height}x{c.output_width}x{c.c_dim}"
    kind = f"class-conditional ({c.y_dim} classes)" if c.conditional else "unconditional"
    fields = {
        "library_name": "tf", "pipeline_tag": "unconditional-image-generation", "license": data.licence,
        "license_name": data.licence_name, "license_link": data.licence_link,
        "tags": list(dict.fromkeys(["gan", "dcgan", c.arch, "tensorflow",
                                    "class-conditional" if c.conditional else "unconditional"])),
        "datasets": [data.hub_id or c.dataset],
        "dataset": c.dataset, "image_height": c.output_height, "image_width": c.output_width,
        "image_channels": c.c_dim, "training_steps": facts.steps, "images_seen": facts.images_seen,
        "z_dim": c.z_dim, "z_dist": c.z_dist, "classes": c.y_dim,
    }
    seen = f"{facts.images_seen:,} images ({facts.images_seen / 1000:.1f} kimg)" if facts.images_seen is not None \
        else "images seen unknown (the checkpoint has no counter)"
    rates = ""
    if facts.recipe:  # a 0 rate flag means the model's default (config.DEFAULT_LEARNING_RATES): name the rates used
        d_rate, g_rate = dataclasses.replace(c, **facts.recipe).learning_rates()
        rates = f" Adam learning rates: D {d_rate:g}, G {g_rate:g}."
    recipe = "\n".join(f"| `--{name}` | {value} |" for name, value in facts.recipe.items()) \
        or "| (no recipe.json beside the checkpoints) | |"
    architecture = "\n".join(f"| `--{name}` | {value} |" for name, value in facts.architecture.items())
    return f"""{front_matter(fields)}
# {c.arch} generator, {data.name}, {size}

A {kind} GAN generator ({c.arch}) that draws {size} uint8 images from a z of {_z_description(c)},
exported by `python main.py --export` of this DCGAN code base (TensorFlow, `tf.compat.v1` graph mode).

## Training data

{data.name}. Licence: {data.licence_text}. Images are {size} after the training pipeline's crop and resize.

## Training

{facts.steps:,} steps, {seen}, batch size {c.batch_size}.{rates}

| recipe flag | value |
|---|---|
{recipe}

| architecture flag | value |
|---|---|
{architecture}

{_quality_section(results, not_measured, face_rows)}
## Inputs

z: {_z_description(c)}{f"; labels: int64 class indices in 0..{c.y_dim - 1}" if c.conditional else ""}.
`assets.extra/dcgan.json` records the same for programs.

{_usage(c)}"""


def write_model_card(directory, config, restored):
    """Writes directory/README.md for the generator `restored` from `config`'s run."""
    results, not_measured = quality(restored)
    text = render(restored.config, run_facts(config, restored), training_data(config), results, not_measured,
                  face_figures(restored))
    path = os.path.join(directory, CARD_FILE)
    write_atomically(path, text)
    return path
