"""Sample quality of a generator: `python main.py --eval`, and FID during training.

Glue between the model and `metrics.py`: real images are taken through the
same crop/resize as training and quantized to uint8, generated images are the
generator's uint8 output (never JPEG), and every number is reported with the
name of the feature network that produced it.  Real statistics are cached by
`metrics.real_statistics`, so only the first evaluation of a dataset pays for
reading it.
"""

import json
import logging
import os

import numpy as np

import data
import metrics
import utils
from checkpoints import Checkpoints, checkpoint_step, restored_generator
from model import fixed_z, sample_labels
from tf_runtime import tf

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

BEST_FOLDER = "best"
BEST_FILE = "best.json"


def real_images_uint8(config, count):
    """Up to `count` real images exactly as training sees them, as uint8 NHWC."""
    source = data.open_source(config)
    if source.arrays is not None and source.arrays[0].shape[1:3] == (config.output_height, config.output_width):
        return source.arrays[0][:count]
    with tf.Graph().as_default():
        batches = data.input_batches(source, config)
        with v1.Session() as session:
            session.run(batches.initializer, batches.feed_dict)
            chunks, total = [], 0
            while total < min(count, source.num_examples):
                chunks.append(utils.to_uint8(session.run(batches.images)))
                total += len(chunks[-1])
    return np.concatenate(chunks)[:count]


def generate_uint8(session, generator, config, count, seed):
    """`count` generated images from reproducible z (and cycling labels)."""
    return generator.generate(session, fixed_z(count, config, seed), sample_labels(count, config), chunk=500)


class QualityMeter:
    """The feature extractor and cached real statistics for one run's dataset."""

    def __init__(self, config):
        self.config = config
        self.extractor = metrics.load_extractor(config.dataset, config.inception_graph,
                                                os.path.join(config.out_dir, config.checkpoint_dir))
        cache_dir = os.path.join(config.out_dir, config.checkpoint_dir, "real_statistics")
        size = f"{config.output_height}x{config.output_width}"
        self.real_stats = metrics.real_statistics(
            self.extractor, lambda: real_images_uint8(config, config.eval_samples), cache_dir,
            f"{config.dataset}-{config.train_size or 'all'}", size)

    def measure(self, session, generator):
        fakes = generate_uint8(session, generator, self.config, self.config.eval_samples, self.config.seed + 2)
        return metrics.evaluate(fakes, self.real_stats, self.extractor, seed=self.config.seed)


def metric_summary(results):
    """TensorBoard scalars whose tags carry the feature network's name."""
    name = results["extractor"]
    values = [v1.Summary.Value(tag=f"quality/{key} [{name}]", simple_value=float(results[key]))
              for key in ("fid", "kid_mean", "is_mean", "precision", "recall")]
    return v1.Summary(value=values)


def write_results(path, results, checkpoint):
    record = {key: (value.item() if isinstance(value, np.generic) else value) for key, value in results.items()}
    record["checkpoint"] = checkpoint
    os.makedirs(os.path.dirname(path), exist_ok=True)
    utils.write_atomically(path, json.dumps(record, indent=2) + "\n")


def run_eval(config):
    """`python main.py --eval`: metrics of the newest checkpoint, printed and saved as JSON."""
    meter = QualityMeter(config)
    with restored_generator(config) as restored:
        meter.config = restored.config
        results = meter.measure(restored.session, restored.generator)
    print(metrics.format_table(results))
    output = os.path.join(config.sample_path, f"eval_step_{checkpoint_step(restored.path)}.json")
    write_results(output, results, restored.path)
    log.info("wrote %s", output)
    return results


class BestCheckpoint:
    """Keeps the checkpoint with the lowest FID seen so far in checkpoint/<run>/best/.

    DCGAN runs often degrade late; the newest checkpoint is kept as usual and
    the best one beside it, with its scores in best.json (read back on resume,
    so a restarted run does not forget its best FID).
    """

    def __init__(self, config, saver):
        self.directory = os.path.join(config.checkpoint_path, BEST_FOLDER)
        self.checkpoints = Checkpoints(self.directory, saver, config.architecture())
        self.record_path = os.path.join(self.directory, BEST_FILE)
        self.best_fid = float("inf")
        if os.path.exists(self.record_path):
            with open(self.record_path) as f:
                self.best_fid = json.load(f)["fid"]

    def offer(self, session, step, results):
        if not results["fid"] < self.best_fid:
            return False
        path = self.checkpoints.save(session, step)
        write_results(self.record_path, results, path)
        self.best_fid = results["fid"]
        log.info("new best FID %.3f at step %d: %s", self.best_fid, step, path)
        return True
