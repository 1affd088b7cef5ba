"""The evaluation and loss-surface screens, driven through Textual's Pilot against the real trainer thread.

`e` opens the evaluation and shows the accuracy the trainer computed; `v` opens the loss surface, draws the map with
the descent path, and Esc cancels a computation in flight without moving the weights; `d` changes the plane.
"""

from __future__ import annotations

import pytest
import torch
from pilot_support import plain, started, ui_thread_idle, until  # noqa: F401 (ui_thread_idle: an autouse fixture)
from textual.widgets import Static

from nktui.training import RunConfig
from nktui.ui.app import NktuiApp
from nktui.ui.screens.evaluation import EvaluationScreen
from nktui.ui.screens.landscape import LandscapeScreen


@pytest.fixture
def app():
    app = NktuiApp(RunConfig(seed=0, device="cpu", steps=10**6), paused=True)
    yield app
    if app.session is not None:
        app.session.stop(5.0)


async def take_steps(pilot, count: int) -> None:
    app = pilot.app
    await started(pilot)
    for step in range(1, count + 1):
        await pilot.press("n")
        await until(pilot, lambda: app.session.run.controller.trainer.step_count == step, f"step {step}")


def weights(app) -> list[torch.Tensor]:
    return [p.detach().clone() for p in app.session.run.controller.trainer.model.parameters()]  # (the run is paused)


async def test_e_opens_the_evaluation_and_shows_the_accuracy(app):
    async with app.run_test(size=(100, 30)) as pilot:
        await take_steps(pilot, 3)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, EvaluationScreen), "the evaluation screen")
        screen = app.screen
        await until(pilot, lambda: screen.evaluation is not None, "the evaluation")
        result = screen.evaluation.result
        assert result.step == 3 and result == app.session.run.controller.trainer.last_eval
        summary = plain(screen.query_one("#eval-summary", Static))
        assert f"accuracy {result.accuracy:.2%}" in summary and f"of {result.size})" in summary
        tables = plain(screen.query_one("#eval-tables", Static))
        assert "Confusion matrix" in tables and "precision" in tables
        wrong = plain(screen.query_one("#eval-wrong", Static))
        assert "Most confidently wrong" in wrong and "true " in wrong and "pred " in wrong
        await until(pilot, lambda: app.session.latest_eval == result, "the evaluation on the loss plot's history")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, EvaluationScreen), "the main screen")


@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
async def test_v_draws_the_surface_with_the_descent_path(app, size):
    async with app.run_test(size=size) as pilot:
        await take_steps(pilot, 4)
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, LandscapeScreen), "the landscape screen")
        screen = app.screen
        await until(pilot, lambda: screen.surface is not None and not screen.computing, "the surface")
        surface = screen.surface
        assert surface.mode == "weights" and surface.w1.name == "fc.weight" and surface.step == 4
        assert [p.step for p in surface.path] == [0, 1, 2, 3, 4]
        drawn = plain(screen.query_one("#ls-map", Static))
        assert "◆" in drawn and "•" in drawn and str(surface.w1) in drawn
        assert "training waited" in plain(screen.query_one("#ls-info", Static))
        assert screen.query_one("#ls-map").region.right <= size[0]  # it fits the terminal
        await pilot.press("d")
        await until(pilot, lambda: screen.surface.mode == "random" and not screen.computing, "the random plane")
        await pilot.press("n")  # a step, then the surface again at the new weights
        await until(pilot, lambda: screen.surface.step == 5 and not screen.computing, "the surface after a step")
        assert [p.step for p in screen.surface.path][-2:] == [4, 5]


async def test_the_surface_lays_itself_out_again_when_the_terminal_shrinks(app):
    async with app.run_test(size=(160, 45)) as pilot:
        await take_steps(pilot, 2)
        await pilot.press("v")
        await until(pilot, lambda: getattr(app.screen, "surface", None) is not None, "the surface")
        screen = app.screen
        await pilot.resize_terminal(80, 24)
        legend, side = screen.query_one("#ls-legend"), screen.query_one("#ls-side")

        def laid_out_again() -> bool:  # map, legend and the 1-D slice side by side within 80 columns
            return screen.query_one("#ls-map").region.right <= legend.region.x and side.region.right <= 80

        await until(pilot, laid_out_again, "the map, legend and slice to fit 80 columns")
        assert side.region.width >= 20


async def test_esc_cancels_the_surface_and_leaves_the_weights_alone(app):
    async with app.run_test(size=(100, 30)) as pilot:
        await take_steps(pilot, 2)
        before = weights(app)
        screen = LandscapeScreen(app.session, resolution=301)  # ~90,000 forward passes: long enough to cancel
        app.push_screen(screen)
        await until(pilot, lambda: screen.progress is not None and screen.progress.done > 0, "the computation")
        await pilot.press("escape")
        await until(pilot, lambda: not screen.computing, "the cancellation", timeout=5)
        assert screen.cancelled and screen.surface is None and app.screen is screen
        assert "Cancelled" in plain(screen.query_one("#ls-info", Static))
        assert all(torch.equal(a, b) for a, b in zip(before, weights(app)))
        await pilot.press("escape")  # nothing computing: Esc closes
        await until(pilot, lambda: app.screen is not screen, "the main screen")
        await pilot.press("n")  # training goes on
        await until(pilot, lambda: app.session.run.controller.trainer.step_count == 3, "step 3")
