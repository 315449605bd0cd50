"""runtime/errors.py: the contract of the project's scripts, one line and exit code 2 for a user error."""

import pytest


def test_run_command_exits_with_main_code_or_one_line_for_a_user_error(capsys):
    from runtime.errors import UserError, run_command

    def refused():
        raise UserError("--flag: bad value; pass a good one")

    with pytest.raises(SystemExit) as exited:
        run_command(refused)
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: --flag: bad value; pass a good one\n"
    with pytest.raises(SystemExit) as exited:
        run_command(lambda: 0)
    assert exited.value.code == 0
