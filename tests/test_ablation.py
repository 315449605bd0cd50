"""The ablation harness's pure parts: the flags each run gets, aggregation over seeds, the equal-time
checkpoint, and the skip logic that makes it resumable.  No training here."""

import argparse
import json
import math
import pathlib
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

import config as config_lib
from bench.ablation import plan, render, run, score
from bench.ablation.__main__ import main
from datasets import formats
from evaluation import extractors
from runtime.errors import UserError


def test_mean_std_is_the_sample_std_over_finite_values():
    mean, std, n = render.mean_std([2.0, 4.0, 9.0, None, math.nan])
    assert (mean, n) == (5.0, 3)
    assert std == pytest.approx(math.sqrt(((2 - 5) ** 2 + (4 - 5) ** 2 + (9 - 5) ** 2) / 2))  # ddof 1: sqrt(13)
    assert render.mean_std([7.0]) == (7.0, None, 1)
    assert render.mean_std([None]) == (None, None, 0)
    assert render.format_mean_std([2.0, 4.0, 9.0], 2) == "5.00 ± 3.61"
    assert render.format_mean_std([7.0], 1) == "7.0"
    assert render.format_mean_std([], 1) == "—"


def checkpoints(*seconds):
    return [{"step": 10 * (i + 1), "seconds": s, "fid": 100.0 - i} for i, s in enumerate(seconds)]


def test_checkpoint_at_time_takes_the_last_one_at_or_before_t():
    saved = checkpoints(20.0, 40.0, 60.0)
    assert render.checkpoint_at_time(saved, 40.0)["step"] == 20  # exactly at T counts
    assert render.checkpoint_at_time(saved, 59.9)["step"] == 20
    assert render.checkpoint_at_time(saved, 1000.0)["step"] == 30
    assert render.checkpoint_at_time(saved, 19.9) is None


def test_equal_time_is_the_median_run_and_ignores_runs_without_checkpoints():
    runs = [{"checkpoints": checkpoints(20.0, 90.0)}, {"checkpoints": checkpoints(30.0, 70.0)}, {"checkpoints": []},
            {"checkpoints": checkpoints(5.0, 10.0)}]
    assert render.equal_time(runs) == 70.0  # the low median of 10, 70 and 90 (a real run's length)
    assert render.equal_time(runs[:2]) == 70.0
    assert render.equal_time([{"checkpoints": []}]) is None


def record(dataset, recipe, seed, budget, kind="run"):
    return {"kind": kind, "dataset": dataset, "recipe": recipe, "seed": seed, "budget": budget}


def test_pending_runs_skip_finished_runs_of_the_same_budget_only():
    records = [record("mnist", "default", 1, 19200), record("mnist", "ttur", 2, 19200),
               record("mnist", "ttur", 1, 9600), {"kind": "floor", "dataset": "mnist", "n": 5000}]
    pending = run.pending_runs(records, ["mnist"], ["default", "ttur"], [1, 2], 19200)
    assert pending == [("mnist", "ttur", 1, 19200), ("mnist", "default", 2, 19200)]


def test_read_results_ignores_a_line_cut_short_by_a_killed_write(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(record("mnist", "default", 1, 19200)) + "\n" + '{"kind": "run", "datas')
    assert [run.run_key(r) for r in run.read_results(str(path))] == [("mnist", "default", 1, 19200)]
    assert run.read_results(str(tmp_path / "missing.jsonl")) == []


def test_run_plan_counts_steps_by_d_steps_and_keeps_batch_64():
    steps, flags = plan.run_plan("default", 19200)
    assert (steps, flags) == (300, ["--batch_size=64"])
    steps, flags = plan.run_plan("wgan_gp", 19200)  # 5 critic steps, each on a fresh batch
    assert steps == 60 and "--loss=wasserstein" in flags
    steps, flags = plan.run_plan("dcgan_paper", 19200)
    assert "--batch_size=128" in flags and flags[-1] == "--batch_size=64"  # the last one wins in absl
    assert plan.flag_value(flags, "batch_size") == 64 and plan.flag_value(flags, "fused_update") is True


def test_run_plan_fills_half_the_steps_and_reads_negated_booleans():
    steps, flags = plan.run_plan("smooth_noise", 19200)
    assert "--instance_noise_steps=150" in flags and steps == 300
    _, flags = plan.run_plan("carpedm20", 19200)
    assert plan.flag_value(flags, "fused_update") is False and plan.flag_value(flags, "g_steps") == 2
    with pytest.raises(UserError, match="unknown recipe 'nope'"):
        plan.run_plan("nope", 19200)


def test_a_recipe_with_the_defaults_flags_is_not_trained_twice():
    # The defaults give conditional models TTUR's rates (as ttur.flags does by name) but unconditional
    # ones a single rate: two different runs.  dcgan_paper at batch 64 is fused_k4.
    kept, same_as = plan.distinct_recipes(["default", "carpedm20", "ttur", "fused_k4", "dcgan_paper"])
    assert kept == ["default", "carpedm20", "ttur", "fused_k4"] and same_as == {"dcgan_paper": "fused_k4"}
    assert plan.settings("fused_k4")["kernel_size"] == 4 and plan.settings("default")["kernel_size"] == 5
    assert plan.settings("default")["learning_rates"] == ((4e-4, 1e-4), (2e-4, 2e-4))
    assert plan.settings("ttur")["learning_rates"] == ((4e-4, 1e-4), (4e-4, 1e-4))
    assert plan.settings("carpedm20")["learning_rates"] == ((2e-4, 2e-4), (2e-4, 2e-4))


def scored_run(recipe, seed, fids, seconds, watchdog=0):
    saved = [{"step": 100 * (i + 1), "seconds": s, "fid": f, "kid_mean": f / 2, "precision": 0.5, "recall": 0.25,
              "class_accuracy": 0.9, "classes_present": 10.0, "class_kl_uniform": 0.01, "n_samples": 5000,
              "extractor": "test features"} for i, (f, s) in enumerate(zip(fids, seconds, strict=True))]
    return {**record("mnist", recipe, seed, 19200), "checkpoints": saved, "watchdog_warnings": watchdog,
            "watchdog_examples": ["watchdog: D saturated"] if watchdog else [], "returncode": 0, "error": ""}


def test_render_shows_mean_std_over_seeds_at_equal_images_and_at_equal_time(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "DOC_PATH", str(tmp_path / "ablation.md"))
    monkeypatch.setattr(render, "DISCUSSION_PATH", str(tmp_path / "missing.md"))
    records = [scored_run("default", 1, [300.0, 100.0], [50.0, 100.0]),
               scored_run("default", 2, [200.0, 140.0], [60.0, 120.0], watchdog=3),
               scored_run("ttur", 1, [90.0, 80.0, 70.0], [40.0, 80.0, 160.0])]
    render.render(records)
    text = (tmp_path / "ablation.md").read_text()
    equal_images, equal_time = text.split("### At equal images seen")[1].split("### At equal wall-clock time")
    # Final checkpoints: default 100 and 140 -> 120 ± 28.28 (sample std); ttur 70 first (lower FID).
    assert equal_images.index("| ttur | 1/1 | 70.00 |") < equal_images.index("| default | 2/2 | 120.00 ± 28.28 |")
    assert "| 1/2 | 0/2 |" in equal_images  # one default run of two had the watchdog fire, none failed
    # T = 120 s (the median of 100, 120 and 160): default seed 1 finished at 100 s (100), seed 2 at 120 s (140),
    # ttur at its 80 s checkpoint (80).
    assert equal_time.startswith(", T = 120 s")
    assert "| default | 2/2 | 120.00 ± 28.28 |" in equal_time and "| ttur | 1/1 | 80.00 |" in equal_time
    assert (tmp_path / "ablation" / "mnist_19200_fid_vs_time.png").stat().st_size > 0


def test_diversity_scores_by_hand():
    # Two-pixel images; real pairs are 5, 6, 5 apart (mean 16/3), sample pairs 0, 10, 10 (mean 20/3).
    real = np.array([[0, 0], [3, 4], [6, 0]], np.uint8).reshape(3, 2, 1, 1)
    samples = np.array([[0, 0], [0, 0], [6, 8]], np.uint8).reshape(3, 2, 1, 1)
    scores = score.diversity_scores(samples, real)
    assert scores["diversity_ratio"] == pytest.approx(20 / 16, rel=1e-4)  # float32, as in the training graph
    # The watchdog's 2% quantile of 3 real distances is the smallest, 5 (rank floor(0.02 x 2) = 0): one pair of 3
    # is closer.
    assert scores["near_duplicates"] == pytest.approx(1 / 3) and scores["near_duplicate_quantile"] == 0.02


def faces(count, seed):
    return np.random.default_rng(seed).integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)


def test_diversity_scores_of_copies_of_one_image_and_of_the_real_images_themselves():
    real = faces(16, seed=0)
    copies = score.diversity_scores(np.repeat(faces(1, seed=1), 16, axis=0), real)
    assert copies == {"diversity_ratio": pytest.approx(0.0, abs=1e-3), "near_duplicates": 1.0,
                      "near_duplicate_quantile": 0.02}
    itself = score.diversity_scores(real, real)
    # 120 pairs: the real distance at rank floor(0.02 x 119) = 2 has exactly two pairs below it.
    assert itself == {"diversity_ratio": pytest.approx(1.0), "near_duplicates": pytest.approx(2 / 120),
                      "near_duplicate_quantile": 0.02}


def diversity_run(recipe, seed, scores, watchdog=0, wall=100.0, quantile=0.02):
    checkpoints = [{"step": step, "seconds": wall * step / 300, "diversity_ratio": ratio, "near_duplicates": near,
                    "near_duplicate_quantile": quantile, "n_samples": 256, "extractor": "pixels"}
                   for step, ratio, near in scores]
    return {**record("celebA", recipe, seed, 19200), "steps": 300, "checkpoints": checkpoints,
            "watchdog_warnings": watchdog, "watchdog_examples": ["watchdog: near-duplicates"] if watchdog else [],
            "returncode": 0, "error": "", "wall_seconds": wall}


def test_the_celeba_target_holds_from_step_100_at_every_checkpoint():
    collapsed_early = diversity_run("default", 1, [(50, 0.3, 0.9), (100, 0.85, 0.02), (150, 0.9, 0.05)])
    assert render.meets_diversity_target(collapsed_early)  # step 50 is before the target's start
    assert not render.meets_diversity_target(
        diversity_run("default", 1, [(100, 0.85, 0.02), (150, 0.79, 0.01)]))  # ratio under 0.8 once
    assert not render.meets_diversity_target(diversity_run("default", 1, [(100, 0.9, 0.06)]))  # 6% near-dups
    assert not render.meets_diversity_target(diversity_run("default", 1, [(50, 0.9, 0.0)]))  # nothing judged
    assert not render.meets_diversity_target(diversity_run("default", 1, [(100, 1.3, 0.0)]))  # noise, not faces


def test_render_writes_the_celeba_table_as_mean_std_per_checkpoint_step(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "DOC_PATH", str(tmp_path / "ablation.md"))
    monkeypatch.setattr(render, "DISCUSSION_PATH", str(tmp_path / "missing.md"))
    # Scored at 1%, as the stored CelebA records were before the ablation took the watchdog's 2%.
    records = [diversity_run("default", 1, [(50, 0.2, 0.8), (100, 0.6, 0.3)], watchdog=2, wall=900.0, quantile=0.01),
               diversity_run("default", 2, [(50, 0.4, 0.6), (100, 0.8, 0.1)], wall=1100.0, quantile=0.01),
               diversity_run("ttur", 1, [(50, 0.9, 0.01), (100, 0.95, 0.02)], wall=600.0, quantile=0.01),
               {"kind": "floor", "dataset": "celebA", "n": 256, "extractor": "pixels", "diversity_ratio": 1.01,
                "near_duplicates": 0.012, "near_duplicate_quantile": 0.01}]
    records[2]["sample_grid"] = "ablation/celebA_ttur.png"
    render.render(records)
    text = (tmp_path / "ablation.md").read_text()
    section = text.split("## celebA, budget 19,200 images (300 steps)")[1]
    assert "closer than the 1% quantile of real-real pair distances." in section  # the records', not the constant's
    assert "ratio 1.010, near-dup. 0.012" in section  # the real-vs-real line
    assert "| default | 50 | 2/2 | 0.300 ± 0.141 | 0.700 ± 0.141 | 167 ± 24 |" in section  # 150 and 183 s
    assert "| default | 100 | 2/2 | 0.700 ± 0.141 | 0.200 ± 0.141 | 333 ± 47 |" in section
    assert "| ttur | 100 | 1/1 | 0.950 | 0.020 | 200 |" in section
    # Per recipe: target met at 0 of 2 default seeds (worst ratio 0.6, worst near-dups 0.3 from step 100 on).
    assert "| default | 2 | 0/2 | 0.600 | 0.300 | 1000 ± 141 | 1/2 | 0/2 |" in section
    assert "| ttur | 1 | 1/1 | 0.950 | 0.020 | 600 | 0/1 | 0/1 |" in section
    assert "- default seed 1: `watchdog: near-duplicates`" in section
    assert "![ttur](ablation/celebA_ttur.png)" in section
    assert "### At equal images seen" not in text  # no classifier table for CelebA


def test_the_celeba_table_says_when_its_runs_were_scored_at_different_quantiles(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "DOC_PATH", str(tmp_path / "ablation.md"))
    monkeypatch.setattr(render, "DISCUSSION_PATH", str(tmp_path / "missing.md"))
    render.render([diversity_run("default", 1, [(100, 0.9, 0.01)], quantile=0.01),
                   diversity_run("default", 2, [(100, 0.9, 0.02)])])
    text = (tmp_path / "ablation.md").read_text()
    assert ("closer than the 1% or 2% quantile of real-real pair distances (each record at its own: figures at "
            "different quantiles do not compare).") in text


def test_a_dataset_shipped_as_a_tar_is_extracted_once_under_the_work_dir(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    face = tmp_path / "000001.jpg"
    face.write_bytes(b"not decoded here")
    with tarfile.open(shared / "celebA_first10k_89x109.tar", "w") as tar:
        tar.add(face, arcname="celebA/000001.jpg")
    args = argparse.Namespace(data_dir=str(shared), work_dir=str(tmp_path / "work"))
    data_dir = plan.data_dir_for("celebA", args)
    assert (pathlib.Path(data_dir) / "celebA" / "000001.jpg").read_bytes() == b"not decoded here"
    (shared / "celebA_first10k_89x109.tar").unlink()
    assert plan.data_dir_for("celebA", args) == data_dir  # already there: not extracted again
    assert plan.data_dir_for("mnist", args) == str(shared)
    with pytest.raises(UserError, match="celebA_first10k_89x109.tar not found"):
        plan.data_dir_for("celebA", argparse.Namespace(data_dir=str(shared), work_dir=str(tmp_path / "w2")))


def test_celeba_runs_checkpoint_every_50_steps_with_the_half_size_crop_and_mnist_runs_as_before():
    steps, command = run.train_command("celebA", "ttur", 2, 32000, "/d", "/o")
    assert steps == 500 and command[2:6] == ["--train", "--dataset=celebA", "--data_dir=/d", "--input_height=54"]
    assert command[-5:] == ["--out_dir=/o", "--ckpt_freq=50", "--sample_freq=50", "--max_to_keep=12", "--log_freq=50"]
    assert "--d_learning_rate=0.0004" in command and "--seed=2" in command and "--max_steps=500" in command
    steps, command = run.train_command("mnist", "default", 1, 19200, "/d", "/o")
    assert steps == 300 and command[-4:] == ["--ckpt_freq=75", "--sample_freq=75", "--max_to_keep=6", "--log_freq=50"]


def test_a_dataset_shipped_as_a_zip_is_extracted_once_under_the_work_dir_and_read_as_class_folders(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    image = tmp_path / "0000.png"
    Image.fromarray(pixels).save(image)
    with zipfile.ZipFile(shared / "cifar10_jpg_YoongiKim.zip", "w") as archive:
        archive.write(image, "cifar10/train/frog/0000.png")
    args = argparse.Namespace(data_dir=str(shared), work_dir=str(tmp_path / "work"))
    data_dir = plan.data_dir_for("cifar10", args)
    assert data_dir == str(tmp_path / "work" / "data" / "cifar10_jpg_YoongiKim")
    images, labels = formats.load_cifar10(formats.dataset_directory("cifar10", data_dir))
    assert list(labels) == [6] and np.array_equal(images[0], pixels)
    (shared / "cifar10_jpg_YoongiKim.zip").unlink()
    assert plan.data_dir_for("cifar10", args) == data_dir  # already there: not extracted again


def test_cifar10_runs_are_unconditional_at_cifar10s_32x32_and_counted_in_cifar10_epochs(tmp_path, monkeypatch):
    steps, command = run.train_command("cifar10", "default", 1, 25000, "/d", "/o")
    assert steps == 390 and command[2:6] == ["--train", "--dataset=cifar10", "--data_dir=/d", "--y_dim=0"]
    assert not any(flag.startswith("--output_height") for flag in command)  # cifar10's own default: 32
    (tmp_path / "data" / "cifar10_jpg_YoongiKim").mkdir(parents=True)  # as if extracted already
    config = plan.run_config("cifar10", 1, "/o", argparse.Namespace(data_dir="/d", work_dir=str(tmp_path),
                                                                         eval_samples=100))
    assert (config.output_height, config.c_dim, config.y_dim) == (32, 3, 0)
    assert extractors.CLASSIFIERS["cifar10"].input_shape == (32, 32, 3)  # scored without resizing
    monkeypatch.setattr(render, "DOC_PATH", str(tmp_path / "ablation.md"))
    monkeypatch.setattr(render, "DISCUSSION_PATH", str(tmp_path / "missing.md"))
    runs = [{**scored_run("default", 1, [90.0], [40.0]), "dataset": "cifar10", "budget": 25000},
            scored_run("default", 1, [80.0], [30.0])]
    render.render(runs)
    text = (tmp_path / "ablation.md").read_text()
    assert "## cifar10, budget 25,000 images (0.50 CIFAR-10 epochs)" in text
    assert "## mnist, budget 19,200 images (0.32 MNIST epochs)" in text


def test_a_run_records_the_architecture_its_defaults_resolved_to(tmp_path):
    # "default" rows measured different networks as the defaults changed (transposed convolutions, then
    # resize_conv for unconditional digits); the record keeps which one this run built.
    assert plan.run_architecture(str(tmp_path)) is None
    architecture = config_lib.resolve(config_lib.Config(dataset="mnist", y_dim=0, output_height=32)).architecture()
    folder = tmp_path / "checkpoint" / "mnist_64_32_32"
    folder.mkdir(parents=True)
    (folder / "architecture.json").write_text(json.dumps(architecture))
    recorded = plan.run_architecture(str(tmp_path))
    assert recorded["g_upsample"] == "resize_conv" and recorded == architecture


def test_compare_average_refuses_a_run_without_the_average_in_one_line(tmp_path):
    common = ["--seeds", "1", "--budget", "6400", "--work_dir", str(tmp_path), "--data_dir", str(tmp_path)]
    with pytest.raises(UserError, match="--dataset: one of"):
        main(["compare_average", "--dataset", "mnist,celebA", *common])
    folder = tmp_path / "runs" / "mnist" / "default" / "seed1_budget6400" / "checkpoint" / "mnist_64_28_28"
    folder.mkdir(parents=True)
    architecture = config_lib.resolve(config_lib.Config(dataset="mnist", g_ema=0.0)).architecture()
    (folder / "architecture.json").write_text(json.dumps(architecture))
    with pytest.raises(UserError, match="no run trained with --g_ema"):
        main(["compare_average", "--dataset", "mnist", *common])
