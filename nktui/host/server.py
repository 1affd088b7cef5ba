"""The run process's socket: a Unix domain socket in the run directory that any number of clients attach to.

    server = SocketServer(run_dir / SOCKET_FILE, welcome=..., handle=host.handle, snapshot=host.snapshot_frame)
    server.start()                      # bound 0600 (the folder 0700), listening; one thread accepts
    server.broadcast(frame)             # the host's tick: the same bytes queued to every viewer
    server.close(ended_frame)           # every client told, the socket file removed

Each connection has a reader thread (frames in: the handshake, then calls) and a writer thread (frames out from a
bounded queue). A client that cannot keep up never slows the run: when its queue passes QUEUE_FRAMES or
QUEUE_BYTES its pending news is dropped and it gets a fresh snapshot at the next tick instead (it skips to the
newest). A connection from another user (SO_PEERCRED), a client of another wire version, or a malformed,
truncated or oversized frame closes that connection with one line where one can still be sent, and nothing else.
Imports neither torch nor Textual.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from .. import __version__
from ..protocol.wire import VERSION, WireError, error_to_wire, from_wire, pack, read_frame, to_wire

SOCKET_FILE = "nktui.sock"
QUEUE_FRAMES = 50  # news frames a client may have waiting (5 s of ticks) before it is resynced
QUEUE_BYTES = 8 << 20
MAX_PENDING = 10_000  # frames of any kind (replies) a client may leave unread before it is disconnected
HANDSHAKE_SECONDS = 5.0
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


def bindable(path: Path) -> tuple[str, int | None]:
    """(an address for bind/connect, a directory fd to close afterwards): a Unix socket's path has at most 107
    bytes, so a longer one goes through the folder's /proc/self/fd link (Linux)."""
    text = str(path)
    if len(text.encode()) < 100 or not os.path.isdir("/proc/self/fd"):
        return text, None
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


RUN_FILE_NAMES = {SOCKET_FILE, ".lock", "config.toml", "metrics.jsonl", "metrics.csv", "last.pt", "nktui.log",
                  "saved-config.toml"}


def holds_only_run_files(folder: Path) -> bool:
    """Whether `folder` holds nothing but a run's own files (then it may be made private to its user)."""
    try:
        return all(name in RUN_FILE_NAMES or name.startswith((".last.pt.tmp", "events.out.tfevents"))
                   for name in os.listdir(folder))
    except OSError:
        return False


class ExactReader:
    """`reader(n)`: the next n bytes from a socket (EOFError when it closed first); `count`: bytes read so far."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.count = sock, 0

    def __call__(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self.sock.recv(min(left, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        self.count += n
        return b"".join(chunks)


def peer_uid(sock: socket.socket) -> int | None:
    try:
        _, uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        return uid
    except (OSError, AttributeError):
        return None


class Connection:
    """One client: a reader thread and a writer thread with a bounded queue."""

    def __init__(self, sock: socket.socket, server: SocketServer) -> None:
        self.sock, self.server = sock, server
        self.queue: deque[tuple[bytes, bool]] = deque()
        self.queued_bytes = 0
        self.cond = threading.Condition()
        self.open = True
        self.open_failed = False  # it was disconnected for leaving too much unread
        self.closing = False  # a last frame is queued: the writer closes once it is sent
        self.viewer = False  # a viewer counts as attached and gets news; a probe (nktui ls) only asks
        self.needs_snapshot = False
        self.resyncs = 0
        self.writer: threading.Thread | None = None
        self.read_exactly = ExactReader(sock)
        self.sent_bytes = 0

    def start(self) -> None:
        self.writer = threading.Thread(target=self._write_loop, name="nktui-client-writer", daemon=True)
        self.writer.start()
        threading.Thread(target=self._read_loop, name="nktui-client-reader", daemon=True).start()

    # -- out -------------------------------------------------------------------------------------------------------
    def send(self, frame: bytes, *, news: bool = False) -> None:
        with self.cond:
            if not self.open or self.closing:
                return
            if news and (len(self.queue) >= QUEUE_FRAMES or self.queued_bytes >= QUEUE_BYTES):
                kept = deque(item for item in self.queue if not item[1])  # replies stay; news is dropped
                self.queued_bytes = sum(len(f) for f, _ in kept)
                self.queue = kept
                self.needs_snapshot = True  # the next tick sends the whole state instead
                self.resyncs += 1
                return
            if not news and (len(self.queue) >= MAX_PENDING or self.queued_bytes >= 2 * QUEUE_BYTES):
                overflowing = True  # a client that asks and never reads the answers: it goes, the run stays
            else:
                overflowing = False
                self.queue.append((frame, news))
                self.queued_bytes += len(frame)
                self.cond.notify()
        if overflowing:
            self.open_failed = True
            self.abort()

    def _write_loop(self) -> None:
        try:
            while True:
                with self.cond:
                    while self.open and not self.queue and not self.closing:
                        self.cond.wait()
                    if not self.open or not self.queue:
                        return  # (closing with nothing left to send)
                    frame, _ = self.queue.popleft()
                    self.queued_bytes -= len(frame)
                self.sock.sendall(frame)  # (blocks this client's writer only)
                self.sent_bytes += len(frame)
        except OSError:
            pass
        finally:
            self.close()

    def abort(self) -> None:
        """Close at once, whatever is queued (its reader thread ends with the socket)."""
        with self.cond:
            if not self.open:
                return
            self.open = False
            self.queue.clear()
            self.cond.notify_all()
        self._let_go()

    def _let_go(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # (wakes this connection's reader)
        except OSError:
            pass
        self.sock.close()
        self.server.forget(self)

    def close(self, last: bytes | None = None) -> None:
        """Close the connection; with `last`, after everything queued and `last` are sent (at most a second)."""
        with self.cond:
            if not self.open:
                return
            if last is not None and not self.closing:
                self.closing = True
                self.queue.append((last, False))
                self.sock.settimeout(1.0)  # (a client that reads nothing cannot hold the close up)
                self.cond.notify_all()
                return
            if self.closing and threading.current_thread() is not self.writer:
                return  # the writer closes once the last frame is out
            self.open = False
            self.cond.notify_all()
        self._let_go()

    # -- in --------------------------------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        try:
            self.sock.settimeout(HANDSHAKE_SECONDS)
            hello, _ = read_frame(self.read_exactly)
            refusal = self._refusal(hello)
            if refusal:
                self.close(pack({"kind": "refused", "why": refusal}))
                return
            self.sock.settimeout(None)
            self.send(pack(self.server.welcome()))  # first: a tick's news may follow it, never come before it
            if hello.get("role") == "viewer":
                self.needs_snapshot = True  # (before it counts as a viewer: its first news is the whole state)
                self.viewer = True
            while self.open:
                message, _ = read_frame(self.read_exactly)
                self._on_message(message)
        except (OSError, EOFError, WireError, struct.error):
            pass  # a client gone, or one that sent what is not a frame: its connection only
        finally:
            self.close()

    def _refusal(self, hello: dict[str, Any]) -> str | None:
        if hello.get("kind") != "hello":
            return "the first frame must be a hello"
        if hello.get("version") != VERSION:
            return (f"this run is served by nktui {__version__} (wire version {VERSION}) and this client speaks "
                    f"wire version {hello.get('version')!r} (nktui {hello.get('nktui')}): attach with the same nktui")
        return None

    def _on_message(self, message: dict[str, Any]) -> None:
        if message["kind"] != "call":
            raise WireError(f"unexpected {message['kind']!r} frame")
        ident = message.get("id")
        if not isinstance(ident, int):
            raise WireError("a call without an id")
        try:
            result = self.server.handle(from_wire(message.get("command")), self)
        except WireError:
            raise
        except Exception as exc:  # a command the run refused: the error goes back, the run goes on
            self._reply(ident, error=exc)
            return
        if isinstance(result, Future):
            result.add_done_callback(lambda f: self._reply_future(ident, f))
        else:
            self._reply(ident, value=result)

    def _reply_future(self, ident: int, future: Future) -> None:
        if future.cancelled():
            self._reply(ident, error=RuntimeError("cancelled"))
        elif future.exception() is not None:
            self._reply(ident, error=future.exception())
        else:
            self._reply(ident, value=future.result())

    def _reply(self, ident: int, *, value: Any = None, error: BaseException | None = None) -> None:
        try:
            frame = pack({"kind": "reply", "id": ident, "value": to_wire(value)} if error is None
                         else {"kind": "reply", "id": ident, "error": error_to_wire(error)})
        except WireError as exc:
            frame = pack({"kind": "reply", "id": ident, "error": error_to_wire(exc)})
        self.send(frame)


class SocketServer:
    def __init__(self, path: Path, *, welcome: Callable[[], dict[str, Any]],
                 handle: Callable[[Any, Connection], Any]) -> None:
        self.path = Path(path)
        self.welcome = welcome
        self.handle = handle
        self.connections: list[Connection] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.refused_users = 0

    def start(self) -> None:
        """Bind (a socket file left by a run that died is replaced: the run directory's lock is this process's)."""
        if holds_only_run_files(self.path.parent):  # a run's own folder; never `--run-dir .` or a shared one
            try:
                os.chmod(self.path.parent, 0o700)
            except OSError:
                pass
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address, fd = bindable(self.path)
        old_umask = os.umask(0o177)  # the socket is 0600 from its first moment (the folder may be shared)
        try:
            listener.bind(address)
        finally:
            os.umask(old_umask)
            if fd is not None:
                os.close(fd)
        os.chmod(self.path, 0o600)
        listener.listen(socket.SOMAXCONN)
        self.listener = listener
        threading.Thread(target=self._accept_loop, name="nktui-accept", daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            listener = self.listener
            if listener is None:
                return
            try:
                sock, _ = listener.accept()
            except OSError:  # closed, or out of file descriptors for a moment: the run goes on either way
                if self.listener is None:
                    return
                time.sleep(0.05)
                continue
            uid = peer_uid(sock)
            if uid is not None and uid != os.getuid():
                self.refused_users += 1
                try:
                    sock.sendall(pack({"kind": "refused", "why": f"this run belongs to uid {os.getuid()}; "
                                       f"user {uid} may not attach to it"}))
                except OSError:
                    pass
                sock.close()
                continue
            connection = Connection(sock, self)
            with self.lock:
                self.connections.append(connection)
            connection.start()

    def forget(self, connection: Connection) -> None:
        with self.lock:
            if connection in self.connections:
                self.connections.remove(connection)

    @property
    def viewers(self) -> list[Connection]:
        with self.lock:
            return [c for c in self.connections if c.viewer and c.open]

    def broadcast(self, frame: bytes, skip: list[Connection] = ()) -> None:
        for connection in self.viewers:
            if not connection.needs_snapshot and connection not in skip:
                connection.send(frame, news=True)

    def close(self, last: bytes | None = None) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # (wakes the accept thread: close alone does not, on Linux)
            except OSError:
                pass
            listener.close()
        with self.lock:
            connections = list(self.connections)
        for connection in connections:
            connection.close(last)
        deadline = time.monotonic() + 1.0  # the last frame on its way to each client
        while self.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            self.path.unlink()
        except OSError:
            pass
