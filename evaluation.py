"""Sample quality of a generator: `python main.py --eval`, and FID during training.

Glue between the model and `metrics.py`: real images are taken through the
same crop/resize as training and quantized to uint8, generated images are the
generator's uint8 output (never JPEG), and every number is reported with the
name of the feature network that produced it.  Real statistics are cached by
`metrics.real_statistics`, so only the first evaluation of a dataset pays for
reading it.  Datasets with their own classifier (MNIST, Fashion-MNIST) also
get class statistics of the samples (`metrics.class_statistics`).
"""

import contextlib
import hashlib
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
CLASS_STATISTICS = ("class_accuracy", "classes_present", "class_kl_uniform")  # see metrics.class_statistics


def real_images_uint8(config, count):
    """The first `count` real images (file or array order, each once), preprocessed as training does, as uint8 NHWC.

    In order, not from the shuffled training stream: the images, and so the
    cached statistics, then depend only on the data and the preprocessing flags
    (`real_statistics_key`), never on --seed or --batch_size.  The per-image
    steps are the training pipeline's own (data.py), so the pixels are the ones
    training sees; files that fail to decode are skipped as in training.
    """
    source = data.open_source(config)
    shape = (config.output_height, config.output_width, config.c_dim)
    if source.arrays is not None:
        images = source.arrays[0][:count]
        if images.shape[1:] == shape:
            return images
    with tf.Graph().as_default():
        if source.arrays is not None:
            elements = v1.placeholder(tf.uint8, images.shape)
            feed_dict = {elements: images}
            dataset = tf.data.Dataset.from_tensor_slices(elements).map(
                lambda image: data._crop_and_resize(data._match_channels(image, config.c_dim), config))
        else:
            feed_dict = {}
            dataset = tf.data.Dataset.from_tensor_slices(source.files).map(lambda path: data._load_image(path, config))
            dataset = dataset.ignore_errors(log_warning=True).take(count)
        iterator = v1.data.make_initializable_iterator(dataset.batch(256))
        next_batch = iterator.get_next()
        chunks = []
        with v1.Session() as session:
            session.run(iterator.initializer, feed_dict)
            while True:
                try:
                    chunks.append(session.run(next_batch))
                except tf.errors.OutOfRangeError:
                    break
    return np.concatenate(chunks)


def generate_uint8(session, generator, config, count, seed):
    """`count` generated images from reproducible z (and cycling labels)."""
    return generator.generate(session, fixed_z(count, config, seed), sample_labels(count, config), chunk=500)


def folder_content_digest(directory):
    """A digest of every file below `directory`: its path relative to `directory`, size and modification
    time (os.walk's order, sorted; folders reached through symbolic links are not entered, as
    data.list_image_files does not enter them).

    Cheap and correct for the real-statistics key: one stat per file and nothing read or decoded (a digest
    of the decoded images would read, and for CIFAR-10 class folders decode, the whole set at every
    evaluation, which the cache exists to avoid), and every reader of data.open_source reads only below
    the dataset folder, so any change to what it reads changes the digest: a file added (CIFAR-10's
    binary batches beside class folders, which then win), removed, replaced or rewritten.  It also
    changes when an unused file does (the test split, a README), which only costs a recomputation."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(directory, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            with contextlib.suppress(OSError):  # a dangling link: nothing any reader could read
                stat = os.stat(path)
                digest.update(f"{os.path.relpath(path, directory)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def real_statistics_key(config):
    """Everything that changes the real images' statistics, besides the feature network (whose digest
    `metrics.statistics_cache_path` adds): which files (what the dataset folder holds, `folder_content_digest`,
    the pattern and train_size that pick among them), how they are preprocessed (crop, input and output
    size, channels) and how many are used.  The folder's content, not its path: replacing the data in place
    must not reuse the old statistics.  `real_images_uint8` reads in a fixed order, so the seed and batch
    size are not part of it."""
    return {
        "dataset": config.dataset,
        "content": folder_content_digest(data.dataset_directory(config.dataset, config.data_dir)),
        "input_fname_pattern": config.input_fname_pattern, "train_size": config.train_size,
        "crop": config.crop, "input_height": config.input_height, "input_width": config.input_width,
        "output_height": config.output_height, "output_width": config.output_width, "c_dim": config.c_dim,
        "eval_samples": config.eval_samples,
    }


def cached_real_statistics(config, extractor):
    """Real-image statistics under `extractor`, from the cache when the key and the network match."""
    key = real_statistics_key(config)
    key_digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return metrics.real_statistics(
        extractor, lambda: real_images_uint8(config, config.eval_samples),
        os.path.join(config.out_dir, config.checkpoint_dir, "real_statistics"),
        f"{config.dataset}-{key_digest}", f"{config.output_height}x{config.output_width}x{config.c_dim}")


def load_extractor(config):
    """The run's feature network (a one-line UserError saying how to get one if there is none)."""
    return metrics.load_extractor(config.dataset, config.inception_graph,
                                  os.path.join(config.out_dir, config.checkpoint_dir))


class QualityMeter:
    """The feature extractor and cached real statistics for one run's dataset.

    `config` must have its channel count resolved (from the data or the checkpoint), as training and
    `run_eval` pass it.
    """

    def __init__(self, config, extractor=None):
        self.config = config
        self.extractor = extractor or load_extractor(config)
        self.real_stats = cached_real_statistics(config, self.extractor)
        if isinstance(self.extractor, metrics.ClassifierExtractor):
            self.classifier = self.extractor
        else:
            self.classifier = metrics.domain_classifier(config.dataset,
                                                        os.path.join(config.out_dir, config.checkpoint_dir))

    def measure(self, session, generator):
        """FID & co., plus class statistics when the dataset has its own classifier."""
        count = self.config.eval_samples
        fakes = generate_uint8(session, generator, self.config, count, self.config.seed + 2)
        results = metrics.evaluate(fakes, self.real_stats, self.extractor, seed=self.config.seed)
        if self.classifier is not None:
            results.update(metrics.class_statistics(self.classifier.class_probabilities(fakes),
                                                    sample_labels(count, self.config)))
            results["class_classifier"] = f"{metrics.CLASSIFIER_DATASETS[self.classifier.dataset]} classifier"
        return results


def metric_summary(results):
    """TensorBoard scalars whose tags carry the name of the network behind each number."""
    tags_and_keys = [(f"quality/{key} [{results['extractor']}]", key)
                     for key in ("fid", "kid_mean", "is_mean", "precision", "recall")]
    tags_and_keys += [(f"quality/{key} [{results['class_classifier']}]", key)
                      for key in CLASS_STATISTICS if key in results]
    return v1.Summary(value=[v1.Summary.Value(tag=tag, simple_value=float(results[key])) for tag, key in tags_and_keys])


def write_results(path, results, checkpoint):
    record = {key: (value.item() if isinstance(value, np.generic) else value) for key, value in results.items()}
    record["checkpoint"] = checkpoint
    os.makedirs(os.path.dirname(path), exist_ok=True)
    utils.write_atomically(path, json.dumps(record, indent=2) + "\n")


def run_eval(config):
    """`python main.py --eval`: metrics of the newest checkpoint, printed and saved as JSON."""
    extractor = load_extractor(config)  # before restoring: a missing network is the first thing to say
    with restored_generator(config) as restored:
        meter = QualityMeter(restored.config, extractor)  # the checkpoint's channel count and image size
        results = meter.measure(restored.session, restored.generator)
    print(metrics.format_table(results))
    if "classes_present" in results:
        print(metrics.format_class_statistics(results))
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
