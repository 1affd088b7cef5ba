"""Watchpoints: conditions that stop the run just before the step that met them (`nktui.engine.debugger.fault`).

Every step is checked, in step order, when its record is made (`Trainer.flush`): the loss and each layer's
gradient norm are known for every step (computed on the device with the step, read in the flush's one transfer);
the richer statistics (update:weight ratios, dead units) for the measured steps only.

  nonfinite   the loss, a gradient or a weight is nan or inf (every step; names the layer)
  loss_jump   the loss above X times the median of its last 20 values, and above the run's first loss (every
              step; a hard batch late in training can be 10x a loss that is nearly 0, and is no divergence)
  grad_jump   a layer's gradient norm above X times the median of its last 20 values (every step)
  vanishing   the first weight matrix's gradient norm below X times the last one's (every step)
  ratio_band  a layer's update:weight ratio outside [low, high] on K measured steps in a row
  dead_relu   a ReLU layer whose fraction of dead units exceeds a threshold (measured steps; needs --activations)

Watchpoints are independent: each is evaluated on every record, and several may fire on one. Each (watchpoint,
layer) fires once until a rewind re-arms it (a persistent condition such as vanishing gradients would otherwise
stop every step). grad_jump and ratio_band ignore a layer whose gradient norm is below NEGLIGIBLE times the whole
model's (a bias that BatchNorm cancels has a gradient of ~1e-6 that jumps about and an update of 0).

`check` never changes anything: `commit` folds a record into the recent history once it is known to stand, so
that a step checked twice (the fault finder re-takes a flagged step exactly) counts once.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence

from ..protocol.records import StepRecord, WatchHit

from .watch_screen import HISTORY, MIN_HISTORY, NEGLIGIBLE, commit_many, first_suspect


class Watcher:
    def __init__(self, config, names: Sequence[str] = (), shapes: Sequence[tuple[int, ...]] = ()) -> None:
        """`names`, `shapes`: the parameters, in the order of the per-step gradient norms `check` is given."""
        self.config = config
        self.names = tuple(names)
        self.shapes = tuple(shapes)
        self._norms: dict[str, deque[tuple[int, float]]] = {}
        self._losses: deque[tuple[int, float]] = deque(maxlen=HISTORY)
        self._first_loss: tuple[int, float] | None = None  # (step, loss) of the first step seen
        self._outside: dict[str, int] = {}
        self._fired: set[tuple[str, str | None]] = set()

    def reset(self) -> None:
        """Forget the recent history and re-arm every watchpoint (a rewind the user asked for)."""
        self._norms.clear()
        self._losses.clear()
        self._outside.clear()
        self._fired.clear()

    def forget_after(self, step: int) -> None:
        """Drop what steps after `step` contributed (they are undone), keeping what has fired."""
        for recent in (self._losses, *self._norms.values()):
            while recent and recent[-1][0] > step:
                recent.pop()
        self._outside.clear()

    # -- checking ---------------------------------------------------------------------------------------------
    def check(self, record: StepRecord, grad_norms: Sequence[float] | None = None) -> list[WatchHit]:
        """The watchpoints this record trips that have not fired before (for that layer), in a fixed order.
        `grad_norms`: each parameter's gradient norm, for a record without per-layer statistics."""
        if not self.config.watch:
            return []
        norms = self._norms_of(record, grad_norms)
        hits = self._nonfinite(record, norms)
        if not any(h.layer is None for h in hits):  # (a nan loss says nothing about jumps)
            hits += self._loss_jump(record)
        if norms and not any(h.watchpoint == "nonfinite" for h in hits):
            total = math.sqrt(sum(v * v for v in norms.values())) if all(map(math.isfinite, norms.values())) else 0.0
            hits += self._grad_jump(record, norms, total)
            hits += self._vanishing(record, norms)
            if record.layers:
                hits += self._ratio_band(record, total)
        if record.activations:
            hits += self._dead(record)
        return [h for h in hits if (h.watchpoint, h.layer) not in self._fired]

    def first_suspect(self, records, norms) -> int:
        """The first of these records the exact `check` must see (`nktui.probe.watch_screen`)."""
        return first_suspect(self, records, norms)

    def commit_many(self, records, norms) -> None:
        """`commit` in bulk for records that passed the screen."""
        commit_many(self, records, norms)

    def fired(self, hits: Sequence[WatchHit]) -> None:
        """These hits were reported: each (watchpoint, layer) stays quiet until re-armed."""
        self._fired.update((h.watchpoint, h.layer) for h in hits)

    def commit(self, record: StepRecord, grad_norms: Sequence[float] | None = None) -> None:
        """Fold a record that stands into the recent history (medians, runs outside the ratio band)."""
        if math.isfinite(record.loss):
            self._losses.append((record.step, record.loss))
            if self._first_loss is None or record.step <= self._first_loss[0]:
                self._first_loss = (record.step, record.loss)
        norms = self._norms_of(record, grad_norms)
        for name, value in norms.items():
            if math.isfinite(value):
                self._norms.setdefault(name, deque(maxlen=HISTORY)).append((record.step, value))
        if record.layers:
            low, high = self.config.watch_ratio_low, self.config.watch_ratio_high
            total = math.sqrt(sum(v * v for v in norms.values())) if norms else 0.0
            for layer in record.layers.values():
                ratio = layer.update_ratio
                outside = self._counts(layer.grad_norm, total) and ((high and ratio > high) or (low and ratio < low))
                self._outside[layer.name] = self._outside.get(layer.name, 0) + 1 if outside else 0

    def _norms_of(self, record: StepRecord, grad_norms: Sequence[float] | None) -> dict[str, float]:
        if record.layers:
            return {name: layer.grad_norm for name, layer in record.layers.items()}
        if grad_norms is None:
            return {}
        return dict(zip(self.names, grad_norms))

    @staticmethod
    def _counts(norm: float, total: float) -> bool:
        """Whether a layer's gradient is big enough, against the whole model's, for the relative checks."""
        return norm > NEGLIGIBLE * total

    # -- the watchpoints ----------------------------------------------------------------------------------------
    def _nonfinite(self, record: StepRecord, norms: dict[str, float]) -> list[WatchHit]:
        step = record.step
        layer, what = _first_nonfinite_layer(record, norms)
        if not math.isfinite(record.loss):
            detail = f"; the first layer concerned: {what}" if layer is not None else ""
            return [WatchHit("nonfinite", step, layer, record.loss, math.inf,
                             f"the loss is {record.loss} at step {step}{detail}")]
        if layer is not None:
            value = norms.get(layer, math.inf)
            return [WatchHit("nonfinite", step, layer, value, math.inf, f"{what} at step {step}")]
        return []

    def _loss_jump(self, record: StepRecord) -> list[WatchHit]:
        factor = self.config.watch_loss_jump
        recent = self._losses
        if not factor or len(recent) < MIN_HISTORY or not math.isfinite(record.loss):
            return []
        median = statistics.median(v for _, v in recent)
        first = self._first_loss[1] if self._first_loss is not None else 0.0
        if median > 0 and record.loss > factor * median and record.loss > first:
            return [WatchHit("loss_jump", record.step, None, record.loss, factor * median,
                             f"the loss jumped to {_num(record.loss)} at step {record.step}, "
                             f"{_times(record.loss / median)} its recent median {_num(median)} (threshold {factor:g}x)")]
        return []

    def _grad_jump(self, record: StepRecord, norms: dict[str, float], total: float) -> list[WatchHit]:
        factor = self.config.watch_grad_jump
        if not factor:
            return []
        hits = []
        for name, norm in norms.items():
            recent = self._norms.get(name)
            if not recent or len(recent) < MIN_HISTORY or not self._counts(norm, total):
                continue
            median = statistics.median(v for _, v in recent)
            if median > 0 and norm > factor * median:
                hits.append(WatchHit("grad_jump", record.step, name, norm, factor * median,
                                     f"{name}'s gradient norm jumped to {_num(norm)} at step {record.step}, "
                                     f"{_times(norm / median)} its recent median {_num(median)} (threshold {factor:g}x)"))
                break  # the first layer (in parameter order) names the jump; the others moved with it
        return hits

    def _ratio_band(self, record: StepRecord, total: float) -> list[WatchHit]:
        low, high, steps = self.config.watch_ratio_low, self.config.watch_ratio_high, self.config.watch_ratio_steps
        if not steps or (not low and not high):
            return []
        for layer in record.layers.values():
            ratio = layer.update_ratio
            outside = self._counts(layer.grad_norm, total) and ((high and ratio > high) or (low and ratio < low))
            if outside and self._outside.get(layer.name, 0) + 1 >= steps:
                above = bool(high and ratio > high)
                side = f"above {high:g}" if above else f"below {low:g}"
                return [WatchHit("ratio_band", record.step, layer.name, ratio, high if above else low,
                                 f"{layer.name}'s update:weight ratio was {side} for {steps} measured steps "
                                 f"(now {_num(ratio)}) at step {record.step}")]
        return []

    def _dead(self, record: StepRecord) -> list[WatchHit]:
        threshold = self.config.watch_dead_relu
        for act in record.activations:
            if threshold and act.dead_fraction is not None and act.dead_fraction > threshold:
                return [WatchHit("dead_relu", record.step, act.name, act.dead_fraction, threshold,
                                 f"{act.dead_fraction:.0%} of {act.name}'s units are dead (0 for the whole batch) "
                                 f"at step {record.step}")]
        return []

    def _vanishing(self, record: StepRecord, norms: dict[str, float]) -> list[WatchHit]:
        threshold = self.config.watch_vanishing
        shapes = dict(zip(self.names, self.shapes))
        if record.layers:
            shapes = {name: layer.shape for name, layer in record.layers.items()}
        weights = [name for name in norms if len(shapes.get(name, ())) > 1] or list(norms)
        if not threshold or len(weights) < 2:
            return []
        first, last = norms[weights[0]], norms[weights[-1]]
        if last == 0 or not (math.isfinite(first) and math.isfinite(last)):
            return []
        ratio = first / last
        if ratio < threshold:
            return [WatchHit("vanishing", record.step, weights[0], ratio, threshold,
                             f"gradients vanish on the way back: {weights[0]}'s gradient norm is {ratio:.1e} x "
                             f"{weights[-1]}'s at step {record.step} (threshold {threshold:g})")]
        return []


def _first_nonfinite_layer(record: StepRecord, norms: dict[str, float]) -> tuple[str | None, str]:
    """The first parameter whose gradient, weights or update is nan or inf, and what of it is."""
    for name, norm in norms.items():
        layer = record.layers.get(name)
        if not math.isfinite(norm):
            count = f"{layer.nonfinite:,} nan/inf values" if layer is not None and layer.nonfinite else "nan/inf values"
            return name, f"{name}'s gradient holds {count}"
        if layer is not None and not math.isfinite(layer.weight_norm):
            return name, f"{name}'s weights hold nan/inf values before the step"
        if layer is not None and not math.isfinite(layer.update_norm):
            return name, f"the update made {name}'s weights nan/inf"
    return None, ""


def _num(value: float) -> str:
    """A number for a message: 3 significant digits, and huge values (past 1e6) in e-notation."""
    return f"{value:.3g}"


def _times(factor: float) -> str:
    return f"{factor:,.0f}x" if factor < 1e6 else f"{factor:.1e}x"
