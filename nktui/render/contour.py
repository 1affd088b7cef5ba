"""A loss surface drawn as a contour map in half blocks: colour bands between level values, level lines, the
descent path and the current point on top.

Pure Python on plain lists (no Textual, no tensors). The computed grid (31 x 31 by default) is interpolated
bilinearly to the pixels available, keeping pixels square (a half block is one column wide and half a line high).
Levels are spaced evenly in log(loss - min + 1% of the range), so the bands are finer near the minimum, where the
descent happens. Row 0 of the drawing is the top of the plane: the largest y offset.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.color import Color
from rich.style import Style
from rich.text import Text

from nktui.render.heatmap import RGB, render_colours

if TYPE_CHECKING:
    from nktui.protocol.records import Grid

LEVELS = 10
# Dark blue (low loss) through teal and green to yellow (high loss): readable on a dark terminal, and in 256 colours.
PALETTE: tuple[RGB, ...] = (
    (28, 20, 90), (40, 52, 140), (33, 92, 170), (22, 128, 170), (30, 158, 150),
    (60, 180, 120), (120, 198, 84), (180, 210, 60), (225, 215, 60), (250, 235, 120),
)
LINE_DARKEN = 0.55  # level lines: the band colour at this brightness
PATH_COLOUR: RGB = (255, 255, 255)
NOW_COLOUR: RGB = (255, 60, 200)


def levels(values: Sequence[float], count: int = LEVELS) -> list[float]:
    """count + 1 level values from the smallest to the largest finite value, log-spaced above the minimum."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return [0.0, 1.0]
    low, high = min(finite), max(finite)
    if high <= low:
        return [low, low + 1e-12]
    eps = 0.01 * (high - low)
    top = math.log((high - low) + eps)
    bottom = math.log(eps)
    return [low - eps + math.exp(bottom + (top - bottom) * k / count) for k in range(count + 1)]


def band(value: float, edges: Sequence[float]) -> int:
    """Index of the band holding value (0 .. len(edges) - 2); non-finite values go to the top band."""
    if not math.isfinite(value):
        return len(edges) - 2
    return min(max(bisect.bisect_right(edges, value) - 1, 0), len(edges) - 2)


def band_colour(index: int, count: int) -> RGB:
    return PALETTE[min(len(PALETTE) - 1, index * len(PALETTE) // max(count, 1))]


def resample(grid: Grid, rows: int, cols: int) -> list[list[float]]:
    """Bilinear interpolation of grid (ys ascending down its rows) to rows x cols, flipped so row 0 is the top."""
    n_rows, n_cols = len(grid), len(grid[0])
    out = []
    for r in range(rows):
        fy = (rows - 1 - r) / max(rows - 1, 1) * (n_rows - 1)
        y0 = min(int(fy), n_rows - 2) if n_rows > 1 else 0
        ty = fy - y0 if n_rows > 1 else 0.0
        line = []
        for c in range(cols):
            fx = c / max(cols - 1, 1) * (n_cols - 1)
            x0 = min(int(fx), n_cols - 2) if n_cols > 1 else 0
            tx = fx - x0 if n_cols > 1 else 0.0
            y1, x1 = min(y0 + 1, n_rows - 1), min(x0 + 1, n_cols - 1)
            top = grid[y0][x0] * (1 - tx) + grid[y0][x1] * tx
            bottom = grid[y1][x0] * (1 - tx) + grid[y1][x1] * tx
            line.append(top * (1 - ty) + bottom * ty)
        out.append(line)
    return out


def side_for(width: int, height: int, resolution: int) -> int:
    """Pixels per side of a square map that fits width columns and height lines (even, at least the grid's)."""
    side = min(width, 2 * height)
    return max(side - side % 2, 2)


def draw_surface(
    losses: Grid,
    span: float,
    path: Sequence[tuple[float, float]],
    side: int,
    edges: Sequence[float] | None = None,
) -> list[Text]:
    """side x side pixels (side // 2 lines of `side` half blocks): bands, level lines, then the path as `·` dots
    joined point to point and `•` at each recorded step, and `◆` at the centre (the weights now)."""
    values = resample(losses, side, side)
    edges = list(edges) if edges is not None else levels([v for row in losses for v in row])
    count = len(edges) - 1
    bands = [[band(v, edges) for v in row] for row in values]
    pixels: list[list[RGB]] = []
    for r, row in enumerate(bands):
        line = []
        for c, k in enumerate(row):
            colour = band_colour(k, count)
            right = row[c + 1] if c + 1 < side else k
            below = bands[r + 1][c] if r + 1 < side else k
            if right != k or below != k:  # a level line: the band changes at this pixel
                colour = tuple(round(v * LINE_DARKEN) for v in colour)  # type: ignore[assignment]
            line.append(colour)
        pixels.append(line)
    lines = render_colours(pixels)
    marks = _path_cells(path, span, side)
    for (line_index, col), (char, colour) in marks.items():
        text = lines[line_index]
        top = pixels[2 * line_index][col]
        bottom = pixels[2 * line_index + 1][col] if 2 * line_index + 1 < side else top
        background = tuple((a + b) // 2 for a, b in zip(top, bottom))
        style = Style(color=Color.from_rgb(*colour), bgcolor=Color.from_rgb(*background), bold=True)
        lines[line_index] = text[:col] + Text(char, style=style) + text[col + 1 :]
    return lines


def to_cell(x: float, y: float, span: float, side: int) -> tuple[int, int] | None:
    """(line, column) of the character cell holding offsets (x, y), or None outside the plane."""
    if not (math.isfinite(span) and math.isfinite(x) and math.isfinite(y)):
        return None
    if span <= 0 or abs(x) > span * 1.0001 or abs(y) > span * 1.0001:
        return None
    col = round((x + span) / (2 * span) * (side - 1))
    row = round((span - y) / (2 * span) * (side - 1))
    return row // 2, col


def _path_cells(path: Sequence[tuple[float, float]], span: float, side: int) -> dict[tuple[int, int], tuple[str, RGB]]:
    marks: dict[tuple[int, int], tuple[str, RGB]] = {}
    cells = [to_cell(x, y, span, side) for x, y in path]
    for a, b in zip(cells, cells[1:]):  # dots between consecutive points
        if a is None or b is None:
            continue
        steps = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
        for k in range(1, steps):
            cell = (round(a[0] + (b[0] - a[0]) * k / steps), round(a[1] + (b[1] - a[1]) * k / steps))
            marks.setdefault(cell, ("·", PATH_COLOUR))
    for cell in cells[:-1]:
        if cell is not None:
            marks[cell] = ("•", PATH_COLOUR)
    if cells and cells[-1] is not None:
        marks[cells[-1]] = ("◆", NOW_COLOUR)
    return marks


def legend(edges: Sequence[float]) -> list[Text]:
    """One line per band, lowest loss at the bottom: a swatch and the band's lower level."""
    count = len(edges) - 1
    labels = level_labels(edges)
    lines = []
    for k in reversed(range(count)):
        line = Text()
        line.append("██", style=Style(color=Color.from_rgb(*band_colour(k, count))))
        line.append(f" {labels[k]}")
        lines.append(line)
    return lines


def level_labels(edges: Sequence[float]) -> list[str]:
    """The level values with just enough decimals that neighbouring levels read differently."""
    gaps = [b - a for a, b in zip(edges, edges[1:]) if b > a]
    if not gaps or max(abs(e) for e in edges) >= 1e5:
        return [f"{e:.3g}" for e in edges]
    decimals = min(max(math.ceil(-math.log10(min(gaps))), 0) + 1, 8)
    return [f"{e:.{decimals}f}" for e in edges]


def outside(path: Sequence[tuple[float, float]], span: float) -> int:
    """How many path points lie outside the plane shown."""
    return sum(1 for x, y in path if abs(x) > span * 1.0001 or abs(y) > span * 1.0001)
