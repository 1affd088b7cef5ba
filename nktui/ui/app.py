"""NktuiApp: composes the panes, routes keys to the session, and pulls the session's news at its own pace.

The run trains in a process of its own (`attached`) or on a thread of this one (`Session`); the app never touches a
tensor nor waits for one. A timer polls the session and updates only the widgets whose data changed; keys become
named commands, which the trainer applies at its next step boundary."""

from __future__ import annotations

import time
from collections.abc import Iterable
from functools import partial

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Input, Static

from nktui.render import charset
from nktui.render.format import byte_size, lr_text, number
from nktui.protocol import ConfigError, NktuiError, RunConfig, RunState
from nktui.ui import ascii_terminal, attached, error_boundary, keys, run_lifecycle
from nktui.ui.debugger_keys import DebuggerKeys
from nktui.ui.key_states import KeyStates
from nktui.ui.pacing import RedrawPace
from nktui.ui.screens.confirm import ConfirmDialog
from nktui.ui.screens.help import HelpScreen
from nktui.ui.screens.lr_dialog import LrDialog
from nktui.ui.session import Session
from nktui.ui.widgets.config_pane import ConfigPane, parse_field
from nktui.ui.widgets.gradient_pane import GradientPane
from nktui.ui.widgets.key_bar import KeyBar
from nktui.ui.widgets.loss_plot import PAUSED_AT_START, WAITING, LossPlot
from nktui.ui.widgets.status_bar import StatusBar
from nktui.ui.widgets.too_small import TooSmall

TICK_SECONDS = 0.2  # how often the UI pulls records (5 Hz)
# While the run trains, the plot and the gradient pane redraw when their data changed, as often as their share of a
# core allows (nktui.ui.pacing: in-process, the trainer waits while the UI draws); while paused, at once.
PLOT_PACE = (0.02, 1.0, 3.0)  # (share of a core, shortest and longest seconds between redraws)
GRADIENTS_PACE = (0.01, 1.0, 3.0)
QUIT_TIMEOUT = 1.5  # the trainer gets this long to reach a step boundary when quitting


class NktuiApp(attached.Attached, KeyStates, DebuggerKeys, App[int]):
    TITLE = "nktui"
    CSS_PATH = "app.tcss"
    BINDINGS = keys.BINDINGS

    def __init__(self, config: RunConfig, *, paused: bool = False, run_dir=None, resume=None,
                 handle_signals: bool = False, run_client=None, attached: bool = False, **trainer_kwargs) -> None:
        """`run_dir`: where the run's files go (None: no files); `resume`: a nktui.cli.resume.ResumePlan to go on
        from; `handle_signals`: SIGINT/SIGTERM/SIGHUP save and exit (see nktui.ui.run_lifecycle); `run_client`:
        `f(config, paused)` making each session's run client in place of a real run (tests: tests/fake_run.py);
        `attached`: those clients are runs in processes of their own (nktui.ui.attached: d detaches, q asks)."""
        charset.decide()  # Unicode or ASCII, once (nktui.render.charset); before the driver is chosen
        super().__init__()
        ascii_terminal.apply(self)
        self.config = config
        self.start_paused = paused
        self.trainer_kwargs = trainer_kwargs  # e.g. data=ImageSet for benchmarks and tests
        self.run_client = run_client
        self.attached = attached
        self.early_signals: list[str] = []  # stop signals before on_mount (nktui.ui.attached)
        self.session: Session | None = None
        self._gradients_stale = False  # observed records the gradient pane has not shown yet
        self.run_dir, self.resume, self.handle_signals = run_dir, resume, handle_signals
        self.exit_line: str | None = None  # printed once the terminal is back: what last.pt holds, how to resume
        self.stop_signal: str | None = None  # the signal that ended the app
        self.closing = False
        self._focus_before_small = None  # the focused widget when the terminal got too small, to focus again

    def get_driver_class(self):
        return ascii_terminal.driver_class(super().get_driver_class())

    # -- layout ------------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        # Kept as attributes: the tick updates them while a dialog or the detail screen is on top.
        self.config_pane = ConfigPane(self.config, id="config")
        self.loss_plot = LossPlot(id="loss", pace=RedrawPace(*PLOT_PACE))
        self.gradient_pane = GradientPane(id="gradients", pace=RedrawPace(*GRADIENTS_PACE))
        self.error_line = Static("", id="error")
        self.status_bar = StatusBar(id="status")
        with Horizontal(id="main"):
            yield self.config_pane
            with Vertical(id="right"):
                yield self.loss_plot
                yield self.gradient_pane
        yield self.error_line
        yield self.status_bar
        yield KeyBar()
        yield TooSmall()

    def on_mount(self) -> None:
        if self.handle_signals:
            run_lifecycle.install_signal_handlers(self, attached.on_stop_signal if self.attached else None)
        if self.attached:
            self.mount_attached()
        self.start_session(self.config, paused=self.start_paused)
        self.set_interval(attached.ATTACHED_TICK_SECONDS if self.attached else TICK_SECONDS, self.tick)
        self.gradient_pane.focus()

    def start_session(self, config: RunConfig, *, paused: bool) -> None:
        self.config = config
        client = self.run_client(config, paused) if self.run_client is not None else None
        keeper = None if self.attached else run_lifecycle.make_keeper(self, config)  # (attached: the run's own)
        self.session = Session(config, paused=paused, keeper=keeper, client=client, **self.trainer_kwargs)
        self.gradient_pane.clear_layers()
        self.show_rewind_memory()  # (the new run's: none kept yet)
        self.config_pane.show_config(config)
        error = self.error_line
        error.display = False
        self.tick()

    # -- the pull loop -----------------------------------------------------------------------------------------
    def tick(self) -> None:
        session = self.session
        if session is None or self.closing or not self.screen_stack:  # (no screen: the app is exiting)
            return
        if self.attached and self.check_run_gone():
            return
        changes = session.poll()
        if changes.state:
            self.on_state_changed()
        if changes.saved_step is not None or changes.save_error:
            self.on_checkpoint(changes)
        if changes.write_warnings:
            run_lifecycle.report_write_warnings(self, changes.write_warnings)
        if changes.rewound is not None:
            shown = session.shown_record
            if shown is None or shown.step != changes.rewound.step:  # that step's numbers are not at hand: no
                self.gradient_pane.clear_layers(f"rewound to step {changes.rewound.step}: n measures the next")
                self._gradients_stale = False  # (older numbers under the new step would be a lie)
                changes.observed = False
            self.notify(f"rewound to step {changes.rewound.step}: the next step replays step {changes.rewound.step + 1}",
                        title="Rewind", timeout=4)
        if changes.watch is not None:
            self.on_watchpoint(changes.watches)
            if changes.watch.stopped_before and changes.watch.record is not None:  # the step that tripped it, as
                self.gradient_pane.show(changes.watch.record, note="tripped it: not taken")  # retaken exactly
                self.show_rewind_memory()
                self._gradients_stale = False
                changes.observed = False
        now = time.monotonic()
        running = session.state is RunState.RUNNING
        drew = False
        self._gradients_stale |= changes.observed
        pane = self.gradient_pane
        if (self._gradients_stale and session.shown_record is not None and session.scrub_index is None
                and pane.pace.due(now, running)):
            self._gradients_stale = False
            start = time.perf_counter()
            pane.show(session.shown_record)
            self.show_rewind_memory()
            pane.pace.drew(now, time.perf_counter() - start)
            drew = True
        if changes.steps and session.state is RunState.PAUSED:
            self.refresh_bindings()  # what can be rewound to moved
        if changes.steps:
            self.config_pane.show_lr(session.lr)
        plot = self.loss_plot
        if session.history.version != plot.drawn_version and plot.pace.due(now, running):
            start = time.perf_counter()
            self.draw_plot()
            plot.pace.drew(now, time.perf_counter() - start)
            drew = True
        if not (drew and running):
            # (Not in the same frame as a pane while training: the screen repaints the box around everything that
            # changed, and a pane with the status line spans the config pane too. The status line follows 0.2 s on.)
            self.show_status()

    def draw_plot(self) -> None:
        shown = self.session.shown_record if self.session.scrub_index is not None else None
        self.loss_plot.draw(self.session.history, cursor_step=shown.step if shown else None)

    def show_rewind_memory(self) -> None:
        states, size = self.session.rewind_memory
        reach = self.session.rewind_reach
        back = f" back to {reach[0]}" if reach else ""
        subtitle = f"←→ · b g{back} · {states} kept, {byte_size(size)}"
        self.gradient_pane.border_subtitle = charset.text(subtitle)

    def on_watchpoint(self, hits) -> None:
        line, toast = keys.watch_notice(hits, self.session.step_count)
        self.error_line.update(Text(line))
        self.error_line.set_class(True, "watch")
        self.error_line.display = True
        self.notify(toast, title=f"Watchpoint {hits[0].watchpoint}", severity="warning", timeout=8, markup=False)

    # -- one boundary for errors: a screen that fails closes, the app and the run stay up -------------------------
    def _handle_exception(self, error: Exception) -> None:
        if not error_boundary.handle(self, error):
            super()._handle_exception(error)

    def show_status(self) -> None:
        """The status line, from the same step as the gradient pane while the run trains (the pane redraws at its
        own pace; one step a frame, not two), from the newest step otherwise."""
        session = self.session
        record, pane_step = session.latest_step, self.gradient_pane.shown_step
        if session.state is RunState.RUNNING and pane_step is not None:
            record = next((r for r in reversed(session.observed) if r.step == pane_step), record)
        self.status_bar.show(session, record)

    def on_state_changed(self) -> None:
        session = self.session
        self.refresh_bindings()
        state = session.state
        at_start = state is RunState.PAUSED and session.latest_step is None
        hint = PAUSED_AT_START if at_start else WAITING
        if self.loss_plot.empty_hint != hint:
            self.loss_plot.empty_hint = hint
            self.draw_plot()
        if state is RunState.FAILED:
            error = self.error_line
            note = run_lifecycle.failure_note(session)  # where the traceback is, what last.pt holds
            error.update(f" {session.error_text}\n {note}Fix the config (c) and restart (r).")
            error.display = True
            self.notify(session.error_text or "the run failed", title="Training failed", severity="error", timeout=10)
        elif state is RunState.FINISHED and session.latest_eval is not None:
            ev = session.latest_eval
            self.notify(f"step {ev.step}: val loss {number(ev.loss)}, val acc {number(ev.accuracy)}", title="Finished")

    def action_toggle_pause(self) -> None:
        self.session.toggle_pause()  # (a pause measures its last step: the panes then all show that step)
        if self.error_line.has_class("watch"):
            self.error_line.display = False
            self.error_line.set_class(False, "watch")
        self.refresh_bindings()

    def on_gradient_pane_scrubbed(self, message: GradientPane.Scrubbed) -> None:
        session = self.session
        if not session.can_scrub:
            return
        record = session.scrub(message.delta)
        if record is not None:
            self.gradient_pane.show(record, scrubbing=session.scrub_index is not None)
            self.draw_plot()
            self.refresh_bindings()

    def action_step(self) -> None:
        if self.session.step():
            self.set_timer(0.05, self.tick)  # show the step's numbers as soon as they are there

    def action_set_lr(self) -> None:
        def apply(value: float | None) -> None:
            if value is not None:
                self.apply_lr(value)

        self.push_screen(LrDialog(self.session.lr), apply)

    def action_scale_lr(self, factor: float) -> None:
        self.apply_lr(self.session.lr * factor)

    def apply_lr(self, value: object) -> None:
        try:
            lr = self.session.set_lr(value)
        except ConfigError as exc:
            self.notify(f"{exc}; the LR stays {lr_text(self.session.lr)}", severity="error")
            return
        self.config_pane.show_lr(lr)
        self.show_status()
        self.notify(f"lr {lr_text(lr)} from the next step", timeout=2)

    def action_evaluate(self) -> None:
        from nktui.ui.screens.evaluation import EvaluationScreen

        self.push_screen(EvaluationScreen(self.session))  # it evaluates on the training thread and shows the result

    def action_surface(self) -> None:
        """The loss surface over the two largest-|gradient| weights of the gradient pane's selected layer."""
        from nktui.ui.screens.landscape import LandscapeScreen

        pane = self.gradient_pane
        rows = list(pane.rows)
        layer = str(rows[pane.cursor_row].value) if rows and 0 <= pane.cursor_row < len(rows) else None
        self.push_screen(LandscapeScreen(self.session, layer))

    def action_toggle_log_scale(self) -> None:
        plot = self.loss_plot
        plot.log_scale = not plot.log_scale
        plot.draw(self.session.history)

    def action_restart(self) -> None:
        pane = self.config_pane
        try:
            config = pane.build_config(self.session.config)
        except ConfigError as exc:
            self.notify(str(exc), title="Config not valid", severity="error")
            return
        changed = pane.changed_fields(self.session.config)
        what = f"with the changed {', '.join(changed)}" if changed else "with the same config"
        kept = "its last.pt is kept" if self.run_dir is not None else "its progress is discarded"
        question = f"Restart the run {what}? This run stops; {kept}."

        def answer(yes: bool | None) -> None:
            if yes:
                self.restart(config)

        self.push_screen(ConfirmDialog(question), answer)

    def restart(self, config: RunConfig) -> None:
        self.session.close("restarted", timeout=QUIT_TIMEOUT)  # (its last.pt is saved: it can be resumed)
        if self.session.run.alive:
            self.notify("the previous run is still finishing its current step", severity="warning")
        try:
            self.start_session(config, paused=self.start_paused)
        except NktuiError as exc:  # a new run process that could not start (attached): say why, and leave
            self.exit_line, self.session = f"nktui: error: the restarted run did not start: {exc}", None
            self.exit(2)
            return
        self.gradient_pane.focus()

    def action_save_config(self) -> None:
        from nktui.ui.screens.save_config import ask_and_save

        ask_and_save(self)  # the config pane's settings to a TOML file (asks where)

    def action_focus_config(self) -> None:
        self.query_one("#f-dataset", Input).focus()

    def action_focus_gradients(self) -> None:
        self.gradient_pane.focus()

    def action_help(self) -> None:
        lines = [(b.key_display or b.key, b.tooltip or b.description) for b in self.BINDINGS]
        self.push_screen(HelpScreen(lines + keys.HELP_EXTRA))

    async def action_quit(self) -> None:
        if self.attached:
            self.ask_quit()  # stop the run, or leave it training
        else:
            self.shutdown("quit")

    def shutdown(self, reason: str) -> None:
        """Save last.pt, stop the trainer, write the last records, exit with code 0 (q, ctrl+c, stop signals), or 1
        when last.pt could not take the final state (the exit line says what it holds)."""
        if self.closing:  # (a signal during a quit: that quit goes on)
            return
        self.closing = True
        if self.session is not None:
            self.exit_line = self.session.close(reason, timeout=run_lifecycle.SAVE_TIMEOUT)
        self.exit(1 if self.session is not None and self.session.unsaved else 0)  # 1: the final state is not saved

    def action_save_checkpoint(self) -> None:
        run_lifecycle.save_now(self)  # last.pt now, on the training thread; the tick reports it (on_checkpoint)

    def on_checkpoint(self, changes) -> None:
        run_lifecycle.report_checkpoint(self, changes)

    def on_resize(self, event) -> None:
        was_small = self.has_class("-too-small")
        if not was_small and self.screen_stack and self.screen is self.screen_stack[0]:
            self._focus_before_small = self.focused  # (hiding the panes takes the focus away)
        self.query_one(TooSmall).follow_size(self, event.size.width, event.size.height)
        if was_small and not self.has_class("-too-small"):
            self.call_after_refresh((self._focus_before_small or self.gradient_pane).focus)

    # -- routing messages from the panes -----------------------------------------------------------------------
    def on_config_pane_live_submitted(self, message: ConfigPane.LiveSubmitted) -> None:
        if message.name == "lr":
            self.apply_lr(message.text)
            self.gradient_pane.focus()
            return
        try:
            value = parse_field(message.name, message.text)
            self.session.update_live(**{message.name: value})
        except ConfigError as exc:
            self.notify(str(exc), title="Not applied", severity="error")
            return
        self.config_pane.config = self.session.config
        self.config_pane.refresh_marks()
        self.notify(f"{message.name} = {message.text} from the next step", timeout=2)

    def on_gradient_pane_layer_chosen(self, message: GradientPane.LayerChosen) -> None:
        from nktui.ui.screens.layer_detail import LayerDetailScreen

        self.push_screen(LayerDetailScreen(self.session, message.name))

    # -- the command palette: the same actions by name -----------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for title, binding_id in keys.PALETTE:
            binding = keys.BY_ID[binding_id]
            yield SystemCommand(title, binding.tooltip, partial(self.run_action, binding.action))


def run_attached(client, early_signals=None) -> int:
    """The app on a run in its own process until it detaches or stops it (see nktui.ui.attached.run)."""
    return attached.run(NktuiApp, client, early_signals)


def run_app(config: RunConfig, *, paused: bool = False, resume=None) -> int:
    """Run the app in this terminal until the user quits (or a stop signal); returns the exit code. Writes a run
    directory like `nktui train`; the last line printed says what last.pt holds and how to resume."""
    return run_lifecycle.run(NktuiApp, config, paused=paused, resume=resume)
