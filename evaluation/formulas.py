"""The sample-quality formulas (FID, KID, IS, precision/recall, class statistics) in NumPy, as published.

Each number is only comparable to numbers computed the same way, so every
formula follows one reference implementation and says which:

* FID: `calculate_frechet_distance` of bioinf-jku/TTUR `fid.py`.
* KID: the unbiased MMD^2 estimator with the cubic polynomial kernel of
  "Demystifying MMD GANs", averaged over random subsets like `compute_kid` of
  NVlabs/stylegan2-ada.
* IS: `get_inception_score` of openai/improved-gan (Salimans et al.).
* Precision/recall: Kynkaenniemi et al. 2019 (stylegan2-ada `precision_recall.py`).

No TensorFlow here: the formulas take feature vectors and class probabilities,
so anything can call them on saved features, and a reader can check them
against the references without the feature networks (`evaluation/extractors.py`),
which decide what the vectors mean.
"""

import warnings

import numpy as np
from scipy import linalg, special

# ---------------------------------------------------------------------------
# Distances between feature sets, and the Inception Score.
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
# Class statistics of generated samples, from the domain classifier's probabilities.
# ---------------------------------------------------------------------------


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
# Tables of the results.
# ---------------------------------------------------------------------------


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

