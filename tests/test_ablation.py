"""The ablation harness's pure parts: the flags each run gets, aggregation over seeds, the equal-time
checkpoint, and the skip logic that makes it resumable.  No training here."""

import json
import math

import pytest

from bench import ablation
from errors import UserError


def test_mean_std_is_the_sample_std_over_finite_values():
    mean, std, n = ablation.mean_std([2.0, 4.0, 9.0, None, math.nan])
    assert (mean, n) == (5.0, 3)
    assert std == pytest.approx(math.sqrt(((2 - 5) ** 2 + (4 - 5) ** 2 + (9 - 5) ** 2) / 2))  # ddof 1: sqrt(13)
    assert ablation.mean_std([7.0]) == (7.0, None, 1)
    assert ablation.mean_std([None]) == (None, None, 0)
    assert ablation.format_mean_std([2.0, 4.0, 9.0], 2) == "5.00 ± 3.61"
    assert ablation.format_mean_std([7.0], 1) == "7.0"
    assert ablation.format_mean_std([], 1) == "—"


def checkpoints(*seconds):
    return [{"step": 10 * (i + 1), "seconds": s, "fid": 100.0 - i} for i, s in enumerate(seconds)]


def test_checkpoint_at_time_takes_the_last_one_at_or_before_t():
    saved = checkpoints(20.0, 40.0, 60.0)
    assert ablation.checkpoint_at_time(saved, 40.0)["step"] == 20  # exactly at T counts
    assert ablation.checkpoint_at_time(saved, 59.9)["step"] == 20
    assert ablation.checkpoint_at_time(saved, 1000.0)["step"] == 30
    assert ablation.checkpoint_at_time(saved, 19.9) is None


def test_equal_time_is_the_shortest_run_and_ignores_runs_without_checkpoints():
    runs = [{"checkpoints": checkpoints(20.0, 90.0)}, {"checkpoints": checkpoints(30.0, 70.0)}, {"checkpoints": []}]
    assert ablation.equal_time(runs) == 70.0
    assert ablation.equal_time([{"checkpoints": []}]) is None


def record(dataset, recipe, seed, budget, kind="run"):
    return {"kind": kind, "dataset": dataset, "recipe": recipe, "seed": seed, "budget": budget}


def test_pending_runs_skip_finished_runs_of_the_same_budget_only():
    records = [record("mnist", "default", 1, 19200), record("mnist", "ttur", 2, 19200),
               record("mnist", "ttur", 1, 9600), {"kind": "floor", "dataset": "mnist", "n": 5000}]
    pending = ablation.pending_runs(records, ["mnist"], ["default", "ttur"], [1, 2], 19200)
    assert pending == [("mnist", "ttur", 1, 19200), ("mnist", "default", 2, 19200)]


def test_read_results_ignores_a_line_cut_short_by_a_killed_write(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(record("mnist", "default", 1, 19200)) + "\n" + '{"kind": "run", "datas')
    assert [ablation.run_key(r) for r in ablation.read_results(str(path))] == [("mnist", "default", 1, 19200)]
    assert ablation.read_results(str(tmp_path / "missing.jsonl")) == []


def test_run_plan_counts_steps_by_d_steps_and_keeps_batch_64():
    steps, flags = ablation.run_plan("default", 19200)
    assert (steps, flags) == (300, ["--batch_size=64"])
    steps, flags = ablation.run_plan("wgan_gp", 19200)  # 5 critic steps, each on a fresh batch
    assert steps == 60 and "--loss=wasserstein" in flags
    steps, flags = ablation.run_plan("dcgan_paper", 19200)
    assert "--batch_size=128" in flags and flags[-1] == "--batch_size=64"  # the last one wins in absl
    assert ablation.flag_value(flags, "batch_size") == 64 and ablation.flag_value(flags, "fused_update") is True


def test_run_plan_fills_half_the_steps_and_reads_negated_booleans():
    steps, flags = ablation.run_plan("smooth_noise", 19200)
    assert "--instance_noise_steps=150" in flags and steps == 300
    _, flags = ablation.run_plan("carpedm20", 19200)
    assert ablation.flag_value(flags, "fused_update") is False and ablation.flag_value(flags, "g_steps") == 2
    with pytest.raises(UserError, match="unknown recipe 'nope'"):
        ablation.run_plan("nope", 19200)


def test_a_recipe_with_the_defaults_flags_is_not_trained_twice():
    # The defaults are TTUR's rates given by --learning_rate 0, ttur.flags gives them by name: the same run.
    kept, same_as = ablation.distinct_recipes(["default", "carpedm20", "ttur", "fused_k4", "dcgan_paper"])
    assert kept == ["default", "carpedm20", "fused_k4"] and same_as == {"ttur": "default", "dcgan_paper": "fused_k4"}
    assert ablation.settings("fused_k4")["kernel_size"] == 4 and ablation.settings("default")["kernel_size"] == 5
    assert ablation.settings("carpedm20")["learning_rates"] == (2e-4, 2e-4)


def scored_run(recipe, seed, fids, seconds, watchdog=0):
    saved = [{"step": 100 * (i + 1), "seconds": s, "fid": f, "kid_mean": f / 2, "precision": 0.5, "recall": 0.25,
              "class_accuracy": 0.9, "classes_present": 10.0, "class_kl_uniform": 0.01, "n_samples": 5000,
              "extractor": "test features"} for i, (f, s) in enumerate(zip(fids, seconds, strict=True))]
    return {**record("mnist", recipe, seed, 19200), "checkpoints": saved, "watchdog_warnings": watchdog,
            "watchdog_examples": ["watchdog: D saturated"] if watchdog else [], "returncode": 0, "error": ""}


def test_render_shows_mean_std_over_seeds_at_equal_images_and_at_equal_time(tmp_path, monkeypatch):
    monkeypatch.setattr(ablation, "DOC_PATH", str(tmp_path / "ablation.md"))
    monkeypatch.setattr(ablation, "DISCUSSION_PATH", str(tmp_path / "missing.md"))
    records = [scored_run("default", 1, [300.0, 100.0], [50.0, 100.0]),
               scored_run("default", 2, [200.0, 140.0], [60.0, 120.0], watchdog=3),
               scored_run("ttur", 1, [90.0, 80.0, 70.0], [40.0, 80.0, 160.0])]
    ablation.render(records)
    text = (tmp_path / "ablation.md").read_text()
    equal_images, equal_time = text.split("### At equal images seen")[1].split("### At equal wall-clock time")
    # Final checkpoints: default 100 and 140 -> 120 ± 28.28 (sample std); ttur 70 first (lower FID).
    assert equal_images.index("| ttur | 1/1 | 70.00 |") < equal_images.index("| default | 2/2 | 120.00 ± 28.28 |")
    assert "| 1/2 | 0/2 |" in equal_images  # one default run of two had the watchdog fire, none failed
    # T = 100 s (default seed 1's whole run): default seed 2 at its 60 s checkpoint (200), ttur at 80 s (80).
    assert equal_time.startswith(", T = 100 s")
    assert "| default | 2/2 | 150.00 ± 70.71 |" in equal_time and "| ttur | 1/1 | 80.00 |" in equal_time
    assert (tmp_path / "ablation" / "mnist_19200_fid_vs_time.png").stat().st_size > 0
