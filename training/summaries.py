"""What a training run records besides checkpoints: TensorBoard events and the loss history.

Kept apart from the loop (training/train.py) so the loop reads as steps: this module knows how events
are written and fail (as OSError, like every other write, so the loop reports a full disk in one line),
how a sample grid becomes one image summary, and how samples/<run>/losses.csv and its plot are kept.
"""

import contextlib
import csv
import glob
import os
import threading

from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

import ops
import utils
from networks import RANDOM_STREAMS
from runtime.tf_runtime import tf
from training import hparams as run_hparams

v1 = tf.compat.v1

LOSS_COLUMNS = ("step", "d_loss", "g_loss", "d_real", "d_fake")

# Graph collections that hold Python objects (random_streams.RandomStreams, moving-average triples): a MetaGraphDef
# cannot store them, and exporting them logs "Issue encountered when serializing ..." for each.
PYTHON_OBJECT_COLLECTIONS = (RANDOM_STREAMS, ops.MOVING_AVERAGE_UPDATES)


def image_summary(tag, image):
    """One TensorBoard image from a uint8 HxWxC array: the same grid as the PNG,
    under a single tag (tf.summary.image would make one tag per sample)."""
    height, width, channels = image.shape
    encoded = v1.Summary.Image(height=height, width=width, colorspace=channels,
                               encoded_image_string=utils.encode_png(image))
    return v1.Summary(value=[v1.Summary.Value(tag=tag, image=encoded)])


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

    Given a `graph`, it writes what FileWriter(logdir, graph) writes (the
    GraphDef and a MetaGraphDef) minus PYTHON_OBJECT_COLLECTIONS, so a new
    run prints no TensorFlow warnings.
    """

    def __init__(self, logdir, graph=None):
        with _as_os_error():
            super().__init__(logdir)
            if graph is not None:
                self.add_graph(graph)
                kept = [key for key in graph.get_all_collection_keys() if key not in PYTHON_OBJECT_COLLECTIONS]
                self.add_meta_graph(v1.train.export_meta_graph(
                    graph=graph, graph_def=graph.as_graph_def(add_shapes=True), collection_list=kept))

    def add_summary(self, *args):
        with _as_os_error():
            super().add_summary(*args)

    def close(self):
        with _as_os_error():
            super().close()


@contextlib.contextmanager
def run_writer(config, graph, step):
    """The run's SummaryWriter in config.log_path, opened at `step` with the run's
    HParams session-start record (`graph`: written for a new run, None on resume).

    Leaving normally it is closed and a failed close raises OSError (events still
    unwritten are lost); leaving on an error it is closed quietly, since a second
    failure would only hide the first.  TF's own reports of a failed event write
    are silenced meanwhile: the OSError says it in one line.
    """
    with _summary_thread_quiet():
        writer = SummaryWriter(config.log_path, graph)
        writer.add_summary(run_hparams.session_start_summary(config), step)  # TensorBoard's HParams tab
        try:
            yield writer
            writer.close()
        finally:
            with contextlib.suppress(OSError):
                writer.close()


class LossHistory:
    """Appends losses to samples/<run>/losses.csv and plots them, with FID when
    --fid_every measured it (read back from the run's TensorBoard events), as a PNG."""

    def __init__(self, directory, events_dir=None):
        self.path = os.path.join(directory, "losses.csv")
        self.plot_path = os.path.join(directory, "loss_curves.png")
        self.events_dir = events_dir

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

    def fid_history(self):
        """{tag: (steps, values)} of the FID scalars in the events files (a resumed run's later value wins)."""
        values = {}
        if not self.events_dir:
            return {}
        for path in sorted(glob.glob(os.path.join(glob.escape(self.events_dir), "events.out.tfevents.*"))):
            # TensorBoard's own reader: it stops quietly at the record the writer is still writing, and
            # (unlike tf.compat.v1.train.summary_iterator) prints no deprecation warning into the run's log.
            for event in LegacyEventFileLoader(path).Load():
                for value in event.summary.value:
                    if value.tag.startswith("quality/fid"):
                        values.setdefault(value.tag, {})[event.step] = value.simple_value
        return {tag: (sorted(by_step), [by_step[s] for s in sorted(by_step)]) for tag, by_step in values.items()}

    def plot(self):
        if not os.path.exists(self.path):
            return
        with open(self.path, newline="") as f:
            rows = {int(r["step"]): r for r in csv.DictReader(f)}  # a resumed run overwrites later steps
        steps = sorted(rows)
        column = {name: (steps, [float(rows[s][name]) for s in steps]) for name in LOSS_COLUMNS[1:]}
        panels = {
            "losses": {"d_loss": column["d_loss"], "g_loss": column["g_loss"]},
            "discriminator output": {"D(x)": column["d_real"], "D(G(z))": column["d_fake"]},
        }
        fid = self.fid_history()
        if fid:
            panels["FID (lower is better)"] = {tag.removeprefix("quality/"): series for tag, series in fid.items()}
        utils.plot_curves(self.plot_path, panels)
