"""LossPlot: training loss per step (raw, faint; smoothed, bright), validation loss and accuracy per evaluation.

Draws from the run's bounded `RunHistory` (`nktui.run.history`), binned to the plot's width, so a redraw costs the
same after a million steps as after a thousand, in braille dots (`nktui.render.braille`, several times cheaper than
plotext: the README's "How it stays fast" has the figures). The app calls
`draw()` only when the history changed, and while training no more often than its `RedrawPace` allows.
"""

from __future__ import annotations

import math
import time

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from nktui.render import charset
from nktui.render.braille import Axis, Series, chart, fit_axis
from nktui.run.history import Point, RunHistory
from nktui.ui.pacing import RedrawPace

RAW, SMOOTH, VAL_LOSS, VAL_ACC = Style(color="grey50"), Style(color="cyan"), Style(color="red"), Style(color="green")
CURSOR, LABEL, FRAME = Style(color="yellow"), Style(color="grey82"), Style(color="grey58")


def bin_points(points: list[Point], columns: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """At most `columns` groups of points over equal step ranges: (x, mean, low, high) lists. Means are weighted
    by how many raw points each bucket holds; low and high are the extremes of the raw points. (A redraw bins a
    few thousand points: the loop unpacks tuples and compares, which costs a third of attribute access and
    min/max calls.)"""
    if len(points) <= columns or columns < 1:
        return [p.step for p in points], [p.mean for p in points], [p.low for p in points], [p.high for p in points]
    lo, hi = points[0].first, points[-1].last
    width = (hi - lo) / columns or 1.0
    scale = 1 / width
    last_bin = columns - 1
    totals, counts = [0.0] * columns, [0] * columns
    lows, highs = [math.inf] * columns, [-math.inf] * columns
    for first, last, low, mean, high, count in points:
        i = int(((first + last) / 2 - lo) * scale)
        if i > last_bin:
            i = last_bin
        totals[i] += mean * count
        counts[i] += count
        if low < lows[i]:
            lows[i] = low
        if high > highs[i]:
            highs[i] = high
    used = [i for i in range(columns) if counts[i]]
    return (
        [lo + (i + 0.5) * width for i in used],
        [totals[i] / counts[i] for i in used],
        [lows[i] for i in used],
        [highs[i] for i in used],
    )


def centred_mean(values: list[float], half_window: int) -> list[float]:
    """Moving average over [i - half_window, i + half_window], shrinking at the ends: smooth and without lag."""
    if half_window < 1:
        return list(values)
    prefix = [0.0]
    for v in values:
        prefix.append(prefix[-1] + v)
    out = []
    for i in range(len(values)):
        lo, hi = max(0, i - half_window), min(len(values), i + half_window + 1)
        out.append((prefix[hi] - prefix[lo]) / (hi - lo))
    return out


def step_ticks(first: float, last: float, count: int = 5) -> list[int]:
    """Whole-number ticks at a round spacing (1, 2, 5 x 10^k) covering [first, last]."""
    span = max(last - first, 1)
    raw = span / count
    base = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    spacing = next((m * base for m in (1, 2, 5, 10) if m * base >= raw), 10 * base)
    start = math.ceil(first / spacing) * spacing
    return [int(start + i * spacing) for i in range(int((last - start) // spacing) + 1)]


# The colour key lives in the border title, where it never covers the data.
LEGEND = "Loss [gray]▪raw[/] [cyan]▪smooth[/] [red]●val loss[/] [green]●val acc→[/]"
# Under NO_COLOR every line is grey: the validation accuracy gets a marker of its own.
NO_COLOR_LEGEND = "Loss ▪raw ▪smooth ●val loss ×val acc→"


WAITING = "waiting for the first step"
PAUSED_AT_START = "paused before step 1: n takes one step, t traces it, space runs"


class LossPlot(Widget):
    """The plot, drawn by `nktui.render.braille` for the widget's size at render time (and again after a resize)."""

    def __init__(self, pace: RedrawPace | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = LEGEND
        self.log_scale = False
        self.drawn_version = -1
        self.empty_hint = WAITING  # what the plot says before the first step (the app: what to press while paused)
        self.pace = pace  # told what each build costs
        self._history: RunHistory | None = None
        self._cursor: int | None = None
        self._lines: list[Strip] = []
        self._built_for: tuple[int, int] | None = None  # the size the lines were built for; None: build again

    def draw(self, history: RunHistory, cursor_step: int | None = None) -> None:
        self.drawn_version = history.version
        self._history, self._cursor = history, cursor_step
        self._built_for = None
        self.border_subtitle = "log y" if self.log_scale else ""
        self.refresh()

    def render_line(self, y: int) -> Strip:
        size = (self.size.width, self.size.height)
        if self._built_for != size:
            start = time.perf_counter()
            self._lines = [Strip(line, size[0]).apply_style(self.rich_style) for line in self._chart(*size)]
            self._built_for = size
            if self.pace is not None:
                self.pace.rendered(time.perf_counter() - start)
        return self._lines[y] if y < len(self._lines) else Strip.blank(size[0], self.rich_style)

    def on_resize(self) -> None:
        self._built_for = None

    def _chart(self, width: int, height: int) -> list[list[Segment]]:
        if width < 10 or height < 5:
            return []
        history, log = self._history, self.log_scale
        raw, val, acc = ([], [], []) if history is None else (
            history.train_loss.points(), history.val_loss.points(), history.val_accuracy.points())
        if log:
            raw = [p for p in raw if p.low > 0]
        series, values, steps = [], [], []
        if raw:
            xs, means, lows, highs = bin_points(raw, max(width, 20))  # a point a cell: the lines join them
            series += [Series(xs, lows, RAW), Series(xs, highs, RAW),
                       Series(xs, centred_mean(means, len(means) // 40), SMOOTH)]
            values += lows + highs
            steps += [raw[0].first, raw[-1].last]
        if val:
            series.append(Series([p.step for p in val], [p.mean for p in val], VAL_LOSS, mark=charset.text("•"),
                                 join=False))
            values += [p.mean for p in val]
            steps += [val[0].first, val[-1].last]
        if acc:
            mark = charset.text("×" if self.app.no_color else "•")
            series.append(Series([p.step for p in acc], [p.mean for p in acc], VAL_ACC, mark=mark, right=True))
            steps += [acc[0].first, acc[-1].last]
        x_axis = Axis(min(steps), max(steps)) if steps else Axis(0, 1)
        if x_axis.high == x_axis.low:
            x_axis = Axis(x_axis.low - 0.5, x_axis.high + 0.5)
        ticks = step_ticks(raw[0].first, raw[-1].last) if raw else []
        return chart(
            width, height, series, x_axis=x_axis, y_axis=fit_axis(values, log),
            right_axis=Axis(0.0, 1.0) if acc else None, x_ticks=ticks, x_title="step", cursor=self._cursor,
            cursor_style=CURSOR, title="" if raw or val else self.empty_hint, label_style=LABEL,
            frame_style=FRAME,
        )

    def on_mount(self) -> None:
        self.border_title = charset.text(NO_COLOR_LEGEND if self.app.no_color else LEGEND)
