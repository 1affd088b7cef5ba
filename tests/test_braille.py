"""The braille chart behind the loss plot (nktui.render.braille): dots where the data is, axes that say the truth."""

from __future__ import annotations

import math

from rich.segment import Segment
from rich.style import Style

from nktui.render.braille import Axis, Canvas, Series, chart, fit_axis, tick_labels


def text(line: list[Segment]) -> str:
    return "".join(segment.text for segment in line)


def test_a_canvas_cell_holds_2x4_dots_numbered_as_unicode_does():
    canvas = Canvas(1, 1)
    canvas.line([(0.0, 1.0)], Style())  # top left dot: dot 1
    assert text(canvas.rows()[0]) == "\u2801"
    canvas = Canvas(1, 1)
    canvas.line([(1.0, 0.0)], Style())  # bottom right dot: dot 8
    assert text(canvas.rows()[0]) == "\u2880"


def test_a_line_joins_its_points_dot_by_dot():
    canvas = Canvas(2, 1)  # a 4x4 dot grid
    canvas.line([(0.0, 0.0), (1.0, 1.0)], Style())  # the rising diagonal: (0,3) (1,2) (2,1) (3,0)
    left, right = text(canvas.rows()[0])
    assert ord(left) - 0x2800 == 0x40 | 0x20  # dot 7 (col 0, row 3) and dot 6 (col 1, row 2)
    assert ord(right) - 0x2800 == 0x02 | 0x08  # dot 2 (col 0, row 1) and dot 4 (col 1, row 0)


def test_marks_go_at_the_points_or_along_the_line_between_them():
    canvas = Canvas(5, 1)
    canvas.mark_line([(0.0, 0.5), (1.0, 0.5)], "•", Style())
    assert text(canvas.rows()[0]) == "•••••"
    canvas = Canvas(5, 1)
    for point in [(0.0, 0.5), (1.0, 0.5)]:
        canvas.mark_line([point], "•", Style())
    assert text(canvas.rows()[0]) == "•   •"


def test_the_chart_fills_exactly_its_size_and_labels_the_data_range():
    xs = list(range(1, 101))
    ys = [math.exp(-x / 30) for x in xs]
    lines = chart(60, 14, [Series(xs, ys, Style())], x_axis=Axis(1, 100), y_axis=fit_axis(ys),
                  right_axis=Axis(0.0, 1.0), x_ticks=[20, 40, 60, 80, 100], x_title="step")
    assert len(lines) == 14
    assert all(Segment.get_line_length(line) == 60 for line in lines)
    rows = [text(line) for line in lines]
    bottom_label = rows[-4].split("┤")[0].strip()  # the plot area's last row is labelled with the minimum
    assert bottom_label == f"{min(ys):.2f}"  # labels 0.2 apart: two decimals
    assert rows[-4].rstrip().endswith("├0.00")
    assert "step" in rows[-1] and all(label in rows[-2] for label in ("20", "40", "60", "80", "100"))
    assert rows[-3].count("┬") == 5


def test_tick_labels_carry_the_decimals_their_spacing_needs():
    assert tick_labels(Axis(0.0, 1.0), [1.0, 0.5, 0.0]) == ["1.00", "0.50", "0.00"]
    assert tick_labels(Axis(2.3123, 2.3314), [1.0, 0.0]) == ["2.331", "2.312"]  # spacing 0.019: 3 decimals
    assert tick_labels(Axis(0.001, 10.0, log=True), [1.0, 0.5, 0.0]) == ["10", "0.1", "0.001"]


def test_fit_axis_gives_a_flat_series_room_and_a_log_axis_positive_values_only():
    assert fit_axis([2.0, 2.0]) == Axis(1.8, 2.2)
    low = fit_axis([4e-4])  # one point after a resume: an axis at its own scale, around it
    assert low.low < 4e-4 < low.high and low.low > 0 and low.high - low.low < 1e-3
    assert fit_axis([0.0]) == Axis(-0.5, 0.5)
    assert fit_axis([-1.0, 0.0, 0.1, 10.0], log=True) == Axis(0.1, 10.0, log=True)
    assert fit_axis([]) == Axis(0.0, 1.0)
