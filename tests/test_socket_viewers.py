"""Viewers on the socket (`nktui.host.server`, `nktui.host.run_host`): a viewer that never reads is resynced at the
next tick rather than dropped, slows no other viewer, and holds a bounded queue tick after tick; news waits for a
viewer that needs a snapshot first.

No torch, no trainer: the servers here answer with a recording `handle` (tests/wire_support.py's `Harness`) or are
a `RunHost` over a stub driver, in a short folder under /tmp.
"""

from __future__ import annotations

import socket
import threading
import random
import time
import types
from pathlib import Path

from wire_support import (  # noqa: F401 (harness, short_dir, thread_errors: fixtures)
    Harness,
    call,
    connect,
    harness,
    hello,
    reader,
    short_dir,
    thread_errors,
)

from nktui.host import server as server_module
from nktui.host.server import QUEUE_BYTES
from nktui.protocol.commands import Evaluate
from nktui.protocol.config import RunConfig
from nktui.protocol.records import StepRecord
from nktui.protocol.wire import WireError, pack, read_frame, records_to_wire


class _Viewer:
    """A viewer that reads every frame as it comes, on a thread of its own, and keeps each news frame's seq."""

    def __init__(self, path: Path) -> None:
        self.sock = connect(path)
        self.sock.sendall(hello("viewer"))
        self.read_exactly = reader(self.sock)
        self.welcome, _ = read_frame(self.read_exactly)
        self.sock.settimeout(None)
        self.seqs: list[int] = []
        self.sizes: list[int] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            while True:
                header, blob = read_frame(self.read_exactly)
                if header["kind"] == "news":
                    self.sizes.append(len(blob))
                    self.seqs.append(header["seq"])
        except (OSError, EOFError, WireError):
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


def _registered_viewer(h: Harness, known: set, timeout: float = 5.0):
    """The server's Connection of the viewer that attached last, once its hello is taken."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with h.server.lock:
            new = [c for c in h.server.connections if c not in known and c.viewer and c.needs_snapshot]
        if new:
            return new[0]
        time.sleep(0.005)
    raise AssertionError("the viewer never registered")


def test_a_viewer_that_never_reads_is_resynced_and_slows_no_one(harness, thread_errors):
    slow = connect(harness.path)
    slow.sendall(hello("viewer"))  # and never reads a byte
    slow_conn = _registered_viewer(harness, set())
    fast = _Viewer(harness.path)
    fast_conn = _registered_viewer(harness, {slow_conn})
    slow_conn.needs_snapshot = fast_conn.needs_snapshot = False  # (what the host's tick does after a snapshot)
    blob = bytes(range(256)) * 2048  # 512 KiB
    count, durations, most_queued, size = 48, [], 0, 0
    try:
        for seq in range(count):
            frame = pack({"kind": "news", "seq": seq}, blob)
            size = len(frame)
            started = time.perf_counter()
            harness.server.broadcast(frame)
            durations.append(time.perf_counter() - started)
            most_queued = max(most_queued, slow_conn.queued_bytes)
            deadline = time.monotonic() + 10
            while len(fast.seqs) <= seq and time.monotonic() < deadline:  # (the next tick, once this one is read)
                time.sleep(0.001)
        assert fast.seqs == list(range(count)), "the fast viewer missed frames"
        assert set(fast.sizes) == {len(blob)}
        assert fast_conn.resyncs == 0 and not fast_conn.needs_snapshot
        assert slow_conn.needs_snapshot and slow_conn.resyncs >= 1  # it gets a snapshot at the next tick
        assert max(durations) < 0.1, max(durations)
        assert most_queued <= QUEUE_BYTES + size, (most_queued, QUEUE_BYTES)
        assert slow_conn.open and slow_conn in harness.server.connections  # resynced, not dropped
        # still answered: a reply is queued (not dropped) behind whatever the writer is stuck on
        slow.sendall(call(9, Evaluate()))
        def reply_queued() -> bool:
            return any(b'"kind":"reply","id":9' in item[0] for item in list(slow_conn.queue))

        deadline = time.monotonic() + 5
        while not reply_queued() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert reply_queued()
    finally:
        fast.close()
        slow.close()
    assert thread_errors == []


def test_news_waits_for_a_viewer_that_needs_a_snapshot(harness):
    viewer = _Viewer(harness.path)
    conn = _registered_viewer(harness, set())
    harness.server.broadcast(pack({"kind": "news", "seq": 0}))  # skipped: it needs a snapshot first
    conn.needs_snapshot = False
    harness.server.broadcast(pack({"kind": "news", "seq": 1}))
    deadline = time.monotonic() + 5
    while not viewer.seqs and time.monotonic() < deadline:
        time.sleep(0.005)
    viewer.close()
    assert viewer.seqs == [1]


def test_a_viewer_that_never_reads_stays_bounded_tick_after_tick(short_dir, monkeypatch, thread_errors):
    from nktui.host.run_host import RunHost
    from fake_run import run_info as fake_info, step_record

    monkeypatch.setattr(server_module, "QUEUE_BYTES", 256 << 10)  # (the same in small: fast to fill)
    layers = tuple(f"layer{i}.weight" for i in range(6))
    shape_info = fake_info(layers=layers, shapes=((32, 32),) * len(layers))
    driver = types.SimpleNamespace(controller=None, keeper=None, run_dir=short_dir, config=RunConfig())
    host = RunHost(driver)
    host.mirror.add([step_record(i, 1.0, grad_norm=1.0, info=shape_info) for i in range(1, 61)])
    host.start()
    slow = connect(host.server.path)
    try:
        slow.sendall(hello("viewer"))  # and never reads
        deadline = time.monotonic() + 5
        while not host.server.viewers and time.monotonic() < deadline:
            time.sleep(0.005)
        conn = host.server.viewers[0]
        most_queued, step, news_size = 0, 61, 0
        noise = random.Random(0)  # (losses that do not deflate much, as real ones)
        for _ in range(60):  # (plain steps: the mirror's observed steps, most of a snapshot, stay as they are)
            news = [StepRecord(step + i, 0, noise.random(), 0.5, 0.1) for i in range(1000)]
            step += len(news)
            segments, blob = records_to_wire(news)
            news_size = max(news_size, len(pack({"kind": "news", "records": segments}, blob, deflate=True)))
            host.tick(news)
            most_queued = max(most_queued, conn.queued_bytes)
        biggest = max(len(host.snapshot_frame()), news_size)
        assert conn.resyncs >= 1
        assert most_queued <= server_module.QUEUE_BYTES + 2 * biggest, (most_queued, biggest)
    finally:
        slow.close()
        host.server.close()
    assert thread_errors == []
