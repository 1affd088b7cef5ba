"""A line chart drawn in braille dots, straight into lines of Rich segments: the live loss plot's renderer.

Why not plotext (which the what-if and landscape screens use): the loss plot redraws while the run trains, and its
drawing holds the GIL the training loop needs (see `nktui.ui.pacing`). plotext builds ANSI text that Textual then
parses again; drawing the dots straight into segments costs a fraction of that (the README gives the figures).

A cell holds 2x4 braille dots, so a WxH plot area is a 2W x 4H dot grid. Lines join consecutive points dot by dot;
a cell takes the colour of the last series that touched it. `Marks` (a character a point, e.g. `•`) draw over
the dots. The chart around the area: y labels on the left (and on the right for a second axis), a frame with
ticks, x labels under it and an axis title.

In ASCII mode (`nktui.render.charset`) a cell with dots is one character by where its dots are: `'` at the top, `-` in
the middle, `.` at the bottom, `|` for a line that crosses the cell upwards; the frame is `+`, `-` and `|`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style

from nktui.render import charset

# Braille dot bits, by (column 0-1, row 0-3) within a cell (Unicode's numbering: dots 1-8).
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
BRAILLE_BLANK = 0x2800


def _ascii_cell(mask: int) -> str:
    """The ASCII character for a cell's dot mask: by the rows its dots are in (0 at the top)."""
    rows = [r for r in range(4) if mask & (_DOT[0][r] | _DOT[1][r])]
    if not rows:
        return " "
    low, high = min(rows), max(rows)
    if high - low >= 2:
        return "|"
    centre = (low + high) / 2
    return "'" if centre < 1 else "-" if centre <= 2 else "."


ASCII_CELLS = tuple(_ascii_cell(mask) for mask in range(256))
# The frame: corners, sides, a tick on the left axis, on the right one, on the x axis.
UNICODE_FRAME = ("┌", "┐", "└", "┘", "─", "│", "┤", "├", "┬")
ASCII_FRAME = ("+", "+", "+", "+", "-", "|", "+", "+", "+")


@dataclass(frozen=True)
class Series:
    xs: Sequence[float]
    ys: Sequence[float]
    style: Style
    mark: str | None = None  # None: a braille line; else this character at each cell the line passes
    right: bool = False  # on the right axis
    join: bool = True  # marks: along the line through the points, or (False) at the points only


@dataclass(frozen=True)
class Axis:
    low: float
    high: float
    log: bool = False

    def fraction(self, value: float) -> float:
        if self.log:
            return (math.log10(value) - math.log10(self.low)) / ((math.log10(self.high) - math.log10(self.low)) or 1.0)
        return (value - self.low) / ((self.high - self.low) or 1.0)

    def value(self, fraction: float) -> float:
        if self.log:
            lo, hi = math.log10(self.low), math.log10(self.high)
            return 10 ** (lo + fraction * (hi - lo))
        return self.low + fraction * (self.high - self.low)


def fit_axis(values: Sequence[float], log: bool = False) -> Axis:
    """The data's range (a flat series gets some room; log: positive values only)."""
    values = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
    if not values:
        return Axis(0.1, 1.0, log) if log else Axis(0.0, 1.0)
    lo, hi = min(values), max(values)
    if hi == lo:  # one point or a flat line: room around it, at its own scale (a loss of 4e-4 is not 0.5 wide)
        pad = abs(lo) * 0.1 if lo else 0.5
        lo, hi = (lo / 2, hi * 2) if log else (lo - pad, hi + pad)
    return Axis(lo, hi, log)


class Canvas:
    """A width x height grid of cells, each a braille dot mask and a style, or a mark character."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.masks = [[0] * width for _ in range(height)]
        self.styles: list[list[Style | None]] = [[None] * width for _ in range(height)]
        self.marks: dict[tuple[int, int], tuple[str, Style]] = {}

    def line(self, points: Sequence[tuple[float, float]], style: Style) -> None:
        """Join (x, y) points given as fractions of the area (0..1, y up) with dots."""
        for x, y in _walk(points, self.width * 2 - 1, self.height * 4 - 1):
            if 0 <= x < self.width * 2 and 0 <= y < self.height * 4:
                row, col = y >> 2, x >> 1
                self.masks[row][col] |= _DOT[x & 1][y & 3]
                self.styles[row][col] = style

    def mark_line(self, points: Sequence[tuple[float, float]], char: str, style: Style) -> None:
        """Put `char` in every cell the line through the points passes (a single point: its cell only)."""
        for col, row in _walk(points, self.width - 1, self.height - 1):
            if 0 <= col < self.width and 0 <= row < self.height:
                self.marks[col, row] = (char, style)

    def rows(self) -> list[list[Segment]]:
        """A segment a drawn cell, one for each run of blank cells. (Not one per run of same-styled dots: an SVG
        screenshot, rendered with a fallback font for braille, then lets a long run drift out of its columns.)"""
        ascii_cells = ASCII_CELLS if charset.ascii_mode() else None
        out = []
        for row in range(self.height):
            segments, blanks = [], 0
            masks, styles = self.masks[row], self.styles[row]
            for col in range(self.width):
                mark = self.marks.get((col, row))
                if mark is None and not masks[col]:
                    blanks += 1
                    continue
                if blanks:
                    segments.append(Segment(" " * blanks))
                    blanks = 0
                if mark is not None:
                    segments.append(Segment(*mark))
                elif ascii_cells is not None:
                    segments.append(Segment(ascii_cells[masks[col]], styles[col]))
                else:
                    segments.append(Segment(chr(BRAILLE_BLANK + masks[col]), styles[col]))
            if blanks:
                segments.append(Segment(" " * blanks))
            out.append(segments)
        return out


def _walk(points: Sequence[tuple[float, float]], w: int, h: int) -> Iterator[tuple[int, int]]:
    """The grid positions (0..w, 0..h, y down) on the straight lines joining the points (fractions, y up)."""
    grid = [(round(x * w), round((1 - y) * h)) for x, y in points]
    if len(grid) == 1:
        yield grid[0]
    for (x0, y0), (x1, y1) in zip(grid, grid[1:]):
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(steps + 1):
            yield x0 + (x1 - x0) * i // steps, y0 + (y1 - y0) * i // steps


def tick_labels(axis: Axis, fractions: Sequence[float]) -> list[str]:
    """Labels for the values at these fractions of the axis, with as many decimals as their spacing needs."""
    values = [axis.value(f) for f in fractions]
    if axis.log or max(abs(v) for v in values) >= 1e4 or len(values) < 2:
        return [f"{v:.3g}" for v in values]
    spacing = abs(values[0] - values[1]) or 1.0
    decimals = min(max(1 - math.floor(math.log10(spacing)), 0), 4)
    return [f"{v:.{decimals}f}" for v in values]


def chart(
    width: int,
    height: int,
    series: Sequence[Series],
    *,
    x_axis: Axis,
    y_axis: Axis,
    right_axis: Axis | None = None,
    x_ticks: Sequence[float] = (),
    x_title: str = "",
    cursor: float | None = None,
    cursor_style: Style | None = None,
    title: str = "",
    label_style: Style | None = None,
    frame_style: Style | None = None,
) -> list[list[Segment]]:
    """The whole chart as `height` lines of segments, each `width` cells wide. Labels and the frame are segments of
    their own (`label_style`, `frame_style`), so that every piece sits at its own column in any renderer."""
    y_rows = max(height - 4, 1)  # the frame's top and bottom, the x labels, the x title
    fractions = [1 - i / (y_rows - 1) for i in range(y_rows)] if y_rows > 1 else [0.5]
    label_rows = sorted(range(y_rows - 1, -1, -2))  # a label every other row, from the bottom one up
    left = dict(zip(label_rows, tick_labels(y_axis, [fractions[r] for r in label_rows])))
    right = dict(zip(label_rows, tick_labels(right_axis, [fractions[r] for r in label_rows]))) if right_axis else {}
    left_w = max(map(len, left.values()))
    right_w = max(map(len, right.values())) if right else 0
    inner = max(width - left_w - right_w - 2, 1)  # the frame's two sides
    canvas = Canvas(inner, y_rows)
    for s in series:
        axis = right_axis if s.right and right_axis else y_axis
        points = [(x_axis.fraction(x), axis.fraction(y)) for x, y in zip(s.xs, s.ys)
                  if math.isfinite(y) and (y > 0 or not axis.log)]
        if not points:
            continue
        if s.mark is None:
            canvas.line(points, s.style)
        elif s.join:
            canvas.mark_line(points, s.mark, s.style)
        else:
            for point in points:
                canvas.mark_line([point], s.mark, s.style)
    if cursor is not None:
        x = x_axis.fraction(cursor)
        canvas.line([(x, 0.0), (x, 1.0)], cursor_style or Style())
    body = canvas.rows()
    if title and not any(s.xs for s in series):
        start = max((inner - len(title)) // 2, 0)
        body[y_rows // 2] = [Segment(" " * start), Segment(title[:inner], label_style),
                             Segment(" " * max(inner - start - len(title), 0))]

    def gap(n: int) -> Segment:
        return Segment(" " * n)

    top_left, top_right, bottom_left, bottom_right, across, side, left_tick, right_tick, x_tick = (
        ASCII_FRAME if charset.ascii_mode() else UNICODE_FRAME)
    lines: list[list[Segment]] = [[gap(left_w), Segment(top_left + across * inner + top_right, frame_style),
                                   gap(right_w)]]
    for r in range(y_rows):
        line = [Segment(left.get(r, "").rjust(left_w), label_style), Segment(left_tick if r in left else side, frame_style)]
        line += body[r]
        line.append(Segment(right_tick if r in right else side, frame_style))
        line.append(Segment(right.get(r, "").ljust(right_w), label_style))
        lines.append(line)
    bottom = [across] * inner
    placed: list[tuple[int, str]] = []  # (column, text) of the x labels, left to right, never overlapping
    for t in sorted(x_ticks):
        f = x_axis.fraction(t)
        if not 0 <= f <= 1:
            continue
        column = round(f * (inner - 1))
        bottom[column] = x_tick
        text = str(int(t)) if float(t).is_integer() else f"{t:.3g}"
        start = min(max(column - len(text) // 2, 0), max(inner - len(text), 0))
        if not placed or start > placed[-1][0] + len(placed[-1][1]):
            placed.append((start, text))
    lines.append([gap(left_w), Segment(bottom_left + "".join(bottom) + bottom_right, frame_style), gap(right_w)])
    labels, at = [gap(left_w + 1)], 0
    for start, text in placed:
        labels += [gap(start - at), Segment(text, label_style)]
        at = start + len(text)
    lines.append(labels)
    pad = max(width - len(x_title), 0)
    lines.append([gap(pad // 2), Segment(x_title, label_style), gap(pad - pad // 2)])
    return [_fit([seg for seg in line if seg.text], width) for line in lines[:height]]


def _fit(line: list[Segment], width: int) -> list[Segment]:
    """Exactly `width` cells: cropped or padded with spaces."""
    length = Segment.get_line_length(line)
    if length > width:
        return Segment.adjust_line_length(line, width)
    if length < width:
        return [*line, Segment(" " * (width - length))]
    return line
