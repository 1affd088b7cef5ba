"""Per-layer statistics of a training step, computed on the device and copied to the host in one transfer.

Every step: each parameter's gradient norm (`nktui.probe.health`, in the parameters' own dtype), kept on the
device with the step's loss until the flush, so that the watchpoints check every step. A float32 norm overflows
to inf for gradients of ~1e19 and more; the fault finder (`nktui.engine.debugger.fault`) re-takes such a step with the
exact statistics below before it reports anything.

Observed steps (the ones somebody will look at: a UI refresh, a single step while paused, a log line, a direct
`Trainer.step()` call) get the full statistics, accumulated in float64 so that finite tensors give finite numbers
up to float32's largest values: for every parameter tensor the gradient's norm, sum, min and max; the weight's norm
before the update; the norm of the change the optimizer made (||W_after - W_before||, from a float64 copy taken
before the step). Mean, std and abs max follow on the host from those (std = sqrt(norm^2/n - mean^2): one cheap
reduction instead of `torch.std`). A norm is finite exactly when every value is, so the count of nan/inf gradient
values is 0 for a finite norm and counted only for layers whose norm is not. On request (`histogram_bins`,
`activations`, set by whoever will look at them): a histogram of each gradient, and each leaf module's output
mean, std and dead fraction through forward hooks attached for that one step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..protocol.records import ActivationStats, Histogram, LayerStats
from .leaf_modules import leaf_modules

# Modules whose outputs are 0 for "dead" units: their dead fraction is reported.
RELU_LIKE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU)
# Modules whose output is their input rearranged: no activation statistics of their own.
PASS_THROUGH = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)


@dataclass
class Observation:
    """Device tensors of one observed step, waiting to be copied to the host."""

    floats: torch.Tensor  # (layers, 6): grad norm, grad sum, grad min, grad max, weight norm, update norm
    histograms: torch.Tensor | None  # (layers, bins)
    activations: torch.Tensor | None  # (modules, 3): sum, norm, dead fraction (nan if not ReLU-like)
    activation_meta: tuple[tuple[str, str, tuple[int, ...]], ...]
    grads: list[torch.Tensor]  # kept to count non-finite values of the layers that have any

    def to_host(self, names, shapes) -> tuple[dict[str, LayerStats], tuple[ActivationStats, ...]]:
        rows = self.floats.tolist()  # host sync: waits for the step's kernels
        hists = self.histograms.tolist() if self.histograms is not None else None
        layers = {}
        for i, (name, shape, (norm, total, lo, hi, weight_norm, update_norm)) in enumerate(zip(names, shapes, rows)):
            n = math.prod(shape)
            mean = total / n
            nonfinite = 0 if math.isfinite(norm) else int((~torch.isfinite(self.grads[i])).sum())
            hist = Histogram(lo, hi, tuple(hists[i])) if hists is not None and nonfinite == 0 else None
            layers[name] = LayerStats(
                name, shape, norm, mean, _std(norm, mean, n), max(-lo, hi), weight_norm, update_norm, nonfinite, hist
            )
        acts = []
        if self.activations is not None:
            for (name, kind, shape), (total, norm, dead) in zip(self.activation_meta, self.activations.tolist()):
                n = math.prod(shape)
                mean = total / n
                acts.append(ActivationStats(name, kind, shape, mean, _std(norm, mean, n), None if dead != dead else dead))
        return layers, tuple(acts)


def _std(norm: float, mean: float, n: int) -> float:
    """Population std from the 2-norm and the mean: sqrt(E[x^2] - E[x]^2), in float64 on the host."""
    if not math.isfinite(norm):
        return math.nan
    return math.sqrt(max(norm * norm / n - mean * mean, 0.0))


class Instruments:
    """Measures one model's parameters around `optimizer.step()`, for the steps it is asked to observe.

    `histogram_bins` (0: none) and `activations` may be changed from any thread; the next observed step uses them.
    """

    def __init__(self, model: nn.Module, *, histogram_bins: int = 0, activations: bool = False) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.model = model
        self.names = tuple(n for n, _ in named)
        self.shapes = tuple(tuple(p.shape) for _, p in named)
        self.params = [p for _, p in named]
        self.wide = wide_dtype(self.params[0].device if self.params else torch.device("cpu"))
        self.histogram_bins = histogram_bins
        self.activations = activations
        self._before: list[torch.Tensor] | None = None  # weight copies, allocated on first use
        self._weight_norms: list[torch.Tensor] = []
        self._hooks: list = []
        self._act_rows: list[torch.Tensor] = []
        self._act_meta: list[tuple[str, str, tuple[int, ...]]] = []

    # -- forward: activation hooks, attached for observed steps only ------------------------------------------
    def attach_hooks(self) -> None:
        if not self.activations:
            return
        self._act_rows, self._act_meta = [], []
        for name, module in leaf_modules(self.model, skip=PASS_THROUGH):
            self._hooks.append(module.register_forward_hook(self._make_hook(name, module)))

    def _make_hook(self, name: str, module: nn.Module):
        relu_like = isinstance(module, RELU_LIKE)

        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                return
            out = output.detach()
            nan = out.new_tensor(math.nan)
            dead = (out <= 0).all(dim=0).float().mean() if relu_like and out.ndim > 1 else nan
            norm = torch.linalg.vector_norm(out, dtype=self.wide)
            self._act_rows.append(torch.stack([out.sum(dtype=self.wide), norm, dead.to(self.wide)]))
            self._act_meta.append((name, type(module).__name__, tuple(out.shape)))

        return hook

    def detach_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    # -- around optimizer.step() -------------------------------------------------------------------------------
    def before_update(self) -> None:
        """Remember the weights (norms and a copy) just before the optimizer changes them."""
        with torch.no_grad():
            if self._before is None:
                # float64: W_before - W_after cannot overflow where both are finite float32 values
                self._before = [torch.empty_like(p, dtype=self.wide) for p in self.params]
            self._weight_norms = torch._foreach_norm(self.params, dtype=self.wide)
            torch._foreach_copy_(self._before, self.params)

    def last_update(self, name: str) -> torch.Tensor | None:
        """W_after - W_before of the last observed step (valid until the next observed step)."""
        if self._before is None:
            return None
        return -self._before[self.names.index(name)].to(self.params[self.names.index(name)].dtype)

    def after_update(self) -> Observation:
        """Statistics of the gradients that were just applied and of the change the optimizer made."""
        bins = self.histogram_bins
        with torch.no_grad():
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
            torch._foreach_sub_(self._before, self.params)  # before - after: the negated update, in float64
            update_norms = torch._foreach_norm(self._before)
            grad_norms = torch._foreach_norm(grads, dtype=self.wide)  # float64: 1e20s give finite norms
            lows, highs = zip(*[torch.aminmax(g) if g.numel() else (g.new_zeros(()), g.new_zeros(())) for g in grads])
            sums = [g.sum(dtype=self.wide) for g in grads]
            # One stack of all the scalars (6 per layer) instead of a stack per layer: fewer tiny ops.
            columns = (*grad_norms, *sums, *(t.to(self.wide) for t in lows), *(t.to(self.wide) for t in highs),
                       *self._weight_norms, *update_norms)
            floats = torch.stack(columns).view(6, len(grads)).T
            histograms = None
            if bins:
                histograms = torch.stack([_histogram(g, lo, hi, bins) for g, lo, hi in zip(grads, lows, highs)])
        acts = torch.stack(self._act_rows) if self._act_rows else None
        meta = tuple(self._act_meta)
        self._act_rows, self._act_meta = [], []
        return Observation(floats, histograms, acts, meta, grads)


def wide_dtype(device: torch.device) -> torch.dtype:
    """The dtype statistics accumulate in: float64, except on Apple's MPS, which has none (float32 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _histogram(g: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bins: int) -> torch.Tensor:
    """Counts of g in `bins` equal bins over [lo, hi], on the device without reading lo or hi on the host.
    Halves throughout, so that hi - lo cannot overflow for values near float32's largest. (Garbage when g holds
    nan or inf; the host then drops it.)"""
    half_lo = lo / 2
    scale = bins / (hi / 2 - half_lo).clamp_min(torch.finfo(g.dtype).tiny)
    index = ((g.flatten() / 2 - half_lo) * scale).long().clamp_(0, bins - 1)
    return torch.bincount(index, minlength=bins)
