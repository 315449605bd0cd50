"""The training loop: session, resume, progress, samples, checkpoints.

Kept apart from `model.py` (which only builds the graph) in the manner of
NVlabs/stylegan's training loop.  A run is never lost: it holds its checkpoint
folder's lock, resumes from the newest complete checkpoint, saves on Ctrl-C /
SIGTERM, never saves a NaN/Inf weight (--nan_policy stops, or skips updates
with a non-finite loss or gradient), and ends with one line, its last
checkpoint intact, when the disk is full or read-only.  What to do when a step
goes wrong is training/failure_policy.py's; what the run records besides
checkpoints (TensorBoard events, the loss history) is training/summaries.py's.
"""

import contextlib
import dataclasses
import logging
import math
import os
import signal
import time

import utils
from datasets import pipeline as data
from evaluation import quality as evaluation
from model import DCGAN
from runtime.errors import UserError
from runtime.tf_runtime import session_config, tf
from training import hparams as run_hparams
from training import precision, summaries
from training import replicas as replicas_lib
from training.checkpoints import Checkpoints
from training.failure_policy import FailurePolicy, StepOutcome, last_good_checkpoint, restore_and_reposition
from training.inference import fixed_z, sample_labels

v1 = tf.compat.v1
log = logging.getLogger("dcgan")


def format_duration(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class StopRequest:
    """SIGINT/SIGTERM handler that asks the loop to stop after the current step.

    A flag rather than an exception: an exception raised inside a logging call
    or a checkpoint write could be swallowed or leave it half done.  A second
    Ctrl-C raises KeyboardInterrupt at once for a user who really wants out.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signal_name and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        log.info("%s received: stopping after this step (Ctrl-C again to abort without saving)", self.signal_name)

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc_info):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


class Schedule:
    """Steps, epochs and images: one step is `d_steps` D updates, each on a
    fresh real batch, and G's updates read no data, so a step consumes
    exactly d_steps x batch_size examples and an epoch is a true pass."""

    def __init__(self, config, num_examples):
        self.images_per_step = config.batch_size * config.d_steps
        self.steps_per_epoch = max(1, num_examples // self.images_per_step)
        self.total_steps = config.max_steps or config.epoch * self.steps_per_epoch
        self.total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        # Examples the input stream must hold: every step's, plus one epoch of
        # slack for batches that straddle an epoch boundary.
        self.input_epochs = math.ceil(self.total_steps * self.images_per_step / num_examples) + 1


def train(config):
    """Trains until --epoch/--max_steps; returns the final global step."""
    replicas = replicas_lib.build(config)
    if replicas.distributed:
        log.info("training on %s", replicas.describe())
    source = data.open_source(config)
    config = dataclasses.replace(config, c_dim=source.c_dim)
    log.info("data: %s", source.description)
    config = precision.training_precision(config)
    schedule = Schedule(config, source.num_examples)
    with tf.Graph().as_default() as graph, replicas.worker_outputs(config) as outputs:
        v1.set_random_seed(config.seed)
        batches = data.input_batches(source, config, epochs=schedule.input_epochs, replicas=replicas)
        model = DCGAN(config, batches.images, batches.labels, replicas)
        # Every worker restores from the real checkpoints; a worker other than the
        # chief saves (it must: saving reads every worker's BatchNorm averages)
        # and writes samples and summaries in a scratch folder of its own.
        checkpoints = Checkpoints(config.checkpoint_path, model.saver, config.architecture(), config.recipe())
        checkpoints.check_architecture()
        checkpoints.check_recipe(config.allow_recipe_change)
        saving = (checkpoints if outputs is config
                  else Checkpoints(outputs.checkpoint_path, model.saver, config.architecture(), config.recipe()))
        loop = _Loop(outputs, source, schedule, model, saving, batches)
        # From here on nothing may add an op: a graph that grows inside the loop
        # leaks memory over a long run without any error (MonitoredTrainingSession's rule).
        graph.finalize()
        options = replicas.session_config(session_config(config.xla, config.precision), config.worker_timeout)
        with saving.exclusive(), replicas.worker_failures(checkpoints.latest), replicas.session(options) as session:
            replicas.check_devices(session)
            session.run(model.initializer)
            restored = restore_and_reposition(session, model, checkpoints, batches)
            if restored:
                log.info("resumed from %s (%d images seen)", restored, session.run(model.images_seen))
            return loop.run(session, saved=restored is not None)


def step_plan(config, model):
    """The (fetches, summary) runs of one training step, in order: d_steps D
    updates then g_steps G updates, the last D and first G as one fused run with
    --fused_update.  Benchmarks and tests run a step through this too, so they
    time and check what training runs."""
    fused = 1 if config.fused_update else 0
    return ([(model.d_fetches, model.d_summary)] * (config.d_steps - fused)
            + [(model.fused_fetches, model.fused_summary)] * fused
            + [(model.g_fetches, model.g_summary)] * (config.g_steps - fused))


class _Loop:
    """One run's steps: each runs the step plan, lets the failure policy judge it,
    then logs, samples, measures and saves on their schedules."""

    def __init__(self, config, source, schedule, model, checkpoints, batches):
        self.config, self.model, self.checkpoints = config, model, checkpoints
        self.session = None
        self.source_description = source.description
        self.schedule = schedule
        self.steps_per_epoch, self.total_steps = schedule.steps_per_epoch, schedule.total_steps
        self.total_epochs = schedule.total_epochs
        self.policy = FailurePolicy(config, model, checkpoints, batches)
        self.sample_z = fixed_z(config.n_samples, config, config.seed)
        self.sample_labels = sample_labels(config.n_samples, config)
        self.history = summaries.LossHistory(config.sample_path, config.log_path)
        self.last_saved_step = None
        self.quality = evaluation.QualityMeter(config) if config.fid_every else None
        self.best = evaluation.BestCheckpoint(config, v1.train.Saver(max_to_keep=1)) if config.keep_best else None

    @contextlib.contextmanager
    def _write_errors(self):
        """A failed write (full disk, read-only folder) ends the run in one line;
        saves write the new checkpoint before touching older ones, so the last
        one named is intact."""
        try:
            yield
        except OSError as e:
            raise UserError(f"cannot write {e.filename or 'output'}: {e.strerror or e}; free some space or make "
                            "the folder writable and run again. "
                            f"Last good checkpoint: {last_good_checkpoint(self.checkpoints)}") from None

    def run(self, session, saved):
        """Trains from the session's step on; `saved`: that step is already in a checkpoint."""
        self.session = session
        config = self.config
        step = int(session.run(self.model.global_step))
        self.last_saved_step = step if saved else None
        log.info("training %s: step %d of %d (%d per epoch), batch %d", config.run_name, step,
                 self.total_steps, self.steps_per_epoch, config.batch_size)
        self.policy.start(session)
        with self._write_errors():
            os.makedirs(config.sample_path, exist_ok=True)
            try:
                with (summaries.run_writer(config, session.graph if step == 0 else None, step) as writer,
                      StopRequest() as stop):
                    step = self._steps(step, writer, stop)
            except tf.errors.OutOfRangeError:
                # The repeated dataset ends only if every file failed to decode (ignore_errors dropped them all).
                raise UserError(
                    f"{self.source_description}: no image could be decoded; check the files, "
                    "or pass --input_fname_pattern to select the real images"
                ) from None
            if stop.signal_name:
                log.info("interrupted by %s at step %d: saving", stop.signal_name, step)
            self._checkpoint(step)
        log.info("done at step %d; checkpoint %s", step, last_good_checkpoint(self.checkpoints))
        return step

    def _steps(self, step, writer, stop):
        config = self.config
        plan = step_plan(config, self.model)
        window_start, window_step = time.time(), step
        results = None
        while step < self.total_steps and not stop.signal_name:
            outcome = self._run_step_plan(plan, want_summary=(step + 1) % config.summary_freq == 0)
            results = outcome.results
            step += 1
            if (continue_from := self.policy.after_step(step, outcome, writer)) != step:
                # rolled back: continue_from is the step of the checkpoint just restored
                step = window_step = self.last_saved_step = continue_from
                window_start = time.time()
                continue
            if step % config.log_freq == 0 or step == self.total_steps:
                self.history.append((step, *(results[k] for k in summaries.LOSS_COLUMNS[1:])))
                now = time.time()
                steps_per_second = max((step - window_step) / max(now - window_start, 1e-9), 1e-9)
                window_start, window_step = now, step
                self._log_progress(step, steps_per_second, results)
            if step % config.sample_freq == 0:
                self._sample(step, writer)
            if config.fid_every and step % config.fid_every == 0:
                self._measure_quality(step, writer)
            if step % config.ckpt_freq == 0:
                self._checkpoint(step)
        if results is not None:  # the HParams dashboard's metrics: the values the run stopped at
            writer.add_summary(run_hparams.final_metrics_summary(results), step)
        return step

    def _run_step_plan(self, plan, want_summary):
        """Runs one step (step_plan's runs, at the rates of earlier rollbacks) and advances the step counter."""
        results, step_summaries, applied = {}, [], []
        for fetches, summary in plan:
            out = self.session.run({"values": fetches, "summary": summary} if want_summary else {"values": fetches},
                                   self.policy.rate_feed)
            applied += [out["values"][k] for k in ("d_applied", "g_applied") if k in out["values"]]
            results.update(out["values"])
            step_summaries += [out["summary"]] if want_summary else []
        self.session.run(self.model.advance_step)
        return StepOutcome(results, all(applied), step_summaries)

    def _log_progress(self, step, steps_per_second, results):
        epoch, batch = divmod(step - 1, self.steps_per_epoch)
        images_per_second = steps_per_second * self.schedule.images_per_step
        eta = format_duration((self.total_steps - step) / steps_per_second)
        log.info(
            "epoch %d/%d batch %d/%d step %d | %.1f kimg %.1f img/s ETA %s | d_loss %.4f g_loss %.4f "
            "D(x) %.3f D(G(z)) %.3f",
            epoch + 1, self.total_epochs, batch + 1, self.steps_per_epoch, step,
            step * self.schedule.images_per_step / 1000, images_per_second, eta,
            results["d_loss"], results["g_loss"], results["d_real"], results["d_fake"],
        )

    def _measure_quality(self, step, writer):
        results = self.quality.measure(self.session, self.model.sampler)
        writer.add_summary(evaluation.metric_summary(results), step)
        log.info("step %d quality: %s", step, evaluation.summary_line(results))
        if self.best is not None:
            self.policy.check_finite(step)
            self.best.offer(self.session, step, results)

    def _sample(self, step, writer):
        sampler = self.model.sampler
        images = self.session.run(sampler.images_uint8, sampler.feed(self.sample_z, self.sample_labels))
        epoch, batch = divmod(step - 1, self.steps_per_epoch)
        path = os.path.join(self.config.sample_path, f"train_{epoch:02d}_{batch + 1:04d}.png")
        grid = utils.save_grid(images, path)
        writer.add_summary(summaries.image_summary("G_z", grid), step)

    def _checkpoint(self, step):
        if step == self.last_saved_step:
            return
        self.policy.check_finite(step)
        path = self.checkpoints.save(self.session, step, keep_before=self.policy.earliest_streak_start)
        self.last_saved_step = step
        self.history.plot()
        log.info("saved %s", path)
