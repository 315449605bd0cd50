"""runtime/options.py: option(default, help) is how every option is declared; a field declared without it is
a bug, reported as one."""

import dataclasses

import pytest

from runtime import options


def test_a_field_without_option_has_no_help():
    @dataclasses.dataclass
    class Undeclared:
        size: int = 3

    with pytest.raises(TypeError, match="'size' is declared without option"):
        options.help_text(dataclasses.fields(Undeclared)[0])


def test_an_option_is_its_default_and_its_help_and_names_come_in_declaration_order():
    @dataclasses.dataclass
    class Declared:
        width: int = options.option(64, "how wide")
        name: str = options.option("a", "what it is called")

    width, name = dataclasses.fields(Declared)
    assert (Declared().width, Declared().name) == (64, "a")
    assert (options.help_text(width), options.help_text(name)) == ("how wide", "what it is called")
    assert options.option_names(Declared) == ("width", "name")
