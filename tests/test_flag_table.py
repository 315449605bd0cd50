"""tools/flag_table.py: docs/flags.md and the README's flag tables come from the option declarations and agree
with them (the declarations themselves: test_config.py, test_runtime_options.py and test_main.py)."""

import pytest

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
