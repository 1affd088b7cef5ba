"""Finding live runs: every run directory under a folder (`./runs` by default) whose socket answers.

    runs, cleaned = live_runs(Path("runs"))    # LiveRun for each run that answered; the stale sockets removed
    newest_live_run(Path("runs"))              # the one `nktui attach` with no argument attaches to

A socket file whose run no longer answers (the process died: kill -9, a crash, a reboot) is removed, unless its
folder's lock is still held (a run busy starting), and reported. Imports neither torch nor Textual.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol import NktuiError
from .remote import RunGone, probe
from .server import SOCKET_FILE


@dataclass(frozen=True)
class LiveRun:
    run_dir: Path
    welcome: dict[str, Any]

    @property
    def status(self) -> dict[str, Any]:
        return self.welcome.get("status") or {}

    @property
    def started(self) -> float:
        return float(self.welcome.get("started") or 0.0)


def sockets_under(root: Path) -> list[Path]:
    """The run sockets in `root` itself (a run directory) or in the folders one and two levels down."""
    root = Path(root)
    found = [root / SOCKET_FILE] if (root / SOCKET_FILE).exists() else []
    for pattern in (f"*/{SOCKET_FILE}", f"*/*/{SOCKET_FILE}"):
        found += sorted(root.glob(pattern))
    return found


def live_runs(root: Path) -> tuple[list[LiveRun], list[str]]:
    """(the live runs under `root`, newest first; one line for each stale socket cleaned up or run refused)."""
    runs, notes = [], []
    for path in sockets_under(root):
        try:
            runs.append(LiveRun(path.parent, probe(path)))
        except RunGone:
            from ..run.rundir import check_not_in_use

            try:
                check_not_in_use(path.parent)
            except NktuiError:
                continue  # its folder is still held: a run starting up, not a dead one
            if not stat.S_ISSOCK(path.lstat().st_mode):
                notes.append(f"{path} is not a socket (left as it is): no run answers there")
                continue
            try:
                path.unlink()
                notes.append(f"removed the socket of a run that is no longer running: {path}")
            except OSError as exc:
                notes.append(f"{path}: no run answers, and the socket cannot be removed ({exc.strerror})")
        except NktuiError as exc:
            notes.append(str(exc))
    runs.sort(key=lambda run: run.started, reverse=True)
    return runs, notes


def find_run(target: str | None, root: Path = Path("runs")) -> Path:
    """The socket to attach to: `target` a run directory (or its socket); None: the newest live run under
    `root`. NktuiError says why there is none."""
    if target:
        path = Path(target).expanduser()
        socket_path = path if path.name == SOCKET_FILE else path / SOCKET_FILE
        if not path.exists():
            raise NktuiError(f"{path} does not exist: give a run directory (nktui ls lists the live ones)")
        if not socket_path.exists():
            raise NktuiError(f"{path} has no live run (no {SOCKET_FILE}): nktui ls lists the live ones, and "
                             f"nktui --resume {path} goes on from its last.pt")
        return socket_path
    runs, _ = live_runs(root)
    if not runs:
        raise NktuiError(f"no live run under {root}/: start one with nktui or nktui train, or give its folder")
    return runs[0].run_dir / SOCKET_FILE
