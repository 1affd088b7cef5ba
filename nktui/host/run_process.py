"""The run process that `nktui` starts and attaches to: one run, its folder, its socket, until someone stops it.

    code = serve_run(config, keeper, paused=False, ready=say_where)   # `nktui _host`'s loop (nktui.cli.host)

It claims the run directory (before anything else: a folder another nktui holds is an NktuiError for the caller),
serves the socket, builds and trains the run on its training thread and, every TICK_SECONDS, drains the records
(writing metrics.jsonl and the other exports from here, never from the training loop) and sends them to whoever
is attached (`RunHost.tick`). It does what the app used to do with the run's files: config.toml once built,
last.pt when the run finishes and on `s`, the traceback into nktui.log when it fails, write problems (a full
disk) as warnings to the viewers.

It ends when a client sends EndRun (`q`, stop), on SIGTERM, SIGHUP or SIGINT sent to it (saving last.pt first,
then exiting within SIGNAL_EXIT_SECONDS), or once the run is over (finished or failed) with nobody attached for
ALONE_SECONDS. Its exit line (what last.pt holds, how to resume) goes to nktui.log and to every client.
Imports neither torch nor Textual (the engine imports torch on the training thread's side).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..protocol import NktuiError, RunConfig, RunState
from ..run.driver import SAVE_TIMEOUT, RunDriver
from ..run.files import RunKeeper, holds_step
from ..run.signals import StopSignals, exit_watchdog
from .run_host import RunHost

TICK_SECONDS = 0.05  # records to the viewers this often: with the app's 0.1 s tick, on its plot within 0.25 s
ALONE_SECONDS = 3.0  # a finished or failed run with nobody attached this long ends
SIGNAL_EXIT_SECONDS = 2.8


def serve_run(config: RunConfig, keeper: RunKeeper, *, paused: bool = False,
              ready: Callable[[Path], None] | None = None, **trainer_kwargs: Any) -> int:
    """Run `config` in this process, serving its socket, until it is stopped; the exit code (1: the final state
    could not be saved)."""
    driver = RunDriver(config, keeper)
    driver.claim()  # NktuiError: the caller says so, before any client waits
    host = RunHost(driver, mode="app")
    try:
        host.start()
    except OSError as exc:
        driver.release()
        raise NktuiError(f"cannot serve the run's socket in {driver.run_dir}: {exc}") from None
    with StopSignals(lambda name: exit_watchdog(SIGNAL_EXIT_SECONDS)) as stops:
        driver.launch(paused=paused, **trainer_kwargs)
        if ready is not None:
            ready(driver.run_dir)
        reason = _follow(driver, host, stops)
        return _end(driver, host, reason)


def _follow(driver: RunDriver, host: RunHost, stops: StopSignals) -> str:
    """Drain, publish and mind the run's files until it should end; why it ends."""
    controller, keeper = driver.controller, driver.keeper
    configured = False
    warned: set[str] = set()
    last_state = None
    alone_since: float | None = None
    while True:
        state = controller.state
        records: list[Any] = []
        if controller.info is not None:
            if not configured:
                configured = True
                driver.built()  # torch and the model: out of the cyclic collector's walks
                for step in (driver.create_run_dir, driver.open_exports):
                    try:
                        step()
                    except (OSError, NktuiError) as exc:  # a folder we cannot write: train on, and say so
                        host.warnings.append(f"{exc}; the run goes on")
                        if isinstance(exc, NktuiError):
                            break
            records = driver.drain()  # (the exports are written here, on this thread: they cost the loop nothing)
            host.warnings += [f"{line}; the run goes on" for line in driver.writer_warnings()]
            problem = driver.checkpoint_error
            if problem and problem not in warned:
                warned.add(problem)
                kept = holds_step(keeper.saved_step, still=True, none="no last.pt yet")
                host.warnings.append(f"{problem}; {kept}; the run goes on")
            for line in host.warnings:
                keeper.note(f"nktui: warning: {line}")
        if state is not last_state:
            last_state = state
            if state is RunState.FINISHED and keeper.created:
                driver.save()  # the end of the run
            elif state is RunState.FAILED:
                log = driver.log_failure()
                host.failure_log = str(log) if log is not None else None
        host.tick(records)
        if host.end_request is not None:
            return host.end_request[0]
        if stops:
            return f"stopped by {stops.name}"
        if state in (RunState.FINISHED, RunState.FAILED, RunState.STOPPED) and not host.server.viewers:
            alone_since = alone_since or time.monotonic()
            if time.monotonic() - alone_since >= ALONE_SECONDS:
                return "finished" if state is RunState.FINISHED else f"the run {state.value}"
        else:
            alone_since = None
        stops.event.wait(TICK_SECONDS)


def _end(driver: RunDriver, host: RunHost, reason: str) -> int:
    """Save last.pt (unless the run failed or never started), stop the trainer, close the files, tell the
    clients; the exit code."""
    controller = driver.controller
    info = controller.info
    problem = None
    if info is not None and driver.keeper.created and not controller.state.is_over:
        problem = driver.save_and_wait(SAVE_TIMEOUT)  # paused first: no step after the one saved
    step = controller.step_count
    ended = driver.stop(1.0)
    if info is not None:
        host.mirror.add(driver.drain())
    driver.close_exports()
    what = f"{reason} at step {step}" + (f" ({problem})" if problem else "")
    line = driver.exit_line(what, finished=info is not None and step >= info.step_limit)  # (into nktui.log too)
    host.close(line)
    driver.release(ended)
    return 1 if problem is not None else 0
