"""The run in a process of its own, tested with real processes and the real socket: attach the app (Pilot) and
steer the run, detach, attach again and find the history; two clients at once; kill -9 of a client and of the run;
stop signals to the run process; the socket's permissions and another user refused; `nktui ls`; `nktui train`
attachable. Each run process builds a small MLP on the bundled digits (a few seconds on a loaded machine)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pilot_support import until

from nktui.host.live_runs import live_runs
from nktui.host.remote import RemoteRunClient, probe
from nktui.host.server import SOCKET_FILE
from nktui.host.spawn import RunProcessFailed, start_run_process
from nktui.protocol import RunState, StepRecord
from nktui.protocol.commands import EndRun
from nktui.ui.app import NktuiApp

SIZE = (100, 30)
FLAGS = ["--model", "mlp", "--steps", "1000000", "--device", "cpu", "--seed", "0"]
DEADLINE = 60.0


def wait(predicate, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (ours, not reaped yet) is dead too
        with open(f"/proc/{pid}/stat") as file:
            return file.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """Start run processes in tmp_path (their cwd); every one still alive at the end is killed."""
    monkeypatch.chdir(tmp_path)
    started: list[int] = []

    def start(*flags: str, paused: bool = True) -> tuple[Path, int]:
        run_dir, pid = start_run_process([*FLAGS, *flags, *(["--paused"] if paused else [])])
        started.append(pid)
        return run_dir, pid

    yield start
    for pid in started:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def connect(run_dir: Path) -> RemoteRunClient:
    client = RemoteRunClient.connect(run_dir / SOCKET_FILE)
    wait(lambda: client.info is not None, "the run to be built")
    return client


def attached_app(client: RemoteRunClient) -> NktuiApp:
    return NktuiApp(client.config, run_dir=client.run_dir, run_client=lambda config, paused: client, attached=True)


async def test_attach_steer_detach_and_attach_again_with_the_history(runs):
    run_dir, pid = runs(paused=False)
    assert (run_dir.stat().st_mode & 0o777) == 0o700
    assert stat.S_ISSOCK((run_dir / SOCKET_FILE).stat().st_mode)
    assert ((run_dir / SOCKET_FILE).stat().st_mode & 0o777) == 0o600
    client = connect(run_dir)
    app = attached_app(client)
    async with app.run_test(size=SIZE) as pilot:
        session = app.session
        await until(pilot, lambda: session.step_count >= 50 and session.history.train_loss.count > 0,
                    "steps on the plot", timeout=DEADLINE)
        await pilot.press("space")  # pause
        await until(pilot, lambda: session.state is RunState.PAUSED, "the pause")
        paused_at = session.step_count
        await pilot.press("n")  # exactly one step
        await until(pilot, lambda: session.step_count == paused_at + 1, "one step")
        await pilot.press("right_square_bracket")  # LR x2
        await until(pilot, lambda: abs(session.lr - 0.2) < 1e-12, "the doubled LR")
        await pilot.press("n")
        await until(pilot, lambda: session.latest_step is not None and session.latest_step.step == paused_at + 2
                    and session.latest_step.lr == 0.2, "a step at the new LR")
        seen = session.history.train_loss.count
        measured = [r.step for r in session.observed]
        await pilot.press("d")
        await until(pilot, lambda: not app.is_running, "the detach")
    assert app.return_value == 0
    assert "nktui attach" in app.exit_line
    assert pid_alive(pid)
    welcome = probe(run_dir / SOCKET_FILE)
    assert welcome["status"]["state"] == "paused" and welcome["status"]["step_count"] == paused_at + 2

    again = connect(run_dir)
    app = attached_app(again)
    async with app.run_test(size=SIZE) as pilot:
        session = app.session
        await until(pilot, lambda: session.history.train_loss.count >= seen, "the whole history on attaching")
        assert session.latest_step.step == paused_at + 2 and session.latest_step.lr == 0.2
        # the scrub buffer comes with the history: its newest steps in the first frame, the rest just after
        await until(pilot, lambda: [r.step for r in session.observed][-len(measured):] == measured,
                    "the scrub buffer")
        assert f"step {paused_at + 2}" in app.status_bar.text
        await pilot.press("q")  # asks: stop or detach
        await pilot.press("s")  # stop: last.pt saved
        await until(pilot, lambda: not app.is_running, "the stop", timeout=DEADLINE)
    assert f"holds step {paused_at + 2}" in app.exit_line
    wait(lambda: not pid_alive(pid), "the run process to end", timeout=10)
    assert (run_dir / "last.pt").exists() and not (run_dir / SOCKET_FILE).exists()
    assert f"quit at step {paused_at + 2}" in (run_dir / "nktui.log").read_text()


def test_two_clients_see_each_others_commands_and_a_killed_client_leaves_the_run_alone(runs):
    run_dir, pid = runs(paused=False)
    first, second = connect(run_dir), connect(run_dir)
    wait(lambda: first.step_count > 20, "training")
    wait(lambda: first.clients == 2, "two clients counted")
    first.pause()
    wait(lambda: second.state is RunState.PAUSED, "the other client to see the pause", timeout=5)
    assert first.set_lr(0.05) == 0.05
    assert second.step()
    wait(lambda: any(getattr(r, "lr", None) == 0.05 for r in first.drain()), "the step at the new LR, in the first")
    # A client that is killed (kill -9) mid-stream: the run goes on.
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from nktui.host.remote import RemoteRunClient; "
        f"c = RemoteRunClient.connect({str(run_dir / SOCKET_FILE)!r}); print('in', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "in"
    first.resume()
    wait(lambda: first.clients == 3, "the third client counted")
    child.kill()
    child.wait()
    before = first.step_count
    wait(lambda: first.step_count > before + 50, "the run to train on after the kill")
    wait(lambda: first.clients == 2, "the killed client forgotten")
    assert pid_alive(pid)
    assert first.submit(EndRun("stopped by the test")).result(20)
    wait(lambda: not pid_alive(pid), "the run process to end", timeout=10)


async def test_a_run_killed_under_the_app_ends_it_with_how_to_resume(runs):
    run_dir, pid = runs()
    client = connect(run_dir)
    app = attached_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.session.info is not None, "the run")
        os.kill(pid, signal.SIGKILL)
        await until(pilot, lambda: not app.is_running, "the app to end with the run", timeout=10)
    assert "the run ended: its process is gone" in app.exit_line and "--resume" in app.exit_line
    assert app.return_value == 1  # (App.exit(1): the code `nktui attach` exits with)
    # The socket it left: `nktui ls` removes it and says so.
    assert (run_dir / SOCKET_FILE).exists()
    wait(lambda: not pid_alive(pid), "the killed run to be gone")
    found, notes = live_runs(Path("runs") if run_dir.is_relative_to("runs") else run_dir.parent)
    assert not found and any("no longer running" in note for note in notes)
    assert not (run_dir / SOCKET_FILE).exists()


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_stop_signal_to_the_run_process_saves_and_exits_within_3_s(runs, name):
    run_dir, pid = runs(paused=False)
    client = connect(run_dir)
    wait(lambda: client.step_count > 20, "training")
    os.kill(pid, getattr(signal, name))
    start = time.monotonic()
    wait(lambda: not pid_alive(pid), "the run process to exit", timeout=10)
    assert time.monotonic() - start < 3.0
    log = (run_dir / "nktui.log").read_text()
    assert f"stopped by {name}" in log and "last.pt holds step" in log
    assert (run_dir / "last.pt").exists()
    wait(lambda: not client.alive, "the client to see the end")
    assert client.ended and f"stopped by {name}" in client.ended_line


def test_a_folder_another_run_holds_is_one_line_from_the_run_process(runs):
    run_dir, _ = runs("--run-dir", "held")
    with pytest.raises(RunProcessFailed) as failed:
        start_run_process([*FLAGS, "--run-dir", "held"])
    assert failed.value.code == 2 and "held" in str(failed.value)


def test_another_user_is_refused(runs, tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root to connect as another user")
    try:
        _as_nobody("pass")
    except PermissionError:
        pytest.skip("the user nobody cannot run this Python")
    run_dir, _ = runs()
    path = run_dir / SOCKET_FILE
    # The folder is 0700 and the socket 0600: another user cannot even reach it ...
    code = _as_nobody(f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(path)!r})")
    assert code != 0
    # ... and one that could (the modes opened up by hand) is refused by the run itself (SO_PEERCRED).
    os.chmod(run_dir, 0o755)
    os.chmod(path, 0o777)
    for parent in run_dir.parents:
        if parent == Path(tmp_path).parent.parent:
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o005)
    script = ("import sys; from nktui.host.remote import handshake\n"
              f"try:\n    handshake(__import__('pathlib').Path({str(path)!r}), 'viewer')\n"
              "except Exception as exc:\n    print(exc); sys.exit(3 if 'may not attach' in str(exc) else 4)\n")
    assert _as_nobody(script) == 3


def _as_nobody(script: str) -> int:
    def become_nobody() -> None:
        os.setgid(65534)
        os.setuid(65534)

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-c", script], preexec_fn=become_nobody, env=env, cwd="/",
                          capture_output=True, timeout=60).returncode


def test_nktui_train_is_attachable_and_an_attached_stop_ends_it(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "nktui", "train", *FLAGS, "--run-dir", "t"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        path = tmp_path / "t" / SOCKET_FILE
        wait(lambda: path.exists() or process.poll() is not None, "nktui train's socket")
        client = connect(tmp_path / "t")
        assert client.welcome["mode"] == "train"
        wait(lambda: client.step_count > 20, "training")
        line = client.end("quit")
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0, out
        assert "from an attached app" in line and "last.pt holds step" in line
        assert "resume: nktui train --resume" in out
    finally:
        if process.poll() is None:
            process.kill()


def test_nktui_ls_lists_a_live_run(runs):
    run_dir, pid = runs()
    connect(run_dir)
    result = subprocess.run([sys.executable, "-m", "nktui", "ls"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert header.split()[:4] == ["RUN", "PID", "STATE", "STEP"]
    assert str(pid) in row and "paused" in row and "/1000000" in row
    assert row.split()[-1] == "1"  # the client attached


def test_the_socket_path_limit_is_not_the_run_directorys(runs, tmp_path):
    deep = Path("d" * 60) / ("e" * 60)
    run_dir, _ = runs("--run-dir", str(deep))
    assert len(str((tmp_path / run_dir / SOCKET_FILE).resolve())) > 108
    assert probe(run_dir / SOCKET_FILE)["kind"] == "welcome"


def test_a_client_of_another_wire_version_gets_one_line(runs):
    run_dir, _ = runs()
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(run_dir / SOCKET_FILE))
    from nktui.protocol.wire import pack, read_frame

    sock.sendall(pack({"kind": "hello", "version": 999, "nktui": "9.9", "role": "viewer"}))
    message, _ = read_frame(lambda n: _recv_exactly(sock, n))
    assert message["kind"] == "refused" and "999" in message["why"] and "same nktui" in message["why"]


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def test_the_server_refuses_a_peer_of_another_uid(tmp_path, monkeypatch):
    """The SO_PEERCRED check itself, in-process: the server believes it runs as another uid than its peer."""
    import tempfile

    from nktui.host import server as server_module
    from nktui.host.server import SocketServer
    from nktui.protocol.wire import read_frame

    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    server = SocketServer(folder / SOCKET_FILE, welcome=lambda: {"kind": "welcome"}, handle=lambda c, conn: None)
    server.start()
    try:
        real = os.getuid()
        monkeypatch.setattr(server_module.os, "getuid", lambda: real + 4242)
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(folder / SOCKET_FILE))
        message, _ = read_frame(lambda n: _recv_exactly(sock, n))
        assert message["kind"] == "refused" and f"user {real} may not attach" in message["why"]
        assert server.refused_users == 1 and not server.connections
    finally:
        monkeypatch.undo()
        server.close()


@pytest.mark.parametrize("name", ["SIGHUP", "SIGTERM"])
def test_a_hangup_of_the_attached_app_detaches_it_and_the_run_goes_on(runs, name):
    """`nktui attach` in a real terminal (a pty); the terminal goes away (SIGHUP) or the app is killed politely."""
    import pty

    run_dir, pid = runs(paused=False)
    path = run_dir / SOCKET_FILE
    connect(run_dir).detach()  # (built)
    wait(lambda: probe(path)["status"]["clients"] == 0, "the test's own client to be gone")
    leader, follower = pty.openpty()
    os.set_blocking(leader, False)
    app = subprocess.Popen([sys.executable, "-m", "nktui", "attach", str(run_dir)], stdin=follower, stdout=follower,
                           stderr=follower, env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "100",
                                                 "LINES": "30"})
    os.close(follower)
    try:
        wait(lambda: probe(path)["status"]["clients"] == 1, "the app to attach")
        before = probe(path)["status"]["step_count"]
        app.send_signal(getattr(signal, name))
        assert app.wait(timeout=10) == 0
        wait(lambda: probe(path)["status"]["clients"] == 0, "the app's connection to close")
        wait(lambda: probe(path)["status"]["step_count"] > before + 50, "the run to train on")
        assert pid_alive(pid)
    finally:
        if app.poll() is None:
            app.kill()
        os.close(leader)


def test_a_run_that_finishes_with_nobody_attached_ends_and_logs_its_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir, pid = start_run_process(["--model", "mlp", "--device", "cpu", "--steps", "30", "--run-dir", "done"])
    try:
        wait(lambda: not pid_alive(pid), "the finished run process to end", timeout=DEADLINE)
        log = (tmp_path / run_dir / "nktui.log").read_text()
        assert "finished at step 30" in log and "holds step 30" in log and "--steps 60" in log
        assert not (tmp_path / run_dir / SOCKET_FILE).exists()
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_an_attached_history_has_each_step_once(runs):
    """The snapshot a viewer gets on attaching and the news after it never overlap: no step twice on the plot."""
    run_dir, _ = runs(paused=False)
    for _ in range(3):  # attach while the run trains, a few times
        client = connect(run_dir)
        wait(lambda: client.step_count > 100, "training")
        time.sleep(0.5)
        from nktui.host.mirror import Snapshot

        records = client.drain()
        assert isinstance(records[0], Snapshot)
        steps = [s for s, _ in records[0].history.train_loss.recent] + [r.step for r in records[1:]
                                                                       if isinstance(r, StepRecord)]
        assert steps == sorted(set(steps)), "a step came twice, or out of order"
        client.detach()


def test_hostile_commands_get_an_error_and_the_run_goes_on(runs):
    from nktui.protocol.commands import SetHistogramBins

    run_dir, pid = runs(paused=False)
    client = connect(run_dir)
    for bins in (-1, 0, 10**8):
        with pytest.raises(Exception, match="histogram bins"):
            client.submit(SetHistogramBins(bins)).result(20)
    wait(lambda: client.step_count > 100, "training on")
    line = client.end("x" * 10_000_000)  # a reason the size of a frame: cut to a line's worth
    assert line is not None and "holds step" in line and len(line) < 1000
    wait(lambda: not pid_alive(pid), "the run process to end")


def test_a_shared_run_dir_keeps_its_mode_and_ls_removes_only_sockets(runs, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("someone else's")
    os.chmod(shared, 0o1777)
    run_dir, _ = runs("--run-dir", str(shared))
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # not made private: it is not the run's own folder
    assert stat.S_IMODE((shared / SOCKET_FILE).stat().st_mode) == 0o600
    fake = tmp_path / "runs" / "fake"
    fake.mkdir(parents=True)
    (fake / SOCKET_FILE).write_text("not a socket")
    _, notes = live_runs(tmp_path / "runs")
    assert (fake / SOCKET_FILE).exists() and any("is not a socket" in note for note in notes)


def test_a_resumed_run_shows_the_checkpoints_step_and_the_old_history(runs):
    run_dir, pid = runs(paused=False)
    client = connect(run_dir)
    wait(lambda: client.step_count > 120, "training")
    client.end("quit")
    wait(lambda: not pid_alive(pid), "the first run process to end")
    from nktui.run.checkpoint import load_checkpoint

    saved = load_checkpoint(run_dir / "last.pt")["step"]
    _, pid = runs("--resume", str(run_dir))  # (its folder, in place; paused)
    again = connect(run_dir)
    wait(lambda: again.step_count == saved, "the resumed step")
    from nktui.host.mirror import Snapshot

    snapshot = again.drain()[0]
    assert isinstance(snapshot, Snapshot) and snapshot.history.train_loss.count > 0  # from metrics.jsonl
    assert all(r.step > saved for r in snapshot.recent)  # the newest step shown is the run's own, not an old row
