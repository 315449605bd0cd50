"""The training loop: session, resume, progress, samples, checkpoints, summaries.

Kept apart from `model.py` (which only builds the graph) in the manner of
NVlabs/stylegan's training loop.  A run is never lost: it resumes from the
newest complete checkpoint, saves on Ctrl-C / SIGTERM, and stops on a NaN loss
before the bad weights reach disk.
"""

import csv
import dataclasses
import logging
import math
import os
import signal
import time

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2

import data
import utils
from checkpoints import Checkpoints, checkpoint_step
from errors import TrainingDiverged
from model import DCGAN, fixed_z, sample_labels

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

LOSS_COLUMNS = ("step", "d_loss", "g_loss", "d_real", "d_fake")


def session_config(config):
    """Soft placement so the same graph runs on CPU or GPU; XLA if asked."""
    session = v1.ConfigProto(allow_soft_placement=True)
    session.gpu_options.allow_growth = True
    # Grappler's remapper fails on the D graph here ("Mutation::Apply error") and
    # the failed attempt made each step ~1.8x slower (bench/step_time.py).
    session.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
    if config.xla:
        session.graph_options.optimizer_options.global_jit_level = v1.OptimizerOptions.ON_1
    return session


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


class LossHistory:
    """Appends losses to samples/<run>/losses.csv and plots them as a PNG."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "losses.csv")
        self.plot_path = os.path.join(directory, "loss_curves.png")

    def append(self, row):
        new = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(LOSS_COLUMNS)
            writer.writerow([row[0]] + [f"{v:.6g}" for v in row[1:]])

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
        with v1.Session(config=session_config(config)) as session:
            session.run(v1.global_variables_initializer())
            session.run(batches.initializer, batches.feed_dict)
            restored = checkpoints.restore(session)
            if restored:
                log.info("resumed from %s", restored)
            return _Loop(config, source, model, checkpoints, session).run()


class _Loop:
    def __init__(self, config, source, model, checkpoints, session):
        self.config, self.model, self.checkpoints, self.session = config, model, checkpoints, session
        batches_per_epoch = source.num_examples // config.batch_size
        self.steps_per_epoch = max(1, batches_per_epoch // config.d_steps)
        self.total_steps = config.max_steps or config.epoch * self.steps_per_epoch
        self.total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.sample_z = fixed_z(config.n_samples, config, config.seed)
        self.sample_labels = sample_labels(config.n_samples, config)
        self.history = LossHistory(config.sample_path)
        self.last_saved_step = None

    def _saved_description(self):
        latest = self.checkpoints.latest()
        return f"{latest} (step {checkpoint_step(latest)})" if latest else "none (nothing was saved yet)"

    def run(self):
        config, session = self.config, self.session
        os.makedirs(config.sample_path, exist_ok=True)
        step = int(session.run(self.model.global_step))
        self.last_saved_step = step
        writer = v1.summary.FileWriter(config.log_path, session.graph if step == 0 else None)
        log.info("training %s: step %d of %d (%d per epoch), batch %d", config.run_name, step,
                 self.total_steps, self.steps_per_epoch, config.batch_size)
        try:
            with StopRequest() as stop:
                step = self._steps(step, writer, stop)
        finally:
            writer.close()
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
            for _ in range(config.d_steps):
                d_results = session.run([model.d_train_op, model.d_loss, model.d_real]
                                        + ([model.d_summary] if want_summary else []))
            for _ in range(config.g_steps):
                g_results = session.run([model.g_train_op, model.g_loss, model.d_fake]
                                        + ([model.g_summary] if want_summary else []))
            d_loss, d_real, g_loss, d_fake = d_results[1], d_results[2], g_results[1], g_results[2]
            if not all(np.isfinite([d_loss, g_loss])):
                raise TrainingDiverged(
                    f"step {step + 1}: d_loss={d_loss} g_loss={g_loss}; stopped without saving. "
                    f"Last good checkpoint: {self._saved_description()}. Try a lower --learning_rate"
                )
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
            if step % config.ckpt_freq == 0:
                self._checkpoint(step)
        return step

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

    def _sample(self, step, writer):
        sampler = self.model.sampler
        images = self.session.run(sampler.images_uint8, sampler.feed(self.sample_z, self.sample_labels))
        epoch, batch = divmod(step - 1, self.steps_per_epoch)
        path = os.path.join(self.config.sample_path, f"train_{epoch:02d}_{batch + 1:04d}.png")
        grid = utils.save_grid(images, path)
        writer.add_summary(image_summary("G_z", grid), step)

    def _checkpoint(self, step):
        if step == self.last_saved_step and self.checkpoints.latest():
            return
        path = self.checkpoints.save(self.session, step)
        self.last_saved_step = step
        self.history.plot()
        log.info("saved %s", path)
