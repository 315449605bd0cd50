"""training/failure_policy.py: --on_collapse rollback (back to the newest good checkpoint, both learning rates
halved, kept across restarts) and --nan_policy.  NaN skipping under injected faults: test_faults.py."""

import dataclasses
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

import config as config_lib
from bench.faults.runs import checkpoint_values
from runtime.errors import CollapseDetected, UserError
from training import failure_policy, train
from training.checkpoints import (
    ROLLBACK_FILE,
    RollbackRecord,
    checkpoint_paths,
    checkpoint_step,
    read_rollback,
)
from training.watchdog import Alarm, CollapseWatchdog

v1 = tf.compat.v1


class AlarmAt:
    """Stands in for the watchdog: one alarm each time the run reaches `step`, until `times` alarms."""

    earliest_streak_start = None  # no streak is running between forced alarms

    def __init__(self, step, times=1):
        self.step, self.times, self.resets = step, times, 0

    def observe(self, step, stats):
        if step != self.step or not self.times:
            return []
        self.times -= 1
        return [Alarm("d_saturated", step, f"step {step}: forced alarm", since=step)]

    def reset(self):
        self.resets += 1


def rate_config(path, **overrides):
    """tiny_config with one learning rate for both networks (2e-4), so the halved rates are easy to state."""
    return tiny_config(path, **{"learning_rate": 2e-4, **overrides})


def forced_alarms(monkeypatch, step, times=1):
    dog = AlarmAt(step, times)
    monkeypatch.setattr(failure_policy, "CollapseWatchdog", lambda **kwargs: dog)
    return dog


def rollback_lines(caplog):
    return [r.getMessage() for r in caplog.records if "rolled back" in r.getMessage()
            or "no checkpoint to roll back to" in r.getMessage()]


def test_rollback_restores_every_checkpointed_variable_and_halves_both_rates(tmp_path, monkeypatch, caplog):
    config = rate_config(tmp_path, max_steps=4, ckpt_freq=2, on_collapse="rollback")
    dog = forced_alarms(monkeypatch, step=3)
    seen = {}
    roll_back = failure_policy.FailurePolicy._roll_back

    def checked_roll_back(loop, step, alarm):
        session, variables = loop.session, {v.op.name: v for v in v1.global_variables()}
        saved = checkpoint_values(loop.checkpoints.latest())
        before = {name: session.run(variables[name]) for name in saved}
        back_to = roll_back(loop, step, alarm)
        seen["back_to"], seen["saved"], seen["before"] = back_to, saved, before
        seen["after"] = {name: session.run(variables[name]) for name in saved}
        rates = [session.graph.get_tensor_by_name(f"{scope}_learning_rate:0") for scope in ("discriminator",
                                                                                           "generator")]
        seen["rates"] = session.run(rates, loop.rate_feed)
        return back_to

    monkeypatch.setattr(failure_policy.FailurePolicy, "_roll_back", checked_roll_back)
    with caplog.at_level(logging.WARNING, logger="dcgan"):
        assert train.train(config) == 4

    assert seen["back_to"] == 2 and int(seen["saved"]["global_step"]) == 2
    assert int(seen["before"]["global_step"]) == 3  # step 3 had changed the weights the checkpoint holds
    assert any(not np.array_equal(seen["before"][name], value) for name, value in seen["saved"].items()
               if name.startswith("discriminator/"))
    for name, value in seen["saved"].items():  # every checkpointed variable, bit for bit
        assert np.array_equal(seen["after"][name], value), name
    assert seen["rates"] == [np.float32(config.learning_rate) * np.float32(0.5)] * 2
    assert dog.resets == 1
    assert read_rollback(config.checkpoint_path) == RollbackRecord(0.5, 1)
    assert rollback_lines(caplog) == [
        f"watchdog: rolled back from step 3 to step 2 ({os.path.join(config.checkpoint_path, 'DCGAN.model-2')}); "
        "learning rates now D 0.0001 / G 0.0001 after 1 of at most 3 rollbacks"]


def test_restarted_run_keeps_the_lowered_rates(tmp_path, monkeypatch, caplog):
    # Rolled back at step 3 to step 2, trained step 3 again at half the rates, then restarted to step 4.
    rolled = rate_config(tmp_path / "rolled", max_steps=3, ckpt_freq=2, on_collapse="rollback")
    forced_alarms(monkeypatch, step=3)
    train.train(rolled)
    forced_alarms(monkeypatch, step=0)  # no more alarms
    with caplog.at_level(logging.WARNING, logger="dcgan"):
        assert train.train(rate_config(tmp_path / "rolled", max_steps=4, on_collapse="rollback")) == 4
    assert f"{os.path.join(rolled.checkpoint_path, ROLLBACK_FILE)}: learning rates now D 0.0001 / G 0.0001" in (
        caplog.text)
    # The same as 2 steps at the flags' rate, then steps 3 and 4 at half of it.
    train.train(rate_config(tmp_path / "halved", max_steps=2, ckpt_freq=2))
    halved = rate_config(tmp_path / "halved", max_steps=4, learning_rate=rolled.learning_rate / 2,
                         allow_recipe_change=True)
    train.train(halved)
    ours, reference = (checkpoint_values(checkpoint_paths(c.checkpoint_path)[0]) for c in (rolled, halved))
    assert set(ours) == set(reference) and int(ours["global_step"]) == 4
    for name, value in reference.items():
        assert np.array_equal(ours[name], value), name


def test_without_a_checkpoint_it_goes_on_from_the_current_step_at_half_the_rates(tmp_path, monkeypatch, caplog):
    config = rate_config(tmp_path, max_steps=3, ckpt_freq=100, on_collapse="rollback")
    forced_alarms(monkeypatch, step=2)
    with caplog.at_level(logging.WARNING, logger="dcgan"):
        assert train.train(config) == 3
    assert rollback_lines(caplog) == ["watchdog: no checkpoint to roll back to yet: continuing from step 2; "
                                      "learning rates now D 0.0001 / G 0.0001 after 1 of at most 3 rollbacks"]
    assert read_rollback(config.checkpoint_path) == RollbackRecord(0.5, 1)


def test_the_fourth_collapse_in_a_run_folder_stops_the_run(tmp_path, monkeypatch, caplog):
    config = rate_config(tmp_path, max_steps=3, ckpt_freq=1, on_collapse="rollback")
    forced_alarms(monkeypatch, step=2, times=4)
    with caplog.at_level(logging.WARNING, logger="dcgan"), pytest.raises(
            CollapseDetected, match=r"forced alarm; stopped without saving \(--on_collapse rollback, after 3 "
                                    r"rollbacks\)\. Last good checkpoint: .*DCGAN.model-1 \(step 1\)"):
        train.train(config)
    assert len(rollback_lines(caplog)) == 3
    assert read_rollback(config.checkpoint_path) == RollbackRecord(0.125, 3)
    # The count belongs to the folder: a restarted run stops at its first collapse.
    forced_alarms(monkeypatch, step=2)
    with pytest.raises(CollapseDetected, match="after 3 rollbacks"):
        train.train(config)


class RecordingWatchdog(CollapseWatchdog):
    """The real watchdog, keeping every step's scalars and every alarm it raised."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.observed, self.alarms = [], []

    def observe(self, step, stats):
        self.observed.append((step, dict(stats)))
        alarms = super().observe(step, stats)
        self.alarms += alarms
        return alarms


def test_forced_collapse_rolls_back_to_before_the_streak_that_fired(tmp_path, monkeypatch, caplog):
    # D at a huge learning rate, with combined BatchNorm, rejects every fake within ~30 steps (test_watchdog.py);
    # checkpoints every 10 steps are saved while D's saturation streak runs, and must not be restored.
    config = rate_config(tmp_path, d_learning_rate=0.3, d_batchnorm="combined", max_steps=60, ckpt_freq=10,
                         sample_freq=100, on_collapse="rollback")
    dogs = []
    monkeypatch.setattr(failure_policy, "CollapseWatchdog", lambda **kwargs: dogs.append(RecordingWatchdog(**kwargs))
                        or dogs[-1])
    with caplog.at_level(logging.WARNING, logger="dcgan"), pytest.raises(CollapseDetected, match="after 3 rollbacks"):
        train.train(config)  # halving the rates 3 times does not tame a D at 0.3: the run stops, unsaved
    lines = rollback_lines(caplog)
    landings = [int(line.split(" to step ")[1].split(" ")[0]) for line in lines]
    (dog,) = dogs
    assert len(landings) == 3 and len(dog.alarms) == 4
    for alarm, back_to in zip(dog.alarms, landings, strict=False):  # the 4th alarm stops the run
        assert alarm.since <= alarm.step - 19  # a streak of 20 steps (the watchdog's patience)
        assert back_to < alarm.since, (alarm, back_to)  # saved before the first bad step of the streak that fired
        # The restored weights are healthy: the step trained right after the rollback is not saturated.
        after = [stats for step, stats in dog.observed if step == back_to + 1]
        assert after and after[-1]["d_fake"] > 0.01 and after[-1]["d_real"] < 0.99
    record = read_rollback(config.checkpoint_path)
    assert record.rollbacks == 3 and record.learning_rate_scale == 0.5 ** 3


def test_the_checkpoint_before_a_running_streak_outlives_max_to_keep(tmp_path, monkeypatch):
    # A streak that has run for 4 checkpoints with --max_to_keep 2 would otherwise have had the
    # last checkpoint before it deleted, leaving a rollback nothing to go back to.
    dog = forced_alarms(monkeypatch, step=0)
    dog.earliest_streak_start = 3
    config = rate_config(tmp_path, max_steps=7, ckpt_freq=1, max_to_keep=2)
    train.train(config)
    assert [checkpoint_step(p) for p in checkpoint_paths(config.checkpoint_path)] == [7, 6, 2]
    dog.earliest_streak_start = None  # the streak cleared: the next save keeps --max_to_keep only
    train.train(dataclasses.replace(config, max_steps=8))
    assert [checkpoint_step(p) for p in checkpoint_paths(config.checkpoint_path)] == [8, 7]


def test_unknown_nan_policy_is_refused():
    with pytest.raises(UserError, match=r"^--nan_policy must be stop or skip \(got 'sometimes'\)$"):
        config_lib.resolve(config_lib.Config(nan_policy="sometimes"))
