"""Exceptions that mean "the user can act on this", each with its exit code.

`main.py` catches them, prints the message as a single line and exits with
`exit_code`, so bad flags or bad data never surface as a TensorFlow traceback.
Raise them with a message that names the file or flag and says what to do.
"""

import sys


class UserError(Exception):
    """A problem with the user's input (flags, files, checkpoints), not a bug."""

    exit_code = 2


class TrainingDiverged(UserError):
    """A loss became NaN/Inf; the run stopped without saving the bad weights."""

    exit_code = 3


class CollapseDetected(UserError):
    """The collapse watchdog fired under --on_collapse stop; nothing was saved."""

    exit_code = 4


def run_command(main):
    """Exits with `main()`'s return code, or, if it raises a UserError, with
    code 2 after printing "error: <message>" as one line on stderr: the
    contract of the project's scripts outside main.py (bench/ and the like)."""
    try:
        sys.exit(main())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
