"""Steps taken whose numbers are still on the device, and how they become records: one host transfer for all.

Each step leaves its loss, logits and targets here as device tensors, and each layer's gradient norm in a row of
the health block (`nktui.probe.health`), or, on an observed step, the full `Observation`; `take()` reads them
all with one `.tolist()`, the flush's only wait for the device. samples/s is measured over the steps taken since
the previous `take()`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..protocol.records import EMPTY, StepRecord, frozen_mapping
from .health import HealthBlock
from .instruments import Instruments, Observation


@dataclass
class PendingStep:
    step: int
    epoch: int
    lr: float
    loss: torch.Tensor  # 0-d, on the device (its graph freed by backward)
    logits: torch.Tensor  # (batch, classes)
    targets: torch.Tensor
    observation: Observation | None  # None: an unobserved step, whose gradient norms are row `health_row`
    health_row: int | None = None  # its row of the health block (unobserved steps)


class PendingSteps:
    def __init__(self, instruments: Instruments) -> None:
        self.instruments = instruments
        self.health = HealthBlock(instruments.params)  # every unobserved step's row: `health.write()` with `add`
        self._steps: list[PendingStep] = []
        self._window_start = time.perf_counter()

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, *fields) -> None:
        """One step's device tensors (the fields of `PendingStep`, in order)."""
        if not self._steps:
            self._window_start = time.perf_counter()
        self._steps.append(PendingStep(*fields))

    def clear(self) -> None:
        """Forget them (replayed steps, whose records were published the first time)."""
        self._steps.clear()
        self.health.clear()

    def take(self) -> tuple[list[StepRecord], list[list[float] | None]]:
        """The pending steps as records, with each unobserved step's gradient norms (None for observed ones,
        whose records carry them); none are pending after."""
        if not self._steps:
            return [], []
        pending, self._steps = self._steps, []
        n, checked = len(pending), len(self.health)
        with torch.no_grad():  # (the losses and logits are the step's own tensors, not detached copies)
            losses = torch.stack([p.loss for p in pending]).float()
            correct = _count_correct([p.logits for p in pending], [p.targets for p in pending])
            values = torch.cat([losses, correct, self.health.rows().flatten()]).tolist()  # a host sync: the one wait
        self.health.clear()
        health = self.health.norms(values[2 * n:], checked)
        elapsed = time.perf_counter() - self._window_start
        batches = [p.targets.shape[0] for p in pending]
        rate = sum(batches) / elapsed if elapsed > 0 else None
        names, shapes = self.instruments.names, self.instruments.shapes
        records, norms = [], []
        for i, p in enumerate(pending):
            layers, acts = EMPTY, ()
            if p.observation is not None:
                layers, acts = p.observation.to_host(names, shapes)
                layers = frozen_mapping(layers)
                norms.append(None)
            else:
                norms.append(health[p.health_row])
            records.append(StepRecord(p.step, p.epoch, values[i], values[n + i] / batches[i], p.lr, rate, layers, acts))
        return records, norms


def _count_correct(logits: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Correct predictions per step, as floats: one batched op when all steps had the same batch shape."""
    if len({t.shape for t in logits}) == 1:  # the usual case: every training batch has the same size
        # (max's indices are argmax's, first of equals; on the CPU it costs a third of argmax over a short last dim)
        return torch.cat(logits).max(-1).indices.eq(torch.cat(targets)).view(len(logits), -1).sum(-1).float()
    return torch.stack([lg.max(-1).indices.eq(t).sum() for lg, t in zip(logits, targets)]).float()
