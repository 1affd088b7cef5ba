"""The run directory's lock: one nktui process a folder, for as long as its run can write there.

`path/.lock` is taken with `flock(LOCK_EX | LOCK_NB)` and holds the holder's pid and start time, as one JSON line
(`{"pid": 1234, "started": "2025-01-01 12:00:00"}`). The lock belongs to the open file, so it lasts until
`release_run_dir` or the process's end: the kernel drops the lock of a dead process (kill -9 included), and the
next run simply takes a stale `.lock` over. A folder whose lock another process holds is refused with
`RunDirInUse`, one line naming that process. Taking a folder removes the temporary checkpoint files
(`.last.pt.tmp-<pid>`, `nktui.run.checkpoint.atomic_save`) that dead processes left there.

This module owns the lock itself; `nktui.run.rundir.claim_run_dir` makes the folder and calls it (the one
entry point: `RunKeeper.claim`/`create`, `nktui train`, the app, resume). Unix only (fcntl); imports no torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from ..protocol.errors import RunDirInUse

LOCK_FILE = ".lock"
LOCK_RETRY_SECONDS = 0.5  # a lock found held is tried again this long (another process may only be probing it)


@dataclasses.dataclass
class _Claim:
    fd: int  # the open .lock: closing it releases the lock
    count: int = 1  # claims of this process on the folder (`release_run_dir` gives one up)
    used: bool = False  # a run wrote its files here: the .lock stays after the release
    made: list[Path] = dataclasses.field(default_factory=list)  # the folders the first claim made, deepest first


_held: dict[tuple[int, int], _Claim] = {}  # (st_dev, st_ino) of a .lock this process holds -> its claim


def lock_folder(path: Path, made: list[Path]) -> _Claim:
    """Take `path/.lock` (`made`: the folders the caller just made for it), or count one more claim on the lock this
    process holds already. RunDirInUse when another process holds it."""
    import fcntl

    lock_path = path / LOCK_FILE
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino)
        if key in _held:
            os.close(fd)
            _held[key].count += 1
            return _held[key]
        deadline = time.monotonic() + LOCK_RETRY_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise RunDirInUse(in_use_message(path)) from None
                time.sleep(0.02)
        try:
            now = os.stat(lock_path)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == key:
            break
        os.close(fd)  # the holder gave up an unused folder and removed it while this process waited: again
        path.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps({"pid": os.getpid(), "started": started}) + "\n").encode(), 0)
    except OSError:  # a full disk: the lock holds all the same; another process just cannot name this one
        pass
    _held[key] = claim = _Claim(fd, made=made)
    return claim


def release_run_dir(path: str | Path, *, used: bool = True) -> None:
    """Give up one claim of this process on `path`; the last one unlocks it. `used`: the run wrote its files
    there. A folder no claim used loses its `.lock` again, and the folders the claim made are removed if empty
    (a run that failed before it started writes nothing); a used one keeps its `.lock` (it names the last run)."""
    lock_path = Path(path) / LOCK_FILE
    try:
        stat = os.stat(lock_path)
    except OSError:
        return
    key = (stat.st_dev, stat.st_ino)
    claim = _held.get(key)
    if claim is None:
        return
    claim.used = claim.used or used
    claim.count -= 1
    if claim.count > 0:
        return
    del _held[key]
    if not claim.used:  # unlinked while still locked: a process waiting for it sees the file gone and retries
        try:
            lock_path.unlink(missing_ok=True)
        except OSError:  # a folder that turned read-only: the lock goes with the close below
            pass
        for folder in claim.made:
            try:
                folder.rmdir()
            except OSError:  # not empty, or gone
                break
    os.close(claim.fd)  # (closing the only descriptor of the lock releases it)


def check_not_in_use(path: str | Path) -> None:
    """RunDirInUse when another process holds `path`'s lock; creates nothing (a probe before the app's screen or
    the trainer starts; `claim_run_dir` decides for good)."""
    import fcntl

    try:
        fd = os.open(Path(path) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no .lock (or no folder): nobody has claimed it
        return
    try:
        stat = os.fstat(fd)
        if (stat.st_dev, stat.st_ino) in _held:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # let go at once, by the close below
        except BlockingIOError:
            raise RunDirInUse(in_use_message(Path(path))) from None
    finally:
        os.close(fd)


def lock_holder(path: str | Path) -> dict[str, Any] | None:
    """What `.lock` says of the process holding it ({"pid": 1234, "started": "2025-01-01 12:00:00"}), if readable.
    (The holder writes it just after taking the lock: an empty file is read again for a moment.)"""
    deadline = time.monotonic() + 0.3
    while True:
        try:
            holder = json.loads((Path(path) / LOCK_FILE).read_text(encoding="utf-8"))
            if isinstance(holder, dict) and isinstance(holder.get("pid"), int):
                return holder
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def in_use_message(path: Path) -> str:
    holder = lock_holder(path)
    who = "another nktui process"
    if holder is not None:
        who = f"nktui process {holder['pid']}" + (f" (started {holder['started']})" if holder.get("started") else "")
    return (f"{path} is in use by {who}: two runs cannot share a run directory. Wait for that run to end (or stop "
            "it), or give another --run-dir")


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporary checkpoint files (`.last.pt.tmp-<pid>`, see `checkpoint.atomic_save`) that processes
    which are gone left in `path`; returns them. Call it holding the lock: no live run can be writing them."""
    removed = []
    for tmp in Path(path).glob(".*.tmp-*"):
        pid = tmp.name.rpartition(".tmp-")[2]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):  # (ours: from before, pid reused)
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True
