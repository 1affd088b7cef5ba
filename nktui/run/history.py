"""Bounded history of a run for plots: recent points exactly, older ones folded into min/mean/max buckets.

A `Series` keeps its newest `recent` points as they came; each point that falls out of that window goes into a
bucket of `width` points. When there are more than `max_buckets` buckets, neighbours merge pairwise and the width
doubles. Memory is bounded by recent + max_buckets points however long the run, so drawing a million steps costs
what drawing a few thousand does.

`RunHistory` feeds a few series from the engine's records. It is not thread-safe: one reader owns it (the UI
feeds it on its own thread from `Trainer.records`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from ..protocol.records import EvalResult, Rewound, StepRecord


class Point(NamedTuple):
    """A raw point (first == last, low == mean == high) or a bucket of several."""

    first: int  # step of the first point in it
    last: int
    low: float
    mean: float
    high: float
    count: int

    @property
    def step(self) -> float:
        """Where to draw it on a step axis: the middle of the steps it covers."""
        return (self.first + self.last) / 2


@dataclass
class _Bucket:
    first: int
    last: int
    low: float
    total: float
    high: float
    count: int

    def add(self, step: int, value: float) -> None:
        self.last = step
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        self.total += value
        self.count += 1

    def merge(self, other: _Bucket) -> None:
        self.last = other.last
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        self.total += other.total
        self.count += other.count

    def point(self) -> Point:
        return Point(self.first, self.last, self.low, self.total / self.count, self.high, self.count)


class Series:
    def __init__(self, recent: int = 2000, max_buckets: int = 1000) -> None:
        self.recent: deque[tuple[int, float]] = deque()
        self.recent_size = recent
        self.max_buckets = max_buckets
        self.buckets: list[_Bucket] = []
        self.width = 1  # raw points per full bucket
        self.count = 0  # points ever appended

    def append(self, step: int, value: float) -> None:
        if not math.isfinite(value):
            return  # nan/inf cannot be drawn; the records keep them
        self.count += 1
        self.recent.append((step, value))
        if len(self.recent) > self.recent_size:
            self._fold(*self.recent.popleft())

    def _fold(self, step: int, value: float) -> None:
        if self.buckets and self.buckets[-1].count < self.width:
            self.buckets[-1].add(step, value)
            return
        self.buckets.append(_Bucket(step, step, value, value, value, 1))
        if len(self.buckets) > self.max_buckets:
            merged = []
            for i in range(0, len(self.buckets) - 1, 2):
                self.buckets[i].merge(self.buckets[i + 1])
                merged.append(self.buckets[i])
            if len(self.buckets) % 2:
                merged.append(self.buckets[-1])
            self.buckets = merged
            self.width *= 2

    def truncate(self, step: int) -> None:
        """Drop every point after `step` (a rewind undid those steps). Buckets that straddle it are dropped whole."""
        while self.recent and self.recent[-1][0] > step:
            self.recent.pop()
        if not self.recent:
            while self.buckets and self.buckets[-1].last > step:
                self.buckets.pop()

    def points(self) -> list[Point]:
        """Everything, oldest first: buckets, then the recent raw points."""
        new = tuple.__new__  # a Point without the Python-level __new__ of a NamedTuple: a redraw makes thousands
        return [b.point() for b in self.buckets] + [new(Point, (s, s, v, v, v, 1)) for s, v in self.recent]

    def last(self) -> tuple[int, float] | None:
        return self.recent[-1] if self.recent else None

    def __len__(self) -> int:
        return len(self.buckets) + len(self.recent)

    def export(self) -> dict:
        """Everything it holds as plain lists (for a client attaching to a run: `nktui.host`)."""
        return {"recent": [list(p) for p in self.recent], "width": self.width, "count": self.count,
                "buckets": [[b.first, b.last, b.low, b.total, b.high, b.count] for b in self.buckets]}

    def restore(self, data: dict) -> None:
        """Hold what `export` gave (ValueError/TypeError/KeyError for anything else)."""
        self.recent = deque((int(s), float(v)) for s, v in data["recent"])
        self.buckets = [_Bucket(int(a), int(b), float(lo), float(t), float(hi), int(n))
                        for a, b, lo, t, hi, n in data["buckets"]]
        self.width, self.count = int(data["width"]), int(data["count"])


class RunHistory:
    """The series the loss plot draws, fed from records. `version` changes whenever something was added."""

    def __init__(self, recent: int = 2000, max_buckets: int = 1000) -> None:
        self.train_loss = Series(recent, max_buckets)
        self.lr = Series(recent, max_buckets)
        self.val_loss = Series(recent, max_buckets)
        self.val_accuracy = Series(recent, max_buckets)
        self.version = 0

    def add(self, record) -> None:
        """Take a StepRecord, an EvalResult or a Rewound; other records (watchpoint hits) are not plotted."""
        if isinstance(record, StepRecord):
            self.train_loss.append(record.step, record.loss)
            self.lr.append(record.step, record.lr)
        elif isinstance(record, EvalResult):
            self.val_loss.append(record.step, record.loss)
            self.val_accuracy.append(record.step, record.accuracy)
        elif isinstance(record, Rewound):
            for series in (self.train_loss, self.lr, self.val_loss, self.val_accuracy):
                series.truncate(record.step)
        else:
            return
        self.version += 1

    SERIES = ("train_loss", "lr", "val_loss", "val_accuracy")

    def export(self) -> dict:
        return {name: getattr(self, name).export() for name in self.SERIES}

    def restore(self, data: dict) -> None:
        for name in self.SERIES:
            getattr(self, name).restore(data[name])
        self.version += 1

    def extend(self, records) -> None:
        for record in records:
            self.add(record)
