"""The training loop: session, resume, progress, samples, checkpoints, summaries.

Kept apart from `model.py` (which only builds the graph) in the manner of
NVlabs/stylegan's training loop.  A run is never lost: it holds its checkpoint
folder's lock, resumes from the newest complete checkpoint, saves on Ctrl-C /
SIGTERM, never saves a NaN/Inf weight (--nan_policy stops, or skips updates
with a non-finite loss or gradient), and ends with one line, its last
checkpoint intact, when the disk is full or read-only.
"""

import contextlib
import csv
import dataclasses
import logging
import math
import os
import signal
import threading
import time

import data
import evaluation
import utils
from checkpoints import Checkpoints, checkpoint_step
from config import NAN_SKIP_LIMIT
from errors import TrainingDiverged, UserError
from model import DCGAN, fixed_z, sample_labels
from tf_runtime import session_config, tf

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

LOSS_COLUMNS = ("step", "d_loss", "g_loss", "d_real", "d_fake")


def format_duration(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def image_summary(tag, image):
    """One TensorBoard image from a uint8 HxWxC array: the same grid as the PNG,
    under a single tag (tf.summary.image would make one tag per sample)."""
    height, width, channels = image.shape
    encoded = v1.Summary.Image(height=height, width=width, colorspace=channels,
                               encoded_image_string=utils.encode_png(image))
    return v1.Summary(value=[v1.Summary.Value(tag=tag, image=encoded)])


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


@contextlib.contextmanager
def _as_os_error():
    """Re-raises the summary writer's failures as the OSError every other write raises."""
    try:
        yield
    except (RuntimeError, tf.errors.OpError) as e:
        raise OSError(str(e).splitlines()[0]) from None


@contextlib.contextmanager
def _summary_thread_quiet():
    """Silences TF's own report of a failed event write, a thread traceback and
    an error log line: SummaryWriter re-raises the failure and the loop reports
    it in one line."""
    excepthook, tf_logger = threading.excepthook, tf.get_logger()

    def hook(args):
        if getattr(args.thread, "name", None) != "EventLoggerThread":
            excepthook(args)

    def keep(record):
        return not record.getMessage().startswith("EventFileWriter writer thread error")

    threading.excepthook = hook
    tf_logger.addFilter(keep)
    try:
        yield
    finally:
        threading.excepthook = excepthook
        tf_logger.removeFilter(keep)


class SummaryWriter(v1.summary.FileWriter):
    """TensorBoard's FileWriter, failing like every other output: with OSError.

    TF writes events on a background thread; when a write fails (full disk,
    read-only folder) the next call re-raises it as a RuntimeError, and a
    folder that cannot be created raises a tf.errors.OpError.
    """

    def __init__(self, *args):
        with _as_os_error():
            super().__init__(*args)

    def add_summary(self, *args):
        with _as_os_error():
            super().add_summary(*args)

    def close(self):
        with _as_os_error():
            super().close()


class LossHistory:
    """Appends losses to samples/<run>/losses.csv and plots them as a PNG."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "losses.csv")
        self.plot_path = os.path.join(directory, "loss_curves.png")

    def append(self, row):
        new = not os.path.exists(self.path)
        try:
            with open(self.path, "a", newline="") as f:
                writer = csv.writer(f)
                if new:
                    writer.writerow(LOSS_COLUMNS)
                writer.writerow([row[0]] + [f"{v:.6g}" for v in row[1:]])
        except OSError as e:  # raised at flush/close it names no file: name it
            raise OSError(e.errno, e.strerror, self.path) from None

    def plot(self):
        if not os.path.exists(self.path):
            return
        with open(self.path, newline="") as f:
            rows = {int(r["step"]): r for r in csv.DictReader(f)}  # a resumed run overwrites later steps
        steps = sorted(rows)
        column = {name: [float(rows[s][name]) for s in steps] for name in LOSS_COLUMNS[1:]}
        utils.plot_curves(self.plot_path, steps, {
            "losses": {"d_loss": column["d_loss"], "g_loss": column["g_loss"]},
            "discriminator output": {"D(x)": column["d_real"], "D(G(z))": column["d_fake"]},
        })


def train(config):
    """Trains until --epoch/--max_steps; returns the final global step."""
    source = data.open_source(config)
    config = dataclasses.replace(config, c_dim=source.c_dim)
    log.info("data: %s", source.description)
    with tf.Graph().as_default():
        v1.set_random_seed(config.seed)
        batches = data.input_batches(source, config)
        model = DCGAN(config, batches.images, batches.labels)
        checkpoints = Checkpoints(config.checkpoint_path, model.saver, config.architecture())
        checkpoints.check_architecture()
        with checkpoints.exclusive(), v1.Session(config=session_config(config.xla)) as session:
            session.run(v1.global_variables_initializer())
            session.run(batches.initializer, batches.feed_dict)
            restored = checkpoints.restore(session)
            if restored:
                log.info("resumed from %s", restored)
            return _Loop(config, source, model, checkpoints, session).run()


class _Loop:
    def __init__(self, config, source, model, checkpoints, session):
        self.config, self.model, self.checkpoints, self.session = config, model, checkpoints, session
        self.source_description = source.description
        batches_per_epoch = source.num_examples // config.batch_size
        self.steps_per_epoch = max(1, batches_per_epoch // config.d_steps)
        self.total_steps = config.max_steps or config.epoch * self.steps_per_epoch
        self.total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.sample_z = fixed_z(config.n_samples, config, config.seed)
        self.sample_labels = sample_labels(config.n_samples, config)
        self.history = LossHistory(config.sample_path)
        self.last_saved_step = None
        self.skipped = self.skipped_in_a_row = 0  # steps with a non-finite update (--nan_policy skip)
        self.quality = evaluation.QualityMeter(config) if config.fid_every else None
        self.best = evaluation.BestCheckpoint(config, v1.train.Saver(max_to_keep=1)) if config.keep_best else None

    def _saved_description(self):
        latest = self.checkpoints.latest()
        return f"{latest} (step {checkpoint_step(latest)})" if latest else "none (nothing was saved yet)"

    def _diverged(self, what):
        return TrainingDiverged(f"{what}; stopped without saving. Last good checkpoint: {self._saved_description()}. "
                                "Try a lower --learning_rate")

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
                            f"Last good checkpoint: {self._saved_description()}") from None

    def run(self):
        config, session = self.config, self.session
        step = int(session.run(self.model.global_step))
        self.last_saved_step = step
        log.info("training %s: step %d of %d (%d per epoch), batch %d", config.run_name, step,
                 self.total_steps, self.steps_per_epoch, config.batch_size)
        with self._write_errors(), _summary_thread_quiet():
            os.makedirs(config.sample_path, exist_ok=True)
            writer = SummaryWriter(config.log_path, session.graph if step == 0 else None)
            try:
                with StopRequest() as stop:
                    step = self._steps(step, writer, stop)
                writer.close()
            except tf.errors.OutOfRangeError:
                # The repeated dataset ends only if every file failed to decode (ignore_errors dropped them all).
                raise UserError(
                    f"{self.source_description}: no image could be decoded; check the files, "
                    "or pass --input_fname_pattern to select the real images"
                ) from None
            finally:
                with contextlib.suppress(OSError):
                    writer.close()  # leaving on an error: a second failure would only hide the first
            if stop.signal_name:
                log.info("interrupted by %s at step %d: saving", stop.signal_name, step)
            self._checkpoint(step)
        log.info("done at step %d; checkpoint %s", step, self._saved_description())
        return step

    def _steps(self, step, writer, stop):
        config, model, session = self.config, self.model, self.session
        window_start, window_step = time.time(), step
        while step < self.total_steps and not stop.signal_name:
            want_summary = (step + 1) % config.summary_freq == 0
            applied = []  # each train op evaluates to whether its (finite) update was applied
            for _ in range(config.d_steps):
                d_results = session.run([model.d_train_op, model.d_loss, model.d_real]
                                        + ([model.d_summary] if want_summary else []))
                applied.append(d_results[0])
            for _ in range(config.g_steps):
                g_results = session.run([model.g_train_op, model.g_loss, model.d_fake]
                                        + ([model.g_summary] if want_summary else []))
                applied.append(g_results[0])
            d_loss, d_real, g_loss, d_fake = d_results[1], d_results[2], g_results[1], g_results[2]
            self._count_non_finite(step + 1, all(applied), d_loss, g_loss)
            step = int(session.run(model.advance_step))
            if want_summary:
                writer.add_summary(d_results[3], step)
                writer.add_summary(g_results[3], step)
            if step % config.log_freq == 0 or step == self.total_steps:
                self.history.append((step, d_loss, g_loss, d_real, d_fake))
                now = time.time()
                steps_per_second = max((step - window_step) / max(now - window_start, 1e-9), 1e-9)
                window_start, window_step = now, step
                self._log_progress(step, steps_per_second, d_loss, g_loss, d_real, d_fake)
            if step % config.sample_freq == 0:
                self._sample(step, writer)
            if config.fid_every and step % config.fid_every == 0:
                self._measure_quality(step, writer)
            if step % config.ckpt_freq == 0:
                self._checkpoint(step)
        return step

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

    def _log_progress(self, step, steps_per_second, d_loss, g_loss, d_real, d_fake):
        config = self.config
        epoch, batch = divmod(step - 1, self.steps_per_epoch)
        images_per_second = steps_per_second * config.batch_size * config.d_steps
        eta = format_duration((self.total_steps - step) / steps_per_second)
        log.info(
            "epoch %d/%d batch %d/%d step %d | %.1f img/s ETA %s | d_loss %.4f g_loss %.4f D(x) %.3f D(G(z)) %.3f",
            epoch + 1, self.total_epochs, batch + 1, self.steps_per_epoch, step, images_per_second, eta,
            d_loss, g_loss, d_real, d_fake,
        )

    def _measure_quality(self, step, writer):
        results = self.quality.measure(self.session, self.model.sampler)
        writer.add_summary(evaluation.metric_summary(results), step)
        log.info("step %d quality: FID %.3f KID %.4g IS %.3f precision %.3f recall %.3f [%s, n=%d]", step,
                 results["fid"], results["kid_mean"], results["is_mean"], results["precision"], results["recall"],
                 results["extractor"], results["n_samples"])
        if self.best is not None:
            self._check_finite(step)
            self.best.offer(self.session, step, results)

    def _sample(self, step, writer):
        sampler = self.model.sampler
        images = self.session.run(sampler.images_uint8, sampler.feed(self.sample_z, self.sample_labels))
        epoch, batch = divmod(step - 1, self.steps_per_epoch)
        path = os.path.join(self.config.sample_path, f"train_{epoch:02d}_{batch + 1:04d}.png")
        grid = utils.save_grid(images, path)
        writer.add_summary(image_summary("G_z", grid), step)

    def _check_finite(self, step):
        """No checkpoint, newest or best, may hold a NaN/Inf weight."""
        finite = self.session.run(self.model.variables_finite)
        bad = sorted(name for name, ok in finite.items() if not ok)
        if bad:  # e.g. a BatchNorm moving average that averaged a non-finite batch
            raise self._diverged(f"step {step}: {len(bad)} variables hold NaN/Inf (first {bad[0]})")

    def _checkpoint(self, step):
        if step == self.last_saved_step and self.checkpoints.latest():
            return
        self._check_finite(step)
        path = self.checkpoints.save(self.session, step)
        self.last_saved_step = step
        self.history.plot()
        log.info("saved %s", path)
