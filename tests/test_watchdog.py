"""The collapse watchdog: fires on each kind of collapse, once, and stays quiet on a healthy run."""

import glob
import logging
import math
import os

import pytest
from conftest import tiny_config

from runtime.errors import CollapseDetected
from runtime.tf_runtime import tf
from training import train
from training.watchdog import MAX_NEAR_DUPLICATES, CollapseWatchdog

HEALTHY = {"d_loss": 1.1, "d_real": 0.7, "d_fake": 0.3, "diversity": 0.9, "near_duplicates": 0.02,
           "d_grad_norm": 1.0, "g_grad_norm": 2.0}


def watch(steps, warmup=0, **changes):
    """Alarms over `steps` steps of HEALTHY scalars with `changes` applied."""
    dog = CollapseWatchdog(probability_loss=True, cross_entropy_loss=True, warmup=warmup)
    alarms = []
    for step in range(1, steps + 1):
        alarms += dog.observe(step, dict(HEALTHY, **changes))
    return alarms


def test_quiet_on_healthy_scalars():
    assert watch(500) == []


@pytest.mark.parametrize("changes,kind,after", [
    ({"d_fake": 0.004}, "d_saturated", 20),
    ({"d_real": 0.995}, "d_saturated", 20),
    ({"d_loss": 2 * math.log(2) + 0.005, "d_real": 0.5, "d_fake": 0.5}, "d_not_learning", 200),
    ({"diversity": 0.2}, "low_diversity", 20),
    ({"near_duplicates": 0.5}, "near_duplicates", 20),
    ({"g_grad_norm": math.inf}, "exploding", 1),
])
def test_each_collapse_fires_once_after_its_patience(changes, kind, after):
    assert watch(after - 1, **changes) == []
    alarms = watch(after + 50, **changes)
    assert [(a.kind, a.step) for a in alarms] == [(kind, after)]


def test_a_gradient_spike_over_the_recent_median_fires():
    dog = CollapseWatchdog(probability_loss=True, cross_entropy_loss=True)
    for step in range(1, 31):
        assert dog.observe(step, HEALTHY) == []
    alarms = dog.observe(31, dict(HEALTHY, d_grad_norm=150.0))  # 150x the median of 1.0
    assert [a.kind for a in alarms] == ["exploding"] and "D gradient norm 150" in alarms[0].message


def test_alarm_rearms_after_the_condition_clears():
    dog = CollapseWatchdog(probability_loss=True, cross_entropy_loss=True)
    kinds = []
    for step in range(1, 101):
        stats = dict(HEALTHY, d_fake=0.001) if step <= 30 or step > 60 else HEALTHY
        kinds += [a.kind for a in dog.observe(step, stats)]
    assert kinds == ["d_saturated", "d_saturated"]


def test_low_diversity_and_near_duplicates_are_not_judged_during_warmup():
    assert watch(150, warmup=200, diversity=0.1, near_duplicates=1.0) == []


def test_near_duplicates_fire_above_their_limit_only():
    assert watch(100, near_duplicates=MAX_NEAR_DUPLICATES) == []
    alarms = watch(100, near_duplicates=0.6)
    assert [a.kind for a in alarms] == ["near_duplicates"] and "60% of fake pairs" in alarms[0].message


def test_losses_without_probabilities_are_not_judged_on_them():
    dog = CollapseWatchdog(probability_loss=False, cross_entropy_loss=False)
    saturated = dict(HEALTHY, d_fake=0.0, d_loss=2 * math.log(2))
    assert [a for step in range(1, 300) for a in dog.observe(step, saturated)] == []


def test_forced_collapse_is_reported_and_stops_with_on_collapse_stop(tmp_path, caplog):
    # D at a huge learning rate, with combined BatchNorm, rejects every fake within ~30 steps.
    collapsing = {"d_learning_rate": 0.3, "d_batchnorm": "combined", "max_steps": 60, "ckpt_freq": 100,
                  "sample_freq": 100}
    with caplog.at_level(logging.WARNING, logger="dcgan"):
        train.train(tiny_config(tmp_path / "warn", **collapsing))
    assert any("watchdog: step" in r.getMessage() and "saturated" in r.getMessage() for r in caplog.records)
    with pytest.raises(CollapseDetected, match="saturated.*stopped without saving"):
        train.train(tiny_config(tmp_path / "stop", on_collapse="stop", **collapsing))


def scalar_values(log_path, tag):
    """{step: value} of one scalar tag in a run's TensorBoard event files."""
    values = {}
    for path in glob.glob(os.path.join(log_path, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = value.simple_value
    return values


def test_healthy_tiny_run_raises_no_alarm_and_logs_the_diversity_scalars_every_step(tmp_path, caplog):
    config = tiny_config(tmp_path, max_steps=40, ckpt_freq=100, sample_freq=100)
    with caplog.at_level(logging.WARNING, logger="dcgan"):
        train.train(config)
    assert not [r.getMessage() for r in caplog.records if "watchdog" in r.getMessage()]
    near_duplicates = scalar_values(config.log_path, "watchdog/near_duplicate_fraction")
    assert sorted(near_duplicates) == list(range(1, 41))  # --summary_freq 1
    assert all(0.0 <= value <= 1.0 for value in near_duplicates.values())
    assert sorted(scalar_values(config.log_path, "watchdog/diversity_fake_over_real")) == list(range(1, 41))
