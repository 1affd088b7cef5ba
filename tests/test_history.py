"""History: bounded series for plots, with buckets whose min/mean/max and counts are exact."""

from __future__ import annotations

import math
import random

import pytest

from nktui.training import EvalResult, StepRecord
from nktui.run.history import Point, RunHistory, Series


def test_a_million_points_stay_bounded_and_counted():
    series = Series(recent=100, max_buckets=100)
    n = 1_000_000
    for i in range(n):
        series.append(i, float(i % 1000))
        if i % 99_991 == 0:
            assert len(series) <= 200
    points = series.points()
    assert len(points) == len(series) <= 200
    assert series.count == n
    assert sum(p.count for p in points) == n
    # oldest first, contiguous, covering every step exactly once
    assert points[0].first == 0 and points[-1].last == n - 1
    for a, b in zip(points, points[1:]):
        assert b.first == a.last + 1
    assert all(p.last - p.first + 1 == p.count for p in points)
    # the newest 100 are raw
    assert [p.first for p in points[-100:]] == list(range(n - 100, n))
    assert all(p.count == 1 and p.low == p.mean == p.high for p in points[-100:])
    assert series.last() == (n - 1, float((n - 1) % 1000))


def test_bucket_statistics_match_a_direct_computation():
    rng = random.Random(3)
    values = [rng.uniform(-5, 5) for _ in range(57)]
    series = Series(recent=5, max_buckets=4)
    for step, v in enumerate(values):
        series.append(step, v)
    points = series.points()
    assert sum(p.count for p in points) == len(values)
    assert len(series.buckets) <= 4
    for p in points:
        chunk = values[p.first : p.last + 1]
        assert p.count == len(chunk)
        assert p.low == min(chunk)
        assert p.high == max(chunk)
        assert p.mean == pytest.approx(sum(chunk) / len(chunk), rel=1e-12, abs=1e-12)
        assert p.step == (p.first + p.last) / 2
    assert [p.mean for p in points[-5:]] == values[-5:]


def test_small_series_is_exact():
    series = Series(recent=10, max_buckets=10)
    for step in range(3):
        series.append(step, step * 1.5)
    assert series.points() == [
        Point(0, 0, 0.0, 0.0, 0.0, 1), Point(1, 1, 1.5, 1.5, 1.5, 1), Point(2, 2, 3.0, 3.0, 3.0, 1)
    ]
    assert Series().last() is None and len(Series()) == 0


def test_bucket_width_doubles_when_buckets_merge():
    series = Series(recent=1, max_buckets=2)
    for step in range(9):
        series.append(step, float(step))
    # 8 points folded out of the recent window into at most 2 buckets
    assert len(series.buckets) <= 2
    assert sum(b.count for b in series.buckets) == 8
    assert series.width >= 4


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_skipped(bad):
    series = Series(recent=3, max_buckets=3)
    series.append(0, 1.0)
    series.append(1, bad)
    series.append(2, 2.0)
    assert series.count == 2
    assert [(p.first, p.mean) for p in series.points()] == [(0, 1.0), (2, 2.0)]


def _step(step, loss, lr=0.1):
    return StepRecord(step=step, epoch=1, loss=loss, accuracy=0.5, lr=lr)


def _eval(step, loss, accuracy):
    return EvalResult(step=step, epoch=1, loss=loss, accuracy=accuracy, confusion=((1, 0), (0, 1)), classes=("a", "b"))


def test_run_history_feeds_its_series_from_records():
    history = RunHistory(recent=10, max_buckets=10)
    history.add(_step(1, 2.0))
    history.add(_step(2, math.nan, lr=0.05))  # a diverged step: its loss is not drawn, its lr is
    history.extend([_step(3, 1.0), _eval(3, 0.9, 0.75)])
    assert history.version == 4
    assert [(p.first, p.mean) for p in history.train_loss.points()] == [(1, 2.0), (3, 1.0)]
    assert [(p.first, p.mean) for p in history.lr.points()] == [(1, 0.1), (2, 0.05), (3, 0.1)]
    assert [(p.first, p.mean) for p in history.val_loss.points()] == [(3, 0.9)]
    assert [(p.first, p.mean) for p in history.val_accuracy.points()] == [(3, 0.75)]


def test_run_history_from_a_real_run(make_trainer):
    trainer = make_trainer()
    for _ in range(5):
        trainer.step()
    trainer.evaluate()
    history = RunHistory()
    history.extend(trainer.records.since(0)[1])
    assert [p.first for p in history.train_loss.points()] == [1, 2, 3, 4, 5]
    assert history.train_loss.last()[1] == trainer.records.since(0)[1][4].loss
    assert history.val_accuracy.last() == (5, trainer.last_eval.accuracy)
