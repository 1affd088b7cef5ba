"""The lines nktui prints for the user, and its exit codes: shared by the command line (`nktui.cli`) and the app
(`nktui.ui`), so that neither imports the other. Imports nothing of nktui, torch or Textual.

Bad input (a flag, a config file, a checkpoint, a run directory that is taken) gets one line on stderr,
`nktui: error: <what is wrong and how to fix it>`, and exit code 2, without a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

EXIT_OK = 0  # everything done and saved
EXIT_FAILED = 1  # the run failed, or its final state could not be written
EXIT_BAD_INPUT = 2  # one `nktui: error:` line: bad flags, config, checkpoint, or a run directory that is taken
EXIT_WATCHPOINT = 3  # `nktui train`: a watchpoint fired (last.pt holds the state just before that step)
EXIT_ROWS_LOST = 4  # `nktui train`: last.pt holds the final state, but a metrics file lacks rows
EXIT_INTERRUPTED = 130  # Ctrl+C before the app or the trainer took over, or a second one while finishing


def one_line(message: object) -> str:
    """`message` as one line: its whitespace, newlines included, collapsed to single spaces."""
    return " ".join(str(message).split())


def print_error(message: object, file: Any = None) -> None:
    """The one line bad input gets: `nktui: error: <message on one line>` (on stderr unless told otherwise)."""
    print(f"nktui: error: {one_line(message)}", file=sys.stderr if file is None else file, flush=True)


def print_warning(message: object, file: Any = None) -> None:
    """`nktui: warning: <message on one line>` (on stderr unless told otherwise)."""
    print(f"nktui: warning: {one_line(message)}", file=sys.stderr if file is None else file, flush=True)
