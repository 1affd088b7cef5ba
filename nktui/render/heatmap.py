"""Heat maps and pictures in a terminal, in every colour depth: half blocks in colour, five ANSI colours in 16,
glyphs without colour.

In colour, two pixels per character cell: each cell is `▀` with the upper pixel as its foreground colour and the
lower one as its background, so any terminal with 256 colours (Rich reduces true colour to what the terminal has)
shows a grid of R x C values in ceil(R/2) lines of C characters. `diverging` maps signed values (weights,
gradients): blue below 0, red above, dark at 0, with a symmetric scale; `grayscale` maps images. `image` draws a
picture of 1 channel (grayscale) or 3 (RGB, as CIFAR's), optionally enlarged, from channels x height x width
values. In ASCII mode (`nktui.render.charset`) there is no half block: each cell is a space on the mean of its two
pixels' colours (half the resolution down, the same size on screen).

With 16 colours (`TERM=xterm`), the smooth diverging map would be rounded to whatever standard colour is nearest,
yellow and brown included. `few_colours` uses five steps that are standard colours exactly: bright blue, blue,
grey (0), red, bright red.

Without colour (`NO_COLOR=1`): one character per value, its glyph telling the sign and the size. Under NO_COLOR
Textual turns every colour into a grey of the same brightness, and the diverging map's blue (negative) and red
(positive) come out the same grey. So where colour is off, signed grids are drawn with glyphs instead
(`shade_lines`):

    ░ ▒ ▓ █    positive, from a quarter of the scale (an eighth to three eighths) to all of it
    · - = ≡    negative, the same steps
    (space)    within an eighth of the scale of 0
    !          nan or inf

In ASCII mode the glyphs are `+ * # @` for positive values and `- ~ = %` for negative ones. Characters are about
twice as tall as wide, so small pictures (8x8 templates, 3x3 kernels) draw each value twice side by side
(`repeat=2`) to stay roughly square.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rich.color import Color
from rich.style import Style
from rich.text import Text

from nktui.render import charset

if TYPE_CHECKING:  # (a type only: drawing needs nothing of the engine)
    from nktui.protocol.records import Grid

RGB = tuple[int, int, int]

NEUTRAL: RGB = (48, 48, 48)
NEGATIVE: RGB = (40, 120, 255)
POSITIVE: RGB = (255, 70, 50)


def _lerp(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def diverging(scale: float) -> Callable[[float], RGB]:
    """Signed value -> colour, saturating at +-scale."""

    def colour(value: float) -> RGB:
        if not math.isfinite(value):
            return (255, 255, 0)  # nan and inf stand out in yellow
        t = max(-1.0, min(1.0, value / scale)) if scale > 0 else 0.0
        return _lerp(NEUTRAL, POSITIVE, t) if t >= 0 else _lerp(NEUTRAL, NEGATIVE, -t)

    return colour


def grayscale(low: float, high: float) -> Callable[[float], RGB]:
    span = (high - low) or 1.0

    def colour(value: float) -> RGB:
        t = max(0.0, min(1.0, (value - low) / span)) if math.isfinite(value) else 0.0
        level = round(255 * t)
        return (level, level, level)

    return colour


def abs_max(*grids: Grid | None) -> float:
    """The largest finite |value| over several grids: one shared scale makes them comparable."""
    values = [abs(v) for grid in grids if grid for row in grid for v in row if math.isfinite(v)]
    return max(values, default=0.0)


def render(grid: Grid, colour: Callable[[float], RGB]) -> list[Text]:
    """Lines of half blocks for a grid of values (an odd last row is drawn over the background)."""
    if charset.ascii_mode():
        return _render_ascii(grid, colour)
    lines = []
    styles: dict[tuple[RGB, RGB | None], Style] = {}
    for top_index in range(0, len(grid), 2):
        top = grid[top_index]
        bottom = grid[top_index + 1] if top_index + 1 < len(grid) else None
        line = Text()
        for i, value in enumerate(top):
            key = (colour(value), colour(bottom[i]) if bottom is not None else None)
            style = styles.get(key)
            if style is None:
                fg, bg = key
                style = Style(color=Color.from_rgb(*fg), bgcolor=Color.from_rgb(*bg) if bg else None)
                styles[key] = style
            line.append("▀", style=style)
        lines.append(line)
    return lines


def _render_ascii(grid: Grid, colour: Callable[[float], RGB]) -> list[Text]:
    """A space on the mean colour of each pair of rows (ASCII mode)."""
    lines = []
    for top_index in range(0, len(grid), 2):
        pair = grid[top_index : top_index + 2]
        line = Text()
        for i in range(len(pair[0])):
            rgbs = [colour(row[i]) for row in pair]
            mean = tuple(round(sum(c[k] for c in rgbs) / len(rgbs)) for k in range(3))
            line.append(" ", style=Style(bgcolor=Color.from_rgb(*mean)))
        lines.append(line)
    return lines


def render_text(grid: Grid, colour: Callable[[float], RGB]) -> Text:
    return Text("\n").join(render(grid, colour))


def tile(pictures: Sequence[Sequence[Text]], labels: Sequence[str], width: int, gap: int = 1) -> Text:
    """Pictures (each a list of equally long lines) side by side, wrapped to `width`, each with its label below."""
    if not pictures:
        return Text()
    cell = max(len(pictures[0][0]) if pictures[0] else 1, 1)
    per_row = max(1, (width + gap) // (cell + gap))
    out = Text()
    for start in range(0, len(pictures), per_row):
        group = pictures[start : start + per_row]
        height = max(len(p) for p in group)
        for line_index in range(height):
            for k, picture in enumerate(group):
                if k:
                    out.append(" " * gap)
                out.append_text(picture[line_index] if line_index < len(picture) else Text(" " * cell))
            out.append("\n")
        for k, label in enumerate(labels[start : start + per_row]):
            if k:
                out.append(" " * gap)
            out.append(label[:cell].center(cell), style="dim")
        out.append("\n")
    return out


def scale_legend(scale: float) -> Text:
    text = Text("scale: ")
    swatch = charset.text("██")
    text.append(swatch, style=Style(color=Color.from_rgb(*NEGATIVE)))
    text.append(f" -{scale:.3g}  ")
    text.append(swatch, style=Style(color=Color.from_rgb(*NEUTRAL)))
    text.append(" 0  ")
    text.append(swatch, style=Style(color=Color.from_rgb(*POSITIVE)))
    text.append(f" +{scale:.3g}")
    return text


def image(channels: Sequence[Grid], low: float = 0.0, high: float = 1.0, zoom: int = 1) -> list[Text]:
    """Lines of half blocks for a picture given as channels x height x width values in [low, high]: 3 channels
    are red, green and blue; any other count is drawn in grayscale from the channels' mean. Each pixel becomes a
    zoom x zoom square (a small 8x8 digit reads better twice as large)."""
    span = (high - low) or 1.0

    def level(value: float) -> int:
        return round(255 * max(0.0, min(1.0, (value - low) / span))) if math.isfinite(value) else 0

    height = len(channels[0]) if channels else 0
    width = len(channels[0][0]) if height else 0
    rows: list[list[RGB]] = []
    for r in range(height):
        if len(channels) == 3:
            row = [(level(channels[0][r][c]), level(channels[1][r][c]), level(channels[2][r][c])) for c in range(width)]
        else:
            row = []
            for c in range(width):
                gray = level(sum(ch[r][c] for ch in channels) / len(channels))
                row.append((gray, gray, gray))
        row = [pixel for pixel in row for _ in range(zoom)]
        rows.extend([row] * zoom)
    return render_colours(rows)


def render_colours(pixels: Sequence[Sequence[RGB]]) -> list[Text]:
    """Lines of half blocks for a grid of colours (an odd last row is drawn over the background)."""
    return render(pixels, _identity)  # type: ignore[arg-type]


def _identity(colour: RGB) -> RGB:
    return colour


# -- no colour: glyphs ----------------------------------------------------------------------------------------------
POSITIVE_GLYPHS = "░▒▓█"
NEGATIVE_GLYPHS = "·-=≡"
ZERO_GLYPH = " "
NONFINITE_GLYPH = "!"


def glyph(value: float, scale: float) -> str:
    """The character of one value on a symmetric scale of +-scale."""
    if not math.isfinite(value):
        return NONFINITE_GLYPH
    t = max(-1.0, min(1.0, value / scale)) if scale > 0 else 0.0
    if abs(t) < 0.125:
        return ZERO_GLYPH
    level = min(3, int(abs(t) * 4 - 0.5))  # 0.125..0.375 -> 0, .. 0.625 -> 1, .. 0.875 -> 2, above -> 3
    positive, negative = glyph_sets()
    return (positive if t > 0 else negative)[max(level, 0)]


def glyph_sets() -> tuple[str, str]:
    """(positive, negative) glyphs from small to large: blocks and dashes, or ASCII."""
    if charset.ascii_mode():
        return charset.ASCII_POSITIVE, charset.ASCII_NEGATIVE
    return POSITIVE_GLYPHS, NEGATIVE_GLYPHS


def shade_lines(grid: Grid, scale: float, repeat: int = 1) -> list[Text]:
    """One line of glyphs per row of the grid, each value `repeat` characters wide."""
    return [Text("".join(glyph(v, scale) * repeat for v in row)) for row in grid]


def shade_text(grid: Grid, scale: float, repeat: int = 1) -> Text:
    return Text("\n").join(shade_lines(grid, scale, repeat))


def shade_legend(scale: float) -> Text:
    """`scale: ≡ = - · -0.5  (blank) 0  ░ ▒ ▓ █ +0.5`: the glyphs from the most negative to the most positive"""
    positive, negative = glyph_sets()
    return Text(f"scale: {' '.join(reversed(negative))} -{scale:.3g}  (blank) 0  {' '.join(positive)} +{scale:.3g}"
                f"  ({NONFINITE_GLYPH} nan/inf)")


# -- 16 colours: five standard ANSI colours -------------------------------------------------------------------------
FEW_COLOURS: tuple[tuple[float, RGB], ...] = (  # (upper bound of t = value / scale, colour), from -1 up
    (-0.5, (85, 85, 255)),  # bright blue
    (-0.15, (0, 0, 170)),  # blue
    (0.15, (85, 85, 85)),  # bright black: about 0
    (0.5, (170, 0, 0)),  # red
    (math.inf, (255, 85, 85)),  # bright red
)
FEW_NONFINITE: RGB = (255, 255, 85)  # bright yellow


def few_colours(scale: float):
    """Signed value -> one of five standard ANSI colours (exact, so a 16-colour terminal shows just these)."""

    def colour(value: float) -> RGB:
        if not math.isfinite(value):
            return FEW_NONFINITE
        t = value / scale if scale > 0 else 0.0
        return next(rgb for bound, rgb in FEW_COLOURS if t < bound)

    return colour


def few_colours_legend(scale: float) -> Text:
    text = Text("scale: ")
    half = scale / 2
    labels = (f"below -{half:.2g}", "negative", "about 0", "positive", f"above +{half:.2g}")
    for (_, rgb), label in zip(FEW_COLOURS, labels):
        text.append(charset.text("██"), style=Style(color=Color.from_rgb(*rgb)))
        text.append(f" {label}  ")
    return text
