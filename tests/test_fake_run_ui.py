"""The app's panes drawn from recorded records through a fake run client (tests/fake_run.py): no trainer thread, no
torch. The status line, the loss plot and the gradient pane show what the records say; the keys send commands."""

from __future__ import annotations

from fake_run import FakeRun, run_info, step_record
from pilot_support import until

from nktui.protocol import EvalResult, RunConfig, RunState
from nktui.ui.app import NktuiApp

SIZE = (100, 30)


def make(apps, fake: FakeRun, **overrides) -> NktuiApp:
    config = RunConfig(**{"device": "cpu", "seed": 0, "steps": 100, **overrides})
    app = NktuiApp(config, paused=True, run_client=lambda config, paused: fake)
    apps.append(app)
    return app


def recorded(info, steps: int = 40) -> list:
    """A run's records: a falling loss, every tenth step observed, an evaluation at the end."""
    records = [step_record(s, loss=2.3 / s, info=info, grad_norm=0.5 if s % 10 == 0 else None)
               for s in range(1, steps + 1)]
    confusion = tuple(tuple(9 if i == j else 0 for j in range(10)) for i in range(10))
    return [*records, EvalResult(steps, 0, 0.4, 0.88, confusion, info.data.classes)]


async def test_the_status_line_shows_the_recorded_step_and_the_limit(apps):
    info = run_info(step_limit=100)
    fake = FakeRun(info=info, state=RunState.PAUSED)
    fake.publish(*recorded(info))
    app = make(apps, fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "step 40/100" in app.status_bar.text, "the recorded step on the status line")
        assert app.session.latest_eval is not None and app.session.latest_eval.accuracy == 0.88


async def test_the_gradient_pane_shows_the_newest_observed_step_and_every_layer(apps):
    info = run_info(layers=("fc1.weight", "fc1.bias"), shapes=((32, 64), (32,)))
    fake = FakeRun(info=info, state=RunState.PAUSED)
    fake.publish(*recorded(info, steps=35))
    app = make(apps, fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.gradient_pane.shown_step == 30, "the newest observed step in the gradient pane")
        await pilot.pause()
        screen = app.export_screenshot()  # (the pane's rows, as drawn)
        assert "fc1.weight" in screen and "fc1.bias" in screen


async def test_the_loss_plot_draws_the_recorded_history(apps):
    info = run_info()
    fake = FakeRun(info=info, state=RunState.PAUSED)
    fake.publish(*recorded(info, steps=60))
    app = make(apps, fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loss_plot.drawn_version == app.session.history.version
                    and app.session.history.version > 0, "the loss plot drawn from the records")
        assert app.session.latest_step.step == 60


async def test_space_and_n_send_the_named_commands_to_the_run(apps):
    info = run_info()
    fake = FakeRun(info=info, state=RunState.PAUSED)
    fake.publish(*recorded(info, steps=5))
    app = make(apps, fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "step 5/100" in app.status_bar.text, "the recorded step")
        await pilot.press("n")
        await until(pilot, lambda: "step" in fake.commands, "a single step asked for")
        await pilot.press("space")
        await until(pilot, lambda: fake.state is RunState.RUNNING, "the run resumed")
        assert fake.commands[-1] == "resume"
