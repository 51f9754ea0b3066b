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

import errno

EXIT_USER_ERROR = 2
EXIT_NO_SHIP = 3  # the build decided not to ship (or not to go on): pipeline.measure.decision
EXIT_ENVIRONMENT = 1  # the machine refused a write (full disk, quota, read-only): not the input
# what a write that the machine refuses raises; anything else stays a bug with its traceback
WRITE_REFUSED = {errno.ENOSPC: "free space (e.g. `distill-edge cache gc`)",
                 errno.EDQUOT: "free space within your quota (e.g. `distill-edge cache gc`)",
                 errno.EROFS: "give a writable --build-dir",
                 errno.EACCES: "give a --build-dir you can write to"}


def write_refused(exc: OSError) -> str | None:
    """One line for an OSError the machine raised on a write (None: not such an error)."""
    fix = WRITE_REFUSED.get(exc.errno or 0)
    if fix is None:
        return None
    where = f" writing {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}: {fix} and run again (finished steps stay cached)"


class UserError(Exception):
    """Bad input from the user: shown as one line, exit code 2."""

    def __init__(self, message: str) -> None:
        # One line only: a multi-line message would read like a traceback.
        super().__init__(" ".join(message.split()))


class NotShipped(Exception):
    """The build stopped on a decision (e.g. the teacher-first check): one line, exit 3."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class StepUnfinished(Exception):
    """A step that could not finish for a reason outside the input (a remote teacher failing
    some requests): one line, exit 1; its partial output stays for the next build to resume."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
