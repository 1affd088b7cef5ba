"""`nktui serve`: the app in a web browser, through textual-serve (the optional extra `nktui[serve]`).

    nktui serve [--host 127.0.0.1] [--port 8000] [app flags: --model cnn --lr 0.05 --paused ...]

A small aiohttp server (textual-serve's) answers on http://HOST:PORT; every browser tab that opens the page starts
its own `python -m nktui <app flags>` process, which draws into the tab over a websocket and ends when the tab
closes. So each tab is its own run, and the server itself trains nothing. The app flags are checked here first
(a bad one is the usual one-line error), then passed to each tab's process as given, plus a run directory of the
tab's own: `<run dir>/tab-<pid>`, under `--run-dir` when given, else under `runs/<date-time>-serve/`, so tabs opened
together never write into the same folder.

The server listens on 127.0.0.1 unless told otherwise: from another machine, forward the port over SSH
(`ssh -L 8000:127.0.0.1:8000 gpu-box`, then open http://localhost:8000). `--host 0.0.0.0` would let anyone on
the network start runs, and the config pane can import any Python module for `--model`: do that only on a network
you trust. Imports neither torch nor textual before the flags are checked.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
import time
from pathlib import Path

from ..messages import EXIT_BAD_INPUT, EXIT_OK, print_error
from .args import ArgumentParser, add_config_flags, build_config_or_exit_code

INSTALL_HINT = "pip install 'nktui[serve]' (or pip install textual-serve)"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def _serve_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the web server")
    group.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default: {DEFAULT_HOST}; "
                       "reach it from elsewhere with ssh -L)")
    group.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default: {DEFAULT_PORT})")
    group.add_argument("--public-url", default=None, metavar="URL",
                       help="the address browsers use, when it differs from http://HOST:PORT (a reverse proxy)")
    group.add_argument("--attach", default=None, metavar="RUN",
                       help="every tab attaches to this live run (its run directory) instead of starting its own")


def make_parser() -> ArgumentParser:
    """`nktui serve`'s full parser: the server's options, then every flag of the app, which each tab gets."""
    parser = ArgumentParser(
        prog="nktui serve",
        description="Serve the app in a web browser (textual-serve). Each browser tab starts its own nktui with the "
        "app flags given here: its own run.",
        epilog="From your laptop: ssh -L 8000:127.0.0.1:8000 HOST, then open http://localhost:8000",
    )
    _serve_options(parser)
    parser.add_argument("--paused", action="store_true", help="each tab's app opens paused before step 1")
    add_config_flags(parser)
    return parser


def split_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(the server's options, the app's flags in the order given)."""
    server = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _serve_options(server)
    return server.parse_known_args(argv)


def app_command(app_args: list[str], runs: Path | None = None) -> str:
    """The shell command each tab runs: this Python, `-m nktui`, the app flags (quoted), and with `runs` a last
    `--run-dir runs/tab-$$` (the last flag wins), which the tab's shell makes its own with its process id."""
    command = shlex.join([sys.executable, "-m", "nktui", "--in-process", *app_args])  # a tab's run ends with it
    if runs is not None and os.name == "posix":
        command += f" --run-dir {shlex.quote(str(runs))}/tab-$$"
    return command


def _serve_attached(options: argparse.Namespace, app_args: list[str]) -> int:
    """`nktui serve --attach RUN`: each tab runs `nktui attach RUN` (closing a tab detaches it; the run goes on)."""
    if not 0 < options.port < 65536:
        print_error(f"--port must be between 1 and 65535, not {options.port}")
        return EXIT_BAD_INPUT
    if app_args:
        print_error(f"nktui serve --attach takes no run flags (the run has its config): {shlex.join(app_args)}")
        return EXIT_BAD_INPUT
    from ..host.live_runs import find_run
    from ..protocol.errors import NktuiError

    try:
        socket_path = find_run(options.attach)
    except NktuiError as exc:
        print_error(exc)
        return EXIT_BAD_INPUT
    if importlib.util.find_spec("textual_serve") is None:
        print_error(f"nktui serve needs the textual-serve package, which is not installed: {INSTALL_HINT}")
        return EXIT_BAD_INPUT
    from textual_serve.server import Server

    run_dir = socket_path.parent
    command = shlex.join([sys.executable, "-m", "nktui", "attach", str(run_dir.resolve())])
    server = Server(command, host=options.host, port=options.port, title="nktui", public_url=options.public_url)
    print(f"nktui serve: each browser tab attaches to the run in {run_dir}; closing a tab leaves it running",
          flush=True)
    try:
        server.serve()
    except OSError as exc:
        print_error(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc} (try another --port)")
        return EXIT_BAD_INPUT
    return EXIT_OK


def serve_main(argv: list[str]) -> int:
    """`nktui serve ...`: returns the exit code (serves until Ctrl+C or SIGTERM)."""
    parser = make_parser()
    try:
        parsed = parser.parse_args(argv)  # --help, and every flag checked, before anything starts
        options, app_args = split_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(parsed, "resume", None):
        print_error("nktui serve cannot --resume: every tab would go on with the same run in the same folder. Resume "
                    "in a terminal (nktui --resume PATH), or serve a fresh run of it: --config RUN_DIR/config.toml")
        return EXIT_BAD_INPUT
    if options.attach is not None:
        return _serve_attached(options, app_args)
    built = build_config_or_exit_code(app_args)  # the tabs' config: a bad value is reported here, not in every tab
    if isinstance(built, int):
        return built
    config, _ = built
    if importlib.util.find_spec("textual_serve") is None:
        print_error(f"nktui serve needs the textual-serve package, which is not installed: {INSTALL_HINT}")
        return EXIT_BAD_INPUT
    if not 0 < options.port < 65536:
        print_error(f"--port must be between 1 and 65535, not {options.port}")
        return EXIT_BAD_INPUT
    from textual_serve.server import Server

    runs = Path(config.run_dir) if config.run_dir else Path("runs") / time.strftime("%Y%m%d-%H%M%S-serve")
    command = app_command(app_args, runs)
    server = Server(command, host=options.host, port=options.port, title="nktui", public_url=options.public_url)
    print(f"nktui serve: each browser tab starts its own run of: nktui {shlex.join(app_args)}".rstrip(), flush=True)
    print(f"each tab's files go to {runs}/tab-<its process id>/", flush=True)
    if options.host in ("127.0.0.1", "localhost", "::1"):
        print(f"from another machine: ssh -L {options.port}:127.0.0.1:{options.port} THIS_HOST, then open "
              f"http://localhost:{options.port}", flush=True)
    try:
        server.serve()
    except OSError as exc:  # the port is taken, the address is not ours ...
        print_error(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc} (try another --port)")
        return EXIT_BAD_INPUT
    return EXIT_OK
