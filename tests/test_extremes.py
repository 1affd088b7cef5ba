"""Every widget and screen at the extremes: a model whose weights hold nan, inf, -inf, 0, -0.0, 1e38 or 1e-45 steps
for real and every screen opens on what it computed; the panes draw records with no layers, 200 layers and
100-character names; `nktui train`'s progress lines take the same values. Nothing may raise (the suite runs with
the error boundary off), and numbers stay short."""

from __future__ import annotations

import io
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nktui.cli.progress import PlainProgress
from nktui.render.format import number
from nktui.protocol.records import EvalResult, Histogram, LayerStats, StepRecord, frozen_mapping
from nktui.training import RunConfig
from nktui.run.history import RunHistory
from nktui.ui.app import NktuiApp
from pilot_support import started, until

VALUES = (math.nan, math.inf, -math.inf, 0.0, -0.0, 1e38, -1e38, 1e-45)
SIZE = (80, 24)


class Filled(nn.Module):
    """A linear model on digits whose weights and bias are all one value."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)
        with torch.no_grad():
            self.fc.weight.fill_(value)
            self.fc.bias.fill_(value)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("value", VALUES, ids=repr)
async def test_every_screen_opens_on_a_model_holding_extreme_values(apps, value):
    config = RunConfig(device="cpu", seed=0, steps=10**6, rewind_every=4)
    app = NktuiApp(config, paused=True, model=Filled(value))
    apps.append(app)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        for _ in range(2):
            await pilot.press("n")
            await pilot.pause(0.2)
        await until(pilot, lambda: app.session.run.controller.trainer.step_count == 2, "two steps")
        screens = (("enter", "LayerDetailScreen"), ("t", "TraceScreen"), ("w", "WhatIfScreen"),
                   ("e", "EvaluationScreen"), ("v", "LandscapeScreen"))
        for key, name in screens:
            await pilot.press(key)
            await until(pilot, lambda: type(app.screen).__name__ == name, name)
            await pilot.pause(1.0)  # its computation on the training thread, then its drawing
            for _ in range(3):  # the trace's further phases (elsewhere: harmless)
                if name == "TraceScreen":
                    await pilot.press("enter")
                    await pilot.pause(0.2)
            assert app.is_running
            await pilot.press("escape")
            await until(pilot, lambda: len(app.screen_stack) == 1, f"{name} to close")
        await pilot.press("g")
        await pilot.press("escape")
        await pilot.press("q")
    assert app.return_code == 0


def layer(name: str, value: float) -> LayerStats:
    hist = Histogram(-1.0, 1.0, (1, 2, 3, 4)) if math.isfinite(value) else None
    return LayerStats(name, (3, 4), value, value, value, value, value, value, 0 if math.isfinite(value) else 12, hist)


def record(step: int, value: float, layers: int, name: str = "layer") -> StepRecord:
    stats = {f"{name}{i}.weight": layer(f"{name}{i}.weight", value) for i in range(layers)}
    return StepRecord(step, 1, value, 0.5, 0.1, samples_per_sec=value if value == value else None,
                      layers=frozen_mapping(stats))


@pytest.mark.parametrize("layers,name", [(0, "x"), (3, "fc"), (200, "features.block"), (2, "n" * 100)])
async def test_the_panes_draw_extreme_records(apps, layers, name):
    app = NktuiApp(RunConfig(device="cpu", steps=10**6), paused=True)
    apps.append(app)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        history = RunHistory()
        for step, value in enumerate((*VALUES, 2.5, 1e-3, 7.0), start=1):
            history.add(record(step, value, 0))
            history.add(EvalResult(step, 1, value, 0.5, ((1, 0), (0, 1)), ("a", "b")))
            app.gradient_pane.show(record(step, value, layers, name))
            await pilot.pause(0.05)
            for log_scale in (False, True):
                app.loss_plot.log_scale = log_scale
                app.loss_plot.draw(history, cursor_step=step)
                await pilot.pause(0.05)
        assert app.is_running


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_number_is_sensible_and_bounded(value):
    text = number(value)
    assert len(text) <= 9
    assert text in ("nan", "inf", "-inf", "0") or "e" in text or float(text) == pytest.approx(value)


def fake_trainer():
    """What the progress lines read of a trainer."""
    return SimpleNamespace(step_limit=100, step_count=0, config=SimpleNamespace(log_every=1, lr=0.1))


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_nktui_trains_progress_lines_take_extreme_values(value):
    out = io.StringIO()
    progress = PlainProgress(out, fake_trainer())
    progress.add([record(1, value, 3), EvalResult(1, 1, value, 0.5, ((1, 0), (0, 1)), ("a", "b"))])
    progress.refresh()
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines and all(len(line) < 100 for line in lines), lines
