"""Every step's health check: each parameter's gradient norm, left on the device in one block, a row a step.

The watchpoints check every step (`nktui.probe.watch`), so this runs on every step the UI does not measure,
and it is most of what nktui adds to a bare step: it reads every gradient value once. The block is allocated
once and each step writes its row in place, so that a flush reads all rows with the losses in one transfer,
with no `stack` of hundreds of 0-d tensors first.

How a row is written depends on the device:
- On the CPU (float32 or float64 parameters): each cell gets the *squared* norm, `torch.dot(g, g)` written into a
  view of that cell made once. A BLAS dot a parameter costs about a fifth fewer instructions than
  `torch._foreach_norm`, whose CPU path is one full reduction a tensor (benchmarks/RESULTS.md). `read` takes the
  square roots on the host. (A dot accumulates in float32 like the norm does: both overflow to inf for gradients
  of ~1e19 and more, which the fault finder re-takes exactly.)
- Elsewhere (CUDA: one fused kernel for all tensors), `torch._foreach_norm` and one `stack` into the row.
"""

from __future__ import annotations

import math

import torch

CAPACITY = 64  # rows allocated at first; a longer run of steps without a flush doubles it


class HealthBlock:
    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = params
        device = params[0].device if params else torch.device("cpu")
        dtypes = {p.dtype for p in params}
        self.squared = device.type == "cpu" and len(dtypes) == 1 and dtypes <= {torch.float32, torch.float64}
        self._dtype = dtypes.pop() if self.squared else torch.float32
        self._device = device
        self._flat = tuple(p.dim() == 1 for p in params)
        self._rows = 0
        self._allocate(CAPACITY)

    def _allocate(self, capacity: int) -> None:
        block = torch.zeros(capacity, len(self.params), dtype=self._dtype, device=self._device)
        if self._rows:
            block[: self._rows] = self.block[: self._rows]
        self.block = block
        # One 0-d view a cell, made once: a view made every step would cost as much as the dot itself.
        self._cells = [list(row.unbind()) for row in block.unbind()] if self.squared else []

    def __len__(self) -> int:
        return self._rows

    def write(self) -> int:
        """This step's row: each parameter's gradient norm (squared on the CPU), on the device; no host sync. Returns
        the row's index, which the pending step keeps (a step that fails after this leaves an unused row)."""
        if self._rows == len(self.block):
            self._allocate(2 * len(self.block))
        if self.squared:
            dot = torch.dot
            for p, cell, flat in zip(self.params, self._cells[self._rows], self._flat):
                g = p.grad
                if g is None:
                    cell.zero_()
                elif flat:
                    dot(g, g, out=cell)
                else:
                    g = g.ravel()  # (a view, or a copy of a non-contiguous gradient)
                    dot(g, g, out=cell)
        else:
            grads = [p.grad if p.grad is not None else p.new_zeros(()) for p in self.params]
            torch.stack(torch._foreach_norm(grads), out=self.block[self._rows])
        self._rows += 1
        return self._rows - 1

    def rows(self) -> torch.Tensor:
        """The rows written since the last `clear()`, on the device (for the flush's one transfer)."""
        return self.block[: self._rows]

    def norms(self, values: list[float], rows: int) -> list[list[float]]:
        """`rows` rows' values as read on the host (flattened, row after row): each row's gradient norms."""
        width = len(self.params)
        if self.squared:
            values = list(map(math.sqrt, values))  # (nan stays nan, inf stays inf)
        return [values[i * width: (i + 1) * width] for i in range(rows)]

    def clear(self) -> None:
        self._rows = 0
