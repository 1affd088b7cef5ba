"""RedrawPace: how often a pane may redraw while the run trains, from what its redraws cost.

A pane's redraw is Python holding the GIL, and a small model's training loop needs the GIL between its tensor ops:
while the UI draws, the trainer waits, so the trainer loses about what the UI draws (benchmarks/tui_overhead.py).
Each pane gets a share of one core: after a redraw that cost `c` seconds (building it and rendering it), the next
waits `c / share` seconds, kept within [`shortest`, `longest`]. A fast machine redraws at the shortest interval;
a slow one, or a wide terminal (a bigger plot costs more), less often. While paused, panes redraw at once.
"""

from __future__ import annotations


class RedrawPace:
    def __init__(self, share: float, shortest: float, longest: float) -> None:
        self.share, self.shortest, self.longest = share, shortest, longest
        self.cost = 0.0  # seconds the latest redraw took: its build, then its render by the compositor
        self.last = -float("inf")  # time.monotonic() of the latest redraw

    @property
    def interval(self) -> float:
        return min(self.longest, max(self.shortest, self.cost / self.share))

    def due(self, now: float, running: bool) -> bool:
        return not running or now - self.last >= self.interval

    def drew(self, now: float, seconds: float) -> None:
        """A redraw began at `now` and its build took `seconds` (its render is added when it happens)."""
        self.last, self.cost = now, seconds

    def rendered(self, seconds: float) -> None:
        self.cost += seconds

