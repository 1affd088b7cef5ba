"""A vectorised first pass of the watchpoints over a flush's records: which is the first one the exact check must see.

`Watcher.check` is plain Python, a few microseconds a layer; run on every one of a fast model's steps it would cost
more than the step itself. So a flush first screens all its records at once with numpy, using the same histories and
the same conditions (with a hair of slack, so that the screen never misses what the exact check would catch), and
hands only the first suspect, and everything from there, to the exact check. Records before it are folded into the
histories in bulk. Observed records (per-layer statistics, activations) always go to the exact check.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from operator import itemgetter

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..protocol.records import StepRecord

HISTORY = 20  # values behind each median
MIN_HISTORY = 2  # a jump needs this many earlier values to be measured against
NEGLIGIBLE = 1e-5  # a layer whose gradient norm is below this fraction of the model's is left out of relative checks
SLACK = 1e-9  # relative: a value this close to a threshold is a suspect, the exact check decides


def first_suspect(watcher, records: Sequence[StepRecord], norms: Sequence[Sequence[float] | None]) -> int:
    """Index of the first record that may trip a watchpoint (or is observed); len(records) when none may."""
    n = len(records)
    if not n or not watcher.config.watch:
        return n
    width = len(watcher.names)
    observed = np.fromiter((g is None for g in norms), bool, n)  # (observed records carry their own statistics)
    losses = np.fromiter((r.loss for r in records), np.float64, n)
    if observed.any():
        norms = [g if g is not None else [math.nan] * width for g in norms]
    grads = np.array(norms, dtype=np.float64).reshape(n, width)
    suspect = observed | ~np.isfinite(losses)
    if width:
        suspect |= ~np.isfinite(grads).all(axis=1) & ~observed
    config = watcher.config
    fired = watcher._fired  # (a watchpoint that has fired stays quiet: no need to look for it again)
    # The loss and each layer's gradient norm, one series each, with their medians over the last HISTORY values
    # before every record, all at once: (series, records).
    values_of = itemgetter(1)
    series = [("loss_jump", None, losses, list(map(values_of, watcher._losses)), config.watch_loss_jump)]
    series += [("grad_jump", name, grads[:, column], list(map(values_of, watcher._norms.get(name, ()))),
                config.watch_grad_jump) for column, name in enumerate(watcher.names)]
    series = [s for s in series if s[4] and (s[0], s[1]) not in fired]
    if series:
        values = np.stack([s[2] for s in series])
        medians, counts = _rolling_medians([s[3] for s in series], values,
                                           np.array([s[4] for s in series]) * (1 - SLACK))
        factors = np.array([s[4] for s in series])[:, None]
        jump = (counts >= MIN_HISTORY) & (medians > 0) & (values > factors * medians * (1 - SLACK))
        grad_rows = np.array([s[0] == "grad_jump" for s in series])
        if grad_rows.any():  # a layer whose gradient is negligible against the model's is left out
            total = np.sqrt((np.nan_to_num(grads, posinf=0.0) ** 2).sum(axis=1))
            jump[grad_rows] &= values[grad_rows] > NEGLIGIBLE * total[None, :]
        if not grad_rows.all():  # the loss: also above the run's first loss
            first = watcher._first_loss[1] if watcher._first_loss is not None else losses[0]
            jump[~grad_rows] &= values[~grad_rows] > first * (1 - SLACK)
        suspect |= jump.any(axis=0)
    weights = [i for i, shape in enumerate(watcher.shapes) if len(shape) > 1] or list(range(width))
    if config.watch_vanishing and len(weights) >= 2 and ("vanishing", watcher.names[weights[0]]) not in fired:
        first, last = grads[:, weights[0]], grads[:, weights[-1]]
        with np.errstate(divide="ignore", invalid="ignore"):
            suspect |= (last != 0) & (first / last < config.watch_vanishing * (1 + SLACK))
    hits = np.flatnonzero(suspect)
    return int(hits[0]) if len(hits) else n


def commit_many(watcher, records: Sequence[StepRecord], norms: Sequence[Sequence[float] | None]) -> None:
    """`Watcher.commit` for unobserved records that passed the screen (all finite), in bulk. (Nothing while the
    watchpoints are off: they start from a fresh history when switched on.)"""
    if not records or not watcher.config.watch:
        return
    keep = watcher._losses.maxlen
    tail = records[-keep:]
    watcher._losses.extend((r.step, r.loss) for r in tail)
    if watcher._first_loss is None or records[0].step <= watcher._first_loss[0]:
        watcher._first_loss = (records[0].step, records[0].loss)
    tail_norms = norms[-keep:]
    for column, name in enumerate(watcher.names):
        recent = watcher._norms.get(name)
        if recent is None:
            recent = watcher._norms[name] = deque(maxlen=keep)
        recent.extend((r.step, g[column]) for r, g in zip(tail, tail_norms))


def _rolling_medians(histories: list[list[float]], values: np.ndarray,
                     factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each series (a row of `values`, its `histories` before it) and each record, the median and the count of
    the up to HISTORY values before that record: (series, records) arrays, in a few numpy operations. When no value
    of a series can be `factors` times a median (its largest is within that of the smallest value around, which no
    median is below), its medians are left at +inf: the usual case, and no sort."""
    rows, n = values.shape
    padded = np.full((rows, 2 * HISTORY + n), np.nan)
    lengths = np.array([min(len(h), HISTORY) for h in histories])
    for row, history in enumerate(histories):  # the histories end where the new values begin
        if lengths[row]:
            padded[row, 2 * HISTORY - lengths[row]: 2 * HISTORY] = history[-lengths[row]:]
    padded[:, 2 * HISTORY:] = values
    counts = np.minimum(lengths[:, None] + np.arange(n), HISTORY)
    medians = np.full((rows, n), np.inf)
    with np.errstate(invalid="ignore"):
        calm = (np.fmin.reduce(padded, axis=1) > 0) & (values.max(axis=1) <= factors * np.fmin.reduce(padded, axis=1))
    busy = ~calm
    if not busy.any():
        return medians, counts
    windows = padded[busy][:, HISTORY + np.arange(n)[:, None] + np.arange(HISTORY)]  # (series, records, HISTORY)
    counts_busy = counts[busy]
    ordered = np.sort(windows, axis=2)  # (nan last: the window's values first, in order)
    low = np.take_along_axis(ordered, np.maximum((counts_busy - 1) // 2, 0)[..., None], axis=2)[..., 0]
    high = np.take_along_axis(ordered, np.minimum(counts_busy // 2, HISTORY - 1)[..., None], axis=2)[..., 0]
    medians[busy] = np.where(counts_busy > 0, (low + high) / 2, np.nan)
    return medians, counts
