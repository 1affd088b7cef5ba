"""The real `nktui` command in a real terminal: tmux runs it, sends keys and reads the screen back.

This is the check that Pilot cannot make: the console script starts, Textual draws on a terminal it did not
create, keys typed on that terminal arrive, and `q` gives the terminal back with exit code 0. The status bar
writes `step N`, `lr X` and the state literally so that this test (and any script) can read them.

Skipped when tmux is missing or the `nktui` command line cannot be imported yet. The tmux server is a private
one (`tmux -S <socket in a temporary folder>`) so that a user's own tmux sessions are never touched; the test
kills that server.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")
WIDTH, HEIGHT = 100, 30
START_DEADLINE = 90.0  # importing torch and building the first trainer takes ~10 s on 2 slow cores
DEADLINE = 20.0

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")


def nktui_command() -> list[str]:
    """The installed console script next to this Python, else `python -m nktui`; skip if neither can run."""
    try:
        from nktui import cli
    except Exception as exc:  # noqa: BLE001 - whatever keeps the CLI from importing, the test cannot run
        pytest.skip(f"nktui.cli is not importable: {type(exc).__name__}: {exc}")
    if not callable(getattr(cli, "main", None)):
        pytest.skip("nktui.cli has no main() yet")
    script = Path(sys.executable).with_name("nktui")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "nktui"]


class Tmux:
    def __init__(self, socket: Path, session: str = "nktui") -> None:
        self.socket, self.session = socket, session

    def run(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            [TMUX, "-S", str(self.socket), *args], capture_output=True, text=True, timeout=10, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.session, *keys)

    def wait_for(self, pattern: str, what: str, timeout: float = DEADLINE) -> re.Match:
        """Poll the screen until the regex matches; fail with the last screen after the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            match = re.search(pattern, text)
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} ({pattern!r}); screen:\n{text}")
            time.sleep(0.1)


def type_into_input(tmux: Tmux, text: str) -> None:
    """Clear the dialog's input and type `text`; return once the screen shows it typed and it stays.

    Keys that arrive in the first ~150 ms after a dialog appears, before its input has settled into focus, are
    lost or mangled by Textual (the input ends up empty), so the test waits for the dialog to settle first, and
    types again if the text did not stick."""
    pattern = rf"▊\s*{re.escape(text)}\s"
    for _ in range(10):
        time.sleep(0.4)
        tmux.keys("C-u")  # the input starts with the current LR
        tmux.keys("-l", text)
        try:
            tmux.wait_for(pattern, f"{text!r} in the input", timeout=1.0)
            time.sleep(0.3)
            tmux.wait_for(pattern, f"{text!r} to stay in the input", timeout=0.1)
            return
        except AssertionError:
            continue
    raise AssertionError(f"{text!r} never stayed in the input; screen:\n{tmux.screen()}")


def status_line(tmux: Tmux) -> str:
    lines = [line for line in tmux.screen().splitlines() if re.search(r"\bstep \d+", line)]
    return lines[-1] if lines else ""


@pytest.fixture
def tmux(tmp_path_factory):
    # A server of our own on a socket in a fresh temporary folder (short: socket paths are limited to ~100 bytes).
    server = Tmux(tmp_path_factory.mktemp("tmux") / "s")
    yield server
    server.run("kill-server", check=False)  # (the app detaches: its run process trains on ...)
    server.socket.unlink(missing_ok=True)
    stop_run_processes(tmp_path_factory.getbasetemp())


def stop_run_processes(root) -> None:
    """... so every run process a test left under `root` is stopped here, whatever the test did."""
    from nktui.host.remote import probe

    for path in Path(root).rglob("nktui.sock"):
        try:
            os.kill(int(probe(path)["pid"]), signal.SIGKILL)
        except Exception:  # noqa: BLE001 - gone already, or not a run
            pass


def test_nktui_in_a_real_terminal(tmux, tmp_path):
    command = nktui_command() + [
        "--paused", "--dataset", "digits", "--model", "linear", "--device", "cpu", "--seed", "0",
        "--steps", "1000000", "--run-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    # The shell reports the exit code on the terminal after the app gives it back, then waits to be read.
    shell = f"{shlex.join(command)}; echo nktui-exit=$?; sleep 60"
    tmux.run(
        "new-session", "-d", "-s", tmux.session, "-x", str(WIDTH), "-y", str(HEIGHT), "-c", str(tmp_path),
        "-e", "TERM=xterm-256color", shell,
    )  # fmt: skip

    tmux.wait_for(r"\bpaused\b.*\bstep 0/1000000\b", "the app to open paused at step 0", START_DEADLINE)
    assert "lr 0.1" in status_line(tmux)

    tmux.keys("n")
    tmux.wait_for(r"\bpaused\b.*\bstep 1/1000000\b.*\bloss \d", "step 1 with its loss")
    tmux.wait_for(r"Gradients · step 1", "the gradient pane to show step 1")
    tmux.keys("n")
    tmux.wait_for(r"\bstep 2/1000000\b", "step 2")

    tmux.keys("]")
    tmux.wait_for(r"\blr 0\.2\b", "the doubled LR")
    tmux.keys("l")
    tmux.wait_for(r"Learning rate \(now 0\.2\)", "the LR dialog")
    type_into_input(tmux, "0.05")
    tmux.keys("Enter")
    tmux.wait_for(r"\blr 0\.05\b", "the typed LR")
    assert "Learning rate (now" not in tmux.screen()
    tmux.keys("n")
    tmux.wait_for(r"\bstep 3/1000000\b.*\blr 0\.05\b", "step 3 at the new LR")

    tmux.keys("Space")
    match = tmux.wait_for(r"\brunning\b.*\bstep (\d+)/", "the run to train")
    tmux.keys("Space")
    tmux.wait_for(r"\bpaused\b.*\bstep \d+/", "the pause")
    paused_at = int(re.search(r"\bstep (\d+)/", status_line(tmux)).group(1))
    assert paused_at >= int(match.group(1)) >= 3
    time.sleep(0.6)  # paused: the step count holds still
    assert re.search(rf"\bpaused\b.*\bstep {paused_at}/", status_line(tmux)), status_line(tmux)

    tmux.keys("q")  # the run lives in its own process: stop it, or detach?
    tmux.wait_for(r"Quit: stop the run, or leave it training\?", "the quit question")
    tmux.keys("s")  # stop: last.pt saved
    tmux.wait_for(r"nktui-exit=0\b", "the app to quit with exit code 0")
    screen = tmux.screen()
    assert f"last.pt holds step {paused_at}" in "".join(screen.splitlines()), screen  # (wrapped at 80)
    assert not (tmp_path / "run" / "nktui.sock").exists()  # the run process ended
    assert "Traceback" not in screen
    assert "Gradients" not in screen  # the alternate screen is gone: the terminal is the shell's again


@pytest.mark.parametrize("env", [("LC_ALL=C", "TERM=xterm-256color"), ("LANG=en_US.UTF-8", "TERM=vt100")],
                         ids=["LC_ALL=C", "TERM=vt100"])
def test_a_terminal_without_unicode_gets_only_ascii(tmux, tmp_path, env):
    command = nktui_command() + ["--paused", "--device", "cpu", "--seed", "0", "--steps", "1000000"]
    # (in the command: tmux sets TERM for the pane itself)
    settings = ["-u", "LC_ALL", "-u", "LC_CTYPE", "-u", "LANG", "-u", "NKTUI_ASCII", *env]
    shell = f"env {shlex.join(settings)} {shlex.join(command)}; echo nktui-exit=$?; sleep 60"
    tmux.run("new-session", "-d", "-s", tmux.session, "-x", str(WIDTH), "-y", str(HEIGHT), "-c", str(tmp_path),
             shell)  # fmt: skip
    tmux.wait_for(r"\bpaused\b.*\bstep 0/1000000\b", "the app to open paused at step 0", START_DEADLINE)
    for step in (1, 2, 3):
        tmux.keys("n")
        tmux.wait_for(rf"\bpaused\b.*\bstep {step}/1000000\b", f"step {step}")
    tmux.wait_for(r"Gradients - step 3", "the gradient pane in ASCII")
    time.sleep(0.5)
    screen = tmux.screen()
    assert screen.isascii(), f"{sorted(set(c for c in screen if not c.isascii()))} on screen:\n{screen}"
    assert "+- Config" in screen and "|grad|" in screen and "+----" in screen  # boxes, labels, the plot's frame
    tmux.keys("q")
    tmux.wait_for(r"Quit: stop the run", "the quit question")
    screen = tmux.screen()
    assert screen.isascii(), f"{sorted(set(c for c in screen if not c.isascii()))} on screen:\n{screen}"
    tmux.keys("s")
    tmux.wait_for(r"nktui-exit=0\b", "the app to quit with exit code 0")
