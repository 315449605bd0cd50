"""The feature networks of the quality metrics, offline: TTUR's Inception graph and the domain classifiers.

The feature networks are pluggable (`load_extractor`), and every reported
number carries the extractor's name, because an FID computed on MNIST
classifier features has nothing in common with an Inception FID except the
formula (`evaluation/formulas.py`).  Images always enter as uint8: generator
output must be quantized exactly like the real PNGs it is compared with
(clean-fid, Parmar et al. 2022, shows that float-vs-uint8 inputs, different
resizers or JPEG compression move FID by several points).  The real images'
statistics are cached per dataset, image size and exact network
(`real_statistics`).

`python -m evaluation.classifier --train_classifier mnist|fashion|cifar10` trains the small
classifier used as the offline feature network for MNIST-like data and CIFAR-10.
"""

import glob
import hashlib
import io
import json
import logging
import math
import os
import re
import typing
import zipfile

import numpy as np
from google.protobuf.message import DecodeError

from evaluation import formulas
from ops import conv2d, linear, lrelu
from runtime.errors import UserError
from runtime.tf_runtime import tf
from utils import file_digest, write_atomically

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

CLASSIFIER_DATASETS = {"mnist": "MNIST", "fashion": "Fashion-MNIST", "cifar10": "CIFAR-10"}
CLASSIFIER_SCOPE = "classifier"
CLASSIFIER_FEATURES = 128
_CLASSIFIER_PREFIX = "classifier"  # checkpoint files: classifier.index, classifier.data-*
CLASSIFIER_INFO = "classifier.json"
_NUM_CLASSES = 10
_MNIST_SHAPE = (28, 28, 1)
_CIFAR_SHAPE = (32, 32, 3)

# Tensor names inside TTUR's classify_image_graph_def.pb (inception-2015-12-05).
_INCEPTION_INPUT = "ExpandDims:0"
_INCEPTION_POOL3 = "pool_3:0"
_INCEPTION_LOGITS_MATMUL = "softmax/logits/MatMul"
_RESIZE_OPS = ("ResizeBilinear", "ResizeBicubic", "ResizeNearestNeighbor")  # the ones with both attributes below


# ---------------------------------------------------------------------------
# Feature extractors: a frozen network in its own graph and session.
# ---------------------------------------------------------------------------


class _FeatureExtractor:
    """Feeds uint8 images batch by batch to a network and returns features and class probabilities.

    Subclasses build a graph with a float input placeholder and the two output
    tensors, and say in `_prepare` how a uint8 batch becomes that network's
    input; the session lives as long as the extractor.  `name` labels every number computed with it;
    `digest` identifies the exact weights so cached statistics never mix networks.
    """

    name = ""
    digest = ""
    batch_size = 100

    def __init__(self, graph, inputs, features, probabilities):
        self._inputs = inputs
        self._outputs = [features, probabilities]
        self._session = v1.Session(graph=graph)

    def _prepare(self, batch):
        raise NotImplementedError

    def features_and_probabilities(self, images):
        """One forward pass per batch for both outputs, which is what `evaluate` needs.

        Unlike TTUR's `get_activations`, a last partial batch is kept, not dropped.
        """
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or not len(images):
            raise ValueError(f"expected a non-empty uint8 NHWC batch, got {images.dtype} {images.shape}; "
                             "quantize generator output to uint8 first, like the real images")
        features, probabilities = [], []
        for start in range(0, len(images), self.batch_size):
            batch = self._prepare(images[start:start + self.batch_size])
            f, p = self._session.run(self._outputs, {self._inputs: batch})
            features.append(f)
            probabilities.append(p)
        return np.concatenate(features), np.concatenate(probabilities)

    def features(self, images):
        return self.features_and_probabilities(images)[0]

    def class_probabilities(self, images):
        return self.features_and_probabilities(images)[1]


class InceptionGraphExtractor(_FeatureExtractor):
    """pool_3 features and softmax of TTUR's frozen Inception graph (`classify_image_graph_def.pb`).

    Input path, identical to TTUR's `get_activations`: float32 pixels in [0, 255]
    (grayscale repeated to 3 channels, as stylegan2-ada does) are fed to
    'ExpandDims:0', the tensor right after the graph's own JPEG decoder.  From
    there the graph itself resizes, with its 'ResizeBilinear' node to 299x299,
    and normalizes the pixels.  That node keeps the attributes stored in the
    .pb; the 2015 file predates `half_pixel_centers`, which the importer fills
    in with its default False, i.e. TF1's legacy bilinear sampling without
    antialiasing.  Since op and attributes come from the file, TF 2.x runs the
    same kernel as TTUR under TF 1.x, and no resize happens in Python.
    `resize` reports the resize ops actually found, with their attributes.

    Batch size: the stored graph fixes the batch dimension of 'ExpandDims:0' to
    1 (TTUR works around it by overwriting private shape fields).  Here a
    [None, None, None, 3] placeholder is wired in with `input_map` instead, so
    every shape is re-inferred for any batch.  The graph's own 'softmax' sits
    behind a Reshape to a fixed batch of 1 ('pool_3/_reshape'), so class
    probabilities are recomputed like improved-gan: softmax(squeeze(pool_3) @ W)
    with W the weights of 'softmax/logits/MatMul' (the reference omits the
    bias; so do we).
    """

    name = "Inception pool_3 (TTUR graph)"
    batch_size = 50  # TTUR's default

    def __init__(self, pb_path):
        try:
            with open(pb_path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise UserError(f"--inception_graph {pb_path}: cannot read ({e.strerror}); "
                            "python download.py inception fetches classify_image_graph_def.pb") from None
        graph_def = v1.GraphDef()
        try:
            graph_def.ParseFromString(raw)
        except DecodeError:
            raise UserError(f"--inception_graph {pb_path}: not a TensorFlow GraphDef (corrupt or truncated file); "
                            "download it again with python download.py inception") from None
        graph = tf.Graph()
        with graph.as_default():
            images = v1.placeholder(tf.float32, [None, None, None, 3], name="images")
            try:
                pool3, logits_matmul = v1.import_graph_def(
                    graph_def, input_map={_INCEPTION_INPUT: images},
                    return_elements=[_INCEPTION_POOL3, _INCEPTION_LOGITS_MATMUL], name="inception")
            except (ValueError, KeyError) as e:
                raise UserError(f"--inception_graph {pb_path}: not TTUR's Inception graph (needs "
                                f"{_INCEPTION_INPUT}, {_INCEPTION_POOL3}, {_INCEPTION_LOGITS_MATMUL}): {e}") from None
            features = tf.squeeze(pool3, [1, 2])
            probabilities = tf.nn.softmax(tf.matmul(features, logits_matmul.inputs[1]))
        self.digest = hashlib.sha256(raw).hexdigest()
        self.resize = _describe_resizes(graph)
        super().__init__(graph, images, features, probabilities)

    def _prepare(self, batch):
        if batch.shape[-1] == 1:
            batch = np.repeat(batch, 3, axis=-1)
        return batch.astype(np.float32)


def _describe_resizes(graph):
    """One line per resize op in the imported graph, with the attributes that decide its output."""
    lines = []
    for op in graph.get_operations():
        if op.type in _RESIZE_OPS:
            size = tf.get_static_value(op.inputs[1])
            # The importer fills in attributes missing from an old .pb with the op's defaults (False here).
            attributes = ", ".join(f"{a}={op.get_attr(a)}" for a in ("align_corners", "half_pixel_centers"))
            lines.append(f"{op.name}: {op.type} to {'x'.join(map(str, size))} ({attributes})")
    return "; ".join(lines) or "no resize op: images reach the network at their own size"


def classifier_network(images):
    """The offline feature network for MNIST-like data: two strided convs, a 128-d layer, 10 logits.

    `images` are float [0, 255] pixels [N, 28, 28, 1].  Returns (features,
    logits); features are the penultimate layer, the usual choice for
    FID on a domain classifier.  Built from ops.py under the "classifier"
    variable scope so it can never share variables with the GAN.
    """
    with v1.variable_scope(CLASSIFIER_SCOPE):
        h = lrelu(conv2d(images / 127.5 - 1.0, 32, name="conv1"))
        return _features_and_logits(lrelu(conv2d(h, 64, name="conv2")))


def _features_and_logits(h):
    """The classifiers' head: the CLASSIFIER_FEATURES-d feature layer on the flattened maps, then the logits."""
    h = tf.reshape(h, [-1, int(np.prod(h.shape[1:]))])
    features = lrelu(linear(h, CLASSIFIER_FEATURES, name="fc1"))
    return features, linear(features, _NUM_CLASSES, name="logits")


def cifar_classifier_network(images):
    """The offline feature network for CIFAR-10: three strided 3x3 convs (64, 128, 256), a 128-d layer, 10 logits.

    `images` are float [0, 255] pixels [N, 32, 32, 3].  Small on purpose: it
    trains in minutes on two CPU cores to about 70% test accuracy, enough for
    its penultimate layer to separate the classes (what FID and the class
    statistics need); 3x3 kernels do a third of the work of 5x5 ones.  Same
    scope and layer names as `classifier_network`.
    """
    with v1.variable_scope(CLASSIFIER_SCOPE):
        h = lrelu(conv2d(images / 127.5 - 1.0, 64, kernel=3, name="conv1"))
        h = lrelu(conv2d(h, 128, kernel=3, name="conv2"))
        return _features_and_logits(lrelu(conv2d(h, 256, kernel=3, name="conv3")))


class ClassifierSpec(typing.NamedTuple):
    """How one dataset's classifier is built and trained."""

    network: typing.Callable  # float [0, 255] images -> (features, logits)
    input_shape: tuple  # (height, width, channels) it takes
    steps: int  # training steps of batch 64 by default
    mirror: bool  # random left-right flips while training: photos look alike mirrored, digits do not


CLASSIFIERS = {
    "mnist": ClassifierSpec(classifier_network, _MNIST_SHAPE, 3000, False),
    "fashion": ClassifierSpec(classifier_network, _MNIST_SHAPE, 3000, False),
    "cifar10": ClassifierSpec(cifar_classifier_network, _CIFAR_SHAPE, 5000, True),
}


def classifier_directory(checkpoint_dir, dataset):
    return os.path.join(checkpoint_dir, f"classifier_{dataset}")


def classifier_prefix(checkpoint_dir, dataset):
    return os.path.join(classifier_directory(checkpoint_dir, dataset), _CLASSIFIER_PREFIX)


def classifier_is_trained(checkpoint_dir, dataset):
    """True once `train_classifier` has saved weights for `dataset` under `checkpoint_dir`."""
    return os.path.isfile(classifier_prefix(checkpoint_dir, dataset) + ".index")


class ClassifierExtractor(_FeatureExtractor):
    """Penultimate-layer features and softmax of the project's trained MNIST / Fashion-MNIST / CIFAR-10 classifier.

    Inception features are the standard, but its 95 MB graph is not always
    available offline, and ImageNet features fit 28x28 digits poorly anyway; a
    classifier trained on the dataset itself is the usual substitute for
    MNIST-like data.  Its numbers are not comparable with Inception ones, hence
    the explicit name, which also says what it was trained on when training
    recorded that (CIFAR-10 may be the original binary batches or a lossy JPEG
    copy).  Refuses to exist without a trained checkpoint.
    """

    batch_size = 500

    def __init__(self, checkpoint_dir, dataset):
        if dataset not in CLASSIFIER_DATASETS:
            raise UserError(f"no classifier for dataset '{dataset}'; only {', '.join(CLASSIFIER_DATASETS)}")
        if not classifier_is_trained(checkpoint_dir, dataset):
            raise UserError(f"{classifier_directory(checkpoint_dir, dataset)}: no trained classifier; "
                            f"train it with: python -m evaluation.classifier --train_classifier {dataset}")
        self.dataset = dataset
        self.spec = CLASSIFIERS[dataset]
        prefix = classifier_prefix(checkpoint_dir, dataset)
        self.digest = file_digest([prefix + ".index"] + sorted(glob.glob(glob.escape(prefix) + ".data-*")))
        training_data = _classifier_info(checkpoint_dir, dataset, self.digest).get("training_data")
        self.name = (f"classifier penultimate layer ({CLASSIFIER_DATASETS[dataset]} classifier features"
                     + (f", trained on {training_data})" if training_data else ")"))
        graph = tf.Graph()
        with graph.as_default():
            images = v1.placeholder(tf.float32, [None, *self.spec.input_shape], name="images")
            features, logits = self.spec.network(images)
            probabilities = tf.nn.softmax(logits)
            saver = v1.train.Saver(v1.trainable_variables(CLASSIFIER_SCOPE))
            super().__init__(graph, images, features, probabilities)
            saver.restore(self._session, prefix)  # inside the graph: Saver needs graph mode even if eager is on

    def _prepare(self, batch):
        if batch.shape[1:] != self.spec.input_shape:
            raise UserError(f"the {CLASSIFIER_DATASETS[self.dataset]} classifier takes "
                            f"{'x'.join(map(str, self.spec.input_shape))} images, "
                            f"got {batch.shape[1:]}; pass --inception_graph for other image sizes")
        return batch.astype(np.float32)


def _classifier_info(checkpoint_dir, dataset, digest):
    """The classifier.json `train_classifier` wrote beside the weights, or {} when there is none or it
    describes other weights (its digest differs)."""
    try:
        with open(os.path.join(classifier_directory(checkpoint_dir, dataset), CLASSIFIER_INFO)) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) and info.get("digest") == digest else {}


def load_extractor(dataset, inception_graph=None, checkpoint_dir="checkpoint"):
    """The feature network for `dataset`: the Inception graph if given, else the trained classifier.

    Never falls back silently: a given --inception_graph that cannot be loaded
    is an error, and a dataset without a usable network is an error that says
    how to get one, because numbers from a different (or untrained) network
    would look valid and mean nothing.
    """
    if inception_graph:
        return InceptionGraphExtractor(inception_graph)
    classifier = domain_classifier(dataset, checkpoint_dir)
    if classifier is not None:
        return classifier
    raise UserError(
        f"no feature extractor for dataset '{dataset}' (none found in {checkpoint_dir}): pass --inception_graph PATH "
        "to TTUR's classify_image_graph_def.pb (python download.py inception puts it in "
        "data/inception/), or for mnist/fashion/cifar10 train the classifier: "
        f"python -m evaluation.classifier --train_classifier {dataset if dataset in CLASSIFIER_DATASETS else 'mnist'}")


def domain_classifier(dataset, checkpoint_dir):
    """The dataset's own trained classifier (MNIST / Fashion-MNIST / CIFAR-10), or None if there is none.

    Class statistics need a classifier of the dataset's classes whatever network
    the FID uses: Inception's ImageNet classes say nothing about digits.
    """
    if dataset in CLASSIFIER_DATASETS and classifier_is_trained(checkpoint_dir, dataset):
        return ClassifierExtractor(checkpoint_dir, dataset)
    return None


# ---------------------------------------------------------------------------
# Real statistics cache and the evaluation entry point.
# ---------------------------------------------------------------------------


def statistics_from_images(extractor, images):
    """dict(mu, sigma, features) of `images` under `extractor`."""
    features = extractor.features(images)
    mu, sigma = formulas.feature_statistics(features)
    return {"mu": mu, "sigma": sigma, "features": features}


def statistics_cache_path(cache_dir, dataset, image_size, digest):
    """Cache file name: one per dataset, image size and exact feature network."""
    safe_dataset = re.sub(r"[^A-Za-z0-9._-]", "_", str(dataset))
    return os.path.join(cache_dir, f"stats_{safe_dataset}_{image_size}px_{digest[:16]}.npz")


_STATISTICS_NDIM = {"mu": 1, "sigma": 2, "features": 2}


def _checked_npy(archive, name, archive_bytes):
    """One array of a statistics .npz, read only after its header proved that
    it is a float array of exactly the bytes the member holds: np.load would
    allocate whatever shape a damaged or hostile header claims (terabytes)."""
    info = archive.getinfo(name + ".npy")
    # np.savez stores members uncompressed, so no member can hold more than the file.
    if info.compress_type != zipfile.ZIP_STORED or info.file_size > archive_bytes:
        raise ValueError(f"{name}: not stored as np.savez stores it")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"{name}: .npy format version {version}")
        shape, _, dtype = read_header(f)
        if dtype.kind != "f" or len(shape) != _STATISTICS_NDIM[name]:
            raise ValueError(f"{name}: {dtype} array of shape {shape}, not a float array of "
                             f"{_STATISTICS_NDIM[name]} dimensions")
        if math.prod(shape) * dtype.itemsize != info.file_size - f.tell():
            raise ValueError(f"{name}: header claims shape {shape}, the member holds {info.file_size - f.tell()} bytes")
    with archive.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def load_statistics(path):
    """mu [d], sigma [d, d] and features [n, d] from a cache file written by
    `real_statistics`; raises OSError or ValueError (zipfile.BadZipFile, EOFError
    included) if it is missing, damaged or not what it claims."""
    with open(path, "rb") as file, zipfile.ZipFile(file) as archive:
        size = os.fstat(file.fileno()).st_size
        stats = {name: _checked_npy(archive, name, size) for name in _STATISTICS_NDIM}
    dim = stats["mu"].shape[0]
    if stats["sigma"].shape != (dim, dim) or stats["features"].shape[1:] != (dim,):
        raise ValueError(f"inconsistent shapes {[a.shape for a in stats.values()]}")
    return stats


def real_statistics(extractor, images, cache_dir, dataset, image_size):
    """Statistics of the real images, computed once and then loaded from `cache_dir`.

    `images` is a uint8 array or a callable returning one, called only on a
    cache miss so the dataset need not even be read when the cache is warm.  The
    key includes the extractor digest, so retraining the classifier or switching
    graphs never reuses stale numbers.  A missing cache file is computed, and an
    unreadable or damaged one recomputed after a one-line warning; writes go
    through a temporary file so a crash never leaves a half-written cache.  No
    pickle can be read: a cache file can never execute code.
    """
    path = statistics_cache_path(cache_dir, dataset, image_size, extractor.digest)
    try:
        return load_statistics(path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        log.warning("%s: unusable real-statistics cache (%s); recomputing it", path, " ".join(str(e).split())[:200])
    stats = statistics_from_images(extractor, images() if callable(images) else images)
    buffer = io.BytesIO()
    np.savez(buffer, **stats)
    os.makedirs(cache_dir, exist_ok=True)
    write_atomically(path, buffer.getvalue(), mode="wb")
    return stats


def evaluate(fake_images, real_stats, extractor, seed=0):
    """All metrics of uint8 `fake_images` against `real_stats` (from `real_statistics`).

    Precision/recall depend on the set sizes, so the real features are
    subsampled (with `seed`) to the number of fakes when there are more, as in
    the paper's equal-size protocol; FID and KID use all real data they have.
    """
    features, probabilities = extractor.features_and_probabilities(fake_images)
    mu, sigma = formulas.feature_statistics(features)
    real_features = real_stats["features"]
    if len(real_features) > len(features):
        pick = np.random.default_rng(seed).choice(len(real_features), len(features), replace=False)
        pr_real = real_features[np.sort(pick)]
    else:
        pr_real = real_features
    kid_mean, kid_std = formulas.kernel_inception_distance(real_features, features, seed=seed)
    is_mean, is_std = formulas.inception_score(probabilities)
    precision, recall = formulas.precision_recall(pr_real, features)
    return {
        "fid": formulas.frechet_distance(mu, sigma, real_stats["mu"], real_stats["sigma"]),
        "kid_mean": kid_mean, "kid_std": kid_std, "is_mean": is_mean, "is_std": is_std,
        "precision": precision, "recall": recall, "n_samples": len(features), "extractor": extractor.name,
    }
