"""`--export DIR` writes DIR/README.md, a Hugging Face model card whose front matter holds the run's numbers.

The front matter is read by the small parser below (the subset of YAML the card writes: `key: scalar` and
`key:` with `- scalar` items), independent of the writer, and checked against the run; the card's three
client snippets run in a plain TF2 process on the exported files.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
from conftest import eval_config, tiny_config

from evaluation import formulas
from evaluation import quality as evaluation
from tools import export, litert_export, model_card
from training import train
from training.inference import restored_generator


def yaml_scalar(text):
    if text.startswith('"'):
        return json.loads(text)
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def front_matter(text):
    """{key: scalar or list} of the `---`-delimited block the text starts with."""
    lines = text.split("\n")
    assert lines[0] == "---", "a model card starts with its front matter"
    fields, list_key = {}, None
    for line in lines[1:lines.index("---", 1)]:
        if line.startswith("- "):
            fields[list_key].append(yaml_scalar(line[2:]))
            continue
        key, separator, value = line.partition(": ") if ": " in line else line.partition(":")
        assert separator and re.fullmatch(r"[a-z_]+", key), f"not a `key: value` line: {line!r}"
        fields[key] = yaml_scalar(value) if value else []
        list_key = None if value else key
    return fields


def code_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def read_card(directory):
    with open(os.path.join(directory, "README.md")) as f:
        return f.read()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny conditional MNIST run of 3 steps (batch 4, d_steps 2) exported as SavedModel, frozen graph and
    LiteRT file, side by side as the card's snippets name them."""
    root = tmp_path_factory.mktemp("card")
    config = tiny_config(root, max_steps=3, d_steps=2, z_dim=4)
    train.train(config)
    folder = root / "client"
    export.export_saved_model(config, str(folder / "generator"))
    export.freeze_graph(config, str(folder / "generator.pb"))
    litert_export.export_tflite(dataclasses.replace(config, tflite_batch_size=2), str(folder / "generator.tflite"))
    return config, folder


def test_front_matter_holds_the_runs_numbers_and_dataset(exported):
    config, folder = exported
    fields = front_matter(read_card(folder / "generator"))
    assert fields["library_name"] == "tf" and fields["pipeline_tag"] == "unconditional-image-generation"
    assert fields["license"] == "cc-by-sa-3.0" and fields["datasets"] == ["ylecun/mnist"]
    assert fields["tags"] == ["gan", "dcgan", "tensorflow", "class-conditional"]
    assert fields["dataset"] == "mnist"
    assert (fields["image_height"], fields["image_width"], fields["image_channels"]) == (16, 16, 1)
    assert fields["training_steps"] == 3
    assert fields["images_seen"] == 3 * config.d_steps * config.batch_size  # each step reads d_steps batches
    assert (fields["z_dim"], fields["z_dist"], fields["classes"]) == (4, "uniform", 10)


def test_text_names_licence_recipe_z_and_missing_extractor(exported):
    _, folder = exported
    card = read_card(folder / "generator")
    assert "Licence: CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)" in card
    assert "3 steps, 24 images (0.0 kimg), batch size 4. Adam learning rates: D 0.0004, G 0.0001." in card
    assert "| `--d_steps` | 2 |" in card and "| `--loss` | non_saturating |" in card  # from recipe.json
    assert "| `--z_dim` | 4 |" in card
    assert "z: 4 float32 values, each uniform in [-1, 1]; labels: int64 class indices in 0..9" in card
    assert "Not measured: no feature extractor for dataset 'mnist'" in card


def test_client_snippets_run_in_a_plain_tf2_process(exported):
    _, folder = exported
    blocks = code_blocks(read_card(folder / "generator"))
    assert len(blocks) == 3  # SavedModel, frozen graph, LiteRT
    script = "\n".join(f"namespace = {{}}\nexec({block!r}, namespace)\nprint(namespace['images'].shape, "
                       "namespace['images'].dtype)" for block in blocks)
    result = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-4:] == ["(16, 16, 16, 1) uint8", "(16, 16, 16, 1) uint8", "(2, 16, 16, 1) uint8",
                                              ""]


@pytest.mark.parametrize("dataset, licence, words", [
    ("celebA", "other", "non-commercial research purposes only"),
    ("fashion", "mit", "MIT (Zalando SE)"),
    ("my_photos", "unknown", "unknown, set by the user"),
])
def test_each_dataset_gets_its_licence(tmp_path, dataset, licence, words):
    config = tiny_config(tmp_path, dataset=dataset, c_dim=3 if dataset != "fashion" else 0)
    facts = model_card.RunFacts(steps=7, images_seen=28, recipe=config.recipe(), architecture=config.architecture())
    card = model_card.render(config, facts, model_card.training_data(config), None, "no extractor", [])
    fields = front_matter(card)
    assert fields["license"] == licence and words in card
    assert fields["training_steps"] == 7 and fields["dataset"] == dataset
    if dataset == "celebA":
        assert fields["license_name"] == "celeba-non-commercial-research" and fields["license_link"].startswith("http")
    if dataset == "my_photos":
        assert fields["datasets"] == ["my_photos"] and os.path.join(config.data_dir, "my_photos") in card


def test_front_matter_quotes_what_yaml_would_misread():
    text = model_card.front_matter({"a": "yes", "b": "3.0", "c": "x: y", "d": "plain-word", "e": 2, "f": ["no"],
                                    "skipped": ""})
    assert text == '---\na: "yes"\nb: "3.0"\nc: "x: y"\nd: plain-word\ne: 2\nf:\n- "no"\n---\n'
    assert front_matter(text) == {"a": "yes", "b": "3.0", "c": "x: y", "d": "plain-word", "e": 2, "f": ["no"]}


def test_face_metrics_hook_adds_its_rows(exported, monkeypatch, tmp_path):
    config, _ = exported
    face_metrics = types.ModuleType("face_metrics")
    seen = []

    def model_card_figures(session, generator, generator_config):
        seen.append(generator_config.output_height)
        return [("identity diversity", 0.625, "a test network, n=64")]

    face_metrics.model_card_figures = model_card_figures
    monkeypatch.setitem(sys.modules, "face_metrics", face_metrics)
    directory = tmp_path / "with_faces"
    export.export_saved_model(config, str(directory))
    assert seen == [16]
    assert "| identity diversity | 0.625 | a test network, n=64 |" in read_card(directory)


def test_quality_measured_at_export_is_what_eval_measures(classifier_root, tmp_path):
    config = eval_config(classifier_root, max_steps=2, batch_size=6)  # a run of its own beside the classifier
    train.train(config)
    export.export_saved_model(config, str(tmp_path / "generator"))
    card = read_card(tmp_path / "generator")
    with restored_generator(config) as restored:  # --eval's measurement of the same checkpoint
        results = evaluation.QualityMeter(restored.config).measure(restored.session, restored.generator)
    assert formulas.format_table(results) in card
    assert "(MNIST classifier features)" in card and f"| {results['fid']:.3f} |" in card
    assert f"requested-class accuracy {results['class_accuracy']:.4f}" in card
    assert np.isfinite(results["fid"])
