"""The socket that carries the wire (`nktui.host.server`) and its clients (`nktui.host.remote`): a client that sends
garbage, truncated or oversized frames, no hello or another wire version costs only its own connection; the socket
is 0600 in a 0700 folder, works at a long path, and its accept loop outlives running out of files and ends at
close; a client survives a reply nested too deep.

No torch, no trainer: the servers here answer with a recording `handle` (tests/wire_support.py's `Harness`), in a
short folder under /tmp.
"""

from __future__ import annotations

import os
import random
import resource
import socket
import stat
import struct
import threading
import time
from pathlib import Path

import pytest
from wire_support import (  # noqa: F401 (harness, short_dir, thread_errors: fixtures)
    Harness,
    call,
    connect,
    every_command,
    frame_of,
    frames_in,
    harness,
    hello,
    random_value,
    read_to_eof,
    reader,
    short_dir,
    thread_errors,
)

from nktui.host import remote
from nktui.host.remote import RemoteRunClient, handshake, probe
from nktui.host.server import SOCKET_FILE, ExactReader, SocketServer
from nktui.protocol import commands
from nktui.protocol.commands import Evaluate, RewindTo, SetLr
from nktui.protocol.config import RunConfig
from nktui.protocol.errors import NktuiError
from nktui.protocol.wire import MAX_FRAME, VERSION, WireError, error_from_wire, from_wire, pack, read_frame, to_wire


# -- a server that garbage cannot take down ----------------------------------------------------------------------------
def random_frame(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.35:
        return pack({"kind": "call", "id": rng.choice([1, 2, -5, 2**70, "x", None, 1.5]),
                     "command": random_value(rng)})
    if r < 0.5:
        return call(rng.randrange(1000), rng.choice(COMMANDS))
    if r < 0.6:
        return pack({"kind": rng.choice(["hello", "news", "reply", "", "call"]), "v": random_value(rng)})
    if r < 0.75:
        body = rng.randbytes(rng.randrange(0, 300))
        return struct.pack(">I", len(body)) + body
    if r < 0.85:
        return frame_of(rng.choice([b"not json", b"[1]", b"{}", b"{\"kind\": 3}", rng.randbytes(20)]))
    return rng.randbytes(rng.randrange(1, 64))


COMMANDS = every_command()
CASES = ("random bytes", "random body", "hello then frames", "truncated", "oversized", "bad header", "no hello",
         "checked call")


def send(sock: socket.socket, data: bytes) -> None:
    """sendall, where the server may already have closed on what came before (that is its right)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def fuzz_one(rng: random.Random, path: Path, case: str) -> None:
    sock = connect(path)
    try:
        if case == "random bytes":
            send(sock, rng.randbytes(rng.randrange(1, 2000)))
        elif case == "random body":
            size = rng.randrange(4, 5000)
            body = rng.randbytes(size if rng.random() < 0.5 else rng.randrange(size))
            send(sock, struct.pack(">I", size) + body)
        elif case == "hello then frames":
            send(sock, hello(rng.choice(["probe", "viewer", "other", None])))
            for _ in range(rng.randrange(1, 6)):
                send(sock, random_frame(rng))
        elif case == "truncated":
            whole = hello() + call(1, Evaluate()) if rng.random() < 0.5 else hello()
            send(sock, whole[:rng.randrange(1, len(whole))])
        elif case == "oversized":  # the server closes at once, without waiting for the body
            if rng.random() < 0.5:
                send(sock, hello())
            send(sock, struct.pack(">I", rng.randrange(MAX_FRAME + 1, 2**32)) + rng.randbytes(rng.randrange(64)))
            frames = frames_in(read_to_eof(sock, timeout=5.0))
            assert {f["kind"] for f in frames} <= {"welcome"}
            return
        elif case == "bad header":  # a whole frame that is not one: closed at once
            send(sock, frame_of(rng.choice([b"not json", b"[1]", b"{}", b"{\"kind\": 3}", b"\xff" * 9])))
            assert frames_in(read_to_eof(sock, timeout=5.0)) == []
            return
        elif case == "no hello":  # a first frame that is not a hello: refused, in words
            send(sock, call(1, Evaluate()))
            frames = frames_in(read_to_eof(sock, timeout=5.0))
            assert [f["kind"] for f in frames] == ["refused"] and "hello" in frames[0]["why"]
            return
        elif case == "checked call":  # garbage after a call: the call is answered, then the connection closed
            ident = rng.randrange(1, 10**6)
            send(sock, hello() + call(ident, SetLr(1e-3)) + frame_of(b"garbage"))
            frames = frames_in(read_to_eof(sock, timeout=5.0))
            # (what was queued when the garbage came may be dropped with the connection; what comes is right)
            assert [f["kind"] for f in frames] in ([], ["welcome"], ["welcome", "reply"])
            for reply in frames[1:]:
                assert reply["id"] == ident and from_wire(reply["value"]) == ("ok", "SetLr")
            return
        # the rest: we stop writing; whatever the server sent is well-formed, and it closes
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        frames = frames_in(read_to_eof(sock, timeout=5.0))
        assert {f["kind"] for f in frames} <= {"welcome", "reply", "refused"}
    finally:
        sock.close()


def well_behaved_client_works(h: Harness) -> None:
    sock, welcome, read_exactly = handshake(h.path, "probe")
    try:
        assert welcome["kind"] == "welcome" and welcome["status"]["step_count"] == 3
        sock.sendall(call(41, Evaluate(detailed=True)) + call(42, commands.Note("refuse")))
        first, _ = read_frame(read_exactly)
        second, _ = read_frame(read_exactly)
        assert first == {"kind": "reply", "id": 41, "value": ["ok", "Evaluate"]}
        assert second["id"] == 42 and isinstance(error_from_wire(second["error"]), NktuiError)
        assert "refused on purpose" in second["error"]["message"]
    finally:
        sock.close()
    assert probe(h.path)["pid"] == os.getpid()
    client = RemoteRunClient.connect(h.path)
    try:
        assert client.config == RunConfig() and client.step_count == 3
        assert client.submit(RewindTo(5)).result(5) == ("ok", "RewindTo")
    finally:
        client.detach()


def test_garbage_from_200_clients_harms_no_one_else(harness, thread_errors):
    rng = random.Random(20240607)
    done = {case: 0 for case in CASES}
    for i in range(200):
        case = CASES[i % len(CASES)] if i < len(CASES) else rng.choice(CASES)
        fuzz_one(rng, harness.path, case)
        done[case] += 1
        if i % 50 == 49:  # a good client meanwhile is served as ever
            well_behaved_client_works(harness)
    assert all(done.values()), done
    assert harness.wait_idle(), f"{len(harness.server.connections)} connections still open after their clients went"
    assert harness.accept_thread.is_alive()
    well_behaved_client_works(harness)
    assert harness.accept_thread.is_alive()
    assert thread_errors == []
    assert not any(type(c) is dict for c in harness.commands)  # (the handle saw decoded values only)
    assert any(isinstance(c, SetLr) for c in harness.commands)


def test_concurrent_garbage_and_a_good_client(harness, thread_errors):
    """Garbage from four threads at once while a good client calls in a loop."""
    errors: list = []

    def garbage(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(15):
                fuzz_one(rng, harness.path, rng.choice(CASES))
        except Exception as exc:  # (reported below)
            errors.append(repr(exc))

    threads = [threading.Thread(target=garbage, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    sock, _, read_exactly = handshake(harness.path, "probe")
    try:
        for ident in range(1, 31):
            sock.sendall(call(ident, RewindTo(ident)))
            assert read_frame(read_exactly)[0] == {"kind": "reply", "id": ident, "value": ["ok", "RewindTo"]}
    finally:
        sock.close()
    for t in threads:
        t.join(30)
    assert errors == [] and thread_errors == []
    assert harness.wait_idle() and harness.accept_thread.is_alive()


def test_a_client_of_another_version_is_refused_naming_both(harness, monkeypatch):
    for version in (VERSION + 998, "1", None):
        sock = connect(harness.path)
        try:
            sock.sendall(hello(version=version))
            frames = frames_in(read_to_eof(sock))
        finally:
            sock.close()
        assert [f["kind"] for f in frames] == ["refused"]
        why = frames[0]["why"]
        assert f"wire version {VERSION}" in why and f"wire version {version!r}" in why, why
    monkeypatch.setattr(remote, "VERSION", VERSION + 1)  # (what a client of the next version sends)
    with pytest.raises(NktuiError, match=f"refused: .*wire version {VERSION}.*wire version {VERSION + 1}"):
        handshake(harness.path, "probe")


def test_the_socket_is_0600_in_a_0700_folder(short_dir):
    folder = short_dir / "run"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    (folder / SOCKET_FILE).write_text("left by a run that died")
    server = SocketServer(folder / SOCKET_FILE, welcome=lambda: {"kind": "welcome"}, handle=lambda c, conn: None)
    server.start()
    try:
        mode = os.stat(folder / SOCKET_FILE).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert probe(folder / SOCKET_FILE) == {"kind": "welcome"}
    finally:
        server.close()
    assert not (folder / SOCKET_FILE).exists()


def test_a_socket_in_a_folder_with_a_long_path(short_dir, thread_errors):
    folder = short_dir / ("a" * 60) / ("b" * 60)
    folder.mkdir(parents=True)
    assert len(str(folder).encode()) > 120
    h = Harness(folder)
    try:
        assert (folder / SOCKET_FILE).exists() and stat.S_IMODE(os.stat(folder / SOCKET_FILE).st_mode) == 0o600
        assert probe(h.path)["run_dir"] == str(folder)
        well_behaved_client_works(h)
    finally:
        h.server.close()
    assert not (folder / SOCKET_FILE).exists()
    assert thread_errors == []


def test_the_accept_loop_outlives_running_out_of_files(harness):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # accept() gets EMFILE
        for client in clients:
            client.connect(str(harness.path))
        time.sleep(0.3)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert harness.accept_thread.is_alive()
        clients[0].settimeout(5)
        clients[0].sendall(hello())
        assert read_frame(reader(clients[0]))[0]["kind"] == "welcome"
    finally:
        for client in clients:
            client.close()


def test_close_ends_the_accept_thread(short_dir):
    h = Harness(short_dir)
    probe(h.path)  # (one client served: the loop is back in accept(), blocked, when close comes)
    time.sleep(0.1)
    h.server.close()
    h.accept_thread.join(1.0)
    assert not h.accept_thread.is_alive()


def test_a_client_survives_a_deeply_nested_reply(thread_errors):
    ours, theirs = socket.socketpair()
    welcome = {"kind": "welcome", "run_dir": "/tmp/nowhere", "config": to_wire(RunConfig()), "status": {}}
    client = RemoteRunClient(ours, welcome, ExactReader(ours))
    try:
        future = client.submit(Evaluate())
        theirs.settimeout(5)
        message, _ = read_frame(reader(theirs))
        header = b'{"kind":"reply","id":%d,"value":%s}' % (message["id"], b"[" * 600 + b"]" * 600)
        theirs.sendall(frame_of(header))
        with pytest.raises(WireError):
            future.result(1)
        assert client.connected and thread_errors == []
    finally:
        client.detach()
        theirs.close()
