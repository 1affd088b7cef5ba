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

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .records import StepRecord

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
    observed = np.array([bool(r.layers or r.activations) or g is None or len(g) != width
                         for r, g in zip(records, norms)])
    losses = np.array([r.loss for r in records], dtype=np.float64)
    grads = np.array([g if g is not None and len(g) == width else [math.nan] * width for g in norms],
                     dtype=np.float64).reshape(n, width)
    suspect = observed | ~np.isfinite(losses)
    if width:
        suspect |= ~np.isfinite(grads).all(axis=1) & ~observed
    config = watcher.config
    fired = watcher._fired  # (a watchpoint that has fired stays quiet: no need to look for it again)
    if config.watch_loss_jump and ("loss_jump", None) not in fired:
        history = [v for _, v in watcher._losses]
        first = watcher._first_loss[1] if watcher._first_loss is not None else losses[0]
        median, count = _rolling_medians(history, losses)
        jump = (count >= MIN_HISTORY) & (median > 0) & (losses > config.watch_loss_jump * median * (1 - SLACK))
        suspect |= jump & (losses > first * (1 - SLACK))
    if width and config.watch_grad_jump:
        total = np.sqrt((np.nan_to_num(grads, posinf=0.0) ** 2).sum(axis=1))
        counted = grads > NEGLIGIBLE * total[:, None]
        for column, name in enumerate(watcher.names):
            if ("grad_jump", name) in fired:
                continue
            history = [v for _, v in watcher._norms.get(name, ())]
            median, count = _rolling_medians(history, grads[:, column])
            jump = (count >= MIN_HISTORY) & (median > 0)
            suspect |= jump & counted[:, column] & (grads[:, column] > config.watch_grad_jump * median * (1 - SLACK))
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


def _rolling_medians(history: list[float], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each value, the median and the count of the (up to HISTORY) values before it: the history, then the
    earlier values."""
    keep = HISTORY
    padded = np.concatenate([np.full(keep, np.nan), np.asarray(history[-keep:], dtype=np.float64), values])
    start = len(padded) - len(values) - keep
    windows = sliding_window_view(padded, keep)[start:start + len(values)]
    count = (~np.isnan(windows)).sum(axis=1)
    with np.errstate(all="ignore"):
        median = np.where(count > 0, np.nanmedian(np.where(count[:, None] > 0, windows, 0.0), axis=1), np.nan)
    return median, count
