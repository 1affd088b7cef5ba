"""LossPlot: training loss per step (raw, faint; smoothed, bright), validation loss and accuracy per evaluation.

Draws from the engine's bounded `RunHistory`, binned to the plot's width before plotext sees it, so a redraw costs
the same after a million steps as after a thousand. The app calls `draw()` at most a few times a second and only
when the history changed.
"""

from __future__ import annotations

import math
import time

from textual.app import RenderResult
from textual_plotext import PlotextPlot

from nktui.training.history import Point, RunHistory
from nktui.ui.pacing import RedrawPace


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


# The colour key lives in the border title: plotext's own legend does not render braille markers well.
LEGEND = "Loss [gray]▪raw[/] [cyan]▪smooth[/] [red]●val loss[/] [green]●val acc→[/]"
# Under NO_COLOR every line is grey: the validation accuracy gets a marker of its own.
NO_COLOR_LEGEND = "Loss ▪raw ▪smooth ●val loss ×val acc→"


class LossPlot(PlotextPlot):
    def __init__(self, pace: RedrawPace | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pace = pace  # told what each render costs (plotext builds the plot here, in render)
        self.border_title = LEGEND
        self.log_scale = False
        self.drawn_version = -1

    def draw(self, history: RunHistory, cursor_step: int | None = None) -> None:
        self.drawn_version = history.version
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        columns = max(self.size.width, 20)  # a point a cell: plotext joins them with braille dots, two a cell
        raw = history.train_loss.points()
        if self.log_scale:
            raw = [p for p in raw if p.low > 0]
        if raw:
            xs, means, lows, highs = bin_points(raw, columns)
            plt.plot(xs, lows, marker="braille", color="gray")
            plt.plot(xs, highs, marker="braille", color="gray")
            plt.plot(xs, centred_mean(means, len(means) // 40), marker="braille", color="cyan")
            plt.xticks(step_ticks(raw[0].first, raw[-1].last))
        val = history.val_loss.points()
        if val:
            plt.scatter([p.step for p in val], [p.mean for p in val], marker="dot", color="red")
        acc = history.val_accuracy.points()
        if acc:
            marker = "x" if self.app.no_color else "dot"
            plt.plot([p.step for p in acc], [p.mean for p in acc], marker=marker, color="green", yside="right")
            plt.ylim(0, 1, yside="right")
        if cursor_step is not None:
            plt.vline(cursor_step, color="yellow")
        plt.yscale("log" if self.log_scale else "linear")
        plt.xlabel("step")
        if not raw and not val:
            plt.title("waiting for the first step")
        self.border_subtitle = "log y" if self.log_scale else ""
        self.refresh()

    def render(self) -> RenderResult:
        start = time.perf_counter()
        try:
            return super().render()
        finally:
            if self.pace is not None:
                self.pace.rendered(time.perf_counter() - start)

    def on_mount(self) -> None:
        if self.app.no_color:
            self.border_title = NO_COLOR_LEGEND

