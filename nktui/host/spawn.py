"""Starting a run process: `nktui` (the app) runs `python -m nktui _host <its own flags>` in a session of its own
(setsid), so that a closed terminal or a dropped SSH connection, which hang up the terminal's session, never reach
the run. The run process says `ready <run-dir>` on its stdout once its socket listens (or one error line on its
stderr and exits 2: a folder another nktui holds, a checkpoint that cannot be read), then lets go of both pipes.

    run_dir, pid = start_run_process(["--model", "mlp"])     # RunProcessFailed with the run process's own words
    process = spawn(args); ...; run_dir, pid = wait_ready(process)   # the same, with work in between

Imports neither torch nor Textual.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

from ..protocol import NktuiError

READY_SECONDS = 120.0  # the run process claims its folder and opens its socket before anything slow


class RunProcessFailed(NktuiError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def start_run_process(args: list[str], *, timeout: float = READY_SECONDS) -> tuple[Path, int]:
    """(the run directory, the pid) of a new run process started with `nktui` flags `args`."""
    return wait_ready(spawn(args), timeout=timeout)


def spawn(args: list[str]) -> subprocess.Popen:
    """Start the run process; `wait_ready` then waits for it (the app loads Textual meanwhile)."""
    return subprocess.Popen(
        [sys.executable, "-m", "nktui", "_host", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
    )


def wait_ready(process: subprocess.Popen, *, timeout: float = READY_SECONDS) -> tuple[Path, int]:
    """(the run directory, the pid) once the run process said `ready`; RunProcessFailed with its words if not."""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    line = b""
    while b"\n" not in line and time.monotonic() < deadline:
        if selector.select(timeout=0.1):
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
        elif process.poll() is not None:
            break
    selector.close()
    text = line.decode(errors="replace").strip()
    if text.startswith("ready "):
        process.stdout.close()
        process.stderr.close()
        return Path(text[len("ready "):]), process.pid
    try:
        _, err = process.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    message = (err or b"").decode(errors="replace").strip()
    if message.startswith("nktui: error: "):
        message = message[len("nktui: error: "):]
    code = process.returncode if process.returncode not in (None, 0) else 1
    raise RunProcessFailed(message or f"the run process ended before it was ready (exit code {code})", code)
