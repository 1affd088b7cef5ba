"""The app at the fault, driven key by key: the demo pauses just before the step where the loss exploded, `t` walks
that step's four phases, `g` reaches an earlier step, a screen that fails closes with a notice. And the trace's
views drawn from numbers at the extremes (nan, inf, 1e38, 1e-45, -0.0) without raising, in bounded width."""

from __future__ import annotations

import math

import pytest
from rich.console import Console
from textual.widgets import Input

from nktui.protocol.results import BackwardLayer, ForwardLayer, ParamUpdate, StepTrace
from nktui.training import RunConfig, RunState
from nktui.ui.app import NktuiApp
from nktui.ui.screens.goto_dialog import GotoDialog, parse_step
from nktui.ui.screens.trace import TraceScreen, backward_view, forward_view, loss_view, update_view
from pilot_support import record_notifications, started, until

SIZE = (80, 24)
START = 60


async def test_the_demo_pauses_before_the_explosion_and_t_traces_that_step(apps):
    app = NktuiApp(RunConfig(device="cpu", model="mlp", lr=50.0, seed=0, steps=10**6), paused=False)
    apps.append(app)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.session.watch_hit is not None and app.session.state is RunState.PAUSED,
                    "the watchpoint", START)
        hit = app.session.watch_hit
        assert hit.stopped_before and app.session.run.controller.trainer.step_count == hit.step - 1
        await until(pilot, lambda: app.error_line.display, "the notice")
        shown = str(app.error_line.render())
        assert f"just before step {hit.step}" in shown and hit.watchpoint in shown
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, TraceScreen) and app.screen.trace is not None, "the trace")
        trace = app.screen.trace
        assert trace.step == hit.step
        for _ in range(3):  # phases 2, 3, 4: none raises on the exploded numbers
            await pilot.press("enter")
            await pilot.pause(0.1)
        assert app.screen.phase == 3 and app.is_running
        assert math.isfinite(trace.sample_loss) and trace.sample_loss > 0
        await pilot.press("escape")
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, GotoDialog), "the go-to dialog")
        app.screen.query_one(Input).value = "1"
        await pilot.press("enter")
        await until(pilot, lambda: app.session.run.controller.trainer.step_count == 1, "the rewind to step 1")
        await pilot.press("q")
    assert app.return_code == 0


def test_the_goto_dialog_takes_only_steps_in_reach():
    assert parse_step(" 1,200 ", 0, 5000) == 1200
    for text, reason in (("", "type a step"), ("x", "not a step"), ("7000", "out of reach"), ("-1", "out of reach")):
        with pytest.raises(ValueError, match=reason):
            parse_step(text, 0, 5000)


async def test_a_screen_that_fails_closes_with_a_notice_and_the_app_stays_up(apps, monkeypatch, tmp_path):
    monkeypatch.delenv("NKTUI_RAISE")
    app = NktuiApp(RunConfig(device="cpu", seed=0, steps=10**6), paused=True, run_dir=tmp_path / "run")
    apps.append(app)
    seen = record_notifications(app)

    def broken(self):
        raise RuntimeError("a drawing bug")

    monkeypatch.setattr("nktui.ui.screens.help.HelpScreen.compose", broken)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: any("a drawing bug" in m for m, _ in seen), "the notice")
        assert app.is_running and len(app.screen_stack) == 1
        await pilot.press("n")  # the run still answers
        await until(pilot, lambda: app.session.run.controller.trainer.step_count == 1, "a step")
        await pilot.press("q")
    assert "RuntimeError: a drawing bug" in (tmp_path / "run" / "nktui.log").read_text()


EXTREMES = (math.nan, math.inf, -math.inf, 0.0, -0.0, 1e38, -1e38, 1e-45, 3.4e38)


def extreme_trace(value: float, layers: int = 3, name: str = "fc") -> StepTrace:
    forward = tuple(ForwardLayer(f"{name}{i}", "Linear", (64, 10), value, value, None) for i in range(layers))
    backward = tuple(BackwardLayer(f"{name}{i}", "Linear", value) for i in range(layers))
    updates = tuple(ParamUpdate(f"{name}{i}.weight", (10, 64), value, value, value, value, value, value,
                                ((0, value, value, value), (639, 1.0, value, -value)))
                    for i in range(layers))
    return StepTrace(step=7, lr=1e30, optimizer="sgd", batch_size=64, sample_index=0,
                     sample_image=(((0.0, 1.0), (value if math.isfinite(value) else 0.0, 0.5)),), classes=("a", "b"),
                     label=1, logits=(value, -value), probabilities=(0.0, 1.0) if value != value else (1.0, 0.0),
                     sample_loss=value, batch_loss=value, batch_accuracy=0.0, forward=forward, backward=backward,
                     updates=updates, update_rule="plain SGD")


@pytest.mark.parametrize("value", EXTREMES, ids=repr)
@pytest.mark.parametrize("layers,name", [(0, "fc"), (3, "fc"), (200, "fc"), (2, "x" * 100)])
def test_every_trace_phase_draws_extreme_values(value, layers, name):
    trace = extreme_trace(value, layers, name)
    console = Console(width=80, record=True, color_system=None)
    for view in (forward_view, loss_view, backward_view, update_view):
        console.print(view(trace, 74))
    text = console.export_text()
    if not math.isfinite(value) and layers:
        assert ("nan" if value != value else "inf") in text
