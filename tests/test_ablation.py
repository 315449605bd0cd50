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
    kept, same_as = ablation.distinct_recipes(["default", "carpedm20", "ttur", "fused_k4"])
    assert kept == ["default", "ttur", "fused_k4"] and same_as == {"carpedm20": "default"}
    assert ablation.settings("fused_k4")["kernel_size"] == 4 and ablation.settings("default")["kernel_size"] == 5
