"""The app's side of issue #7: saving the config (ctrl+s), exports through the session, convolution kernels in the
layer detail (the `cnn` model and examples/my_model.py), and heat maps that stay readable under NO_COLOR.

Apps run through Textual's Pilot against the real trainer thread on the bundled digits, on the CPU.
"""

from __future__ import annotations

import time

import pytest
from pilot_support import plain, started, ui_thread_idle, until  # noqa: F401 (ui_thread_idle: an autouse fixture)
from textual.widgets import Input, Static

from nktui import cli
from nktui.render.heatmap import NEGATIVE_GLYPHS, POSITIVE_GLYPHS, few_colours, glyph, shade_lines
from nktui.training import RunConfig, RunState, StepRecord
from nktui.run.exporters import read_csv
from nktui.run.rundir import read_metrics
from nktui.ui.app import NktuiApp
from nktui.ui.screens.layer_detail import LayerDetailScreen
from nktui.ui.screens.save_config import SaveConfigDialog, default_path
from nktui.ui.session import Session
from nktui.ui.widgets.gradient_pane import fit

SIZE = (100, 30)
DEADLINE = 60.0  # generous: the first app of a run imports torch; only a failing test waits this long
EXAMPLE = "examples/my_model.py:build"


@pytest.fixture
def make_app():
    apps: list[NktuiApp] = []

    def make(**overrides) -> NktuiApp:
        values = dict(seed=0, device="cpu", steps=10**6)
        values.update(overrides)
        app = NktuiApp(RunConfig(**values), paused=True)
        apps.append(app)
        return app

    yield make
    for app in apps:
        if app.session is not None:
            app.session.stop(5.0)


# -- ctrl+s: save the config --------------------------------------------------------------------------------------
async def test_ctrl_s_saves_the_config_which_loads_back_equal(make_app, tmp_path):
    app = make_app(model="mlp", hidden=(32,), lr=0.1, run_dir=str(tmp_path / "some-run"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert "Save config" in [command.title for command in app.get_system_commands(app.screen)]  # ctrl+p
        await pilot.press("right_square_bracket")  # LR x2: the saved config has the LR of now
        await until(pilot, lambda: app.session.lr == 0.2, "the new LR")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, SaveConfigDialog), "the save dialog")
        field = app.screen.query_one("#save-path", Input)
        assert field.value == "nktui-config.toml"  # the default, here; the run directory's when the session has one
        path = tmp_path / "saved" / "run.toml"
        field.value = str(path)
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, SaveConfigDialog), "the dialog to close")
        expected = RunConfig(seed=0, device="cpu", steps=10**6, model="mlp", hidden=(32,), lr=0.2)
        assert RunConfig.load(path) == expected  # run_dir left out: --config FILE starts a fresh run directory
        config, _ = cli.build_config(["--config", str(path)])
        assert config == expected
        config, _ = cli.build_config(["train", "--config", str(path), "--lr", "0.01", "--csv"])
        assert config == expected.replace(lr=0.01, csv=True)  # flags override the file

        await pilot.press("ctrl+s")  # a path that cannot be written: the dialog says why and stays
        await until(pilot, lambda: isinstance(app.screen, SaveConfigDialog), "the save dialog")
        (tmp_path / "a-file").write_text("")
        app.screen.query_one("#save-path", Input).value = str(tmp_path / "a-file" / "x.toml")
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, SaveConfigDialog)
        assert "cannot write" in str(app.screen.query_one("#save-error").render())
        await pilot.press("escape")


def test_default_save_path_is_in_the_run_directory_when_there_is_one(tmp_path):
    class WithRunDir:
        run_dir = tmp_path

    class WithKeeper:
        class keeper:
            run_dir = tmp_path / "runs" / "x"

    assert default_path(object()).name == "nktui-config.toml"
    assert default_path(WithRunDir()) == tmp_path / "saved-config.toml"
    assert default_path(WithKeeper()) == tmp_path / "runs" / "x" / "saved-config.toml"


# -- exports from the app's session --------------------------------------------------------------------------------
def test_the_session_writes_the_records_into_its_run_directory(tmp_path):
    session = Session(RunConfig(seed=0, device="cpu", steps=40, log_every=10, csv=True))
    session.open_exports(tmp_path)
    deadline = time.monotonic() + DEADLINE
    while session.state not in (RunState.FINISHED, RunState.FAILED):
        assert time.monotonic() < deadline, "the run did not finish"
        session.poll()
        time.sleep(0.05)
    assert session.state is RunState.FINISHED, session.error_text
    assert session.stop(5.0)
    steps = [r for r in session.run.controller.trainer.records.since(0)[1] if isinstance(r, StepRecord) and r.step % 10 == 0]
    rows = [row for row in read_metrics(tmp_path / "metrics.jsonl") if row["type"] == "step"]
    assert [row["step"] for row in rows] == [r.step for r in steps] == [10, 20, 30, 40]
    assert [row["loss"] for row in rows] == [r.loss for r in steps]
    table = [row for row in read_csv(tmp_path / "metrics.csv") if row["loss"] is not None]
    assert [row["loss"] for row in table] == [r.loss for r in steps]


# -- convolution kernels in the layer detail -------------------------------------------------------------------------
async def open_detail(pilot, name: str) -> str:
    app = pilot.app
    await started(pilot)
    app.session.step()
    await until(pilot, lambda: app.session.run.controller.trainer.step_count == 1, "one step")
    app.push_screen(LayerDetailScreen(app.session, name))

    def maps() -> str:
        screen = app.screen
        return plain(screen.query_one("#detail-maps", Static)) if isinstance(screen, LayerDetailScreen) and \
            screen.query("#detail-maps") else ""

    await until(pilot, lambda: "Kernels" in maps(), "the kernel maps")
    return maps()


@pytest.mark.parametrize(
    ("model", "layer", "filters"), [("cnn", "conv2.weight", 32), (EXAMPLE, "features.0.weight", 8)]
)
async def test_layer_detail_draws_a_tile_per_conv_filter(make_app, model, layer, filters):
    app = make_app(model=model)
    async with app.run_test(size=SIZE) as pilot:
        text = await open_detail(pilot, layer)
        assert f"#{filters - 1}" in text and f"#{filters}" not in text  # a labelled tile per output filter
        assert "before the last step" in text and "Gradient dL/dW per kernel" in text
        assert "▀" in text  # in colour: half blocks
        await until(pilot, lambda: layer in app.gradient_pane.rows, "the gradient pane's row of the layer")
        assert set(app.gradient_pane.rows) == set(app.session.run.controller.trainer.instruments.names)  # a row per parameter


def test_gradient_pane_cuts_long_names_at_the_start_and_long_shapes_at_the_end():
    assert fit("fc.weight", 12, keep_end=True) == "fc.weight"
    assert fit("layer1.conv.weight", 12, keep_end=True) == "…conv.weight"  # .weight / .bias stay visible
    assert fit("layer1.bn.weight", 12, keep_end=True) == "…1.bn.weight"
    assert fit("32x16x3x3", 7, keep_end=False) == "32x16x…"  # the cut is marked: not a 3-D shape


async def test_heat_maps_use_glyphs_under_no_color(make_app):
    app = make_app(model="cnn")
    app.no_color = True  # what NO_COLOR=1 in the environment sets
    async with app.run_test(size=SIZE) as pilot:
        text = await open_detail(pilot, "conv1.weight")
        assert "▀" not in text  # no colour-only pictures
        assert set(text) & set(POSITIVE_GLYPHS) and set(text) & set(NEGATIVE_GLYPHS)  # the sign is in the glyph
        assert "≡ = - ·" in text and "░ ▒ ▓ █" in text  # the legend says which is which
        assert "×val acc" in str(app.loss_plot.border_title)  # grey lines: the accuracy has a marker of its own


def test_glyphs_tell_sign_and_size():
    assert [glyph(v, 1.0) for v in (0.0, 0.1, 0.3, 0.5, 0.7, 1.0, 5.0)] == [" ", " ", "░", "▒", "▓", "█", "█"]
    assert [glyph(v, 1.0) for v in (-0.3, -0.5, -0.7, -1.0)] == ["·", "-", "=", "≡"]
    assert glyph(float("nan"), 1.0) == "!" and glyph(1.0, 0.0) == " "
    assert [line.plain for line in shade_lines([[1.0, -1.0]], 1.0, repeat=2)] == ["██≡≡"]


def test_sixteen_colour_maps_use_exact_standard_colours():
    from rich.color import Color, ColorSystem

    colour = few_colours(2.0)
    values = (-5.0, -1.5, -0.5, 0.0, 0.2, 0.5, 0.9, 2.0, float("inf"))
    numbers = [Color.from_rgb(*colour(v)).downgrade(ColorSystem.STANDARD).number for v in values]
    # bright blue, blue, grey (about 0), red, bright red; bright yellow for inf
    assert numbers == [12, 12, 4, 8, 8, 1, 1, 9, 11]
