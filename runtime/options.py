"""Options declared once: a dataclass field holding an option's default and its --help text.

Three option classes declare every option as `name: type = option(default, help)`, one class per role
(what changing the option between two runs on one checkpoint folder does): ArchitectureOptions in
networks/options.py, RecipeOptions and RunOptions in config.py; `config.Config` joins them. Everything
else is derived from them: main.py's flags (name, type, default, --help text), `config.ARCHITECTURE_FIELDS`
and `RECIPE_FIELDS` (what is stored beside the checkpoints) and the flag tables of docs/flags.md and
README.md (`python -m tools.flag_table`). Before, an option was described in three to five places, and
they disagreed.
"""

import dataclasses


def option(default, help_text):
    """A field of an option class: its default and the --help text of its flag."""
    return dataclasses.field(default=default, metadata={"help": help_text})


def help_text(field):
    """The --help text of an option class's field (one declared without option() is a bug: it has no flag)."""
    if "help" not in field.metadata:
        raise TypeError(f"option {field.name!r} is declared without option(default, help)")
    return field.metadata["help"]


def option_names(option_class):
    """The option names an option class declares, in declaration order."""
    return tuple(field.name for field in dataclasses.fields(option_class))
