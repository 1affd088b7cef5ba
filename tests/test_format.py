"""The UI's pure helpers: number and chart formatting (format.py), half-block heat maps (heatmap.py), the loss plot's
binning, smoothing and ticks (loss_plot.py) and the status bar's fitting. No app, no trainer: milliseconds."""

from __future__ import annotations

import math
import re

import pytest
from rich.color import Color
from rich.text import Text
from textual.color import Color as TextualColor
from textual.markup import to_content

from nktui.render.format import (
    RATIO_HIGH,
    RATIO_LOW,
    SPARK_CHARS,
    lr_text,
    number,
    rate,
    ratio_style,
    ratio_text,
    shape_text,
    sparkline,
)
from nktui.render.heatmap import (
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    abs_max,
    diverging,
    grayscale,
    render,
    render_text,
    scale_legend,
    tile,
)
from nktui.run.history import Point
from nktui.ui.widgets.loss_plot import LEGEND, bin_points, centred_mean, step_ticks
from nktui.ui.widgets.status_bar import fit


# -- number ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, digits, text",
    [
        (None, 3, "-"),
        (math.nan, 3, "nan"),
        (math.inf, 3, "inf"),
        (-math.inf, 3, "-inf"),
        (0.0, 3, "0"),
        (0.1234, 3, "0.123"),
        (0.5, 3, "0.5"),
        (12.345, 3, "12.3"),
        (2.33374, 4, "2.334"),
        (-0.25, 2, "-0.25"),
        (1.234e-5, 3, "1.23e-05"),
        (123456.0, 3, "1.23e+05"),
        # a healthy update:weight ratio between 1e-3 and 1e-2 keeps its digits (it used to print as "0")
        (0.0024, 2, "0.0024"),
        (0.00123, 3, "0.00123"),
        (0.001, 2, "0.001"),
        (0.00099, 2, "9.9e-04"),
    ],
)
def test_number(value, digits, text):
    assert number(value, digits) == text


@pytest.mark.parametrize("digits", [2, 3, 4])
def test_number_is_short_and_close_over_every_magnitude(digits):
    for exponent in range(-12, 12):
        for mantissa in (1.0, 2.5, 9.99, -3.7):
            value = mantissa * 10.0**exponent
            text = number(value, digits)
            assert len(text) <= 10, (value, text)
            assert float(text) == pytest.approx(value, rel=10 ** (1 - digits)), (value, digits, text)


def test_number_never_rounds_a_nonzero_value_to_zero():
    for value in (0.0049, 0.0011, 0.00051, 1e-9, -0.0024):
        for digits in (1, 2, 3):
            assert float(number(value, digits)) != 0, (value, digits)


# -- lr_text, rate, shape_text ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "lr, text", [(0.1, "0.1"), (0.05, "0.05"), (1e-3, "0.001"), (3e-5, "3e-05"), (0.2, "0.2"), (1.0, "1")]
)
def test_lr_text_reads_back_as_the_same_rate(lr, text):
    assert lr_text(lr) == text
    assert float(lr_text(lr)) == lr


@pytest.mark.parametrize(
    "samples, text", [(None, "-"), (0.4, "0"), (980.0, "980"), (1500.0, "1.5k"), (25_000.0, "25k"), (2.5e6, "2.5M")]
)
def test_rate(samples, text):
    assert rate(samples) == text


def test_shape_text():
    assert shape_text(()) == "scalar"
    assert shape_text((10,)) == "10"
    assert shape_text((10, 64)) == "10x64"
    assert shape_text((16, 1, 3, 3)) == "16x1x3x3"


# -- sparkline -----------------------------------------------------------------------------------------------------------------
def test_sparkline_scales_to_the_largest_bin():
    assert sparkline([0, 1, 2, 4, 8]) == " ▁▂▄█"
    assert sparkline([5, 5]) == "██"


def test_sparkline_shows_every_nonempty_bin():
    line = sparkline([1, 1000, 0, 2])
    assert line[0] == SPARK_CHARS[1] and line[1] == "█" and line[2] == " " and line[3] == SPARK_CHARS[1]


def test_sparkline_of_nothing():
    assert sparkline([]) == ""
    assert sparkline([0, 0, 0]) == "   "


def test_sparkline_rebins_to_the_width_keeping_the_shape():
    counts = [0] * 8 + [10] * 8  # 16 bins: an empty left half, a full right half
    line = sparkline(counts, width=4)
    assert line == "  ██"
    assert len(sparkline(list(range(16)), width=10)) == 10
    assert sparkline([1, 2, 3], width=10) == sparkline([1, 2, 3])  # never stretched


# -- the update:weight band --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ratio, style",
    [
        (math.nan, "bold red"),
        (math.inf, "bold red"),
        (0.0, "blue"),
        (RATIO_LOW / 2, "blue"),
        (RATIO_LOW, "green"),
        (1e-3, "green"),
        (RATIO_HIGH, "green"),
        (RATIO_HIGH * 2, "bold yellow"),
        (RATIO_HIGH * 10, "bold yellow"),
        (RATIO_HIGH * 11, "bold red"),
    ],
)
def test_ratio_style(ratio, style):
    assert ratio_style(ratio) == style


def test_ratio_text_carries_the_number_and_the_colour():
    text = ratio_text(0.0024)
    assert isinstance(text, Text)
    assert text.plain == "0.0024"
    assert str(text.style) == "green"


# -- heat maps ------------------------------------------------------------------------------------------------------------------------
def test_diverging_colours():
    colour = diverging(2.0)
    assert colour(0.0) == NEUTRAL
    assert colour(2.0) == POSITIVE and colour(50.0) == POSITIVE  # saturates
    assert colour(-2.0) == NEGATIVE and colour(-50.0) == NEGATIVE
    half = colour(1.0)
    assert all(min(n, p) <= h <= max(n, p) for n, h, p in zip(NEUTRAL, half, POSITIVE))
    assert half not in (NEUTRAL, POSITIVE)
    assert colour(math.nan) == (255, 255, 0) and colour(math.inf) == (255, 255, 0)
    assert diverging(0.0)(5.0) == NEUTRAL  # an all-zero tensor: no division by zero


def test_grayscale_colours():
    colour = grayscale(0.0, 10.0)
    assert colour(0.0) == (0, 0, 0)
    assert colour(10.0) == (255, 255, 255)
    assert colour(5.0) == (128, 128, 128)
    assert colour(-3.0) == (0, 0, 0) and colour(30.0) == (255, 255, 255)
    assert colour(math.nan) == (0, 0, 0)
    assert grayscale(1.0, 1.0)(1.0) == (0, 0, 0)  # a constant image: no division by zero


def test_abs_max_is_shared_and_finite():
    assert abs_max([[1.0, -3.0]], [[2.0, math.nan, -math.inf]]) == 3.0
    assert abs_max(None, [[-0.5]]) == 0.5
    assert abs_max() == 0.0
    assert abs_max([[math.nan]]) == 0.0


def test_render_uses_two_pixels_per_cell():
    grid = [[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0], [0.5, 0.5, 0.5]]  # 3 rows: the last is drawn over the background
    colour = diverging(1.0)
    lines = render(grid, colour)
    assert [line.plain for line in lines] == ["▀▀▀", "▀▀▀"]
    first = lines[0].spans[0].style
    assert first.color == Color.from_rgb(*NEGATIVE) and first.bgcolor == Color.from_rgb(*POSITIVE)
    middle = lines[0].spans[1].style
    assert middle.color == Color.from_rgb(*NEUTRAL) and middle.bgcolor == Color.from_rgb(*NEUTRAL)
    odd = lines[1].spans[0].style
    assert odd.color == Color.from_rgb(*colour(0.5)) and odd.bgcolor is None
    assert render_text(grid, colour).plain == "▀▀▀\n▀▀▀"
    assert render([], colour) == []


def test_tile_wraps_pictures_with_their_labels():
    picture = [Text("▀▀▀"), Text("▀▀▀")]  # 3 columns, 2 lines
    out = tile([picture] * 5, [str(i) for i in range(5)], width=11)  # 3 per row: 3 + 1 + 3 + 1 + 3 = 11
    lines = out.plain.split("\n")
    assert lines[:3] == ["▀▀▀ ▀▀▀ ▀▀▀", "▀▀▀ ▀▀▀ ▀▀▀", " 0   1   2 "]
    assert lines[3:6] == ["▀▀▀ ▀▀▀", "▀▀▀ ▀▀▀", " 3   4 "]
    assert tile([], [], width=80).plain == ""
    narrow = tile([picture] * 2, ["a", "b"], width=1).plain.split("\n")  # always at least one per row
    assert narrow[:3] == ["▀▀▀", "▀▀▀", " a "]


def test_scale_legend_names_the_symmetric_scale():
    plain = scale_legend(0.135).plain
    assert "-0.135" in plain and "+0.135" in plain and " 0 " in plain


# -- the loss plot's helpers --------------------------------------------------------------------------------------------------------
def raw(values: list[float], start: int = 1) -> list[Point]:
    return [Point(start + i, start + i, v, v, v, 1) for i, v in enumerate(values)]


def test_bin_points_keeps_few_points_as_they_are():
    points = raw([3.0, 2.0, 1.0])
    assert bin_points(points, 10) == ([1, 2, 3], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0])
    assert bin_points(points, 0)[0] == [1, 2, 3]
    assert bin_points([], 10) == ([], [], [], [])


def test_bin_points_groups_many_points_over_equal_step_ranges():
    values = [float(i % 7) for i in range(1000)]
    xs, means, lows, highs = bin_points(raw(values), 50)
    assert 1 < len(xs) <= 50
    assert xs == sorted(xs) and 1 <= xs[0] and xs[-1] <= 1000
    assert all(lo <= m <= hi for lo, m, hi in zip(lows, means, highs))
    assert min(lows) == 0.0 and max(highs) == 6.0
    assert sum(means) / len(means) == pytest.approx(sum(values) / len(values), rel=0.02)


def test_bin_points_weights_buckets_by_their_count():
    # one old bucket of 100 points with mean 1, then 100 raw points of 3: the overall mean is 2, not 3
    points = [Point(1, 100, 0.0, 1.0, 5.0, 100)] + raw([3.0] * 100, start=101)
    xs, means, lows, highs = bin_points(points, 1)
    assert len(xs) == 1
    assert means == [pytest.approx(2.0)]
    assert lows == [0.0] and highs == [5.0]


def test_centred_mean():
    assert centred_mean([1.0, 5.0, 2.0], 0) == [1.0, 5.0, 2.0]
    assert centred_mean([0.0, 0.0, 3.0, 0.0, 0.0], 1) == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert centred_mean([], 3) == []
    assert centred_mean([4.0] * 10, 3) == [4.0] * 10
    ramp = [float(i) for i in range(20)]
    smooth = centred_mean(ramp, 3)
    assert len(smooth) == 20
    assert smooth[3:17] == pytest.approx(ramp[3:17])  # centred: no lag on a trend
    assert smooth[0] == pytest.approx(1.5)  # the window shrinks at the ends: [0, 1, 2, 3]


@pytest.mark.parametrize(
    "first, last, ticks",
    [
        (1, 3, [1, 2, 3]),
        (1, 400, [100, 200, 300, 400]),
        (0, 1000, [0, 200, 400, 600, 800, 1000]),
        (5, 5, [5]),
        (1, 22, [5, 10, 15, 20]),
    ],
)
def test_step_ticks(first, last, ticks):
    assert step_ticks(first, last) == ticks


def test_step_ticks_are_round_and_inside_the_range():
    for first, last in [(1, 7), (3, 999), (1, 123_456), (50_000, 1_000_000), (17, 18)]:
        ticks = step_ticks(first, last)
        assert ticks and all(first <= t <= last for t in ticks), (first, last, ticks)
        assert all(isinstance(t, int) for t in ticks)
        gaps = {b - a for a, b in zip(ticks, ticks[1:])}
        assert len(gaps) <= 1
        if gaps:
            gap = gaps.pop()
            assert gap / 10 ** math.floor(math.log10(gap)) in (1, 2, 5)
        assert len(ticks) <= 11


def test_legend_colours_are_ones_textual_knows():
    """The legend is Textual markup: a colour name Textual cannot parse is silently dropped (grey50 was)."""
    content = to_content(LEGEND)
    styles = [str(span.style) for span in content.spans]
    assert styles == ["gray", "cyan", "red", "green"]
    for style in styles:
        TextualColor.parse(style)
    assert re.sub(r"\s+", " ", content.plain) == "Loss ▪raw ▪smooth ●val loss ●val acc→"


# -- the status bar's fitting ------------------------------------------------------------------------------------------------------------
def test_fit_drops_the_lowest_priorities_first():
    items = [(" paused ", "bold", 9), ("step 3/10", "", 9), ("epoch 1", "", 4), ("lr 0.1", "bold", 9), ("cpu", "dim", 2)]
    assert [t for t, _ in fit(items, 200)] == [" paused ", "step 3/10", "epoch 1", "lr 0.1", "cpu"]
    assert [t for t, _ in fit(items, 34)] == [" paused ", "step 3/10", "epoch 1", "lr 0.1"]
    assert [t for t, _ in fit(items, 30)] == [" paused ", "step 3/10", "lr 0.1"]
    narrow = fit(items, 10)
    assert sum(len(t) + 1 for t, _ in narrow) <= 10
