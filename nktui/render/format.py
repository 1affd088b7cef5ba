"""Numbers and small charts as text, for the app and the command line: short floats (and zero at a tensor's
scale), learning rates, rates, sizes, sparklines, the update:weight band, a flat index as `i,j`.

Pure functions on plain Python values; nothing here knows about Textual widgets or torch tensors.
"""

from __future__ import annotations

import math

from rich.text import Text

from nktui.render import charset
from nktui.protocol.indices import unravel

SPARK_CHARS = " ▁▂▃▄▅▆▇█"

# The usual healthy band for update_norm / weight_norm per step (Karpathy's rule of thumb: ~1e-3).
RATIO_LOW, RATIO_HIGH = 1e-4, 1e-2


def number(value: float | None, digits: int = 3) -> str:
    """A float in at most ~9 characters: 0.1234, 12.3, 1.23e-05, nan, inf, -."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e4:
        # significant digits, below 1 too: 0.0024 with 2 digits is "0.0024", not "0" (a healthy upd/w ratio)
        return f"{value:.{digits}g}"
    return f"{value:.{max(digits - 1, 0)}e}"


# A value this small against the scale of the numbers it came from is zero up to float rounding: the mean of a
# softmax layer's gradient, whose terms cancel exactly, comes out as 1e-10 on one CPU and 1.4e-10 on another.
ROUNDING = 1e-6


def number_at_scale(value: float | None, scale: float | None, digits: int = 3) -> str:
    """`number(value)`, but "0" when |value| <= ROUNDING x |scale|: zero up to rounding at the scale of the tensor
    it summarises (its abs max or RMS), so the text does not depend on the last bits of a float."""
    if (value is not None and scale is not None and math.isfinite(value) and math.isfinite(scale)
            and abs(value) <= ROUNDING * abs(scale)):
        return "0"
    return number(value, digits)


def lr_text(lr: float) -> str:
    """A learning rate as the user would type it: 0.1, 0.05, 1e-03 -> 0.001, 3e-05."""
    return f"{lr:g}"


def rate(samples_per_sec: float | None) -> str:
    if samples_per_sec is None:
        return "-"
    if not math.isfinite(samples_per_sec) or not 0 <= samples_per_sec < 1e12:  # (no rate is; say what it is)
        return number(samples_per_sec)
    if samples_per_sec >= 1e6:
        return f"{samples_per_sec / 1e6:.1f}M"
    if samples_per_sec >= 1e4:
        return f"{samples_per_sec / 1e3:.0f}k"
    if samples_per_sec >= 1e3:
        return f"{samples_per_sec / 1e3:.1f}k"
    return f"{samples_per_sec:.0f}"


def sparkline(counts: tuple[int, ...] | list[int], width: int | None = None) -> str:
    """Bars for a histogram, scaled to its largest bin; a bin with any count shows at least the lowest bar. (In
    ASCII mode, `charset.ASCII_SPARK`'s levels.)"""
    values = list(counts)
    if width is not None and width < len(values):
        values = _rebin(values, width)
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    chars = charset.ASCII_SPARK if charset.ascii_mode() else SPARK_CHARS
    levels = len(chars) - 1
    return "".join(chars[max(1, round(v / top * levels)) if v else 0] for v in values)


def _rebin(values: list[int], width: int) -> list[int]:
    out = [0] * width
    for i, v in enumerate(values):
        out[i * width // len(values)] += v
    return out


def ratio_style(value: float) -> str:
    """Colour of an update:weight ratio against the healthy band: too small, healthy, too big, broken."""
    if not math.isfinite(value):
        return "bold red"
    if value < RATIO_LOW:
        return "blue"
    if value > RATIO_HIGH:
        return "bold yellow" if value <= 10 * RATIO_HIGH else "bold red"
    return "green"


def ratio_text(value: float) -> Text:
    return Text(number(value, 2), style=ratio_style(value))


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def byte_size(size: int) -> str:
    """1.5 MB, 230 kB, 512 B."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def index_text(flat: int, shape: tuple[int, ...]) -> str:
    """A flat index into a tensor of `shape` as its coordinates, `3,17`: the notation `name[3,17]` everywhere
    (the trace, the loss surface's weights, the layer detail)."""
    return ",".join(str(c) for c in unravel(flat, shape or (1,)))
