"""Trajectory: the model's parameters at recent observed steps, kept on the CPU for the loss surface's descent path.

The trainer calls `record(step)` on observed steps only (a single step, a step the UI will look at, a log step),
so an unobserved step costs nothing. Each entry is every parameter flattened into one float32 vector on the
CPU, in `model.named_parameters()` order (`offsets` says where each parameter starts). At most `max_entries`
entries are kept, and no more than `max_bytes` in all: the oldest go first. A model whose vector would leave room
for fewer than MIN_ENTRIES entries is not recorded at all (`enabled` is False), so a big model pays nothing.

Going back (a rewind or a restored checkpoint) is handled where it shows: recording step s drops every entry of
step s or later, and `entries(up_to)` leaves out entries from after the step the model is at now.
"""

from __future__ import annotations

import math
from collections import deque

import torch
from torch import nn

from ..protocol.indices import ravel

MAX_ENTRIES = 64
MAX_BYTES = 32 << 20  # 32 MiB of float32 vectors at most
MIN_ENTRIES = 8  # below this many entries the path says too little to be worth the memory


class Trajectory:
    def __init__(self, model: nn.Module, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        named = list(model.named_parameters())
        self.params = [p for _, p in named]
        self.names = tuple(name for name, _ in named)
        self.shapes = tuple(tuple(p.shape) for p in self.params)
        self.offsets: dict[str, int] = {}
        total = 0
        for name, p in named:
            self.offsets[name] = total
            total += p.numel()
        self.numel = total
        entry_bytes = max(total * 4, 1)
        self.capacity = min(max_entries, max_bytes // entry_bytes)
        self.enabled = self.capacity >= MIN_ENTRIES
        self._entries: deque[tuple[int, torch.Tensor]] = deque(maxlen=max(self.capacity, 1))

    def record(self, step: int) -> None:
        """Keep a CPU copy of the parameters as they are after `step` updates (an observed step)."""
        if not self.enabled:
            return
        while self._entries and self._entries[-1][0] >= step:  # a rewind came back to before this step
            self._entries.pop()
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for p in self.params]).to("cpu", torch.float32)
        self._entries.append((step, flat))

    def entries(self, up_to: int | None = None) -> list[tuple[int, torch.Tensor]]:
        """(step, flat parameters) oldest first; only steps <= up_to when given."""
        return [(s, v) for s, v in self._entries if up_to is None or s <= up_to]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def flat_index(self, name: str, index: tuple[int, ...]) -> int:
        """Position of parameter `name`'s entry `index` in a recorded vector."""
        return self.offsets[name] + ravel(index, self.shapes[self.names.index(name)])

    @property
    def entry_bytes(self) -> int:
        return self.numel * 4

    def describe(self) -> str:
        if not self.enabled:
            return f"not recorded: {self.numel:,} parameters take {math.ceil(self.entry_bytes / 2**20)} MiB a step"
        return f"{len(self)} of at most {self.capacity} observed steps"
