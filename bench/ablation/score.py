"""Scoring a run's checkpoints: the quality meter (the dataset's domain classifier) or, for datasets without
a feature network, the diversity of samples against real images in pixel space; the real-vs-real floor; and
`compare_average`, which scores the same checkpoints from G itself and from its moving average."""

import dataclasses
import os
import sys

import numpy as np

from bench import harness
from bench.ablation.plan import DATASETS, data_dir_for, run_architecture, run_config, scored_by_diversity
from runtime.errors import UserError
from training.watchdog import NEAR_DUPLICATE_QUANTILE

CLASSIFIER_SIZE = 28  # the MNIST / Fashion-MNIST classifiers take 28x28x1 (CIFAR-10's takes its 32x32 as they are)
METRICS = ("fid", "kid_mean", "precision", "recall", "class_accuracy", "classes_present", "class_kl_uniform")
# Diversity scoring (datasets without a feature network): this many samples against as many real images.
DIVERSITY_SAMPLES = 256
# Face scoring (--face_metrics datasets): FD_face and the detection rate of this many samples, FD_face against
# as many real faces (the first ones in file order): issue 26's protocol, 500 against 500.
FACE_SAMPLES = 500
# dlib embeds and detects at about 0.17 s an image here, 85 s per FACE_SAMPLES: faces are scored only at the
# checkpoint nearest this step (issue 26's "faces after 100 batches" target) and at the last one.
FACE_TARGET_STEP = 100


def diversity_scores(samples, real):
    """{"diversity_ratio", "near_duplicates", "near_duplicate_quantile"} of uint8 samples against uint8 real
    images of the same size: the samples' mean pairwise (pixel-space L2) distance over the real images', and the
    fraction of sample pairs closer than the real pairs' watchdog.NEAR_DUPLICATE_QUANTILE distance (recorded with
    it).  The collapse watchdog's own in-graph measures and quantile (training/diversity.py, training/watchdog.py),
    so a table and a training log mean the same thing by them."""
    from runtime.tf_runtime import tf
    from training.diversity import mean_pairwise_distance, near_duplicate_fraction

    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        fake, real = (tf.constant(harness.to_float(images)) for images in (samples, real))
        ratio = mean_pairwise_distance(fake) / mean_pairwise_distance(real)
        ratio, fraction = session.run([ratio, near_duplicate_fraction(fake, real, NEAR_DUPLICATE_QUANTILE)])
    return {"diversity_ratio": float(ratio), "near_duplicates": float(fraction),
            "near_duplicate_quantile": NEAR_DUPLICATE_QUANTILE}


def resized_classifier(checkpoint_dir, dataset):
    """The dataset's 28x28 classifier for a model trained at another size (the unconditional MNIST G makes
    32x32): every image, real (which training resized 28 -> 32) and generated alike, is resized back to 28x28
    by PIL's antialiased bilinear filter before the classifier, so both sides take the same path."""
    from PIL import Image

    from evaluation import extractors

    class ResizedClassifier(extractors.ClassifierExtractor):
        def _prepare(self, batch):
            resized = [np.asarray(Image.fromarray(image[:, :, 0]).resize((CLASSIFIER_SIZE, CLASSIFIER_SIZE),
                                                                          Image.BILINEAR)) for image in batch]
            return super()._prepare(np.stack(resized)[:, :, :, np.newaxis])

    extractor = ResizedClassifier(checkpoint_dir, dataset)
    extractor.name += f", images resized to {CLASSIFIER_SIZE}x{CLASSIFIER_SIZE}"
    return extractor


_EXTRACTORS = {}


def meter_for(config, args):
    """The quality meter of a run's config, with the classifier and real statistics kept under --work_dir
    (the classifier loaded once per dataset and size, the real statistics read from their cache)."""
    from evaluation import extractors
    from evaluation import quality as evaluation

    config = dataclasses.replace(config, out_dir=args.work_dir)
    key = (config.dataset, config.output_height)
    if key not in _EXTRACTORS:
        native = config.output_height == extractors.CLASSIFIERS[config.dataset].input_shape[0]
        _EXTRACTORS[key] = (evaluation.load_extractor(config) if native
                            else resized_classifier(os.path.join(config.out_dir, config.checkpoint_dir),
                                                    config.dataset))
    return evaluation.QualityMeter(config, _EXTRACTORS[key])


def score_checkpoints(config, saved, args, average=True):
    """Each saved checkpoint's scores, with its step, images seen and wall time (`average=False`: of G's own
    weights in a run trained with --g_ema, instead of their moving average)."""
    from training.checkpoints import checkpoint_step
    from training.inference import restored_generator

    scored = []
    for path, seconds in saved:
        with restored_generator(config, checkpoint=path, average=average) as restored:
            results = meter_for(restored.config, args).measure(restored.session, restored.generator)
        step = checkpoint_step(path)
        entry = {"step": step, "seconds": round(seconds, 1), "n_samples": int(results["n_samples"]),
                 "extractor": results["extractor"]}
        entry.update({key: float(results[key]) for key in METRICS if key in results})
        scored.append(entry)
    return scored


_REAL_IMAGES = {}


def with_data_channels(config):
    """`config` with the data's channel count (a run's config leaves it to the data, the real images need it)."""
    from datasets import pipeline as data

    return dataclasses.replace(config, c_dim=data.open_source(config).c_dim)


def real_images_for_diversity(config, count, offset=0):
    """Real images [offset, offset + count) in file order, preprocessed as training does (uint8), read once."""
    from evaluation import quality as evaluation

    key = (config.dataset, config.data_dir, config.input_height, config.output_height)
    if key not in _REAL_IMAGES:
        _REAL_IMAGES[key] = evaluation.real_images_uint8(with_data_channels(config), 2 * DIVERSITY_SAMPLES)
    return _REAL_IMAGES[key][offset:offset + count]


_FACE_METRICS = {}


def face_scores(config, samples, args):
    """FD_face and the face detection rate of uint8 `samples` (face_metrics.FaceMetrics.scores) against the
    first FACE_SAMPLES real faces, their statistics cached under --work_dir; the networks are loaded once."""
    from evaluation import quality as evaluation

    if "faces" not in _FACE_METRICS:
        _FACE_METRICS["faces"] = evaluation.load_face_metrics(dataclasses.replace(config, face_metrics=True))
    faces = _FACE_METRICS["faces"]
    real = dataclasses.replace(with_data_channels(config), out_dir=args.work_dir, eval_samples=FACE_SAMPLES)
    return faces.scores(samples, evaluation.cached_real_statistics(real, faces.embedder))


def face_scored_steps(steps):
    """The steps among `steps` whose samples are also scored as faces: the one nearest FACE_TARGET_STEP and
    the last."""
    return {min(steps, key=lambda step: abs(step - FACE_TARGET_STEP)), max(steps)} if steps else set()


def score_samples(config, sampled, args):
    """Diversity scores of each (step, seconds, uint8 samples) in `sampled` (the first DIVERSITY_SAMPLES samples
    against as many real images), and with --face_metrics, at face_scored_steps, its face scores (the first
    FACE_SAMPLES samples): the one scoring path of this project's checkpoints and of the PyTorch reference's
    sample files."""
    real = real_images_for_diversity(config, DIVERSITY_SAMPLES)
    faces_at = face_scored_steps([step for step, _, _ in sampled]) if config.face_metrics else set()
    scored = []
    for step, seconds, samples in sampled:
        entry = {"step": step, "seconds": round(seconds, 1), "n_samples": DIVERSITY_SAMPLES,
                 "extractor": "pixels", **diversity_scores(samples[:DIVERSITY_SAMPLES], real)}
        if step in faces_at:
            entry.update(face_scores(config, samples[:FACE_SAMPLES], args), face_samples=FACE_SAMPLES)
        scored.append(entry)
    return scored


def samples_count(config):
    """How many samples a checkpoint is scored on: DIVERSITY_SAMPLES, FACE_SAMPLES with --face_metrics."""
    return max(DIVERSITY_SAMPLES, FACE_SAMPLES) if config.face_metrics else DIVERSITY_SAMPLES


def score_diversity(config, saved, args, average=True):
    """score_samples of each saved checkpoint's samples (seeded z, seed + 2), with its step and wall time
    (`average` as in score_checkpoints)."""
    from evaluation import quality as evaluation
    from training.checkpoints import checkpoint_step
    from training.inference import restored_generator

    sampled = []
    for path, seconds in saved:
        with restored_generator(config, checkpoint=path, average=average) as restored:
            samples = evaluation.generate_uint8(restored.session, restored.generator, restored.config,
                                                samples_count(config), config.seed + 2)
        sampled.append((checkpoint_step(path), seconds, samples))
    return score_samples(config, sampled, args)


def ensure_classifier(dataset, args):
    if scored_by_diversity(dataset):
        return  # scored in pixel space
    from evaluation import classifier as classifier_training
    from evaluation import extractors

    checkpoint_dir = os.path.join(args.work_dir, "checkpoint")
    name = DATASETS[dataset]["dataset"]
    if not extractors.classifier_is_trained(checkpoint_dir, name):
        print(f"training the {name} classifier first", file=sys.stderr)
        classifier_training.train_classifier_from_directory(name, data_dir_for(dataset, args), checkpoint_dir)


def floor_size(dataset, args):
    """How many images a dataset's real-vs-real floor scores, as many as a checkpoint's score takes."""
    return DIVERSITY_SAMPLES if scored_by_diversity(dataset) else args.eval_samples


def face_floor_record(dataset, args):
    """FD_face's and the detection rate's real-vs-real floor (faces [n, 2n) against [0, n), n = FACE_SAMPLES)
    as a results record of kind "face_floor"; None for a dataset not scored as faces."""
    config = run_config(dataset, 0, args.work_dir, args)
    if not config.face_metrics:
        return None
    from evaluation import quality as evaluation

    real = evaluation.real_images_uint8(with_data_channels(config), 2 * FACE_SAMPLES)
    return {"kind": "face_floor", "dataset": dataset, "n": FACE_SAMPLES,
            **face_scores(config, real[FACE_SAMPLES:], args)}


def floor_record(dataset, args):
    """The dataset's real-vs-real floor as a results record: train [n, 2n) scored as samples against the reference
    [0, n), n = floor_size."""
    config = run_config(dataset, 0, args.work_dir, args)
    n = floor_size(dataset, args)
    if scored_by_diversity(dataset):
        scores = diversity_scores(real_images_for_diversity(config, n, offset=n), real_images_for_diversity(config, n))
        return {"kind": "floor", "dataset": dataset, "n": n, "extractor": "pixels", **scores}
    from evaluation import extractors
    from evaluation import quality as evaluation

    meter = meter_for(config, args)
    real = evaluation.real_images_uint8(dataclasses.replace(config, eval_samples=2 * n), 2 * n)[n:]
    results = extractors.evaluate(real, meter.real_stats, meter.extractor)
    return {"kind": "floor", "dataset": dataset, "n": n, "extractor": results["extractor"],
            **{key: float(results[key]) for key in ("fid", "kid_mean", "precision", "recall")}}


def command_compare_average(args):
    """What sampling from G's moving average adds, measured on the same runs (no training): every kept
    checkpoint of each finished run scored from G's own weights and from their average."""
    from training.checkpoints import checkpoint_paths, checkpoint_step

    dataset = args.dataset
    if dataset not in DATASETS:
        raise UserError(f"--dataset: one of {', '.join(DATASETS)} (got {dataset!r})")
    diversity = scored_by_diversity(dataset)
    score = score_diversity if diversity else score_checkpoints
    columns = ("diversity_ratio", "near_duplicates") if diversity else ("fid", "recall", "classes_present")
    print(harness.table_header(["recipe", "seed", "step", *(f"G itself: {c}" for c in columns),
                                *(f"average: {c}" for c in columns)]))
    for recipe in args.recipes.split(","):
        for seed in map(int, args.seeds.split(",")):
            out_dir = os.path.join(args.work_dir, "runs", dataset, recipe, f"seed{seed}_budget{args.budget}")
            config = run_config(dataset, seed, out_dir, args)
            if not (run_architecture(out_dir) or {}).get("g_ema"):
                raise UserError(f"{out_dir}: no run trained with --g_ema there; run it first (`run`)")
            saved = [(path, 0.0) for path in sorted(checkpoint_paths(config.checkpoint_path), key=checkpoint_step)]
            for own, averaged in zip(score(config, saved, args, average=False), score(config, saved, args),
                                     strict=True):
                cells = [f"{entry[c]:.3f}" if c != "fid" else f"{entry[c]:.1f}" for entry in (own, averaged)
                         for c in columns]
                print(harness.table_row([recipe, seed, own["step"], *cells]), flush=True)
