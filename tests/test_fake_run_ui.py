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


class FakeRemote(FakeRun):
    """A fake run in its own process: the app attached to it (d, the quit question), nothing behind it."""

    remote = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        import types
        from pathlib import Path

        self.run_dir = Path("runs/fake")
        self.keeper = types.SimpleNamespace(run_dir=self.run_dir, checkpoint=self.run_dir / "last.pt",
                                            log_path=self.run_dir / "nktui.log", created=True, saved_step=None,
                                            resume=None, note=lambda line: None)
        self.ended, self.ended_line, self.detached = False, None, False

    def detach(self) -> None:
        self.detached = True

    def end(self, reason: str, timeout: float = 10.0) -> str:
        self.commands.append(("end", reason))
        return f"nktui: {reason} at step {self.step_count}; runs/fake/last.pt holds step {self.step_count}"


async def test_attached_q_asks_and_esc_at_a_tiny_size_leaves_no_field_focused(apps):
    info = run_info(step_limit=100)
    fake = FakeRemote(info=info, state=RunState.PAUSED)
    fake.publish(*recorded(info))
    config = RunConfig(device="cpu", seed=0, steps=100)
    app = NktuiApp(config, run_dir="runs/fake", run_client=lambda config, paused: fake, attached=True)
    apps.append(app)
    async with app.run_test(size=(59, 15)) as pilot:  # too small: the panes are hidden
        await until(pilot, lambda: app.session.step_count == 40, "the records")
        await pilot.press("q")
        await until(pilot, lambda: type(app.screen).__name__ == "QuitChoice", "the quit question")
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert app.focused is None or not hasattr(app.focused, "value"), app.focused  # no input takes keys
        await pilot.press("q")
        await until(pilot, lambda: type(app.screen).__name__ == "QuitChoice", "the question again")
        await pilot.press("d")
        await until(pilot, lambda: not app.is_running, "the detach")
    assert fake.detached and "nktui attach runs/fake" in app.exit_line and not fake.commands


async def test_attached_q_then_s_stops_the_run_with_its_line(apps):
    info = run_info(step_limit=100)
    fake = FakeRemote(info=info, state=RunState.PAUSED)
    fake.publish(*recorded(info))
    app = NktuiApp(RunConfig(device="cpu", seed=0, steps=100), run_dir="runs/fake",
                   run_client=lambda config, paused: fake, attached=True)
    apps.append(app)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.session.step_count == 40, "the records")
        assert app.check_action("detach", ()) is True
        await pilot.press("q", "s")
        await until(pilot, lambda: not app.is_running, "the stop")
    assert fake.commands == [("end", "quit")] and "holds step 40" in app.exit_line


def test_a_scrub_backlog_goes_before_the_observed_steps_and_the_shown_step_stays():
    from nktui.host.mirror import RunMirror, ScrubBacklog, Snapshot
    from nktui.protocol.wire import pack, unpack
    from nktui.ui.session import Session

    info = run_info(step_limit=2000)
    mirror = RunMirror()
    mirror.add([step_record(s, loss=1.0 / s, info=info, grad_norm=0.5) for s in range(1, 121)])  # all observed
    fields, blob, backlog = mirror.snapshot()
    assert len(backlog) == 120 - 50 and [r.step for r in backlog] == list(range(1, 71))
    header, blob = unpack(pack({"kind": "snapshot", **fields}, blob)[4:])
    fake = FakeRun(info=info, state=RunState.PAUSED)
    fake.publish(Snapshot.from_message(header, blob))
    session = Session(RunConfig(device="cpu", seed=0, steps=2000), client=fake)
    session.poll()
    assert [r.step for r in session.observed] == list(range(71, 121))
    session.scrub(-2)  # showing step 118
    assert session.shown_record.step == 118
    fake.publish(ScrubBacklog(tuple(backlog)))
    session.poll()
    assert [r.step for r in session.observed] == list(range(1, 121))
    assert session.shown_record.step == 118  # the step shown stays the step shown
