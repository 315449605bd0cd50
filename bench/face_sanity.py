"""Do the face metrics move the right way?  Real CelebA crops against degraded ones, FD_face and detection rate.

Before trusting FD_face (dlib ResNet-128 embeddings) and the face detection
rate (dlib's CNN detector) on GAN samples, this script scores known
degradations of real faces: the shared first 10,000 CelebA faces (89x109),
cropped and resized exactly as training does with `--input_height 54
--output_height 64` (a 54 px centre crop -> 64x64), extracted under --work_dir
once.  With n images per set, real sets are disjoint slices in file order:
R_k = [k n, (k + 1) n).

* real-vs-real floor: R_1 against R_0, R_3 against R_2, ... (--pairs pairs),
  mean ± std: FD_face's finite-sample bias, below which nothing can score;
* degradations of R_1, each against R_0 (so a row differs from the first floor
  pair only by the degradation): Gaussian blur (σ in pixels), Gaussian noise
  (std on the [-1, 1] scale G works in), pixelation (block means), patches
  shuffled within each image, pure uniform noise, and collapse (one face, or
  ten faces, of R_1 repeated n times).

Every degradation must score above the floor's largest pair, and blur, noise
and pixelation must grow with strength; the checks are printed under the table.
The detection rate is expected to miss collapse (repeated real faces are all
detected): FD_face must catch it.

    python bench/face_sanity.py [--data_dir ../shared/data] [--work_dir /tmp/face_sanity] [--n 500] [--pairs 3]
"""

import argparse
import os
import sys
import time

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_DIR)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ablation  # noqa: E402
import numpy as np  # noqa: E402
from quality_sanity import add_noise, blur  # noqa: E402

from evaluation import extractors  # noqa: E402
from evaluation import faces as face_metrics  # noqa: E402
from evaluation import quality as evaluation  # noqa: E402
from runtime.errors import run_command  # noqa: E402

PATCH = 16  # patch-shuffled: 16x16 patches, a 4x4 grid of a 64x64 face


def pixelated(images, block):
    """Each block x block square replaced by its mean colour (sizes must divide), re-quantized."""
    n, height, width, channels = images.shape
    blocks = images.reshape(n, height // block, block, width // block, block, channels).mean(axis=(2, 4))
    return np.rint(blocks).astype(np.uint8).repeat(block, axis=1).repeat(block, axis=2)


def patch_shuffled(images, patch=PATCH, seed=0):
    """The patch x patch squares of each image in a random order of their own (every pixel kept)."""
    n, height, width, channels = images.shape
    rows, columns = height // patch, width // patch
    patches = images.reshape(n, rows, patch, columns, patch, channels).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(n, rows * columns, patch, patch, channels)
    rng = np.random.default_rng(seed)
    shuffled = np.stack([image[rng.permutation(rows * columns)] for image in patches])
    return shuffled.reshape(n, rows, columns, patch, patch, channels).transpose(0, 1, 3, 2, 4, 5).reshape(
        images.shape)


def degraded_rows(sample, seed=0):
    """(label, uint8 images, group) of each degradation of `sample`; rows of a group grow in strength."""
    n = len(sample)
    return [
        *[(f"blurred σ {sigma} px", blur(sample, sigma), "blur") for sigma in (1, 2)],
        *[(f"noisy std {std} ([-1, 1] scale)", add_noise(sample, std * 127.5, seed), "noise") for std in (0.1, 0.3)],
        *[(f"pixelated {block} px blocks", pixelated(sample, block), "pixelation") for block in (4, 8)],
        (f"patch-shuffled ({PATCH} px patches)", patch_shuffled(sample, seed=seed), None),
        ("pure uniform noise", np.random.default_rng(seed).integers(0, 256, sample.shape, dtype=np.uint8), None),
        ("one face repeated", np.repeat(sample[:1], n, axis=0), "collapse"),
        ("ten faces repeated", np.resize(sample[:10], sample.shape), "collapse"),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=os.path.join(os.path.dirname(REPO_DIR), "shared", "data"),
                        help="folder holding celebA_first10k_89x109.tar")
    parser.add_argument("--work_dir", default="/tmp/face_sanity", help="the faces are extracted here once")
    parser.add_argument("--n", type=int, default=500, help="images per set")
    parser.add_argument("--pairs", type=int, default=3, help="disjoint real-vs-real pairs for the floor")
    args = parser.parse_args(argv)

    start = time.time()
    config = ablation.run_config("celebA", 0, args.work_dir,
                                 argparse.Namespace(data_dir=args.data_dir, work_dir=args.work_dir,
                                                    eval_samples=2 * args.pairs * args.n))
    config = ablation.with_data_channels(config)
    real = evaluation.real_images_uint8(config, config.eval_samples)
    sets = [real[k * args.n:(k + 1) * args.n] for k in range(2 * args.pairs)]
    faces = face_metrics.FaceMetrics()
    print(f"{len(real)} real faces from {config.data_dir} (crop {config.input_height} -> {config.output_height}); "
          f"{args.n} per set", file=sys.stderr)

    references = [extractors.statistics_from_images(faces.embedder, sets[2 * k]) for k in range(args.pairs)]
    floors, detection = [], []
    for k in range(args.pairs):
        scores = faces.scores(sets[2 * k + 1], references[k])
        floors.append(scores["fd_face"])
        detection.append(scores["face_detection_rate"])
        print(f"floor pair {k + 1}: FD_face {scores['fd_face']:.4f}, detection {scores['face_detection_rate']:.3f} "
              f"({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
    rows = []
    for label, images, group in degraded_rows(sets[1]):
        scores = faces.scores(images, references[0])
        rows.append((label, scores, group))
        print(f"{label}: FD_face {scores['fd_face']:.4f}, detection {scores['face_detection_rate']:.3f} "
              f"({time.time() - start:.0f} s)", file=sys.stderr, flush=True)

    floor = np.mean(floors)
    print(f"Machine: {ablation.cpu_model()}, {time.strftime('%Y-%m-%d')}; {args.n} images per set, reference R_0 = "
          f"faces [0, {args.n}) in file order; {time.time() - start:.0f} s in all.\n")
    print(f"| images (against R_0) | FD_face ({faces.embedder.name}) | × floor | face detection rate "
          f"({faces.detector.name}) |")
    print("|---|---:|---:|---:|")
    print(f"| real vs real, {args.pairs} disjoint pairs (floor) | {ablation.format_mean_std(floors, 4)} | 1 | "
          f"{ablation.format_mean_std(detection, 3)} |")
    for label, scores, _ in rows:
        print(f"| R_1 {label} | {scores['fd_face']:.4f} | {scores['fd_face'] / floor:.0f} | "
              f"{scores['face_detection_rate']:.3f} |")
    checks = [f"- {label}: FD_face above every real-vs-real pair: {'yes' if s['fd_face'] > max(floors) else 'NO'}"
              for label, s, _ in rows]
    for group in ("blur", "noise", "pixelation"):
        values = [s["fd_face"] for _, s, g in rows if g == group]
        checks.append(f"- {group}: FD_face grows with strength: {'yes' if values == sorted(values) else 'NO'}")
    lowest_real = min(detection)
    missed = [label for label, s, _ in rows if s["face_detection_rate"] >= lowest_real]
    print("\n" + "\n".join(checks))
    print(f"- detection rate at or above real faces' lowest ({lowest_real:.3f}), i.e. blind to: "
          f"{', '.join(missed) or 'nothing'}")
    return 0 if all(c.endswith("yes") for c in checks) else 1


if __name__ == "__main__":
    run_command(main)
