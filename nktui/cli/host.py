"""`nktui _host [flags]`: the run process `nktui` starts (`nktui.host.spawn`); not a command for people.

It takes the app's flags, chooses and claims the run directory as the app would (`--run-dir`, the resumed
checkpoint's folder, or a fresh `runs/<date-time>/`), then serves the run (`nktui.host.run_process.serve_run`).
Once its socket listens it prints `ready <run-dir>` and lets go of the pipes it was started with: stdin and stdout
become /dev/null and stderr goes to the run's nktui.log, so that nothing it writes can fail when the app that
started it is gone. Before that, a problem is one `nktui: error:` line on stderr and exit code 2.
`--fresh-run-dir DIR` (first): a restart's folder, a new name beside the first run's.
"""

from __future__ import annotations

import os
import sys

from ..messages import EXIT_BAD_INPUT, print_error
from .args import build_config_or_exit_code


def host_main(argv: list[str]) -> int:
    fresh_dir = None
    if argv[:1] == ["--fresh-run-dir"] and len(argv) >= 2:
        fresh_dir, argv = argv[1], argv[2:]
    built = build_config_or_exit_code(argv)
    if isinstance(built, int):
        return built
    config, options = built
    from ..protocol import NktuiError
    from ..protocol.config import APP_DEFAULT_STEPS, app_threads
    from ..run.files import RunKeeper, choose_run_dir

    resume = options.resume
    if resume is None and config.steps is None and config.epochs is None:
        config = config.replace(steps=APP_DEFAULT_STEPS)  # the app's run goes on until stopped (or this)
    if not config.threads:
        config = config.replace(threads=app_threads())
    try:
        if fresh_dir is not None:
            run_dir, fresh = fresh_dir, True
        else:
            run_dir = resume.run_dir if resume is not None else choose_run_dir(config)
            fresh = config.run_dir is None and not getattr(resume, "in_place", False)
        keeper = RunKeeper(run_dir, config, resume=resume, fresh=fresh)
        from ..host.run_process import serve_run

        return serve_run(config, keeper, paused=options.paused, ready=_ready)
    except NktuiError as exc:
        print_error(exc)
        return EXIT_BAD_INPUT


def _ready(run_dir) -> None:
    """Say where the run is, then leave the pipes of the process that started this one."""
    sys.stdout.write(f"ready {run_dir}\n")
    sys.stdout.flush()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    try:
        log = os.open(os.path.join(run_dir, "nktui.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 2)
        os.close(log)
    except OSError:
        os.dup2(1, 2)
