"""Sample quality of a generator: `python main.py --eval`, and FID during training.

Glue between the model and the metrics (`evaluation/extractors.py`): real images are taken through the
same crop/resize as training and quantized to uint8, generated images are the
generator's uint8 output (never JPEG), and every number is reported with the
name of the feature network that produced it.  Real statistics are cached by
`extractors.real_statistics`, so only the first evaluation of a dataset pays for
reading it.  Datasets with their own classifier (MNIST, Fashion-MNIST) also
get class statistics of the samples (`formulas.class_statistics`), and faces
(`--face_metrics`, on for celebA) FD_face and the face detection rate
(`evaluation/faces.py`), with or without an FID network.
"""

import hashlib
import json
import logging
import os

import numpy as np

import utils
from datasets import pipeline as data
from evaluation import extractors, formulas
from evaluation import faces as face_metrics
from runtime.tf_runtime import tf
from training.checkpoints import Checkpoints, checkpoint_step
from training.inference import fixed_z, restored_generator, sample_labels

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

BEST_FOLDER = "best"
BEST_FILE = "best.json"
CLASS_STATISTICS = ("class_accuracy", "classes_present", "class_kl_uniform")  # see formulas.class_statistics
FACE_SCORES = (("fd_face", "face_extractor"), ("face_detection_rate", "face_detector"))  # (score, its network)


def real_images_uint8(config, count):
    """The first `count` real images (file or array order, each once), preprocessed as training does, as uint8 NHWC.

    In order, not from the shuffled training stream: the images, and so the
    cached statistics, then depend only on the data and the preprocessing flags
    (`real_statistics_key`), never on --seed or --batch_size.  The per-image
    steps are the training pipeline's own (datasets/pipeline.py), so the pixels are the ones
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


def real_data_digest(config, count):
    """sha256 of the data `real_images_uint8(config, count)` reads: the bytes of the first `count` files in
    listing order, or of the first `count` images of an array dataset.  Hashing bytes costs a fraction of
    decoding them, and makes the cache follow the content: files rewritten in place (same names, same
    folder) are new data.  (A file that fails to decode makes `real_images_uint8` read one more, which is
    not hashed; rewriting the failed one still changes the digest.)"""
    source = data.open_source(config)
    if source.arrays is not None:
        return hashlib.sha256(np.ascontiguousarray(source.arrays[0][:count]).data).hexdigest()
    return utils.file_digest(source.files[:count])


def real_statistics_key(config):
    """Everything that changes the real images' statistics, besides the feature network (whose digest
    `extractors.statistics_cache_path` adds): which files (what the data holds, `real_data_digest`,
    the pattern and train_size that pick among them), how they are preprocessed (crop, input and output
    size, channels) and how many are used.  The folder's content, not its path: replacing the data in place
    must not reuse the old statistics.  `real_images_uint8` reads in a fixed order, so the seed and batch
    size are not part of it."""
    return {
        "content": real_data_digest(config, config.eval_samples),
        "dataset": config.dataset,
        "input_fname_pattern": config.input_fname_pattern, "train_size": config.train_size,
        "crop": config.crop, "input_height": config.input_height, "input_width": config.input_width,
        "output_height": config.output_height, "output_width": config.output_width, "c_dim": config.c_dim,
        "eval_samples": config.eval_samples,
    }


def cached_real_statistics(config, extractor):
    """Real-image statistics under `extractor`, from the cache when the key and the network match."""
    key = real_statistics_key(config)
    key_digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return extractors.real_statistics(
        extractor, lambda: real_images_uint8(config, config.eval_samples),
        os.path.join(config.out_dir, config.checkpoint_dir, "real_statistics"),
        f"{config.dataset}-{key_digest}", f"{config.output_height}x{config.output_width}x{config.c_dim}")


def load_extractor(config):
    """The run's FID feature network (a one-line UserError saying how to get one if there is none), or None
    for a face run (--face_metrics) without one: FD_face is its measure then, and nothing is guessed."""
    checkpoint_dir = os.path.join(config.out_dir, config.checkpoint_dir)
    if config.face_metrics and not config.inception_graph and not extractors.classifier_is_trained(checkpoint_dir,
                                                                                                 config.dataset):
        return None
    return extractors.load_extractor(config.dataset, config.inception_graph, checkpoint_dir)


def load_face_metrics(config):
    """The face networks of a --face_metrics run (a one-line UserError naming the pip packages if they are
    missing), else None."""
    return face_metrics.FaceMetrics() if config.face_metrics else None


class QualityMeter:
    """The feature extractors and cached real statistics for one run's dataset: the FID network (none for
    a face run without one) and, with --face_metrics, the face networks.

    `config` must have its channel count resolved (from the data or the checkpoint), as training and
    `run_eval` pass it.
    """

    def __init__(self, config, extractor=None, faces=None):
        self.config = config
        self.extractor = extractor or load_extractor(config)
        self.faces = faces or load_face_metrics(config)
        self.real_stats = cached_real_statistics(config, self.extractor) if self.extractor else None
        self.face_real_stats = cached_real_statistics(config, self.faces.embedder) if self.faces else None
        if isinstance(self.extractor, extractors.ClassifierExtractor):
            self.classifier = self.extractor
        else:
            self.classifier = extractors.domain_classifier(config.dataset,
                                                        os.path.join(config.out_dir, config.checkpoint_dir))

    def measure(self, session, generator):
        """FID & co., plus class statistics when the dataset has its own classifier and the face scores
        with --face_metrics."""
        count = self.config.eval_samples
        fakes = generate_uint8(session, generator, self.config, count, self.config.seed + 2)
        results = {"n_samples": count}
        if self.extractor is not None:
            results.update(extractors.evaluate(fakes, self.real_stats, self.extractor, seed=self.config.seed))
        if self.faces is not None:
            results.update(self.faces.scores(fakes, self.face_real_stats))
        if self.classifier is not None:
            results.update(formulas.class_statistics(self.classifier.class_probabilities(fakes),
                                                    sample_labels(count, self.config)))
            results["class_classifier"] = f"{extractors.CLASSIFIER_DATASETS[self.classifier.dataset]} classifier"
        return results


def metric_summary(results):
    """TensorBoard scalars whose tags carry the name of the network behind each number."""
    tags_and_keys = [(f"quality/{key} [{results['extractor']}]", key)
                     for key in ("fid", "kid_mean", "is_mean", "precision", "recall") if key in results]
    tags_and_keys += [(f"quality/{key} [{results[network]}]", key) for key, network in FACE_SCORES
                      if key in results]
    tags_and_keys += [(f"quality/{key} [{results['class_classifier']}]", key)
                      for key in CLASS_STATISTICS if key in results]
    return v1.Summary(value=[v1.Summary.Value(tag=tag, simple_value=float(results[key])) for tag, key in tags_and_keys])


def summary_line(results):
    """The scores of one measurement on one line, each with its network (the training log's line)."""
    parts = []
    if "fid" in results:
        parts.append(f"FID {results['fid']:.3f} KID {results['kid_mean']:.4g} IS {results['is_mean']:.3f} "
                     f"precision {results['precision']:.3f} recall {results['recall']:.3f} "
                     f"[{results['extractor']}, n={results['n_samples']}]")
    if "fd_face" in results:
        parts.append(face_metrics.format_scores(results))
    return "; ".join(parts)


def best_score(results):
    """(name, value) of the score --keep_best minimises: FID when there is an FID network, else FD_face."""
    return ("FID", results["fid"]) if "fid" in results else ("FD_face", results["fd_face"])


def write_results(path, results, checkpoint):
    record = {key: (value.item() if isinstance(value, np.generic) else value) for key, value in results.items()}
    record["checkpoint"] = checkpoint
    os.makedirs(os.path.dirname(path), exist_ok=True)
    utils.write_atomically(path, json.dumps(record, indent=2) + "\n")


def run_eval(config):
    """`python main.py --eval`: metrics of the newest checkpoint, printed and saved as JSON."""
    # Before restoring: a missing network is the first thing to say.
    extractor, faces = load_extractor(config), load_face_metrics(config)
    with restored_generator(config) as restored:
        meter = QualityMeter(restored.config, extractor, faces)  # the checkpoint's channel count and image size
        results = meter.measure(restored.session, restored.generator)
    if "fid" in results:
        print(formulas.format_table(results))
    if "fd_face" in results:
        print(face_metrics.format_scores(results))
    if "classes_present" in results:
        print(formulas.format_class_statistics(results))
    output = os.path.join(config.sample_path, f"eval_step_{checkpoint_step(restored.path)}.json")
    write_results(output, results, restored.path)
    log.info("wrote %s", output)
    return results


class BestCheckpoint:
    """Keeps the checkpoint with the lowest FID (`best_score`: FD_face for faces without an FID network)
    seen so far in checkpoint/<run>/best/.

    DCGAN runs often degrade late; the newest checkpoint is kept as usual and
    the best one beside it, with its scores in best.json (read back on resume,
    so a restarted run does not forget its best score).
    """

    def __init__(self, config, saver):
        self.directory = os.path.join(config.checkpoint_path, BEST_FOLDER)
        self.checkpoints = Checkpoints(self.directory, saver, config.architecture())
        self.record_path = os.path.join(self.directory, BEST_FILE)
        self.best = float("inf")
        if os.path.exists(self.record_path):
            with open(self.record_path) as f:
                self.best = best_score(json.load(f))[1]

    def offer(self, session, step, results):
        name, score = best_score(results)
        if not score < self.best:
            return False
        path = self.checkpoints.save(session, step)
        write_results(self.record_path, results, path)
        self.best = score
        log.info("new best %s %.4g at step %d: %s", name, score, step, path)
        return True
