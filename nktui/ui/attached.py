"""The app attached to a run in a process of its own (`nktui`, `nktui attach`): detach, quit, and a run that ends.

A mixin of `NktuiApp`, active when `self.attached`. `d` detaches: the app exits 0 and the run trains on. `q` and
ctrl+c ask (`QuitChoice`): stop the run (last.pt saved, the run process ends, the exit line printed) or detach.
SIGHUP (a closed terminal, a dropped SSH connection), SIGTERM and SIGINT sent to the app detach: the run is never
lost with its viewer. A run that ends while attached (another client stopped it, it was killed) ends the app with
the run's own exit line, or, for a run process that died without one, the last step seen and how to go on. A
restart (`r`) stops this run and starts a new run process beside it (`<run-dir>-2`). No tensor code.
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from typing import Any

from nktui.host.remote import RemoteRunClient
from nktui.protocol import RunState
from nktui.host.server import SOCKET_FILE
from nktui.host.spawn import start_run_process
from nktui.run.files import next_run_dir, resume_command
from nktui.run.signals import STOP_SIGNALS, handled
from nktui.ui import run_lifecycle
from nktui.ui.pacing import RedrawPace
from nktui.ui.screens.quit_choice import DETACH, STOP, QuitChoice

# While attached the UI has a process (and a core) of its own: it pulls and redraws more often than in-process.
ATTACHED_TICK_SECONDS = 0.1
ATTACHED_PLOT_PACE = (0.25, 0.1, 1.0)  # (share of a core, shortest and longest seconds between redraws)
ATTACHED_GRADIENTS_PACE = (0.1, 0.4, 2.0)  # (on 2 cores the app's redraws take CPU the run could use)


class Attached:
    def mount_attached(self) -> None:
        """From on_mount: the signals that came early, and the panes' faster pace (this process draws alone)."""
        take_early_signals(self)
        self.loss_plot.pace = RedrawPace(*ATTACHED_PLOT_PACE)
        self.gradient_pane.pace = RedrawPace(*ATTACHED_GRADIENTS_PACE)

    def action_detach(self) -> None:
        self.detach("detached")

    def detach(self, why: str) -> None:
        """Leave the run training; the app exits 0 with the line that comes back to it."""
        if self.closing or self.session is None:
            return
        self.closing = True
        session = self.session
        run_dir = session.run.run_dir
        state = session.state
        session.detach()
        if state.is_over or state is RunState.FINISHED:  # nothing trains on: the run ends once nobody is attached
            self.exit_line = (f"nktui: {why}; the run had {state.value} at step {session.step_count} and ends by "
                              f"itself: its last line goes to {session.run.keeper.log_path}")
        else:
            self.exit_line = f"nktui: {why}; the run trains on in {run_dir}: nktui attach {run_dir} comes back to it"
        self.exit(0)

    def ask_quit(self) -> None:
        if isinstance(self.screen, QuitChoice):
            return

        def answer(choice: str | None) -> None:
            if choice == STOP:
                self.shutdown("quit")
            elif choice == DETACH:
                self.detach("detached")
            elif self.has_class("-too-small"):  # (the panes are hidden: no field may take the next keys)
                self.call_after_refresh(self.set_focus, None)

        self.push_screen(QuitChoice(self.session.run.run_dir), answer)

    def check_run_gone(self) -> bool:
        """The run ended under this view (stopped elsewhere, or its process died): exit with what it said."""
        session = self.session
        if session is None or self.closing or session.run.alive:
            return False
        self.closing = True
        client = session.run
        session.closed = True
        if client.ended_line:
            self.exit_line = client.localize(client.ended_line).replace("nktui: ", "nktui: the run ended: ", 1)
        else:
            step = session.step_count
            checkpoint = client.keeper.checkpoint
            self.exit_line = (f"nktui: the run ended: its process is gone (last step seen: {step}); "
                              f"{resume_command(checkpoint, headless=False)} goes on from its last.pt")
        self.exit(1 if not client.ended else 0)
        return True

    def new_run_client(self, config: Any, paused: bool) -> RemoteRunClient:
        """A restart: a new run process with `config`, in a new folder beside the first run's."""
        folder = next_run_dir(Path(self.run_dir))
        handle, path = tempfile.mkstemp(suffix=".toml", prefix="nktui-restart-")
        try:
            with os.fdopen(handle, "w") as file:
                file.write(config.replace(run_dir=None).to_toml())
            run_dir, _ = start_run_process(["--fresh-run-dir", str(folder), "--config", path]
                                           + (["--paused"] if paused else []))
        finally:
            os.unlink(path)
        return RemoteRunClient.connect(run_dir / SOCKET_FILE)


def take_early_signals(app: Any) -> None:
    """From on_mount: a signal that came before the loop's handlers did (see `run`)."""
    if app.early_signals:
        on_stop_signal(app, app.early_signals[0])


def on_stop_signal(app: Any, name: str) -> None:
    """A signal to an attached app detaches it (the run is the run process's to stop)."""
    if app.stop_signal is not None:
        return
    app.stop_signal = name
    run_lifecycle.exit_watchdog(run_lifecycle.SIGNAL_EXIT_SECONDS, lambda: run_lifecycle.print_line(app.exit_line))
    app.detach(f"detached ({name})")


class EarlySignals(list):
    """The stop signals noted before the app's loop took them over; `restore()` puts the old handlers back."""

    def __init__(self) -> None:
        super().__init__()
        self.previous: dict[int, Any] = {}

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()


def catch_early_signals() -> EarlySignals:
    """Until the app's loop takes them over, stop signals are only noted (call before connecting: a hang-up
    while Textual loads then detaches once the app is up, instead of killing it half-way)."""
    early = EarlySignals()
    for sig in handled(STOP_SIGNALS):
        early.previous[sig] = signal.signal(sig, lambda number, frame: early.append(signal.Signals(number).name))
    return early


def run(app_class: Any, client: RemoteRunClient, early: list[str] | None = None) -> int:
    """The app on `client`'s run until it detaches or stops it; prints the closing line. `early`: the signals
    noted since `catch_early_signals`."""
    first = [client]

    def run_client(config: Any, paused: bool) -> RemoteRunClient:
        return first.pop() if first else app.new_run_client(config, paused)

    app = app_class(client.config, run_dir=client.run_dir, handle_signals=True, run_client=run_client,
                    attached=True)
    app.early_signals = early if early is not None else catch_early_signals()
    try:
        code = app.run()
    finally:
        if app.session is not None and not app.session.closed:  # Textual ended on its own: leave the run be
            app.session.detach()
            app.exit_line = app.exit_line or f"nktui: detached; nktui attach {client.run_dir} comes back"
        run_lifecycle.print_line(app.exit_line)
    return code if isinstance(code, int) else (app.return_code or 0)
