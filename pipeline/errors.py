"""The one exception type for bad user input, and how it is shown.

Every boundary (config file, target file, CLI flag, data file, model file) raises
`UserError` with one line that names the problem and the fix; the CLI prints it on
stderr and exits with code 2, never a traceback.

Example:
    >>> from pipeline.errors import UserError
    >>> str(UserError("unknown target 'x': available: cpu-int4, cpu-int8"))
    "unknown target 'x': available: cpu-int4, cpu-int8"
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input from the user: shown as one line, exit code 2."""

    def __init__(self, message: str) -> None:
        # One line only: a multi-line message would read like a traceback.
        super().__init__(" ".join(message.split()))
