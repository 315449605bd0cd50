"""training/checkpoints.py: what is recorded beside the checkpoints and checked on every restart (the architecture,
the recipe, the rollback record).  The save protocol under faults: test_faults.py and test_hostile_files.py."""

import json
import os

import pytest
from conftest import tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import main
from runtime.errors import UserError
from training import train
from training.checkpoints import ROLLBACK_FILE, RollbackRecord, read_rollback, write_rollback


def test_checkpoint_from_another_architecture_is_refused_and_untouched(tmp_path):
    config = tiny_config(tmp_path, max_steps=1)
    train.train(config)
    files = {p: os.path.getmtime(os.path.join(config.checkpoint_path, p)) for p in os.listdir(config.checkpoint_path)}
    other = tiny_config(tmp_path, max_steps=2, gf_dim=8, train=True)
    with pytest.raises(UserError, match=r"built with gf_dim=4 \(now 8\); pass the same flags"):
        main.run(other)
    after = {p: os.path.getmtime(os.path.join(config.checkpoint_path, p)) for p in os.listdir(config.checkpoint_path)}
    assert after == files


def test_resuming_with_another_recipe_is_refused_unless_allowed(tmp_path):
    assert train.train(tiny_config(tmp_path, max_steps=2)) == 2
    with pytest.raises(UserError, match=r"trained with --loss non_saturating \(now hinge\).*--allow_recipe_change"):
        train.train(tiny_config(tmp_path, max_steps=3, loss="hinge"))
    assert train.train(tiny_config(tmp_path, max_steps=3, loss="hinge", allow_recipe_change=True)) == 3
    # The newest checkpoint continued with hinge: that is now the recorded recipe.
    assert train.train(tiny_config(tmp_path, max_steps=4, loss="hinge")) == 4


@pytest.mark.parametrize("content", ["not json", "[]", json.dumps({"learning_rate_scale": 0.5}),
                                     json.dumps({"learning_rate_scale": 0, "rollbacks": 1}),
                                     json.dumps({"learning_rate_scale": 0.5, "rollbacks": -1})])
def test_a_damaged_rollback_record_is_one_line_naming_the_file(tmp_path, content):
    (tmp_path / ROLLBACK_FILE).write_text(content)
    with pytest.raises(UserError, match=f"{ROLLBACK_FILE}: damaged .*delete it"):
        read_rollback(str(tmp_path))


def test_rollback_record_round_trips_and_defaults_to_the_flags_rates(tmp_path):
    assert read_rollback(str(tmp_path / "none")) == RollbackRecord(1.0, 0)
    write_rollback(str(tmp_path / "run"), RollbackRecord(0.25, 2))
    assert read_rollback(str(tmp_path / "run")) == RollbackRecord(0.25, 2)
    assert os.listdir(tmp_path / "run") == [ROLLBACK_FILE]  # no temporary left


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=3), max_leaves=8)


RECORD_LIKE = st.fixed_dictionaries({"learning_rate_scale": JSON_VALUES | st.floats(0, 2),
                                     "rollbacks": JSON_VALUES | st.integers(-2, 5)})


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=JSON_VALUES | RECORD_LIKE)
def test_fuzzed_rollback_records_are_read_or_refused_in_one_line(tmp_path, value):
    (tmp_path / ROLLBACK_FILE).write_text(json.dumps(value))
    try:
        record = read_rollback(str(tmp_path))
    except UserError as e:
        assert ROLLBACK_FILE in str(e) and "\n" not in str(e)
    else:
        assert type(record.learning_rate_scale) is float and 0 < record.learning_rate_scale <= 1
        assert type(record.rollbacks) is int and record.rollbacks >= 0
        assert record == RollbackRecord(value["learning_rate_scale"], value["rollbacks"])
