"""The app's run directory and how a run ends: where each session writes, stop signals, and the last line.

`nktui` (the app) writes a run directory like `nktui train` does: config.toml, metrics.jsonl (from the app's own
poll, never the training loop), last.pt and nktui.log. The first session writes to the folder the command line
chose (`--run-dir`, the resumed checkpoint's folder, or `runs/<date-time>/`); a restart (`r`) is a new run and
writes to the next free folder beside it (`<run-dir>-2`, `-3` ...). An app made without a run directory (tests,
scripts) writes nothing. `run` claims the first folder (made and locked, `nktui.run.files.claim_run_dir`)
before the screen opens, so a folder another nktui process holds is one line and exit code 2; each session
claims its own folder too, before its trainer is built, and lets it go when it closes.

Every way out saves last.pt first (at a step boundary, on the training thread): `q`, ctrl+c (a key inside the
app), and the signals SIGINT, SIGTERM and SIGHUP (a closed terminal, a dropped SSH connection). Then the app
exits with code 0 (1 when last.pt could not take the final state: a full disk), Textual gives the terminal back, and `run_app` prints the line that says what last.pt holds and
how to resume. After a stop signal `exit_watchdog` ends the process within SIGNAL_EXIT_SECONDS whatever happens.
No widgets here; no tensor code (the training thread writes the checkpoint).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from nktui.run.driver import SAVE_TIMEOUT  # an exit waits at most this long for the trainer to write last.pt
from nktui.run.files import RunKeeper, holds_run, holds_step, next_run_dir  # noqa: F401 (a restart's folder: next_run_dir)
from nktui.run.signals import STOP_SIGNALS, StopSignals, exit_watchdog, handled

SIGNAL_EXIT_SECONDS = 2.8  # after a stop signal the process has exited by then, whatever else happens


def make_keeper(app: Any, config: Any) -> RunKeeper | None:
    """The keeper for the session the app starts now (None when the app writes no files). The resumed checkpoint
    goes to the first session only; a restart starts afresh."""
    if app.run_dir is None:
        return None
    resume, app.resume = app.resume, None
    if resume is not None:
        return RunKeeper(resume.run_dir, config, resume=resume)
    restart = app.session is not None  # a restart's folder is a new name beside the first one (made exclusively)
    return RunKeeper(next_run_dir(Path(app.run_dir)), config, fresh=restart)


def install_signal_handlers(app: Any, handler: Any = None) -> StopSignals:
    """SIGINT, SIGTERM and SIGHUP make the app save and exit cleanly (call from on_mount: the loop is running);
    `handler(app, name)` in place of that (an attached app detaches)."""
    stops = StopSignals(lambda name: (handler or on_stop_signal)(app, name))
    loop = asyncio.get_running_loop()
    for sig in handled(STOP_SIGNALS):  # (not a signal the process was started ignoring: nohup)
        try:
            loop.add_signal_handler(sig, stops.received, sig.name)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no Unix signals
            continue
    return stops


def on_stop_signal(app: Any, name: str) -> None:
    """On the event loop: the first stop signal saves, stops and exits; later ones are ignored (the watchdog
    guarantees the exit)."""
    if app.stop_signal is not None:
        return
    app.stop_signal = name
    exit_watchdog(SIGNAL_EXIT_SECONDS, lambda: print_line(app.exit_line))
    app.shutdown(f"stopped by {name}")


def print_line(line: str | None) -> None:
    """Print the closing line; a terminal or pipe that is gone is no reason to fail."""
    if not line:
        return
    try:
        print(line, flush=True)
    except (OSError, ValueError):
        pass


def run(app_class: Any, config: Any, *, paused: bool = False, resume: Any = None) -> int:
    """`run_app`: choose the run directory (a one-line error and code 2 if it is taken), run the app, save on the way
    out even if Textual ended on its own, print the closing line."""
    from nktui.messages import print_error
    from nktui.protocol import NktuiError
    from nktui.run.files import choose_run_dir, claim_run_dir, release_run_dir

    try:  # claimed (made and locked) before the screen opens: a folder another nktui holds is one line, code 2
        in_place = resume is not None and resume.in_place
        run_dir = resume.run_dir if resume is not None else choose_run_dir(config)
        run_dir = claim_run_dir(run_dir, fresh=config.run_dir is None and not in_place, resume=in_place)
    except NktuiError as exc:
        print_error(exc)
        return 2
    if resume is not None:
        resume = dataclasses.replace(resume, run_dir=run_dir)  # (a fresh name may have become name-2)
    app = app_class(config, paused=paused, run_dir=run_dir, resume=resume, handle_signals=True)
    try:
        code = app.run()
    finally:
        if app.session is not None and not app.session.closed:  # Textual ended on its own: save all the same
            app.exit_line = app.session.close("the app ended", timeout=SAVE_TIMEOUT)
        release_run_dir(run_dir, used=False)  # (the first session's own claim says whether it wrote there)
        print_line(app.exit_line)
    code = code if isinstance(code, int) else (app.return_code or 0)
    return 1 if code == 0 and app.session is not None and app.session.unsaved else code  # the final state: lost


# -- what the app says about last.pt -----------------------------------------------------------------------------------
def save_now(app: Any) -> None:
    """The `s` key: ask the training thread for last.pt now; the tick reports the result (`report_checkpoint`)."""
    session = app.session
    if not session.save():
        why = "this app writes no run directory" if app.run_dir is None else f"the run is {session.state.value}"
        app.notify(f"nothing to save: {why}", title="Checkpoint", severity="warning")


def report_checkpoint(app: Any, changes: Any) -> None:
    if changes.save_error:
        app.notify(changes.save_error, title="Checkpoint not saved", severity="error", timeout=8, markup=False)
    else:
        path = app.session.keeper.checkpoint
        app.notify(holds_step(changes.saved_step, where=path), title="Saved", timeout=4, markup=False)


def report_write_warnings(app: Any, lines: tuple[str, ...]) -> None:
    """Files that could not be written (a full disk): a notice each (the poll says each once), and nktui.log if it
    can take them. The run trains on."""
    keeper = app.session.keeper if app.session is not None else None
    for line in lines:
        app.notify(line, title="Cannot write", severity="warning", timeout=12, markup=False)
        if keeper is not None:
            keeper.note(f"nktui: warning: {line}")


def failure_note(session: Any) -> str:
    """`Traceback in runs/X/nktui.log; last.pt holds step 32 (from before the fault). ` for the error line."""
    keeper = session.keeper
    if keeper is None or not keeper.created:
        return ""
    parts = []
    if session.failure_log is not None:
        parts.append(f"Traceback in {session.failure_log}")
    step = keeper.saved_step
    parts.append(holds_step(step, where=keeper.checkpoint) + " (from before the fault)" if step is not None
                 else "no checkpoint was written before the fault")
    return "; ".join(parts) + ". "
