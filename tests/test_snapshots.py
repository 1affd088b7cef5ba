"""Snapshot tests: what the screen shows, compared with SVGs a person has looked at (tests/__snapshots__/).

Every snapshot is the same deterministic state: seed 0, the linear model on the bundled digits set on the CPU,
started paused, then three single steps (`n`), so that the plot, the gradient pane, the status bar and the footer
all have something to show. Nothing on screen depends on time: samples/s is hidden while paused, and no
notification is left on screen.

After a deliberate change to the UI, regenerate with `pytest tests/test_snapshots.py --snapshot-update` and look at
the new SVGs (a failing run writes snapshot_report.html with the differences side by side).
"""

from __future__ import annotations

import pytest
from pilot_support import plain, started, ui_thread_idle, until  # noqa: F401 (ui_thread_idle: an autouse fixture)
from textual.widgets import Static

from nktui.training import RunConfig, RunState
from nktui.ui.app import NktuiApp
from nktui.ui.screens.help import HelpScreen
from nktui.ui.screens.layer_detail import LayerDetailScreen

STEPS = 3


@pytest.fixture
def app():
    """The app, paused at step 0; its trainer thread is stopped after the test (the screenshot only exits the app)."""
    app = NktuiApp(RunConfig(seed=0, device="cpu"), paused=True)
    yield app
    if app.session is not None:
        app.session.stop(5.0)


async def three_steps(pilot) -> None:
    """Wait for the paused trainer, take three single steps, and wait until every widget shows step 3."""
    app = pilot.app
    await started(pilot)  # and the session configures the trainer (gradient histograms) before the first step
    for step in range(1, STEPS + 1):
        await pilot.press("n")
        await until(pilot, lambda: app.gradient_pane.shown_step == step, f"the gradient pane to show step {step}")
    history = app.session.history
    await until(pilot, lambda: app.loss_plot.drawn_version == history.version, "the plot to draw every step")
    await until(pilot, lambda: f"step {STEPS}/" in app.status_bar.text, "the status bar")
    assert app.session.state is RunState.PAUSED and app.session.run.controller.trainer.step_count == STEPS
    app.clear_notifications()
    await pilot.pause()


@pytest.mark.parametrize("size", [(60, 16), (80, 24), (120, 40)], ids=["60x16", "80x24", "120x40"])
def test_paused_after_three_steps(snap_compare, app, size):
    assert snap_compare(app, terminal_size=size, run_before=three_steps)


def test_help_screen(snap_compare, app):
    async def run_before(pilot) -> None:
        await three_steps(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), "the help screen")

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_layer_detail_of_fc_weight(snap_compare, app):
    async def run_before(pilot) -> None:
        await three_steps(pilot)
        assert app.gradient_pane.cursor_row == 0  # fc.weight, the first parameter
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LayerDetailScreen), "the layer detail")
        assert app.screen.layer_name == "fc.weight"
        maps = app.screen.query_one("#detail-maps", Static)
        await until(pilot, lambda: f"snapshot after step {STEPS}" in plain(maps), "the snapshot")
        await until(pilot, lambda: "‖grad‖" in plain(app.screen.query_one("#detail-stats", Static)), "the stats")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
