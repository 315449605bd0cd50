"""Options are declared once: flags, stored field lists and flag tables all come from the declarations."""

import dataclasses

import pytest
from absl import flags

import config as config_lib
import main
from networks.options import ArchitectureOptions
from runtime import options
from tools import flag_table


def test_docs_flags_md_is_the_generated_table():
    assert flag_table.FLAGS_DOC.read_text() == flag_table.flags_document(), \
        "docs/flags.md is out of date: run python -m tools.flag_table"


def test_readme_flag_tables_agree_with_the_declarations():
    readme = flag_table.README.read_text()
    assert flag_table.readme_disagreements(readme) == []
    # The check reads the Flags table (with defaults), Training recipes and Architectures.
    tables = [(header, rows) for header, rows in flag_table._tables(readme) if header[0] == "flag"]
    assert len(tables) >= 3 and max(len(rows) for header, rows in tables if header[1] == "default") >= 25


def test_readme_check_names_each_disagreement():
    markdown = "\n".join([
        "| flag | default | meaning |", "|---|---|---|",
        "| `--g_steps` | 2 | a stale default |",
        "| `--epoch`, `--max_steps` | 25, 0 (epoch x batches, whichever) | right, with a note |",
        "| `--learning_rat` | 0 | misspelled |",
        "| `--z_dim`, `--z_dist` | 100 | one default for two flags |",
        "| `--input_fname_pattern`, `--crop` | `*.jpg,*.jpeg,*.png,*.webp`, auto | right |",
        "",
        "| flag | what |", "|---|---|",
        "| `--d_batchnorm combined` | a value after the flag |",
        "| `--nosuch` | unknown |",
        "",
        "| name | default |", "|---|---|",
        "| `--not_checked` | 1 |",
    ])
    assert flag_table.readme_disagreements(markdown) == [
        "--g_steps: the table says '2', the declaration '1'",
        "`--learning_rat`: --learning_rat is not a flag",
        "`--z_dim`, `--z_dist`: 1 defaults (100) for 2 flags",
        "`--nosuch`: --nosuch is not a flag",
    ]


@pytest.mark.parametrize("value, shown", [
    (True, "on"), (False, "off"), (None, "auto"), ("", "–"), (0.999, "0.999"), (1.0, "1"), (0.0, "0"),
    (64, "64"), ("celebA", "celebA"), ("127.0.0.1", "127.0.0.1"), ("*.jpg,*.png", "`*.jpg,*.png`"),
])
def test_shown_default(value, shown):
    assert flag_table.shown_default(value) == shown


def test_defaults_split_at_commas_outside_notes_and_code():
    assert flag_table._split_defaults("0 (every GPU if several, else one), `a,b`, on") == [
        "0 (every GPU if several, else one)", "`a,b`", "on"]


def test_each_option_is_declared_in_one_role_class_and_config_declares_none():
    by_role = [options.option_names(option_class) for option_class in config_lib.ROLES.values()]
    everything = [name for names in by_role for name in names]
    assert len(everything) == len(set(everything))
    assert tuple(everything) == options.option_names(config_lib.Config)  # architecture's first, as before
    assert config_lib.ROLES["architecture"] is ArchitectureOptions


def test_stored_field_lists_are_the_role_classes():
    assert config_lib.ARCHITECTURE_FIELDS == options.option_names(ArchitectureOptions)
    assert config_lib.RECIPE_FIELDS == options.option_names(config_lib.RecipeOptions)
    # The example: BatchNorm's momentum changes training, not the variables.
    config = config_lib.resolve(config_lib.Config(dataset="mnist", bn_momentum=0.8))
    assert config.recipe()["bn_momentum"] == 0.8 and "bn_momentum" not in config.architecture()


def test_a_field_without_option_has_no_help():
    @dataclasses.dataclass
    class Undeclared:
        size: int = 3

    with pytest.raises(TypeError, match="'size' is declared without option"):
        options.help_text(dataclasses.fields(Undeclared)[0])


def test_each_flag_has_its_declared_type_default_and_help():
    values = flags.FlagValues()
    main.define_flags(values)
    for field in dataclasses.fields(config_lib.Config):
        flag = values[field.name]
        assert (flag.default, flag.help) == (field.default, options.help_text(field)), field.name
        assert flag.boolean == (field.default is None or isinstance(field.default, bool)), field.name
    assert values["crop"].default is None and values["face_metrics"].default is None
    assert (values["epoch"].flag_type(), values["g_ema"].flag_type()) == ("int", "float")
