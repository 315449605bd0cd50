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
