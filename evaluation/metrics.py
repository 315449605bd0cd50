"""Sample-quality metrics (FID, KID, IS, precision/recall) that match the published code, offline.

Each number is only comparable to numbers computed the same way, so every
formula follows one reference implementation and says which:

* FID: `calculate_frechet_distance` of bioinf-jku/TTUR `fid.py`.
* KID: the unbiased MMD^2 estimator with the cubic polynomial kernel of
  "Demystifying MMD GANs", averaged over random subsets like `compute_kid` of
  NVlabs/stylegan2-ada.
* IS: `get_inception_score` of openai/improved-gan (Salimans et al.).
* Precision/recall: Kynkaenniemi et al. 2019 (stylegan2-ada `precision_recall.py`).

The feature networks are pluggable (`load_extractor`), and every reported
number carries the extractor's name, because an FID computed on MNIST
classifier features has nothing in common with an Inception FID except the
formula.  Images always enter as uint8: generator output must be quantized
exactly like the real PNGs it is compared with (clean-fid, Parmar et al. 2022,
shows that float-vs-uint8 inputs, different resizers or JPEG compression move
FID by several points).

`python -m evaluation.metrics --train_classifier mnist|fashion|cifar10` trains the small
classifier used as the offline feature network for MNIST-like data and CIFAR-10.
"""

import argparse
import glob
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
import typing
import warnings
import zipfile

import numpy as np
from google.protobuf.message import DecodeError
from scipy import linalg, special

from datasets.formats import dataset_directory, load_mnist_like, read_cifar10
from ops import conv2d, linear, lrelu
from runtime.errors import UserError
from runtime.tf_runtime import session_config, tf
from utils import file_digest, write_atomically

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

CLASSIFIER_DATASETS = {"mnist": "MNIST", "fashion": "Fashion-MNIST", "cifar10": "CIFAR-10"}
CLASSIFIER_SCOPE = "classifier"
CLASSIFIER_FEATURES = 128
_CLASSIFIER_PREFIX = "classifier"  # checkpoint files: classifier.index, classifier.data-*
_CLASSIFIER_INFO = "classifier.json"
_NUM_CLASSES = 10
_MNIST_SHAPE = (28, 28, 1)
_CIFAR_SHAPE = (32, 32, 3)

# Tensor names inside TTUR's classify_image_graph_def.pb (inception-2015-12-05).
_INCEPTION_INPUT = "ExpandDims:0"
_INCEPTION_POOL3 = "pool_3:0"
_INCEPTION_LOGITS_MATMUL = "softmax/logits/MatMul"
_RESIZE_OPS = ("ResizeBilinear", "ResizeBicubic", "ResizeNearestNeighbor")  # the ones with both attributes below


# ---------------------------------------------------------------------------
# The formulas (NumPy only, so anything can call them on saved features).
# ---------------------------------------------------------------------------


def feature_statistics(features):
    """Mean and covariance of [N, D] features, in float64 like TTUR's activation arrays."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least 2 feature vectors as an [N, D] array, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)), exactly as TTUR computes it.

    Like TTUR: if the product is singular enough that its square root is not
    finite, `eps` is added to both diagonals; a complex square root is accepted
    (real part taken) only if the imaginary part of its diagonal is below 1e-3,
    otherwise ValueError, because then the covariances are not valid ones.
    TTUR calls `sqrtm(..., disp=False)`; `disp` only silences SciPy's
    "singular matrix" message and is deprecated since SciPy 1.17, so the warning
    is silenced here instead and the matrix is the same.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics differ in shape: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in sqrt(sigma1 sigma2)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def kernel_inception_distance(features_a, features_b, num_subsets=100, max_subset_size=1000, seed=0):
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, mean and std over random subsets.

    Per subset of m vectors from each side (drawn without replacement, as in
    stylegan2-ada's `compute_kid`), the within-set kernel sums skip the
    diagonal (that is what makes the estimate unbiased, so it can be negative)
    and the cross term averages all m^2 pairs.  The std over subsets is what the
    KID paper reports beside the mean.  `seed` makes it repeatable, which the
    reference (global NumPy RNG) is not.
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    dim = a.shape[1]
    m = min(len(a), len(b), max_subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 feature vectors on each side")
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        within = _cubic_kernel(x, x, dim) + _cubic_kernel(y, y, dim)
        values[i] = (within.sum() - np.trace(within)) / (m * (m - 1)) - 2 * _cubic_kernel(x, y, dim).sum() / (m * m)
    return float(values.mean()), float(values.std())


def _cubic_kernel(x, y, dim):
    """(x.y / d + 1)^3 for all pairs; cubing by multiplication is 5x faster than `** 3` here."""
    k = x @ y.T
    k /= dim
    k += 1
    return k * k * k


def inception_score(probs, splits=10):
    """exp(E_x KL(p(y|x) || p(y))) per split, mean and std over splits (improved-gan's code).

    The only difference from the reference is `rel_entr`, which gives the
    0 * log 0 = 0 limit where a float32 softmax underflowed to exactly 0 (the
    reference would return NaN there); for positive probabilities it is the
    same sum.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) < splits:
        raise ValueError(f"need an [N, classes] array with N >= splits={splits}, got shape {probs.shape}")
    scores = []
    for i in range(splits):
        part = probs[i * len(probs) // splits:(i + 1) * len(probs) // splits]
        kl = special.rel_entr(part, part.mean(axis=0, keepdims=True)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def _squared_distances(rows, columns, column_norms):
    """Pairwise squared Euclidean distances, via norms and one matmul like the reference."""
    distances = (rows * rows).sum(axis=1)[:, None] - 2 * rows @ columns.T + column_norms[None, :]
    return np.maximum(distances, 0, out=distances)


def _knn_radii(features, k, batch_size):
    """Squared distance from each vector to its k-th nearest neighbour (itself excluded)."""
    norms = (features * features).sum(axis=1)
    radii = np.empty(len(features), dtype=features.dtype)
    for start in range(0, len(features), batch_size):
        distances = _squared_distances(features[start:start + batch_size], features, norms)
        # Column 0 of the sorted row is the vector itself (distance 0), so index k is the k-th neighbour.
        radii[start:start + batch_size] = np.partition(distances, k, axis=1)[:, k]
    return radii


def _fraction_inside(points, centers, radii, batch_size):
    """Share of `points` inside at least one hypersphere (centers[j], radii[j])."""
    norms = (centers * centers).sum(axis=1)
    inside = np.empty(len(points), dtype=bool)
    for start in range(0, len(points), batch_size):
        distances = _squared_distances(points[start:start + batch_size], centers, norms)
        inside[start:start + batch_size] = (distances <= radii[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(real_features, fake_features, k=3, batch_size=1000):
    """Improved precision and recall (Kynkaenniemi et al. 2019) with k-NN hypersphere manifolds.

    Precision: share of fakes inside the real manifold (union of balls around
    each real vector reaching its k-th real neighbour); recall: the same with
    the roles swapped.  Distances are computed `batch_size` rows at a time
    against the whole other set, so 10k x 2048 features need about
    batch_size x 10k x 4 bytes (40 MB) at once instead of 10k^2.  The reference
    stores distances in float16 to save GPU memory; float32 here only avoids its
    rounding.
    """
    real = np.asarray(real_features, dtype=np.float32)
    fake = np.asarray(fake_features, dtype=np.float32)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} vectors on each side")
    precision = _fraction_inside(fake, real, _knn_radii(real, k, batch_size), batch_size)
    recall = _fraction_inside(real, fake, _knn_radii(fake, k, batch_size), batch_size)
    return precision, recall


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


def _classifier_prefix(checkpoint_dir, dataset):
    return os.path.join(classifier_directory(checkpoint_dir, dataset), _CLASSIFIER_PREFIX)


def classifier_is_trained(checkpoint_dir, dataset):
    """True once `train_classifier` has saved weights for `dataset` under `checkpoint_dir`."""
    return os.path.isfile(_classifier_prefix(checkpoint_dir, dataset) + ".index")


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
                            f"train it with: python -m evaluation.metrics --train_classifier {dataset}")
        self.dataset = dataset
        self.spec = CLASSIFIERS[dataset]
        prefix = _classifier_prefix(checkpoint_dir, dataset)
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
        with open(os.path.join(classifier_directory(checkpoint_dir, dataset), _CLASSIFIER_INFO)) as f:
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
        f"python -m evaluation.metrics --train_classifier {dataset if dataset in CLASSIFIER_DATASETS else 'mnist'}")


# ---------------------------------------------------------------------------
# Real statistics cache and the evaluation entry point.
# ---------------------------------------------------------------------------


def statistics_from_images(extractor, images):
    """dict(mu, sigma, features) of `images` under `extractor`."""
    features = extractor.features(images)
    mu, sigma = feature_statistics(features)
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
    mu, sigma = feature_statistics(features)
    real_features = real_stats["features"]
    if len(real_features) > len(features):
        pick = np.random.default_rng(seed).choice(len(real_features), len(features), replace=False)
        pr_real = real_features[np.sort(pick)]
    else:
        pr_real = real_features
    kid_mean, kid_std = kernel_inception_distance(real_features, features, seed=seed)
    is_mean, is_std = inception_score(probabilities)
    precision, recall = precision_recall(pr_real, features)
    return {
        "fid": frechet_distance(mu, sigma, real_stats["mu"], real_stats["sigma"]),
        "kid_mean": kid_mean, "kid_std": kid_std, "is_mean": is_mean, "is_std": is_std,
        "precision": precision, "recall": recall, "n_samples": len(features), "extractor": extractor.name,
    }


def format_table(results):
    """Markdown table of one `evaluate` result, or of a list of (label, result) rows.

    The feature network is printed on every row: an FID is meaningless without it.
    """
    rows = [("generated samples", results)] if isinstance(results, dict) else results
    lines = ["| images | FID | KID (mean ± std) | IS (mean ± std) | precision | recall | n | features |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for label, r in rows:
        lines.append(f"| {label} | {r['fid']:.3f} | {r['kid_mean']:.4g} ± {r['kid_std']:.3g} | "
                     f"{r['is_mean']:.3f} ± {r['is_std']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['n_samples']} | {r['extractor']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Class statistics of generated samples, from the domain classifier.
# ---------------------------------------------------------------------------


def domain_classifier(dataset, checkpoint_dir):
    """The dataset's own trained classifier (MNIST / Fashion-MNIST / CIFAR-10), or None if there is none.

    Class statistics need a classifier of the dataset's classes whatever network
    the FID uses: Inception's ImageNet classes say nothing about digits.
    """
    if dataset in CLASSIFIER_DATASETS and classifier_is_trained(checkpoint_dir, dataset):
        return ClassifierExtractor(checkpoint_dir, dataset)
    return None


def kl_to_uniform(class_counts):
    """KL(p || uniform) in nats of the histogram `class_counts` over K classes.

    0 when every class is equally frequent, ln K when one class takes all: the
    mode-collapse measure of unconditional GANs on labelled data (beside the
    number of classes present), e.g. the stacked-MNIST tables of Unrolled GAN
    and VEEGAN.  Empty classes contribute 0 (0 log 0 = 0).
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.sum() <= 0 or (counts < 0).any():
        raise ValueError(f"need a 1-d histogram of non-negative counts with a positive total, got {counts}")
    p = counts / counts.sum()
    return float(special.rel_entr(p, np.full_like(p, 1.0 / len(p))).sum())


def class_statistics(probabilities, requested_labels=None):
    """What the domain classifier says about generated samples, from its [N, K] class probabilities.

    Every model: `classes_present` (classes predicted for at least one sample)
    and `class_kl_uniform` (`kl_to_uniform` of the predicted-class histogram),
    which expose mode collapse in an unconditional model.  A conditional model
    also gets `class_accuracy`: the share of samples classified as the class
    they were generated for (`requested_labels`), which says whether G obeys
    its labels, something FID cannot see.
    """
    probabilities = np.asarray(probabilities)
    predicted = probabilities.argmax(axis=1)
    counts = np.bincount(predicted, minlength=probabilities.shape[1])
    statistics = {"classes_present": int((counts > 0).sum()), "class_kl_uniform": kl_to_uniform(counts)}
    if requested_labels is not None:
        statistics["class_accuracy"] = float(np.mean(predicted == np.asarray(requested_labels)))
    return statistics


def format_class_statistics(results):
    """One line of the class statistics in `results` (from `class_statistics`, plus the classifier's name)."""
    line = (f"classes present {results['classes_present']}, KL(class histogram || uniform) "
            f"{results['class_kl_uniform']:.4f} nats")
    if "class_accuracy" in results:
        line = f"requested-class accuracy {results['class_accuracy']:.4f}, " + line
    return f"{line} [{results['class_classifier']}, n={results['n_samples']}]"


# ---------------------------------------------------------------------------
# Training the classifier.
# ---------------------------------------------------------------------------


def train_classifier(dataset, train_data, test_data, checkpoint_dir="checkpoint", steps=None, batch_size=64,
                     learning_rate=1e-3, seed=0, training_data=None, log=print):
    """Trains the classifier on (images uint8, labels), measures test accuracy, saves both.

    Returns the measured test accuracy.  The accuracy is measured through a
    `ClassifierExtractor` reloaded from the saved checkpoint, so it checks the
    file that metrics will actually use.  Only trainable variables are saved
    (no Adam slots): the checkpoint is small and its digest covers just the net.
    `steps` None is the dataset's default; `training_data` (what the images
    are, e.g. "lossy JPEG class folders") goes into classifier.json and the
    extractor's name.
    """
    spec = CLASSIFIERS[dataset]
    steps = steps or spec.steps
    train_images, train_labels = train_data
    prefix = _classifier_prefix(checkpoint_dir, dataset)
    info_path = os.path.join(classifier_directory(checkpoint_dir, dataset), _CLASSIFIER_INFO)
    with tf.Graph().as_default() as graph:
        v1.set_random_seed(seed)
        images = v1.placeholder(tf.float32, [None, *spec.input_shape])
        labels = v1.placeholder(tf.int64, [None])
        _, logits = spec.network(images)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
        # Linear decay to 0: the last steps average out minibatch noise, +0.3 points of MNIST test accuracy here.
        global_step = v1.train.get_or_create_global_step()
        decayed = v1.train.polynomial_decay(learning_rate, global_step, steps, end_learning_rate=0.0)
        train_op = v1.train.AdamOptimizer(decayed).minimize(loss, global_step=global_step)
        saver = v1.train.Saver(v1.trainable_variables(CLASSIFIER_SCOPE))
        rng = np.random.default_rng(seed)
        with v1.Session(graph=graph, config=session_config()) as session:
            session.run(v1.global_variables_initializer())
            order = np.array([], dtype=np.int64)
            for step in range(1, steps + 1):
                if len(order) < batch_size:
                    order = np.concatenate([order, rng.permutation(len(train_images))])
                batch, order = order[:batch_size], order[batch_size:]
                batch_images = train_images[batch]
                if spec.mirror:
                    flipped = rng.random(len(batch)) < 0.5
                    batch_images = np.where(flipped[:, None, None, None], batch_images[:, :, ::-1], batch_images)
                feed = {images: batch_images.astype(np.float32), labels: train_labels[batch]}
                batch_loss, batch_accuracy, _ = session.run([loss, accuracy, train_op], feed)
                if step % 500 == 0 or step == steps:
                    log(f"step {step}/{steps}: loss {batch_loss:.4f}, batch accuracy {batch_accuracy:.3f}")
            os.makedirs(os.path.dirname(prefix), exist_ok=True)
            if os.path.exists(info_path):
                os.remove(info_path)  # the old accuracy no longer describes the weights about to be written
            saver.save(session, prefix, write_meta_graph=False)
    extractor = ClassifierExtractor(checkpoint_dir, dataset)
    test_images, test_labels = test_data
    test_accuracy = float(np.mean(extractor.class_probabilities(test_images).argmax(axis=1) == test_labels))
    info = {"dataset": dataset, "test_accuracy": test_accuracy, "test_images": len(test_labels),
            "train_images": len(train_labels), "steps": steps, "batch_size": batch_size, "digest": extractor.digest}
    if training_data:
        info["training_data"] = training_data
    write_atomically(info_path, json.dumps(info, indent=2) + "\n")
    log(f"test accuracy {test_accuracy:.4f} on {len(test_labels)} {CLASSIFIER_DATASETS[dataset]} test images; "
        f"saved to {os.path.dirname(prefix)}")
    return test_accuracy


def train_classifier_from_directory(dataset, data_dir="data", checkpoint_dir="checkpoint", steps=None, log=print):
    """Reads the dataset's train and test splits and trains the classifier (the CLI's and the benchmark's entry).

    CIFAR-10's classifier records which copy it learned from (binary batches or a lossy JPEG copy)."""
    directory = dataset_directory(dataset, data_dir)
    if dataset == "cifar10":
        train, test = read_cifar10(directory, "train"), read_cifar10(directory, "test")
        return train_classifier(dataset, train[:2], test[:2], checkpoint_dir=checkpoint_dir, steps=steps,
                                training_data=train.origin, log=log)
    return train_classifier(dataset, load_mnist_like(directory, "train", dataset),
                            load_mnist_like(directory, "test", dataset),
                            checkpoint_dir=checkpoint_dir, steps=steps, log=log)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_classifier", required=True, choices=sorted(CLASSIFIER_DATASETS),
                        help="train the MNIST / Fashion-MNIST / CIFAR-10 feature classifier and print its test "
                             "accuracy")
    parser.add_argument("--data_dir", default="data",
                        help="folder holding <dataset>/ (IDX files; CIFAR-10's binary batches or class folders)")
    parser.add_argument("--checkpoint_dir", default="checkpoint",
                        help="saves to <checkpoint_dir>/classifier_<dataset>/")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps of batch 64 (default: " + ", ".join(
                            f"{name} {spec.steps}" for name, spec in CLASSIFIERS.items()) + ")")
    args = parser.parse_args(argv)
    try:
        train_classifier_from_directory(args.train_classifier, args.data_dir, args.checkpoint_dir, args.steps)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
