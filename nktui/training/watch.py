"""Watchpoints: conditions that pause the run (the app) or end it with exit code 3 (`nktui train`).

Checked on the training thread each time records are made (`Trainer.flush`):
  nonfinite   a non-finite loss (every step), or a non-finite gradient or weight (observed steps); names the
              first layer concerned
  grad_jump   a layer's gradient norm above X times the median of its last 20 measured values
  ratio band  a layer's update:weight ratio outside [low, high] on K measured steps in a row
  dead_relu   a ReLU layer whose fraction of dead units exceeds a threshold (needs --activations)
  vanishing   the first layer's gradient norm below X times the last layer's (gradients fade on the way back)
The loss is known for every step; layer statistics for the steps that were measured (each UI refresh, every log
step, every single step). Thresholds live in RunConfig (`watch_*`); 0 switches one off. Each watchpoint fires once per layer (a persistent
condition such as vanishing gradients would otherwise pause every step); a rewind re-arms them all.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict, deque

from .records import StepRecord, WatchHit


class Watcher:
    def __init__(self, config) -> None:
        self.config = config
        self._norms: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=20))
        self._outside: dict[str, int] = defaultdict(int)
        self._fired: set[tuple[str, str | None]] = set()  # each (watchpoint, layer) fires once until re-armed

    def reset(self) -> None:
        """Forget the recent history and re-arm every watchpoint (after a rewind those steps never happened)."""
        self._norms.clear()
        self._outside.clear()
        self._fired.clear()

    def check(self, record: StepRecord) -> WatchHit | None:
        """The first watchpoint this record trips that has not fired before (for that layer), or None."""
        if not self.config.watch:
            return None
        hit = self._check(record)
        if hit is None or (hit.watchpoint, hit.layer) in self._fired:
            return None
        self._fired.add((hit.watchpoint, hit.layer))
        return hit

    def _check(self, record: StepRecord) -> WatchHit | None:
        if not math.isfinite(record.loss):
            return WatchHit("nonfinite", record.step, None, record.loss, math.inf,
                            f"the loss is {record.loss} at step {record.step}")
        if not record.layers:
            return None
        layers = list(record.layers.values())
        for layer in layers:
            if layer.nonfinite or not math.isfinite(layer.grad_norm):
                return WatchHit("nonfinite", record.step, layer.name, layer.grad_norm, math.inf,
                                f"{layer.name}'s gradient holds {layer.nonfinite} nan/inf values at step {record.step}")
            if not math.isfinite(layer.weight_norm):
                return WatchHit("nonfinite", record.step, layer.name, layer.weight_norm, math.inf,
                                f"{layer.name}'s weights hold nan/inf at step {record.step}")
        hit = self._grad_jump(record, layers) or self._ratio_band(record, layers) or self._dead(record)
        return hit or self._vanishing(record, layers)

    def _grad_jump(self, record, layers) -> WatchHit | None:
        factor = self.config.watch_grad_jump
        hit = None
        for layer in layers:
            recent = self._norms[layer.name]
            if factor and recent and hit is None:
                median = statistics.median(recent)
                if median > 0 and layer.grad_norm > factor * median:
                    hit = WatchHit("grad_jump", record.step, layer.name, layer.grad_norm, factor * median,
                                   f"{layer.name}'s gradient norm jumped to {layer.grad_norm:.3g}, "
                                   f"{layer.grad_norm / median:.0f}x its recent median {median:.3g}, at step {record.step}")
            recent.append(layer.grad_norm)
        return hit

    def _ratio_band(self, record, layers) -> WatchHit | None:
        low, high, steps = self.config.watch_ratio_low, self.config.watch_ratio_high, self.config.watch_ratio_steps
        if not steps or (not low and not high):
            return None
        for layer in layers:
            ratio = layer.update_ratio
            outside = (high and ratio > high) or (low and ratio < low)
            self._outside[layer.name] = self._outside[layer.name] + 1 if outside else 0
            if self._outside[layer.name] >= steps:
                self._outside[layer.name] = 0
                side = f"above {high:g}" if high and ratio > high else f"below {low:g}"
                return WatchHit("ratio_band", record.step, layer.name, ratio, high if ratio > high else low,
                                f"{layer.name}'s update:weight ratio was {side} for {steps} measured steps "
                                f"(now {ratio:.3g}) at step {record.step}")
        return None

    def _dead(self, record) -> WatchHit | None:
        threshold = self.config.watch_dead_relu
        for act in record.activations:
            if threshold and act.dead_fraction is not None and act.dead_fraction > threshold:
                return WatchHit("dead_relu", record.step, act.name, act.dead_fraction, threshold,
                                f"{act.dead_fraction:.0%} of {act.name}'s units are dead (0 for the whole batch) "
                                f"at step {record.step}")
        return None

    def _vanishing(self, record, layers) -> WatchHit | None:
        threshold = self.config.watch_vanishing
        weights = [layer for layer in layers if len(layer.shape) > 1] or layers
        if not threshold or len(weights) < 2 or weights[-1].grad_norm == 0:
            return None
        ratio = weights[0].grad_norm / weights[-1].grad_norm
        if ratio < threshold:
            return WatchHit("vanishing", record.step, weights[0].name, ratio, threshold,
                            f"gradients vanish on the way back: {weights[0].name}'s gradient norm is {ratio:.1e} x "
                            f"{weights[-1].name}'s at step {record.step}")
        return None


def first_nonfinite_parameter(model) -> str | None:
    """The first parameter (in named_parameters order) holding nan or inf, for a diagnosis after a bad loss."""
    import torch

    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return name
    return None
