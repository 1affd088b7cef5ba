"""Heat maps for terminals with few colours or none: glyphs under `NO_COLOR=1`, five ANSI colours in 16.

Without colour: one character per value, its glyph telling the sign and the size.

Under NO_COLOR Textual turns every colour into a grey of the same brightness, and the diverging map's blue
(negative) and red (positive) come out the same grey. So where colour is off, signed grids are drawn with glyphs
instead (`heatmap.render` draws them in colour everywhere else):

    ░ ▒ ▓ █    positive, from a quarter of the scale (an eighth to three eighths) to all of it
    · - = ≡    negative, the same steps
    (space)    within an eighth of the scale of 0
    !          nan or inf

In ASCII mode (`nktui.render.charset`) the glyphs are `+ * # @` for positive values and `- ~ = %` for negative ones.

Characters are about twice as tall as wide, so small pictures (8x8 templates, 3x3 kernels) draw each value twice
side by side (`repeat=2`) to stay roughly square.

With 16 colours (`TERM=xterm`), the smooth diverging map would be rounded to whatever standard colour is nearest,
yellow and brown included. `few_colours` uses five steps that are standard colours exactly: bright blue, blue,
grey (0), red, bright red.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.color import Color
from rich.style import Style
from rich.text import Text

from nktui.render import charset

Grid = Sequence[Sequence[float]]

POSITIVE = "░▒▓█"
NEGATIVE = "·-=≡"
ZERO = " "
NONFINITE = "!"


def glyph(value: float, scale: float) -> str:
    """The character of one value on a symmetric scale of +-scale."""
    if not math.isfinite(value):
        return NONFINITE
    t = max(-1.0, min(1.0, value / scale)) if scale > 0 else 0.0
    if abs(t) < 0.125:
        return ZERO
    level = min(3, int(abs(t) * 4 - 0.5))  # 0.125..0.375 -> 0, .. 0.625 -> 1, .. 0.875 -> 2, above -> 3
    positive, negative = glyph_sets()
    return (positive if t > 0 else negative)[max(level, 0)]


def glyph_sets() -> tuple[str, str]:
    """(positive, negative) glyphs from small to large: blocks and dashes, or ASCII."""
    return (charset.ASCII_POSITIVE, charset.ASCII_NEGATIVE) if charset.ascii_mode() else (POSITIVE, NEGATIVE)


def shade_lines(grid: Grid, scale: float, repeat: int = 1) -> list[Text]:
    """One line of glyphs per row of the grid, each value `repeat` characters wide."""
    return [Text("".join(glyph(v, scale) * repeat for v in row)) for row in grid]


def shade_text(grid: Grid, scale: float, repeat: int = 1) -> Text:
    return Text("\n").join(shade_lines(grid, scale, repeat))


def shade_legend(scale: float) -> Text:
    """`scale: ≡ = - · -0.5  (blank) 0  ░ ▒ ▓ █ +0.5`: the glyphs from the most negative to the most positive"""
    positive, negative = glyph_sets()
    return Text(f"scale: {' '.join(reversed(negative))} -{scale:.3g}  (blank) 0  {' '.join(positive)} +{scale:.3g}"
                f"  ({NONFINITE} nan/inf)")


# -- 16 colours ---------------------------------------------------------------------------------------------------
RGB = tuple[int, int, int]
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
