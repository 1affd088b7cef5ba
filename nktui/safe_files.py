"""Writing a run's files so that a full disk or a write error costs only what it must.

`AppendFile` is how metrics.jsonl and metrics.csv grow: each batch of rows is one write of whole lines, and when
it fails (ENOSPC, EIO, EROFS ...) the file is cut back to where that batch began, so it never ends in half a row,
and `error` keeps why. After a failure the file takes no more rows: its writer reports the loss once (the rows
before it stay valid for `json.loads`, pandas or jq). `write_text_atomic` writes a small file (config.toml) whole
or not at all: a temporary file renamed over the old one. `describe_write_error` is the words every such failure
gets: `cannot write runs/X/metrics.jsonl: No space left on device`.

Checkpoints have their own atomic write (`nktui.run.checkpoint.atomic_save`). Imports neither torch nor Textual.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


def _os_write(fd: int, data: memoryview) -> int:  # (one name to fail in tests: os.write is everyone's)
    return os.write(fd, data)


def describe_write_error(exc: BaseException, path: str | Path | None = None) -> str:
    """`cannot write <path>: <strerror>` (the OS's words, without errno numbers or the path twice)."""
    if isinstance(exc, OSError):
        why = exc.strerror or " ".join(str(exc).split())
    else:
        why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    return f"cannot write {path}: {why}" if path is not None else f"cannot write: {why}"


class AppendFile:
    """A file appended to a batch of whole lines at a time (see the module's docstring). `append` returns False,
    and writes nothing, once a write has failed (or the file could not be opened): `error` says why."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.error: OSError | None = None
        self._fd: int | None = None
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self.error = exc

    @property
    def is_new(self) -> bool:
        """Whether the file is empty (a header goes first)."""
        return self._fd is not None and os.fstat(self._fd).st_size == 0

    def append(self, text: str) -> bool:
        """Write `text` (whole lines) at the end; False (and the file as it was before) when it cannot be written."""
        if self._fd is None or self.error is not None:
            return False
        data = memoryview(text.encode("utf-8"))
        start = None
        try:
            start = os.fstat(self._fd).st_size
            while data:
                data = data[_os_write(self._fd, data):]
        except OSError as exc:
            self.error = exc
            if start is not None:
                try:  # (cutting a file back frees space: it works on a full disk)
                    os.ftruncate(self._fd, start)
                except OSError:
                    pass
            return False
        return True

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError as exc:
                self.error = self.error or exc


@contextmanager
def replacing(path: str | Path, mode: str = "w"):
    """Write `path` whole or leave it as it was: yields a temporary file beside it, which is flushed, fsynced and
    renamed over `path` when the block ends; on any error it is removed and `path` stays as it was. The rename is
    made durable too, where the platform can open a folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    """`path` holds `text`, whole, or is left as it was (OSError when it cannot be written)."""
    with replacing(path) as f:
        f.write(text)
