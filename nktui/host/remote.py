"""`RemoteRunClient`: a run in another process, seen through its socket, with the methods of the in-process
`nktui.run.client.RunClient`, so that the app's Session cannot tell them apart (`remote` is True).

    client = RemoteRunClient.connect(run_dir / SOCKET_FILE)   # NktuiError: no such run, refused, another version
    client.config, client.run_dir                              # from the run's welcome
    client.drain()                                             # a Snapshot first, then the records as they come
    client.submit(Evaluate()); client.pause(); client.end("quit")   # commands; end() stops the run for good
    client.detach()                                            # the run goes on

A reader thread takes every frame: news (records and the status) into the inbox `drain` empties, replies into
their Futures. The run's files are the run process's: saving asks it (SaveNow), a warning for nktui.log is a
Note. When the connection ends, `ended_line` holds the run's exit line if it sent one; `lost` says it went
without one (the run process died). Imports neither torch nor Textual.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import socket
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from .. import __version__
from ..protocol import ConfigError, NktuiError, RunState
from ..protocol.commands import Cancel, EndRun, JobProgress, Note, Pause, Resume, SaveNow, SetLr, Step
from ..protocol.config import parse_lr
from ..protocol.wire import VERSION, WireError, error_from_wire, from_wire, pack, read_frame, records_from_wire, to_wire
from . import run_host  # noqa: F401 (registers the GPU reading with the wire)
from .mirror import ScrubBacklog, Snapshot
from .server import ExactReader, bindable

CONNECT_SECONDS = 5.0
STEP_SECONDS = 2.0  # `n` waits this long for the run to say whether it stepped


class RunGone(NktuiError):
    """The run's socket is there but nobody answers: its process ended."""


def open_socket(path: Path, timeout: float = CONNECT_SECONDS) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    address, fd = bindable(Path(path))
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                sock.connect(address)
                break
            except BlockingIOError:  # the run's backlog is full for a moment (a burst of `nktui ls`): again
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    except (ConnectionRefusedError, FileNotFoundError) as exc:
        sock.close()
        raise RunGone(f"no run answers at {path} ({exc.strerror})") from None
    except OSError as exc:
        sock.close()
        raise NktuiError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    finally:
        if fd is not None:
            os.close(fd)
    return sock


def handshake(path: Path, role: str) -> tuple[socket.socket, dict[str, Any], Any]:
    """Connect and say hello: (the socket, the welcome, a read_exactly for it). NktuiError says why not."""
    sock = open_socket(path)
    read_exactly = ExactReader(sock)
    try:
        sock.sendall(pack({"kind": "hello", "version": VERSION, "nktui": __version__, "role": role}))
        welcome, _ = read_frame(read_exactly)
    except (OSError, EOFError, WireError) as exc:
        sock.close()
        raise RunGone(f"the run at {path} did not answer ({type(exc).__name__})") from None
    if welcome.get("kind") == "refused":
        sock.close()
        raise NktuiError(f"the run at {path} refused: {welcome.get('why')}")
    if welcome.get("kind") != "welcome":
        sock.close()
        raise NktuiError(f"the run at {path} sent {welcome.get('kind')!r} instead of a welcome")
    return sock, welcome, read_exactly


def probe(path: Path) -> dict[str, Any]:
    """The welcome of the run at `path` (its status, config, pid), without attaching (`nktui ls`)."""
    sock, welcome, _ = handshake(path, "probe")
    sock.close()
    return welcome


class RemoteKeeper:
    """The run directory as a client sees it: where things are, what last.pt holds; writing goes to the run."""

    created = True
    resume = None

    def __init__(self, client: RemoteRunClient, run_dir: Path) -> None:
        self.client = client
        self.run_dir = run_dir  # as this client reached it (the run's own path may be relative to another cwd)
        self.checkpoint = run_dir / "last.pt"
        self.log_path = run_dir / "nktui.log"

    @property
    def saved_step(self) -> int | None:
        return self.client.status.get("saved_step")

    def note(self, line: str) -> None:
        self.client.submit(Note(line))


class RemoteRunClient:
    remote = True

    def __init__(self, sock: socket.socket, welcome: dict[str, Any], read_exactly: Any,
                 run_dir: Path | None = None) -> None:
        self.sock, self.welcome, self._read_exactly = sock, welcome, read_exactly
        self.config = from_wire(welcome["config"])
        self.keeper = RemoteKeeper(self, run_dir if run_dir is not None else Path(welcome["run_dir"]))
        self.pid = welcome.get("pid")
        self.claim_error: str | None = None
        self.status: dict[str, Any] = {}
        self._info = None
        self._inbox: list[Any] = []
        self._warnings: list[str] = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self.connected = True
        self.ended_line: str | None = None
        self.ended = False  # the run said it ended
        self.detached = False
        self.last_news: tuple[Any, float, list[Any]] | None = None
        self._apply_status(welcome.get("status") or {})
        threading.Thread(target=self._read_loop, name="nktui-run-reader", daemon=True).start()

    @classmethod
    def connect(cls, path: str | Path) -> RemoteRunClient:
        sock, welcome, read_exactly = handshake(Path(path), "viewer")
        sock.settimeout(None)
        return cls(sock, welcome, read_exactly, Path(path).parent)

    @property
    def run_dir(self) -> Path:
        return self.keeper.run_dir

    def localize(self, line: str | None) -> str | None:
        """A line from the run (which names its folder as the run process knows it, maybe relative to another
        directory) with the folder as this client reached it."""
        theirs = str(self.welcome.get("run_dir", ""))
        if not line or not theirs or theirs == str(self.run_dir):
            return line
        return line.replace(theirs + "/", str(self.run_dir) + "/").replace(f" {theirs})", f" {self.run_dir})")

    # -- the reader thread -----------------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        try:
            while True:
                message, blob = read_frame(self._read_exactly)
                kind = message["kind"]
                if kind == "news":
                    records = records_from_wire(message.get("records", []), blob)
                    self.last_news = (message.get("sent_at"), time.time(), records)  # (for the benchmarks)
                    with self._lock:
                        self._inbox.extend(records)
                        self._apply_status(message.get("status") or {})
                elif kind == "backlog":
                    backlog = ScrubBacklog.from_message(message)
                    with self._lock:
                        self._inbox.append(backlog)
                elif kind == "snapshot":
                    snapshot = Snapshot.from_message(message, blob)
                    with self._lock:
                        self._inbox = [snapshot]
                        self._apply_status(message.get("status") or {})
                elif kind == "reply":
                    self._resolve(message)
                elif kind == "ended":
                    with self._lock:
                        self._apply_status(message.get("status") or {})
                    self.ended_line, self.ended = message.get("line"), True
                    return
        except (OSError, EOFError, WireError, KeyError, TypeError, ValueError):
            pass
        finally:
            self.connected = False
            for future in list(self._pending.values()):
                if not future.done():
                    future.set_exception(RunGone("the run ended" if self.ended else "the connection to the run "
                                                 "was lost"))
            self._pending.clear()

    def _apply_status(self, status: dict[str, Any]) -> None:
        warnings = status.pop("warnings", None)
        if warnings:
            self._warnings += [str(w) for w in warnings]
        if "info" in status:
            self._info = from_wire(status.pop("info"))
        if "rewinds" in status:
            rewinds = from_wire(status.pop("rewinds"))
            if self._info is not None:
                self._info = dataclasses.replace(self._info, rewinds=rewinds)
        self.status.update(status)

    def _resolve(self, message: dict[str, Any]) -> None:
        future = self._pending.pop(message.get("id"), None)
        if future is None or future.done():
            return
        if "error" in message:
            future.set_exception(error_from_wire(message["error"]))
        else:
            try:
                future.set_result(from_wire(message.get("value")))
            except Exception as exc:  # (a malformed value settles its Future too: no caller waits forever)
                future.set_exception(exc)

    # -- what the run published ------------------------------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return RunState(self.status.get("state", "starting"))

    @property
    def info(self):
        return self._info

    @property
    def step_count(self) -> int:
        return int(self.status.get("step_count", 0))

    @property
    def gpu(self):
        return from_wire(self.status.get("gpu"))

    @property
    def pause_requested(self) -> bool:
        return bool(self.status.get("pause_requested"))

    @property
    def error(self) -> BaseException | None:
        error = self.status.get("error")
        return error_from_wire(error) if error else None

    @property
    def error_traceback(self) -> str:
        return str(self.status.get("traceback", ""))

    @property
    def alive(self) -> bool:
        return self.connected

    @property
    def received_bytes(self) -> int:
        return self._read_exactly.count

    @property
    def clients(self) -> int:
        return int(self.status.get("clients", 0))

    def job_progress(self, job: int) -> JobProgress | None:
        for data in self.status.get("progress", ()):
            progress = from_wire(data)
            if isinstance(progress, JobProgress) and progress.job == job:
                return progress
        return None

    # -- commands --------------------------------------------------------------------------------------------------
    def submit(self, command: Any) -> Future:
        future: Future = Future()
        if not self.connected:
            future.set_exception(RunGone("the run ended" if self.ended else "the connection to the run was lost"))
            return future
        ident = next(self._ids)
        self._pending[ident] = future
        try:
            frame = pack({"kind": "call", "id": ident, "command": to_wire(command)})
            with self._send_lock:
                self.sock.sendall(frame)
        except (OSError, WireError) as exc:
            self._pending.pop(ident, None)
            future.set_exception(RunGone(f"the command did not reach the run: {exc}"))
        return future

    def cancel(self, job: int) -> bool:
        try:
            return bool(self.submit(Cancel(job)).result(STEP_SECONDS))
        except Exception:
            return False

    def pause(self) -> None:
        self.submit(Pause())
        self.status["pause_requested"] = True  # (until the run's next status says otherwise)

    def pause_measured(self) -> None:
        self.submit(Pause(measured=True))
        self.status["pause_requested"] = True

    def resume(self) -> None:
        self.submit(Resume())

    def step(self) -> bool:
        try:
            return bool(self.submit(Step()).result(STEP_SECONDS))
        except Exception:
            return False

    def set_lr(self, value: object) -> float:
        lr = parse_lr(value)  # ConfigError here, before anything is sent
        future = self.submit(SetLr(lr))
        try:
            return float(future.result(STEP_SECONDS))
        except ConfigError:
            raise
        except Exception:
            return lr

    def request_observation(self) -> None:
        """(The run process measures a step every OBSERVE_SECONDS while a viewer is attached.)"""

    # -- the run's files: the run process's ------------------------------------------------------------------------
    def built(self) -> None:
        pass

    def drain(self) -> list[Any]:
        with self._lock:
            records, self._inbox = self._inbox, []
        return records

    def create_run_dir(self) -> Path:
        return self.run_dir

    def open_exports(self, run_dir: Any) -> None:
        return None

    exports = None

    def writer_warnings(self) -> list[str]:
        with self._lock:
            lines, self._warnings = self._warnings, []
        return lines

    @property
    def checkpoint_error(self) -> str | None:
        return None  # (the run process words its warnings whole: they come through writer_warnings)

    def log_failure(self) -> Path | None:
        log = self.status.get("failure_log")
        return Path(log) if log else None

    def save(self) -> Future:
        return self.submit(SaveNow())

    def save_fault_state(self) -> Future:
        return self.submit(SaveNow())

    def end(self, reason: str, timeout: float = 10.0) -> str | None:
        """Stop the run for good (last.pt saved): its exit line, once it has ended (None if it did not answer)."""
        try:
            line = self.submit(EndRun(reason)).result(timeout)
        except Exception:
            line = self.ended_line
        self.detach()
        return self.localize(line)

    def detach(self) -> None:
        """Leave the run running; this connection closes."""
        self.detached = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def stop(self, timeout: float | None = 2.0) -> bool:
        self.end("stopped", timeout or 10.0)
        return True

    def close_exports(self) -> None:
        pass

    def release(self, ended: bool = True) -> None:
        pass
