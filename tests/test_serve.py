"""`nktui serve`: the web server starts, answers HTTP on localhost, starts an app per browser tab, and stops.

Needs textual-serve (in the `test` extra); the tests skip cleanly without it, except the ones that check what a
user without it is told. Every server here listens on 127.0.0.1 on a free port and is stopped by the test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nktui import cli
from nktui.cli import serve

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 2.0) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()


@pytest.fixture
def server(tmp_path):
    """start(*flags) -> (process, base URL): `nktui serve` on a free localhost port, in tmp_path (where the tabs'
    runs/ go); stopped at the end."""
    pytest.importorskip("textual_serve", reason="textual-serve is not installed: pip install 'nktui[serve]'")
    procs: list[subprocess.Popen] = []

    def start(*flags: str) -> tuple[subprocess.Popen, str]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "nktui", "serve", "--port", str(port), *flags],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                get(url + "/", timeout=1.0)
                return proc, url
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.communicate(timeout=5)[0] if proc.poll() is not None else "(still starting)"
                    pytest.fail(f"nktui serve did not answer on {url}: {out[-2000:]}")
                time.sleep(0.2)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_serve_answers_http_then_stops_on_ctrl_c(server):
    proc, url = server("--model", "mlp", "--lr", "0.05")
    status, kind, html = get(url + "/")
    assert status == 200 and kind.startswith("text/html")
    assert "<html" in html.lower() and "/ws" in html  # the page that opens a websocket to run the app
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=15)[0]
    assert proc.returncode == 0, out
    assert "each browser tab starts its own run of: nktui --model mlp --lr 0.05" in out
    with pytest.raises(OSError):
        get(url + "/", timeout=1.0)  # gone


def test_a_browser_tab_runs_its_own_app_which_ends_with_the_tab(server, tmp_path):
    aiohttp = pytest.importorskip("aiohttp")
    proc, url = server("--paused", "--steps", "50", "--run-dir", str(tmp_path / "mine"))

    async def open_tab() -> bytes:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url + "/ws?width=100&height=30") as ws:  # what the page's script does
                screen = b""
                deadline = time.monotonic() + 60
                while b"paused" not in screen and time.monotonic() < deadline:
                    message = await ws.receive(timeout=60)
                    if message.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                        break
                    screen += message.data if isinstance(message.data, bytes) else message.data.encode()
                return screen

    screen = asyncio.run(open_tab())
    assert b"paused" in screen and b"step 0/50" in screen  # the app drew its status bar into the tab
    deadline = time.monotonic() + 15
    while not list((tmp_path / "mine").glob("tab-*/config.toml")) and time.monotonic() < deadline:
        time.sleep(0.1)
    (config,) = (tmp_path / "mine").glob("tab-*/config.toml")  # the tab's own run directory, under --run-dir
    assert config.parent.name[len("tab-"):].isdigit()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=15)
    assert proc.returncode == 0


def test_bad_app_flags_are_refused_before_serving(capsys):
    assert cli.main(["serve", "--lr", "abc"]) == 2
    assert capsys.readouterr().err.strip() == "nktui: error: lr must be a number such as 0.01 or 1e-3, not 'abc'"


def test_resume_is_refused_since_every_tab_would_continue_the_same_run(capsys):
    assert cli.main(["serve", "--resume", "runs/x/last.pt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nktui serve cannot --resume" in err


def test_missing_textual_serve_says_how_to_install_it(monkeypatch, capsys):
    real = serve.importlib.util.find_spec
    monkeypatch.setattr(serve.importlib.util, "find_spec", lambda name: None if name == "textual_serve" else real(name))
    assert cli.main(["serve", "--port", "8123"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'nktui[serve]'" in err


def test_server_options_are_split_from_the_app_flags():
    options, app_args = serve.split_args(["--model", "cnn", "--port", "9000", "--host=0.0.0.0", "--paused"])
    assert (options.host, options.port) == ("0.0.0.0", 9000) and app_args == ["--model", "cnn", "--paused"]
    command = serve.app_command(["--model", "my model.py:build"])
    # quoted for the shell that runs each tab; the tab's run in its own process (it ends with the tab)
    assert command.endswith("-m nktui --in-process --model 'my model.py:build'")
    command = serve.app_command(["--run-dir", "x"], Path("my runs"))
    if os.name == "posix":  # the last --run-dir wins; the tab's shell fills in its process id
        assert command.endswith("--run-dir x --run-dir 'my runs'/tab-$$")


def test_serve_attach_needs_a_live_run_and_takes_no_run_flags(tmp_path, capsys):
    assert serve.serve_main(["--attach", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nktui: error: ") and "has no live run" in err and len(err.splitlines()) == 1
    assert serve.serve_main(["--attach", str(tmp_path), "--model", "cnn"]) == 2
    assert "takes no run flags" in capsys.readouterr().err
