"""Each run's flags as HParams, its final losses and quality figures as metrics, read back by TensorBoard.

Two tiny MNIST runs that differ in recipe (loss, batch size, steps) and in what they measure (one has
--fid_every) share a logs folder.  TensorBoard's own event reader and HParams parser read each run's
session-start record and final scalars; a real `tensorboard --logdir` then serves both runs in the HParams
dashboard's API, side by side.
"""

import csv
import json
import os
import urllib.request

import pytest
from conftest import eval_config, running_tensorboard
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from training import hparams as run_hparams
from training import train

FID_TAG = "quality/fid [classifier penultimate layer (MNIST classifier features)]"


@pytest.fixture(scope="module")
def runs(classifier_root):
    """Run "default" (batch 4, 3 steps) and run "hinge" (batch 6, hinge loss, FID every 2 of 2 steps)."""
    default = eval_config(classifier_root, max_steps=3)
    hinge = eval_config(classifier_root, batch_size=6, loss="hinge", max_steps=2, fid_every=2, g_steps=2)
    for config in (default, hinge):
        train.train(config)
    return {"default": default, "hinge": hinge}


def events(config):
    accumulator = EventAccumulator(config.log_path)
    accumulator.Reload()
    return accumulator


def session_start(config):
    content = events(config).PluginTagToContent(hparams_metadata.PLUGIN_NAME)[hparams_metadata.SESSION_START_INFO_TAG]
    return hparams_metadata.parse_session_start_info_plugin_data(content)


def proto_value(value):
    return getattr(value, value.WhichOneof("kind"))


@pytest.mark.parametrize("name", ["default", "hinge"])
def test_session_start_holds_every_recipe_and_architecture_flag(runs, name):
    config = runs[name]
    recorded = {key: proto_value(value) for key, value in session_start(config).hparams.items()}
    expected = {field: getattr(config, field) for field in run_hparams.HPARAM_FIELDS}
    d_rate, g_rate = config.learning_rates()
    expected.update(d_learning_rate_used=d_rate, g_learning_rate_used=g_rate)
    assert recorded == pytest.approx(expected)  # numbers are stored as doubles, flags as bools, names as strings
    assert set(run_hparams.HPARAM_FIELDS) >= {"loss", "g_steps", "gf_dim", "z_dim", "arch", "seed", "batch_size"}
    assert (recorded["loss"], recorded["batch_size"], recorded["g_steps"]) == (config.loss, config.batch_size,
                                                                                config.g_steps)


@pytest.mark.parametrize("name", ["default", "hinge"])
def test_final_metrics_are_the_last_steps_losses(runs, name):
    config = runs[name]
    with open(os.path.join(config.sample_path, "losses.csv"), newline="") as f:
        last = list(csv.DictReader(f))[-1]  # log_freq 1: the row of the last step
    accumulator = events(config)
    for key, tag in run_hparams.FINAL_METRICS:
        (final,) = accumulator.Scalars(tag)
        assert final.step == config.max_steps == int(last["step"])
        assert final.value == pytest.approx(float(last[key]), rel=1e-5)  # losses.csv keeps 6 digits


def post_json(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_tensorboard_hparams_dashboard_compares_the_runs(runs):
    default, hinge = runs["default"], runs["hinge"]
    with running_tensorboard(os.path.join(default.out_dir, default.summary_dir)) as base:
        experiment = post_json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        groups = post_json(f"{base}/data/plugin/hparams/session_groups",
                           {"experimentName": "", "startIndex": 0, "sliceSize": 10,
                            "allowedStatuses": ["STATUS_UNKNOWN"]})["sessionGroups"]
    infos = {info["name"]: info for info in experiment["hparamInfos"]}
    assert set(infos["loss"]["domainDiscrete"]) == {"non_saturating", "hinge"} and infos["loss"]["differs"]
    assert not infos["gf_dim"]["differs"]
    metric_tags = {info["name"]["tag"] for info in experiment["metricInfos"]}
    assert {tag for _, tag in run_hparams.FINAL_METRICS} | {FID_TAG} <= metric_tags
    by_loss = {group["hparams"]["loss"]: group for group in groups}
    assert set(by_loss) == {"non_saturating", "hinge"}
    for config in (default, hinge):
        group = by_loss[config.loss]
        assert group["hparams"]["batch_size"] == config.batch_size
        metrics = {value["name"]["tag"]: value for value in group["metricValues"]}
        final_loss = events(config).Scalars("final/d_loss")[0]
        assert metrics["final/d_loss"]["value"] == pytest.approx(final_loss.value)
        assert metrics["final/d_loss"]["trainingStep"] == config.max_steps
    fid = {value["name"]["tag"]: value for value in by_loss["hinge"]["metricValues"]}[FID_TAG]
    assert fid["value"] == pytest.approx(events(hinge).Scalars(FID_TAG)[-1].value) and fid["trainingStep"] == 2
    assert FID_TAG not in {value["name"]["tag"] for value in by_loss["non_saturating"]["metricValues"]}
