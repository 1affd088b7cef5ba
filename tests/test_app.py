"""The app driven through Textual's Pilot: every key, against the real trainer thread and the real widgets.

Each test starts an `NktuiApp` on the bundled digits set on the CPU (the linear model unless said otherwise) and
asserts on real state: the trainer's step count, the records it published, the session the app holds, the screen
on top. The trainer runs on its own thread, so tests wait for what they expect with deadlines (`until`) rather
than fixed sleeps; the app pulls the engine's news every TICK_SECONDS.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from pilot_support import (  # noqa: F401 (ui_thread_idle: an autouse fixture)
    DEADLINE,
    plain,
    record_notifications,
    started,
    ui_thread_idle,
    until,
)
from textual import events
from textual.widgets import Input, Label, Static

from nktui.training import EvalResult, RunConfig, RunState, StepRecord
from nktui.ui import keys
from nktui.ui.app import NktuiApp
from nktui.ui.screens.confirm import ConfirmDialog
from nktui.ui.screens.help import HelpScreen
from nktui.ui.screens.layer_detail import LayerDetailScreen
from nktui.ui.screens.lr_dialog import LrDialog

LONG = 10**6  # a step limit no test reaches
SIZE = (100, 30)


def config(**overrides) -> RunConfig:
    values = dict(seed=0, device="cpu", steps=LONG)
    values.update(overrides)
    return RunConfig(**values)


@pytest.fixture
def make_app():
    """make_app(paused=True, **config overrides) -> an NktuiApp; every session it ends up with is stopped at the end
    (a failing test must not leave a training thread running into the next one)."""
    apps: list[NktuiApp] = []

    def make(paused: bool = True, **overrides) -> NktuiApp:
        app = NktuiApp(config(**overrides), paused=paused)
        apps.append(app)
        return app

    yield make
    for app in apps:
        if app.session is not None:
            app.session.stop(5.0)


def steps(app: NktuiApp) -> list[StepRecord]:
    return [r for r in app.session.run.controller.trainer.records.since(0)[1] if isinstance(r, StepRecord)]


async def single_step(pilot) -> StepRecord:
    """Press n while paused; wait until the app shows the new step; return its record."""
    app = pilot.app
    target = app.session.run.controller.trainer.step_count + 1
    await pilot.press("n")
    await until(pilot, lambda: app.gradient_pane.shown_step == target, f"the gradient pane to show step {target}")
    return steps(app)[-1]


# -- space: pause and resume; n does nothing while running --------------------------------------------------------------
async def test_space_pauses_and_resumes_and_n_only_steps_while_paused(make_app):
    app = make_app(paused=False)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, RunState.RUNNING)
        trainer = app.session.run.controller.trainer
        await until(pilot, lambda: trainer.step_count > 0, "the first steps")

        assert app.check_action("step", ()) is None  # n is greyed out in the footer while running...
        calls = []
        session_step = app.session.step
        app.session.step = lambda: calls.append(1) or session_step()
        await pilot.press("n")
        assert calls == [], "n reached the session while running"  # ...and does nothing

        await pilot.press("space")
        await until(pilot, lambda: app.session.state is RunState.PAUSED, "the pause")
        assert app.check_action("step", ()) is True
        before = trainer.step_count
        await pilot.pause(0.5)
        assert trainer.step_count == before, "the step count moved while paused"
        await until(pilot, lambda: "paused" in app.status_bar.text, "the status bar to say paused")

        await pilot.press("space")
        await until(pilot, lambda: app.session.state is RunState.RUNNING, "the resume")
        resumed = trainer.step_count
        await pilot.pause(0.5)
        assert trainer.step_count > resumed, "the step count did not grow after resuming"
        await until(pilot, lambda: "running" in app.status_bar.text, "the status bar to say running")
        assert calls == []


# -- n: exactly one step while paused -----------------------------------------------------------------------------------
async def test_n_takes_exactly_one_step_while_paused(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        trainer = app.session.run.controller.trainer
        assert trainer.step_count == 0
        assert app.check_action("step", ()) is True

        record = await single_step(pilot)
        assert record.step == 1 and record.observed
        assert app.session.latest_observed.step == 1
        assert app.gradient_pane.shown_step == 1
        assert "fc.weight" in app.gradient_pane.rows
        await pilot.pause(0.4)
        assert trainer.step_count == 1, "n took more than one step"
        assert [r.step for r in steps(app)] == [1]
        assert app.session.state is RunState.PAUSED
        await until(pilot, lambda: "step 1/" in app.status_bar.text, "the status bar to show step 1")

        record = await single_step(pilot)
        assert record.step == 2 and app.session.latest_observed.step == 2
        assert trainer.step_count == 2


# -- l: the LR dialog --------------------------------------------------------------------------------------------------
async def type_in(pilot, selector: str, text: str) -> None:
    """Clear an input on the top screen and type into it key by key."""
    field = pilot.app.screen.query_one(selector, Input)
    field.value = ""
    if text:
        await pilot.press(*text)


async def open_lr_dialog(pilot) -> LrDialog:
    """Press `l` and wait for the LR dialog."""
    await pilot.press("l")
    await until(pilot, lambda: isinstance(pilot.app.screen, LrDialog), "the LR dialog")
    return pilot.app.screen


async def test_lr_dialog_applies_valid_input(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        for text, value in (("0.01", 0.01), ("1e-3", 1e-3)):
            await open_lr_dialog(pilot)
            await type_in(pilot, "#lr-input", text)
            assert app.screen.query_one("#lr-input", Input).value == text
            await pilot.press("enter")
            await until(pilot, lambda: not isinstance(app.screen, LrDialog), "the dialog to close")
            assert app.session.lr == value
            record = await single_step(pilot)
            assert record.lr == value, f"the step after typing {text} used lr {record.lr}"
            assert app.session.run.controller.trainer.optimizer.param_groups[0]["lr"] == value
            await until(pilot, lambda: f"lr {value:g}" in app.status_bar.text, "the status bar's lr")


async def test_keys_that_arrive_together_apply_in_the_order_typed(make_app):
    """A slow SSH link delivers several keys at once; backspace must not run after the keys typed behind it."""
    app = make_app(paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await open_lr_dialog(pilot)
        field = app.screen.query_one("#lr-input", Input)
        await until(pilot, lambda: field.has_focus, "the focused field")
        burst = [("0", "0"), ("full_stop", "."), ("5", "5"), ("backspace", None), ("2", "2"), ("enter", "\r")]
        for key, character in burst:  # posted together, none waiting for the one before
            app.post_message(events.Key(key, character))
        await until(pilot, lambda: not isinstance(app.screen, LrDialog), "the dialog to close")
        assert app.session.lr == 0.2


INVALID_LRS = [("", "empty"), ("abc", "must be a number"), ("0", "greater than 0"), ("-1", "greater than 0"),
               ("nan", "finite"), ("inf", "finite")]


async def test_lr_dialog_explains_invalid_input_and_escape_cancels(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await open_lr_dialog(pilot)
        dialog = app.screen
        error = dialog.query_one("#lr-error", Label)
        field = dialog.query_one("#lr-input", Input)
        for text, message in INVALID_LRS:
            error.update("")
            field.value = text  # (typing is covered by the valid inputs; this is about the check)
            await pilot.press("enter")
            await until(pilot, lambda: message in plain(error), f"the dialog to say {message!r} for {text!r}")
            assert "stays 0.1" in plain(error), text
            assert app.screen is dialog, f"the dialog closed on {text!r}"
            assert app.session.lr == 0.1, text

        await type_in(pilot, "#lr-input", "0.5")
        await pilot.press("escape")  # Esc cancels: nothing is sent, even a valid value typed before it
        await until(pilot, lambda: app.screen is not dialog, "the dialog to close")
        assert app.session.lr == 0.1
        record = await single_step(pilot)
        assert record.lr == 0.1
        assert app.session.run.controller.trainer.optimizer.param_groups[0]["lr"] == 0.1


# -- ] and [: double and halve -----------------------------------------------------------------------------------------
async def test_brackets_double_and_halve_the_lr(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("right_square_bracket")
        assert app.session.lr == pytest.approx(0.2)
        record = await single_step(pilot)
        assert record.lr == pytest.approx(0.2)

        await pilot.press("left_square_bracket", "left_square_bracket")
        assert app.session.lr == pytest.approx(0.05)
        record = await single_step(pilot)
        assert record.lr == pytest.approx(0.05)
        assert app.query_one("#f-lr", Input).value == "0.05"


# -- e: evaluate -------------------------------------------------------------------------------------------------------
async def test_e_evaluates_now(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await single_step(pilot)
        await single_step(pilot)
        assert app.session.latest_eval is None
        await pilot.press("e")
        await until(pilot, lambda: app.session.latest_eval is not None, "an evaluation")
        result = app.session.latest_eval
        assert isinstance(result, EvalResult)
        assert result.step == app.session.run.controller.trainer.step_count == 2
        assert result.split == "val" and 0.0 <= result.accuracy <= 1.0
        await until(pilot, lambda: " val " in app.status_bar.text, "the status bar to show the validation accuracy")
        while len(app.screen_stack) > 1:  # whatever e opened to show the result, Esc closes it
            await pilot.press("escape")
        assert app.session.run.controller.trainer.step_count == 2  # evaluating took no step


# -- y: the plot's log scale -------------------------------------------------------------------------------------------
async def test_y_toggles_the_log_scale(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await single_step(pilot)
        plot = app.loss_plot
        assert plot.log_scale is False
        await pilot.press("y")
        assert plot.log_scale is True
        assert plot.border_subtitle == "log y"
        await pilot.press("y")
        assert plot.log_scale is False
        assert plot.border_subtitle == ""
        palette = {command.title: command for command in app.get_system_commands(app.screen)}  # ctrl+p
        await palette["Log scale"].callback()  # runs what y runs
        assert plot.log_scale is True


def test_the_command_palette_offers_every_key_bar_action_by_name():
    shown = {binding.id for binding in keys.BINDINGS if binding.show} - {"quit"}  # Textual's palette has its own Quit
    offered = [binding_id for _, binding_id in keys.PALETTE]
    assert shown <= set(offered) and set(offered) <= set(keys.BY_ID)
    assert all(keys.BY_ID[binding_id].tooltip for binding_id in offered)  # the palette's help line


# -- r: restart ----------------------------------------------------------------------------------------------------------
async def confirm_restart(pilot, answer: str = "y") -> None:
    app = pilot.app
    await pilot.press("r")
    await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
    await pilot.press(answer)
    await until(pilot, lambda: not isinstance(app.screen, ConfirmDialog), "the confirmation to close")


async def test_r_restarts_after_confirmation(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await single_step(pilot)
        await single_step(pilot)
        old = app.session
        old_trainer = old.run.controller.trainer

        await confirm_restart(pilot, "n")  # no: the run goes on
        assert app.session is old
        assert old.run.controller.trainer.step_count == 2

        await confirm_restart(pilot, "y")
        assert app.session is not old
        assert not old.run.controller.thread.is_alive()
        await started(pilot)
        assert app.session.run.controller.trainer is not old_trainer
        assert app.session.run.controller.trainer.step_count == 0
        assert app.gradient_pane.shown_step is None
        await until(pilot, lambda: "step 0/" in app.status_bar.text, "the status bar to show step 0")
        record = await single_step(pilot)
        assert record.step == 1


async def test_r_restarts_with_the_changed_config(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert app.session.config.batch_size == 64
        app.query_one("#f-batch_size", Input).value = "32"
        app.query_one("#f-model", Input).value = "mlp"
        await pilot.pause()
        assert app.query_one("#row-batch_size").has_class("changed")
        assert app.config_pane.changed_fields(app.session.config) == ["model", "batch_size"]
        old = app.session

        await confirm_restart(pilot, "y")
        assert app.session is not old
        assert app.session.config.batch_size == 32
        assert app.session.config.model == "mlp"
        await started(pilot)
        record = await single_step(pilot)
        assert {"fc1.weight", "out.weight"} <= set(record.layers)
        batch = app.session.run.controller.call(lambda trainer: len(trainer.data.train_batch(0)[1]))
        assert await asyncio.to_thread(batch.result, DEADLINE) == 32
        assert not app.query_one("#row-batch_size").has_class("changed")


async def test_r_with_an_invalid_field_says_why_and_keeps_the_run(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        seen = record_notifications(app)
        old = app.session
        app.query_one("#f-batch_size", Input).value = "x"
        await pilot.press("r")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, ConfirmDialog)
        assert app.session is old
        assert any("batch_size" in message and severity == "error" for message, severity in seen), seen
        assert old.state is RunState.PAUSED


# -- ?: help ---------------------------------------------------------------------------------------------------------------
async def test_question_mark_opens_the_help(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        text = "\n".join(plain(s) for s in app.screen.query(Static))
        for binding in NktuiApp.BINDINGS:
            key = binding.key_display or binding.key
            line = rf"^ *{re.escape(key)}  +{re.escape(binding.tooltip or binding.description)} *$"
            assert re.search(line, text, re.MULTILINE), f"the help does not list {key}"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), "the help to close")


# -- enter: the layer detail -------------------------------------------------------------------------------------------
async def test_enter_opens_the_layer_detail(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await single_step(pilot)
        assert app.focused is app.gradient_pane
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LayerDetailScreen), "the layer detail")
        screen = app.screen
        assert screen.layer_name == "fc.weight"
        maps = screen.query_one("#detail-maps", Static)
        await until(pilot, lambda: "snapshot after step 1" in plain(maps), "the snapshot")
        text = plain(maps)
        assert "before the last step" in text and "after the last step" in text
        await until(pilot, lambda: "‖grad‖" in plain(screen.query_one("#detail-stats", Static)), "the statistics")

        await pilot.press("n")  # n steps from the detail too, and the snapshot follows
        await until(pilot, lambda: "snapshot after step 2" in plain(maps), "the snapshot of step 2")
        assert app.session.run.controller.trainer.step_count == 2

        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, LayerDetailScreen), "the detail to close")


# -- q: quit ---------------------------------------------------------------------------------------------------------------
async def test_q_quits_and_stops_the_trainer(make_app):
    app = make_app(paused=False)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, RunState.RUNNING)
        thread = app.session.run.controller.thread
        assert thread.is_alive()
        start = time.monotonic()
        await pilot.press("q")
    assert time.monotonic() - start < 2.0
    assert app.return_code == 0 and app.return_value == 0
    assert not thread.is_alive()
    assert app.session.state is RunState.STOPPED


# -- the config pane's lr field ---------------------------------------------------------------------------------------------
async def test_lr_field_applies_live_without_restart(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        session = app.session
        field = app.query_one("#f-lr", Input)
        field.focus()
        await pilot.pause()
        field.value = ""
        await pilot.press(*"0.05", "enter")
        assert session.lr == 0.05
        assert app.session is session, "the lr field restarted the run"
        assert app.focused is app.gradient_pane
        record = await single_step(pilot)
        assert record.lr == 0.05
        assert app.session.run.controller.trainer.step_count == 1

        seen = record_notifications(app)
        field.focus()
        await pilot.pause()
        field.value = "-2"
        await pilot.press("enter")
        assert session.lr == 0.05
        assert any("greater than 0" in m and s == "error" for m, s in seen), seen


# -- an engine failure -------------------------------------------------------------------------------------------------------
async def test_a_failing_model_shows_the_error_and_a_restart_recovers(make_app, tmp_path):
    factory = tmp_path / "broken_model.py"
    factory.write_text("def build(input_shape, num_classes):\n    raise RuntimeError('boom')\n")
    app = make_app(paused=False, model=f"{factory}:build")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.session.state is RunState.FAILED, "the failure")
        await until(pilot, lambda: app.error_line.display, "the error line")
        assert "boom" in plain(app.error_line)
        assert "failed" in app.status_bar.text
        assert app.is_running
        assert app.check_action("step", ()) is None and app.check_action("set_lr", ()) is None

        app.query_one("#f-model", Input).value = "linear"
        await confirm_restart(pilot, "y")
        await started(pilot, RunState.RUNNING)
        assert app.session.config.model == "linear"
        assert not app.error_line.display
        await until(pilot, lambda: app.session.run.controller.trainer.step_count > 0, "the fixed run to train")


# -- resizing ---------------------------------------------------------------------------------------------------------------
async def test_resizing_keeps_a_sane_layout(make_app):
    app = make_app(paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await single_step(pilot)
        for width, height in ((80, 24), (200, 60), (60, 20)):
            await pilot.resize_terminal(width, height)
            await pilot.pause(0.1)
            app.tick()
            await pilot.pause()
            assert app.size == (width, height)
            for widget in (app.gradient_pane, app.loss_plot, app.config_pane, app.status_bar):
                assert widget.display and widget.size.width > 0 and widget.size.height > 0, (widget, width, height)
                assert widget.region.right <= width and widget.region.bottom <= height
            assert app.gradient_pane.size.height >= 2
            assert "step 1/" in app.status_bar.text and "lr 0.1" in app.status_bar.text
            assert len(app.status_bar.text) <= width
