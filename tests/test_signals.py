"""Stop signals against real processes: SIGTERM and SIGHUP (a dropped SSH connection) to `nktui train` and to the
app on a pseudo-terminal stop at a step boundary, leave a loadable last.pt, exit 0 within 3 s and print how to
resume; so does closing the tmux window the app runs in; ctrl+c inside the app is a key that saves and quits;
nohup's ignored SIGHUP stays ignored.

The five processes start together (a module fixture) so that their imports overlap; each test then stops its own
once it trains (its metrics.jsonl has a row).
"""

from __future__ import annotations

import fcntl
import os
import pty
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
import torch

from nktui.run import signals
from nktui.training import RunState
from nktui.run.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
START_DEADLINE = 120.0  # four processes importing torch at once on two loaded cores
EXIT_SECONDS = 3.0


class Process:
    """`python -m nktui ...` on a pipe (`nktui train`) or a pseudo-terminal (the app), output collected."""

    def __init__(self, run_dir: Path, args: list[str], *, terminal: bool) -> None:
        self.run_dir = run_dir
        self.output = bytearray()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "nktui", *args, "--device", "cpu", "--steps", "1000000",
                   "--log-every", "10", "--run-dir", str(run_dir)]  # fmt: skip
        self.master = None
        if terminal:
            self.master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
            self.proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
                                         start_new_session=True)
            os.close(slave)
            source = self.master
        else:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            source = self.proc.stdout.fileno()
        self.reader = threading.Thread(target=self._read, args=(source,), daemon=True)
        self.reader.start()  # (a full terminal buffer would stall the app: keep reading)

    def _read(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def wait_training(self) -> None:
        metrics = self.run_dir / "metrics.jsonl"
        deadline = time.monotonic() + START_DEADLINE
        while not (metrics.exists() and metrics.stat().st_size > 0):
            assert self.proc.poll() is None, f"exited early: {self.text()[-2000:]}"
            assert time.monotonic() < deadline, f"never trained: {self.text()[-2000:]}"
            time.sleep(0.05)

    def stop_with(self, sig: int, *, hang_up_first: bool = False) -> float:
        """Send `sig` (after closing the terminal, for a hang-up); return the seconds until the process ended."""
        if hang_up_first and self.master is not None:
            os.close(self.master)  # the terminal is gone: writing to it now fails
            self.master = None
        start = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        elapsed = time.monotonic() - start
        self.reader.join(timeout=5)
        return elapsed

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def last_line(self) -> str:
        lines = [line for line in self.text().replace("\r", "\n").split("\n") if line.strip()]
        return lines[-1] if lines else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.master is not None:
            os.close(self.master)


CASES = {  # name: (command, terminal, signal, close the terminal first)
    "train-SIGTERM": (["train"], False, signal.SIGTERM, False),
    "train-SIGHUP": (["train"], False, signal.SIGHUP, False),
    # The app with its run inside it (--in-process); a run in its own process is tests/test_attach.py's (a signal
    # to the app detaches it) and the tmux test's below.
    "app-SIGTERM": (["--in-process"], True, signal.SIGTERM, False),
    "app-SIGHUP": (["--in-process"], True, signal.SIGHUP, True),
}


TMUX = shutil.which("tmux")


class TmuxApp:
    """The app in a tmux window of a private tmux server (a second window keeps the server up when it closes)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.socket = run_dir, f"nktui-signals-{os.getpid()}-{time.monotonic_ns()}"
        command = shlex.join([sys.executable, "-m", "nktui", "--device", "cpu", "--steps", "1000000",
                              "--log-every", "10", "--run-dir", str(run_dir)])  # fmt: skip
        env = f"PYTHONPATH={shlex.quote(str(ROOT))} OMP_NUM_THREADS=1 TERM=xterm-256color"
        self.tmux("new-session", "-d", "-s", "main", "-x", "100", "-y", "30", "-c", str(ROOT), f"env {env} {command}")
        self.tmux("new-window", "-d", "-t", "main", "sleep 120")
        self.pid = int(self.tmux("list-panes", "-t", "main:0", "-F", "#{pane_pid}").strip())

    def tmux(self, *args: str) -> str:
        return subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def running(self) -> bool:
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    def kill(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    base = tmp_path_factory.mktemp("signals")
    started = {name: Process(base / name, args, terminal=tty) for name, (args, tty, _, _) in CASES.items()}
    if TMUX is not None:
        started["tmux"] = TmuxApp(base / "tmux")
    yield started
    for process in started.values():
        process.kill()


@pytest.mark.parametrize("case", list(CASES))
def test_a_stop_signal_saves_and_exits_0(case, processes):
    args, _, sig, hang_up_first = CASES[case]
    process = processes[case]
    process.wait_training()
    elapsed = process.stop_with(sig, hang_up_first=hang_up_first)
    assert process.proc.returncode == 0, process.text()[-3000:]
    assert elapsed < EXIT_SECONDS, f"took {elapsed:.1f} s"
    state = load_checkpoint(process.run_dir / "last.pt")  # loadable, with weights_only=True
    assert state["step"] > 0 and all(torch.isfinite(t).all() for t in state["model"].values())
    log = (process.run_dir / "nktui.log").read_text()
    command = "nktui train --resume" if args == ["train"] else "nktui --resume"
    assert f"stopped by {sig.name} at step {state['step']}" in log
    assert f"{command} {process.run_dir / 'last.pt'}" in log
    assert "Traceback" not in process.text()
    if not hang_up_first and sig is not signal.SIGHUP:  # (after a hang-up nobody can read the terminal)
        assert process.last_line().endswith(f"{command} {process.run_dir / 'last.pt'}"), process.last_line()


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed")
def test_closing_the_tmux_window_under_the_app_detaches_and_the_run_trains_on(processes):
    """The SSH workflow: the terminal goes away (SIGHUP to the app); the run, in its own process, trains on; a
    SIGTERM to the run process then stops it with a loadable last.pt."""
    from nktui.host.remote import probe

    app = processes["tmux"]
    metrics = app.run_dir / "metrics.jsonl"
    deadline = time.monotonic() + START_DEADLINE
    while not (metrics.exists() and metrics.stat().st_size > 0):
        assert app.running() and time.monotonic() < deadline, "the app never trained"
        time.sleep(0.05)
    socket_path = app.run_dir / "nktui.sock"
    pid = probe(socket_path)["pid"]
    try:
        app.tmux("kill-window", "-t", "main:0")  # the terminal goes away: SIGHUP
        start = time.monotonic()
        while app.running():
            assert time.monotonic() - start < EXIT_SECONDS, "the app still runs after its window closed"
            time.sleep(0.05)
        before = probe(socket_path)["status"]["step_count"]
        deadline = time.monotonic() + 30
        while probe(socket_path)["status"]["step_count"] < before + 50:
            assert time.monotonic() < deadline, "the run stopped training when its app went"
            time.sleep(0.1)
        assert probe(socket_path)["status"]["clients"] == 0
        os.kill(pid, signal.SIGTERM)
        start = time.monotonic()
        while os.path.exists(f"/proc/{pid}") and "zombie" not in _state(pid):
            assert time.monotonic() - start < EXIT_SECONDS, "the run process still runs after SIGTERM"
            time.sleep(0.05)
        state = load_checkpoint(app.run_dir / "last.pt")
        assert state["step"] > before
        assert f"stopped by SIGTERM at step {state['step']}" in (app.run_dir / "nktui.log").read_text()
    finally:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as file:
            return file.read()
    except OSError:
        return "zombie"


def test_signals_a_process_was_started_ignoring_stay_ignored(monkeypatch):
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does
    try:
        assert signal.SIGHUP not in signals.handled() and signal.SIGTERM in signals.handled()
        with signals.StopSignals(lambda name: None):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored on the way out
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert signals.received == []  # nothing here was a real stop: the command line would not exit early


async def test_ctrl_c_in_the_app_is_a_key_that_saves_and_quits(tmp_path):
    from nktui.training import RunConfig
    from nktui.ui.app import NktuiApp

    app = NktuiApp(RunConfig(device="cpu", steps=10**6), paused=False, run_dir=tmp_path / "run")
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(1200):
            if app.session.run.controller.trainer is not None and app.session.run.controller.trainer.step_count > 20:
                break
            await pilot.pause(0.05)
        await pilot.press("ctrl+c")
    assert app.session.state is RunState.STOPPED
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == app.session.run.controller.trainer.step_count > 20
    assert app.exit_line.startswith(f"nktui: quit at step {state['step']};")
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"config.toml", "metrics.jsonl", "last.pt", "nktui.log"}
