"""What a new user meets in the first minutes, key by key: a greyed key says why, a finished run goes on, the focus
survives a too-small terminal, every pane shows the same step, a paused start says what to press, a device that is
not there is one line before the screen opens."""

from __future__ import annotations

import pytest
import torch
from textual.widgets import Input

from nktui import cli
from nktui.render.format import index_text
from nktui.training import RunConfig, RunState, Trainer
from nktui.ui.app import NktuiApp
from nktui.ui.widgets.loss_plot import PAUSED_AT_START
from pilot_support import record_notifications, started, until

SIZE = (100, 30)


def make(apps, **overrides) -> NktuiApp:
    paused = overrides.pop("paused", True)
    app = NktuiApp(RunConfig(**{"device": "cpu", "seed": 0, "steps": 10**6, **overrides}), paused=paused)
    apps.append(app)
    return app


async def test_a_greyed_key_says_why_when_pressed(apps):
    app = make(apps, paused=False)
    seen = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, RunState.RUNNING)
        await pilot.press("n")
        await until(pilot, lambda: any("while paused" in m for m, _ in seen), "the reason")
        assert app.session.state is RunState.RUNNING


async def test_a_finished_run_goes_on_when_its_steps_are_raised_bitwise(apps):
    app = make(apps, paused=False, steps=30, eval_every=0)
    seen = record_notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.session.state is RunState.FINISHED, "the end", 60)
        await pilot.press("space")  # greyed: it says how to go on
        await until(pilot, lambda: any("raise steps" in m for m, _ in seen), "the reason")
        field = app.query_one("#f-steps", Input)
        field.focus()
        field.value = "60"
        await pilot.press("enter")
        await until(pilot, lambda: app.session.state is RunState.PAUSED, "the extended run to pause", 30)
        await pilot.press("escape", "space")
        await until(pilot, lambda: app.session.state is RunState.FINISHED and app.session.run.controller.trainer.step_count == 60,
                    "step 60", 60)
        ours = [t.clone() for t in app.session.run.controller.trainer.model.state_dict().values()]
    straight = Trainer(RunConfig(device="cpu", seed=0, steps=60, eval_every=0))
    for _ in range(60):
        straight.take_step()
    assert all(torch.equal(a, b) for a, b in zip(ours, straight.model.state_dict().values(), strict=True))


async def test_the_focus_comes_back_after_a_too_small_terminal(apps):
    app = make(apps)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        for _ in range(3):
            await pilot.press("n")
            await pilot.pause(0.2)
        await until(pilot, lambda: len(app.session.observed) == 3, "three steps")
        assert app.focused is app.gradient_pane
        await pilot.resize_terminal(40, 10)
        await pilot.pause(0.3)
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.3)
        assert app.focused is app.gradient_pane
        await pilot.press("left")  # scrubbing works without a Tab first
        await until(pilot, lambda: app.session.scrub_index is not None, "the scrub")


def shown_steps(app) -> tuple[int | None, int]:
    status = app.status_bar.text.split("step ")[1].split("/")[0]
    return app.gradient_pane.shown_step, int(status)


async def test_the_status_line_and_the_gradient_pane_show_the_same_step(apps):
    app = make(apps, paused=False)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, RunState.RUNNING)
        await until(pilot, lambda: app.session.run.controller.trainer.step_count > 200, "some training", 60)
        await pilot.press("space")
        await until(pilot, lambda: app.session.state is RunState.PAUSED, "the pause")
        count = app.session.run.controller.trainer.step_count  # (paused: it stays)
        await until(pilot, lambda: shown_steps(app) == (count, count), "the same step after a pause", 20)
        target = app.session.run.controller.trainer.step_count + 1
        await pilot.press("n")
        await until(pilot, lambda: shown_steps(app) == (target, target), "the same step after n", 10)


async def test_a_paused_start_says_what_to_press(apps):
    app = make(apps)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await until(pilot, lambda: app.loss_plot.empty_hint == PAUSED_AT_START, "the hint")
        await pilot.pause(0.3)  # (its next frame)
        assert "n takes one step" in "".join(s.text for s in app.loss_plot._lines)


def test_a_device_that_is_not_there_is_one_line_before_the_screen_opens(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("nktui.ui.app.NktuiApp.run", lambda self: pytest.fail("the app started"))
    code = cli.main(["--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no CUDA GPU" in err and "Traceback" not in err


def test_one_index_notation_everywhere():
    assert index_text(426, (10, 64)) == "6,42"
    assert index_text(5, (10,)) == "5"
    assert index_text(0, ()) == "0"
    assert index_text(3 * 9 + 2 * 3 + 1, (2, 3, 3, 3)) == "1,0,2,1"


async def test_a_resumed_run_plots_its_earlier_history(apps, tmp_path, capsys):
    from nktui.cli.resume import plan_resume

    run = tmp_path / "run"
    assert cli.main(["train", "--device", "cpu", "--steps", "200", "--log-every", "20", "--run-dir", str(run)]) == 0
    capsys.readouterr()
    config, plan = plan_resume(run / "last.pt", {"steps": 400})
    app = NktuiApp(config, paused=True, run_dir=plan.run_dir, resume=plan)
    apps.append(app)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        points = app.session.history.train_loss.points()
        assert [p.first for p in points] == list(range(20, 201, 20))  # metrics.jsonl's rows, before any new step
        assert app.session.history.val_loss.points()  # and its evaluations
        await pilot.press("q")


async def test_while_running_and_after_a_rewind_every_pane_shows_one_step(apps):
    app = make(apps, paused=False)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, RunState.RUNNING)
        await until(pilot, lambda: app.gradient_pane.shown_step is not None and app.session.run.controller.trainer.step_count > 100,
                    "a measured step on screen", 60)
        for _ in range(5):  # while training the status line shows the pane's step (a tick after a pane redraw:
            await pilot.pause(0.25)  # the two are not repainted in one frame, which would repaint the config pane)
            await until(pilot, lambda: shown_steps(app)[0] == shown_steps(app)[1], "the pane's step in the status", 2)
        await pilot.press("space")
        await until(pilot, lambda: app.session.state is RunState.PAUSED, "the pause")
        for target in (app.session.run.controller.trainer.step_count - 1, app.session.rewind_reach[0]):
            app.session.rewind_to(target)
            # the pane shows that very step (measured before) or nothing, never an older step's numbers
            await until(pilot, lambda: shown_steps(app)[1] == target and shown_steps(app)[0] in (None, target),
                        f"the panes after a rewind to {target}", 20)
            if shown_steps(app)[0] is None:
                assert "rewound to step" in app.gradient_pane.border_title


async def test_the_what_if_fits_80x24(apps):
    from nktui.ui.screens.whatif import WhatIfScreen

    app = make(apps)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("n")
        await until(pilot, lambda: app.session.run.controller.trainer.step_count == 1, "a step")
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, WhatIfScreen) and app.screen.result is not None, "the what-if")
        await pilot.pause(0.3)
        screen = app.screen
        title, table = screen.query_one("#whatif-title"), screen.query_one("#whatif-table")
        assert "lowest at lr" in str(title.render()) and "before the update" in str(title.render())
        assert table.region.bottom <= 23 and table.region.height >= 5  # above the footer, rows in sight
        assert table.cursor_row == screen.result.lrs.index(screen.result.current_lr)


def test_a_run_that_fails_before_the_session_looks_is_still_reported(monkeypatch, tmp_path):
    """Regression: the session took the controller's state at its start as already seen, so a run that failed
    within microseconds (an empty image folder, now walked by nktui itself) never showed its error line."""
    from nktui.run import driver as driver_module
    from nktui.ui import session as session_module

    real = driver_module.launch

    def launch_and_wait(*args, **kwargs):
        controller = real(*args, **kwargs)
        controller.wait_for(lambda s: s.is_over, 30)  # failed before the Session reads its state
        return controller

    monkeypatch.setattr(driver_module, "launch", launch_and_wait)
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    session = session_module.Session(RunConfig(device="cpu", dataset=f"imagefolder:{tmp_path / 'empty'}"))
    changes = session.poll()
    assert changes.state and session.state is RunState.FAILED and "has no images" in session.error_text
