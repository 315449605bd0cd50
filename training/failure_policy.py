"""What the loop does when training goes wrong, in one object the loop consults after every step.

Three policies, kept together because they share what they need (the session, the checkpoints, the
rollback record) and one way of saying where a stopped run stands ("Last good checkpoint: ..."):

  non-finite updates (--nan_policy)  a step whose update was skipped (non-finite loss or gradient:
                   model.py's guarded apply) stops the run, or with `skip` is counted and stops it at
                   NAN_SKIP_LIMIT in a row;
  collapse (--watchdog, --on_collapse)  training/watchdog.py's alarms are logged, written as TensorBoard
                   scalars and acted on: warn, stop, or roll back to the last checkpoint saved before the
                   alarm's streak began with both learning rates lowered by ROLLBACK_RATE_FACTOR (at most
                   ROLLBACK_LIMIT times per run folder; the lowered rates are kept in ROLLBACK_FILE);
  finite weights   no checkpoint, newest or best, is saved while a variable holds NaN/Inf.

The loop (training/train.py) calls `after_step` once per step and `check_finite` before each save.
"""

import logging
import os
from typing import NamedTuple

from config import LOSSES_WITH_TARGETS, NAN_SKIP_LIMIT, ROLLBACK_LIMIT, ROLLBACK_RATE_FACTOR
from runtime.errors import CollapseDetected, TrainingDiverged
from runtime.tf_runtime import tf
from training.checkpoints import ROLLBACK_FILE, RollbackRecord, checkpoint_step, read_rollback, write_rollback
from training.losses import LOSSES
from training.watchdog import CollapseWatchdog

v1 = tf.compat.v1
log = logging.getLogger("dcgan")


class StepOutcome(NamedTuple):
    """One training step as the loop ran it: the fetched values (d_loss, g_loss, d_real, d_fake, ...),
    whether every update was applied (False: one had a non-finite loss or gradient), and the serialized
    summaries of its runs (empty when the step writes none)."""

    results: dict
    all_applied: bool
    summaries: list


def restore_and_reposition(session, model, checkpoints, batches, before=None):
    """Restores the newest good checkpoint (saved before step `before`, when given;
    returns its path, None if there is none) and starts the input stream where that
    checkpoint left it, so a resumed or rolled-back run reads what the uninterrupted
    run would have read."""
    restored = checkpoints.restore(session, before=before)
    batches.initialize(session, start=int(session.run(model.images_seen)))
    return restored


def last_good_checkpoint(checkpoints):
    """The newest checkpoint and its step, for the one line that ends a failed run."""
    latest = checkpoints.latest()
    return f"{latest} (step {checkpoint_step(latest)})" if latest else "none (nothing was saved yet)"


class FailurePolicy:
    """--nan_policy, the watchdog with --on_collapse, and the finite-weights check of one run."""

    def __init__(self, config, model, checkpoints, batches):
        self.config, self.model, self.checkpoints, self.batches = config, model, checkpoints, batches
        self.session = None
        self.watchdog = CollapseWatchdog(probability_loss=config.loss in LOSSES_WITH_TARGETS,
                                         cross_entropy_loss=LOSSES[config.loss].cross_entropy,
                                         ) if config.watchdog else None
        self.skipped = self.skipped_in_a_row = 0  # steps with a non-finite update (--nan_policy skip)
        self.rollback = read_rollback(config.checkpoint_path)  # --on_collapse rollback's lowered rates, if any

    def start(self, session):
        """Binds the run's session; says so when earlier rollbacks in this folder lowered the rates."""
        self.session = session
        if self.rollback.rollbacks:
            log.warning("%s: %s; delete it to train at the flags' rates",
                        os.path.join(self.config.checkpoint_path, ROLLBACK_FILE), self._rates_description())

    @property
    def rate_feed(self):
        """The feed of every training run: the learning-rate factor of earlier rollbacks (the graph's default is 1)."""
        scale = self.rollback.learning_rate_scale
        return {self.model.learning_rate_scale: scale} if scale != 1 else None

    @property
    def earliest_streak_start(self):
        """The first step of the watchdog's oldest running streak (None: none, or no watchdog): a save
        keeps the checkpoint before it, which a rollback may need."""
        return self.watchdog.earliest_streak_start if self.watchdog else None

    def after_step(self, step, outcome, writer):
        """Judges the step that brought the run to `step`; returns the step training
        continues from (an earlier one after a rollback).  A step with a skipped update
        stops the run before its summaries are written, or is counted (--nan_policy skip);
        then the watchdog reads its scalars."""
        self._count_non_finite(step, outcome.all_applied, outcome.results["d_loss"], outcome.results["g_loss"])
        for summary in outcome.summaries:
            writer.add_summary(summary, step)
        return self._watch(step, outcome.results, writer) if self.watchdog else step

    def check_finite(self, step):
        """No checkpoint, newest or best, may hold a NaN/Inf weight."""
        finite = self.session.run(self.model.variables_finite)
        bad = sorted(name for name, ok in finite.items() if not ok)
        if bad:  # e.g. a BatchNorm moving average that averaged a non-finite batch
            raise self._diverged(f"step {step}: {len(bad)} variables hold NaN/Inf (first {bad[0]})")

    def _rates_description(self):
        d_rate, g_rate = (rate * self.rollback.learning_rate_scale for rate in self.config.learning_rates())
        return (f"learning rates now D {d_rate:.3g} / G {g_rate:.3g} after {self.rollback.rollbacks} of at most "
                f"{ROLLBACK_LIMIT} rollbacks")

    def _diverged(self, what):
        return TrainingDiverged(f"{what}; stopped without saving. Last good checkpoint: "
                                f"{last_good_checkpoint(self.checkpoints)}. Try a lower --learning_rate")

    def _collapsed(self, alarm, why):
        return CollapseDetected(f"watchdog: {alarm.message}; stopped without saving ({why}). "
                                f"Last good checkpoint: {last_good_checkpoint(self.checkpoints)}")

    def _count_non_finite(self, step, all_applied, d_loss, g_loss):
        """Raises TrainingDiverged for a step with a skipped (non-finite) update,
        unless --nan_policy skip allows it: fewer than NAN_SKIP_LIMIT in a row."""
        if all_applied:
            self.skipped_in_a_row = 0
            return
        self.skipped += 1
        self.skipped_in_a_row += 1
        what = f"step {step}: non-finite loss or gradient (d_loss={d_loss} g_loss={g_loss})"
        if self.config.nan_policy != "skip":
            raise self._diverged(what)
        if self.skipped_in_a_row >= NAN_SKIP_LIMIT:
            raise self._diverged(f"{what}, {self.skipped_in_a_row} steps in a row")
        log.warning("%s: update skipped (%d steps skipped so far, %d in a row; stopping at %d in a row)",
                    what, self.skipped, self.skipped_in_a_row, NAN_SKIP_LIMIT)

    def _watch(self, step, results, writer):
        """Reports the watchdog's alarms and acts on the first as --on_collapse says;
        returns the step training continues from (an earlier one after a rollback)."""
        alarms = self.watchdog.observe(step, results)
        for alarm in alarms:
            log.warning("watchdog: %s", alarm.message)
            writer.add_summary(v1.Summary(value=[v1.Summary.Value(tag=f"watchdog/{alarm.kind}", simple_value=1.0)]),
                               step)
        if alarms and self.config.on_collapse == "stop":
            raise self._collapsed(alarms[0], "--on_collapse stop")
        if alarms and self.config.on_collapse == "rollback":
            return self._roll_back(step, alarms[0])
        return step

    def _roll_back(self, step, alarm):
        """--on_collapse rollback: restores the newest checkpoint saved before the
        streak that raised `alarm` began (checkpoints are saved during a streak
        too, and those may hold the collapse already), or, with none, keeps the
        current weights; lowers both learning rates and forgets the watchdog's
        streaks; returns the step training continues from.  The lowered rates are
        recorded beside the checkpoints before training on."""
        if self.rollback.rollbacks >= ROLLBACK_LIMIT:
            raise self._collapsed(alarm, f"--on_collapse rollback, after {ROLLBACK_LIMIT} rollbacks")
        restored = restore_and_reposition(self.session, self.model, self.checkpoints, self.batches,
                                          before=alarm.since)
        self.rollback = RollbackRecord(self.rollback.learning_rate_scale * ROLLBACK_RATE_FACTOR,
                                       self.rollback.rollbacks + 1)
        write_rollback(self.config.checkpoint_path, self.rollback)
        self.watchdog.reset()
        if not restored:
            log.warning("watchdog: no checkpoint to roll back to yet: continuing from step %d; %s", step,
                        self._rates_description())
            return step
        back_to = int(self.session.run(self.model.global_step))
        log.warning("watchdog: rolled back from step %d to step %d (%s); %s", step, back_to, restored,
                    self._rates_description())
        return back_to
