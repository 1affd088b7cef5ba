"""Odd terminals: ASCII instead of Unicode under a non-UTF-8 locale or a TERM without it (nktui.render.charset), and the
"needs more room" notice, whole at every size down to 20x5 (nktui.ui.widgets.too_small)."""

from __future__ import annotations

import pytest
from pilot_support import started, ui_thread_idle, until  # noqa: F401 (ui_thread_idle: an autouse fixture)
from rich.style import Style
from textual.geometry import Region
from textual.scrollbar import ScrollBar, ScrollBarRender

from nktui.render import charset
from nktui.render.braille import Axis, Series, chart
from nktui.render.format import sparkline
from nktui.render.heatmap import diverging, glyph, render, shade_legend
from nktui.training import RunConfig
from nktui.ui import ascii_terminal
from nktui.ui.app import NktuiApp
from nktui.ui.widgets.too_small import TooSmall, room_message

UTF8 = {"LANG": "en_US.UTF-8", "TERM": "xterm-256color"}


@pytest.fixture
def ascii_mode():
    """ASCII for this test; Unicode again after it (the mode is a process-wide decision)."""
    charset.set_ascii(True)
    yield
    charset.set_ascii(False)
    ScrollBar.renderer = ScrollBarRender


# -- the decision ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env", [
    UTF8,
    {"LANG": "C.UTF-8", "TERM": "xterm"},
    {"LC_ALL": "de_DE.utf8", "LANG": "C", "TERM": "screen-256color"},  # LC_ALL wins
    {"LANG": "", "LC_CTYPE": "en_GB.UTF-8", "TERM": "tmux-256color"},
    {"TERM": "xterm-256color"},  # no locale variable: the stream's encoding decides
    {"LANG": "C", "TERM": "vt100", "NKTUI_ASCII": "0"},  # forced
])
def test_unicode_terminals(env):
    assert charset.unicode_ok(env, encoding="utf-8")


@pytest.mark.parametrize("env", [
    {"LANG": "C", "TERM": "xterm-256color"},
    {"LC_ALL": "C", "LANG": "en_US.UTF-8", "TERM": "xterm"},  # LC_ALL=C wins over a UTF-8 LANG
    {"LC_ALL": "POSIX", "TERM": "xterm"},
    {"LANG": "en_US.ISO-8859-1", "TERM": "xterm"},
    {"LANG": "en_US", "TERM": "xterm"},  # no charset named: not UTF-8
    {"LANG": "en_US.UTF-8", "TERM": "vt100"},
    {"LANG": "en_US.UTF-8", "TERM": "dumb"},
    {"LANG": "en_US.UTF-8", "TERM": "linux"},
    {"LANG": "en_US.UTF-8", "TERM": "vt220-am"},
    {**UTF8, "NKTUI_ASCII": "1"},  # forced
    {**UTF8, "NKTUI_ASCII": "yes"},
])
def test_ascii_terminals(env):
    assert not charset.unicode_ok(env, encoding="utf-8")


def test_a_stream_that_is_not_utf8_gets_ascii_and_an_unclear_override_is_ignored():
    assert not charset.unicode_ok(UTF8, encoding="ascii")
    assert not charset.unicode_ok(UTF8, encoding="ISO-8859-1")
    assert charset.unicode_ok(UTF8, encoding="UTF8")
    assert charset.unicode_ok({**UTF8, "NKTUI_ASCII": "maybe"}, encoding="utf-8")
    assert charset.terminal_unicode("xterm-kitty") and charset.terminal_unicode("vte-256color")


def test_decide_sets_the_mode_once_for_the_process():
    try:
        assert charset.decide({"LANG": "C"}, encoding="utf-8") is True and charset.ascii_mode()
        assert charset.text("‖grad‖ ←→ a…b · 2×3") == "|grad| <> a~b - 2x3"
        assert charset.decide(UTF8, encoding="utf-8") is False and not charset.ascii_mode()
        assert charset.text("‖grad‖") == "‖grad‖"
    finally:
        charset.set_ascii(False)


def test_to_ascii_keeps_every_cell():
    for text in ("╭─ Config ─╮", "│⣀⠔⠊⠁ ▁▂▃█│", "▼ ‖grad‖ … ±", "中文 é ✓"):
        out = charset.to_ascii(text)
        assert out.isascii()
        from rich.cells import cell_len

        assert cell_len(out) == cell_len(text), (text, out)
    assert charset.to_ascii("╭─ x ─╮\x1b[1m") == "+- x -+\x1b[1m"


# -- the glyphs -----------------------------------------------------------------------------------------------
def test_ascii_sparklines_plots_and_heat_maps(ascii_mode):
    assert sparkline([0, 1, 2, 4, 8]) == " .:=@"
    lines = chart(30, 10, [Series([0, 1, 2, 3], [3.0, 1.0, 2.0, 0.5], Style()),
                           Series([1, 3], [2.5, 1.5], Style(), mark=charset.text("•"))],
                  x_axis=Axis(0, 3), y_axis=Axis(0, 3), x_ticks=[0, 1, 2, 3], x_title="step", cursor=2)
    text = "\n".join("".join(s.text for s in line) for line in lines)
    assert text.isascii() and "+" in text and "|" in text and "o" in text
    assert {glyph(v, 1.0) for v in (-1, -0.6, -0.3, 0.3, 0.6, 1)} <= set(charset.ASCII_POSITIVE + charset.ASCII_NEGATIVE)
    assert shade_legend(1.0).plain.isascii()
    picture = render([[0.5, -0.5], [1.0, 0.0], [0.2, 0.1]], diverging(1.0))
    assert len(picture) == 2 and all(line.plain == "  " for line in picture)


def widget_text(widget) -> str:
    """What a widget draws (its border too), as plain text."""
    strips = widget.render_lines(Region(0, 0, widget.outer_size.width, widget.outer_size.height))
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


async def test_forced_ascii_draws_the_main_screen_in_ascii(monkeypatch):
    monkeypatch.setenv("NKTUI_ASCII", "1")
    app = NktuiApp(RunConfig(seed=0, device="cpu"), paused=True)
    try:
        assert charset.ascii_mode() and app.has_class("-ascii")
        assert ascii_terminal.driver_class(type(None)) is type(None)  # (not a terminal driver: left alone)
        async with app.run_test(size=(100, 30)) as pilot:
            await started(pilot)
            for step in (1, 2):
                await pilot.press("n")
                await until(pilot, lambda: app.gradient_pane.shown_step == step, f"step {step} in the gradient pane")
            await until(pilot, lambda: app.loss_plot.drawn_version == app.session.history.version, "the plot")
            app.show_rewind_memory()
            await pilot.pause()
            for widget in (app.loss_plot, app.gradient_pane, app.status_bar, app.config_pane):
                shown = widget_text(widget)
                if widget is app.config_pane:  # (its bottom border: Textual cuts the hint with its own `…`, which
                    shown = shown.rsplit("\n", 1)[0]  # the ASCII driver writes as `~`)
                assert shown.strip() and shown.isascii(), f"{widget!r} drew {set(c for c in shown if not c.isascii())}"
            assert "+-" in widget_text(app.loss_plot) and "step 2" in app.status_bar.text
            assert "|grad|" in widget_text(app.gradient_pane)
            await pilot.press("q")
    finally:
        monkeypatch.setenv("NKTUI_ASCII", "0")
        charset.set_ascii(False)
        ScrollBar.renderer = ScrollBarRender


def test_the_app_decides_unicode_by_default():
    app = NktuiApp(RunConfig(seed=0, device="cpu"), paused=True)  # conftest: NKTUI_ASCII=0
    assert not charset.ascii_mode() and not app.has_class("-ascii") and ScrollBar.renderer is ScrollBarRender


# -- the notice for a terminal too small ----------------------------------------------------------------------
def test_the_room_message_fits_every_size_down_to_20x5():
    for width in range(20, 61):
        for height in range(5, 17):
            lines = room_message(width, height).split("\n")
            assert len(lines) <= height and all(len(line) <= width for line in lines), (width, height, lines)
            assert "60x16" in " ".join(lines), (width, height)
    assert "this one is 40x10" in " ".join(room_message(40, 10).split())


@pytest.mark.parametrize("size", [(20, 5), (40, 10)], ids=["20x5", "40x10"])
async def test_the_too_small_notice_is_whole_on_screen(size):
    app = NktuiApp(RunConfig(device="cpu", steps=10**6), paused=True)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.has_class("-too-small"), "the notice")
        await pilot.pause(0.2)
        notice = app.query_one(TooSmall)
        assert tuple(notice.outer_size) == size
        shown = widget_text(notice)
        for line in room_message(*size).split("\n"):
            assert line in shown, (line, shown)
        assert f"{size[0]}x{size[1]}" in " ".join(shown.split())
        await pilot.press("q")
    assert app.return_code == 0


def test_the_ascii_driver_writes_only_ascii(monkeypatch, ascii_mode):
    from textual.drivers.linux_driver import LinuxDriver

    written: list[str] = []
    monkeypatch.setattr(LinuxDriver, "write", lambda self, data: written.append(data))
    driver = ascii_terminal.driver_class(LinuxDriver)
    assert issubclass(driver, LinuxDriver) and driver is not LinuxDriver
    driver.write(object.__new__(driver), "\x1b[1m╭─ Config ─╮ ▼ ⣀⠔ …\x1b[0m")
    assert written == ["\x1b[1m+- Config -+ v .. ~\x1b[0m"]
    charset.set_ascii(False)
    assert ascii_terminal.driver_class(LinuxDriver) is LinuxDriver
