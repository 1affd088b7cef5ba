"""stdout and stderr that may be closed, full or gone: `nktui train` trains and saves all the same.

`nktui train >&-` (closed), `>/dev/full` (every write fails with ENOSPC), `2>&-`, and `| head -1` (the reader goes
away: a broken pipe) must not cost the run. `StreamOutput` wraps a standard stream: a write that fails is dropped
instead of raised, `problem` says what is wrong with the stream ("closed", "gone (its reader went away)", "full (No
space left on device)") and `gone` that the reader went away, which `nktui train` takes as a stop, as on a stop
signal. What the run could not print that matters (its warnings, errors, the summary and how to resume) goes to the
run's nktui.log instead (`nktui.cli.train`).

`fill_closed_fds`, called first thing by the console script, opens /dev/null on a standard file descriptor that
was closed: otherwise the next file nktui opens (the run's `.lock`, metrics.jsonl) would get that number, and
anything printed there (a C library's message) would land in it. Imports neither torch nor Textual.
"""

from __future__ import annotations

import errno
import os
from typing import TextIO


def fill_closed_fds(fds: tuple[int, ...] = (0, 1, 2)) -> list[int]:
    """Point each of `fds` that is not open at /dev/null; returns those (Python's sys.stdout stays None for them)."""
    filled = []
    for fd in fds:
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        try:
            null = os.open(os.devnull, os.O_RDWR)
        except OSError:
            continue
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        filled.append(fd)
    return filled


class StreamOutput:
    """A text stream whose failures are dropped and described (see the module's docstring). `stream` None: a
    standard stream that was closed when the process started."""

    def __init__(self, stream: TextIO | None, name: str = "stdout") -> None:
        self.stream = stream
        self.name = name
        self.gone = False  # the reader went away (a broken pipe)
        self.problem: str | None = "closed" if stream is None else None
        self.noted = False  # the problem is in nktui.log (`nktui.cli.train` notes it once)

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, BrokenPipeError):
            self.gone = True
            self.problem = "gone (its reader went away)"
        elif isinstance(exc, ValueError) or getattr(exc, "errno", None) == errno.EBADF:  # a closed file
            self.problem = "closed"
        else:
            why = getattr(exc, "strerror", None) or exc
            self.problem = f"full ({why})" if getattr(exc, "errno", None) == errno.ENOSPC else f"failing ({why})"

    def write(self, text: str) -> int:
        if self.problem is None:
            try:
                self.stream.write(text)
            except (OSError, ValueError) as exc:
                self._fail(exc)
        return len(text)

    def flush(self) -> None:
        if self.problem is None:
            try:
                self.stream.flush()
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def isatty(self) -> bool:
        try:
            return self.problem is None and self.stream.isatty()
        except (OSError, ValueError):
            return False

    def say(self, text: str) -> bool:
        """Write `text` as one line and flush; False when it did not get through."""
        self.write(text if text.endswith("\n") else text + "\n")
        self.flush()
        return self.problem is None
