"""The command line: `nktui` opens the app; `nktui train`, `nktui eval` and `nktui serve` are its commands.

| module | owns |
| --- | --- |
| `__init__` | `run()` (the console script, `python -m nktui`) and `main()`: the app or one of the commands |
| `args.py` | the parsers, one flag per `RunConfig` field, the validated `RunConfig` they build (`build_config`) |
| `resume.py` | `--resume PATH`: the checkpoint's config with the flags that may change, and the `ResumePlan` |
| `train.py` | `nktui train`: the run without the app; `progress.py` its bar or lines, `run_report.py` what it says |
| `eval.py` | `nktui eval PATH`: a checkpoint's evaluation tables |
| `serve.py` | `nktui serve`: the app in a web browser, a run per tab |

The commands import `args` and `nktui.messages` (the `nktui: error:` line and the exit codes, shared with the app),
never this package itself; an import-linter contract in pyproject.toml keeps the graph free of cycles.

Importing this package imports neither torch nor textual, so `nktui --help` is instant; the engine is imported
once the arguments are parsed, the app only on the app path. Any exception that is not bad input is a bug and keeps
its traceback.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, NoReturn

from ..messages import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, print_error, print_warning
from .args import FLAG_HELP, Options, build_config, build_config_or_exit_code, make_parsers, parse_args

__all__ = ["FLAG_HELP", "Options", "build_config", "main", "make_parsers", "parse_args", "run"]


def run() -> NoReturn:
    """The `nktui` command and `python -m nktui`: `main()`, then exit without the interpreter's teardown.

    Everything nktui writes is closed (and last.pt fsynced) before `main()` returns, and the terminal is restored.
    What remains is tearing down PyTorch's thousands of modules, most of the time between `q` and the shell prompt
    (longer once an optimizer has imported torch._dynamo; figures: benchmarks/RESULTS.md). `os._exit` skips it; stdout and stderr are flushed first. A standard stream that was closed
    (`nktui train >&-`) gets /dev/null under it first (`nktui.streams.fill_closed_fds`).
    """
    from ..streams import fill_closed_fds

    fill_closed_fds()
    try:
        code = main()
    except KeyboardInterrupt:  # ctrl+c before the app or the trainer took over the terminal
        code = EXIT_INTERRUPTED
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # (None: closed when the process started)
                stream.flush()
        except (OSError, ValueError):  # a reader that went away (`nktui train | head`), /dev/full: nothing left
            pass  # to tell it
    os._exit(code if isinstance(code, int) else 0)


def main(argv: list[str] | None = None) -> int:
    """`nktui` and `python -m nktui`: returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["serve"]:  # the app in a browser: nktui.cli.serve parses its own flags
        from .serve import serve_main

        return serve_main(args_list[1:])
    if args_list[:1] == ["_host"]:  # the run process `nktui` starts (nktui.host.spawn): not for people
        from .host import host_main

        return host_main(args_list[1:])
    if args_list[:1] == ["attach"]:  # the app on a live run
        from .attach import attach_main

        return attach_main(args_list[1:])
    if args_list[:1] == ["ls"]:  # the live runs
        from .attach import ls_main

        return ls_main(args_list[1:])
    if args_list[:1] == ["eval"]:  # a checkpoint's evaluation tables: nktui.cli.eval parses its own flags
        from .eval import main as eval_main

        return eval_main(args_list[1:])
    built = build_config_or_exit_code(args_list)
    if isinstance(built, int):
        return built
    config, options = built
    for warning in options.warnings:
        print_warning(warning)
    if options.command == "train":
        from .train import run_headless

        code = run_headless(config, **({"resume": options.resume} if options.resume else {}))
    else:
        if options.resume is None and config.steps is None and config.epochs is None:
            from ..protocol.config import APP_DEFAULT_STEPS

            config = config.replace(steps=APP_DEFAULT_STEPS)  # the app's run goes on until stopped (or this)
        code = run_app_command(config, dataclasses.replace(options, argv=tuple(args_list)))
    from ..run.signals import leave

    return leave(code)  # after SIGTERM/SIGHUP/SIGINT: out now, not after torch's slow teardown


def run_app_command(config: Any, options: Options) -> int:
    if config.device not in ("auto", "cpu"):  # a device asked for by name: there, or one line before the screen opens
        from ..engine.devices import resolve_device  # (imports torch here: only when a device is named)
        from ..protocol.errors import NktuiError

        try:
            resolve_device(config.device)
        except NktuiError as exc:
            print_error(exc)
            return EXIT_BAD_INPUT
    if options.in_process:  # the run inside the app's process: it ends with the app (nktui serve's tabs)
        run_app = _import_app("run_app")
        if run_app is None:
            return EXIT_FAILED
        return run_app(config, paused=options.paused, **({"resume": options.resume} if options.resume else {}))
    from ..host import spawn
    from ..host.remote import RemoteRunClient
    from ..host.server import SOCKET_FILE
    from ..protocol.errors import NktuiError

    process = spawn.spawn(argv_of(options))  # the run in a process of its own: it outlives this terminal
    run_attached = _import_app("run_attached")  # (Textual loads while the run process starts)
    if run_attached is None:
        process.kill()
        return EXIT_FAILED
    from ..ui.attached import catch_early_signals

    early = catch_early_signals()  # a hang-up while the run starts: the app detaches once it is up
    try:
        try:
            run_dir, _ = spawn.wait_ready(process)
            client = RemoteRunClient.connect(run_dir / SOCKET_FILE)
        except spawn.RunProcessFailed as exc:
            print_error(exc)
            return exc.code
        except NktuiError as exc:
            print_error(exc)
            return EXIT_FAILED
        return run_attached(client, early)
    finally:
        early.restore()


def _import_app(name: str) -> Any:
    """`nktui.ui.app.<name>`, or None after one line when the app is not installed."""
    import importlib

    try:
        app = importlib.import_module("nktui.ui.app")  # (sys.modules first: a test's stand-in counts)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == "nktui.ui" or exc.name.startswith("nktui.ui.")):
            print_error(f"the app ({exc.name}) is missing from this installation; `nktui train` trains without it")
            return None
        raise
    return getattr(app, name)


def argv_of(options: Options) -> list[str]:
    return list(options.argv)

