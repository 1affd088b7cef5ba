"""Immutable records the trainer publishes: one per step, one per evaluation, one per rewind, resume or watchpoint hit.

Records hold plain Python numbers, never tensors, so any thread can read them at any time without touching the
device. `LayerStats` are present only on *observed* steps (see `nktui.probe.instruments`); the loss, accuracy and
learning rate of every step are always there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

EMPTY: Mapping = MappingProxyType({})

# Numbers in rows, a 2-D picture of a tensor: a layer's weight or gradient (`results.LayerSnapshot`), a traced
# input's channels (`results.StepTrace`), what the heat maps of `nktui.render.heatmap` draw. The one definition: the
# engine's results hold tuples of tuples (immutable), the renderers take any sequence of sequences.
Grid = Sequence[Sequence[float]]


@dataclass(frozen=True, slots=True)
class Histogram:
    """Counts of values in `len(counts)` equal-width bins spanning [lo, hi]."""

    lo: float
    hi: float
    counts: tuple[int, ...]

    def edges(self) -> list[float]:
        n = len(self.counts)
        width = (self.hi - self.lo) / n if n else 0.0
        return [self.lo + i * width for i in range(n + 1)]


@dataclass(frozen=True, slots=True)
class LayerStats:
    """Statistics of one parameter tensor (named as in `model.named_parameters()`) at one step.

    `weight_norm` is measured before the update, `update_norm` is ||W_after - W_before||.
    """

    name: str
    shape: tuple[int, ...]
    grad_norm: float
    grad_mean: float
    grad_std: float
    grad_absmax: float
    weight_norm: float
    update_norm: float
    nonfinite: int
    histogram: Histogram | None = None

    @property
    def update_ratio(self) -> float:
        """update_norm / weight_norm: the fraction of the weight that this step changed (healthy: ~1e-4..1e-2)."""
        return ratio(self.update_norm, self.weight_norm)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True, slots=True)
class ActivationStats:
    """Output statistics of one leaf module in the forward pass, in forward order."""

    name: str
    kind: str
    shape: tuple[int, ...]
    mean: float
    std: float
    dead_fraction: float | None = None  # for ReLU-like modules: units that were 0 for every sample in the batch


class StepRecord(NamedTuple):
    """One optimizer step. `loss` is the batch loss before the update; `lr` is the rate that update used.

    A NamedTuple rather than a frozen dataclass because one is made per step: it is four times cheaper to build.
    """

    step: int
    epoch: int
    loss: float
    accuracy: float
    lr: float
    samples_per_sec: float | None = None
    layers: Mapping[str, LayerStats] = EMPTY
    activations: tuple[ActivationStats, ...] = ()

    @property
    def observed(self) -> bool:
        """True when this step carries per-layer statistics."""
        return bool(self.layers)


@dataclass(frozen=True, slots=True)
class EvalResult:
    """Evaluation of the model as it was after `step` updates, on the validation split (or the training one)."""

    step: int
    epoch: int
    loss: float
    accuracy: float
    confusion: tuple[tuple[int, ...], ...]  # confusion[true][predicted] = count
    classes: tuple[str, ...]
    split: str = "val"

    @property
    def size(self) -> int:
        return sum(map(sum, self.confusion))


@dataclass(frozen=True, slots=True)
class Rewound:
    """Published after a rewind: everything recorded for steps after `step` no longer happened."""

    step: int
    from_step: int


@dataclass(frozen=True, slots=True)
class Resumed:
    """Published first by a trainer that continues from a checkpoint: the run picks up after `step` updates."""

    step: int


@dataclass(frozen=True, slots=True)
class WatchHit:
    """A watchpoint fired at `step` (the step whose numbers tripped it); see `nktui.probe.watch`.

    `record`: that step's record with its full statistics, when the fault finder re-took it exactly.
    `stopped_before`: the run was put back to just before `step` (so `step` has not happened); False when it
    could not be (rewinding off) or the step was taken by hand."""

    watchpoint: str
    step: int
    layer: str | None
    value: float
    threshold: float
    message: str
    record: StepRecord | None = None
    stopped_before: bool = False


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with 0/0 = 0 and x/0 = inf."""
    if denominator == 0:
        return 0.0 if numerator == 0 else math.inf
    return numerator / denominator


def frozen_mapping(items: dict) -> Mapping:
    return MappingProxyType(items)
