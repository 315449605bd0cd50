"""training/precision.py: which compute precision a run trains in when --bfloat16 is left unset, and the log line
saying why."""

import logging

import pytest

from bench.harness import tiny_config
from runtime.errors import UserError
from training import precision, train


@pytest.fixture
def bfloat16_models(monkeypatch):
    """Both models counted as measured level in bfloat16, so each rule below is what decides."""
    monkeypatch.setattr(precision, "BFLOAT16_MODELS", ("conditional", "unconditional"))


@pytest.mark.parametrize("overrides,gpus,cpu_bfloat16,expected,reason", [
    ({}, [], True, True, "AVX512_BF16 or AMX"),
    ({}, [], False, False, "neither AVX512_BF16 nor AMX"),
    ({}, ["GPU:0"], True, False, "a GPU is visible"),
    ({"mixed_precision": True}, [], True, False, "--mixed_precision"),
    ({"bfloat16": False}, [], True, False, "--nobfloat16"),
    ({"bfloat16": True}, ["GPU:0"], True, True, "--bfloat16"),
])
def test_each_rule_decides_in_order(tmp_path, bfloat16_models, overrides, gpus, cpu_bfloat16, expected, reason):
    bfloat16, why = precision.decide(tiny_config(tmp_path, **overrides), gpus, cpu_bfloat16)
    assert bfloat16 is expected and reason in why


def test_models_not_measured_level_stay_float32(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "BFLOAT16_MODELS", ("unconditional",))
    conditional = tiny_config(tmp_path)  # the tiny run is conditional MNIST
    unconditional = tiny_config(tmp_path, y_dim=0)
    assert precision.decide(conditional, [], True)[0] is False
    assert precision.decide(unconditional, [], True)[0] is True


def test_bfloat16_asked_on_a_cpu_without_it_is_one_line(tmp_path):
    with pytest.raises(UserError, match="--bfloat16: this CPU has neither"):
        precision.decide(tiny_config(tmp_path, bfloat16=True), [], False)


def test_the_run_logs_its_precision_and_why_before_training(tmp_path, monkeypatch, caplog, bfloat16_models):
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: False)
    with caplog.at_level(logging.INFO):
        train.train(tiny_config(tmp_path))
    messages = [record.getMessage() for record in caplog.records]
    first = next(i for i, m in enumerate(messages) if m.startswith("precision:"))
    assert messages[first] == "precision: float32 compute, float32 weights (this CPU has neither AVX512_BF16 nor AMX)"
    assert first < next(i for i, m in enumerate(messages) if m.startswith("training "))


def test_bfloat16_trains_where_the_cpu_has_it_and_is_refused_in_one_line_elsewhere(tmp_path, monkeypatch):
    from runtime import tf_runtime

    if tf_runtime.cpu_has_bfloat16():
        assert train.train(tiny_config(tmp_path / "bf16", bfloat16=True)) == 2
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: False)
    with pytest.raises(UserError, match="--bfloat16: this CPU has neither AVX512_BF16 nor AMX"):
        train.train(tiny_config(tmp_path / "refused", bfloat16=True))
