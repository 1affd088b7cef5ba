"""Snapshots of one parameter tensor for the layer detail view: weight, gradient and last update as plain tuples
(`nktui.protocol.results.LayerSnapshot`).

`layer_snapshot(trainer, name)` runs on the training thread (through `Controller.call`) between steps. Large
tensors are average-pooled down to at most `max_rows x max_cols` cells on the device, so the host receives a few
thousand numbers whatever the layer's size. A first-layer weight whose rows each see the whole input (the linear
model's classifier, an MLP's first layer) is also returned row by row reshaped to the input image, so each
class's (or unit's) template can be drawn as a picture. A convolution's weight (out, in, kh, kw) is also returned
filter by filter: each output filter's kh x kw kernel, averaged over its input channels (`kernels`), for the first
`max_kernels` filters.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ...protocol.records import Grid
from ...protocol.results import LayerSnapshot

def as_matrix(t: torch.Tensor) -> torch.Tensor:
    """2-D view of any parameter: vectors become one row, conv kernels (out, in, kh, kw) become out x (in*kh*kw)."""
    if t.ndim == 0:
        return t.reshape(1, 1)
    if t.ndim == 1:
        return t.reshape(1, -1)
    return t.reshape(t.shape[0], -1)


def pool(matrix: torch.Tensor, max_rows: int, max_cols: int) -> tuple[Grid, bool]:
    """Average-pool a 2-D tensor to fit max_rows x max_cols; returns (grid, pooled)."""
    rows, cols = matrix.shape
    if rows <= max_rows and cols <= max_cols:
        return _grid(matrix), False
    target = (min(rows, max_rows), min(cols, max_cols))
    pooled = F.adaptive_avg_pool2d(matrix.float()[None, None], target)[0, 0]
    return _grid(pooled), True


def _grid(t: torch.Tensor) -> Grid:
    return tuple(tuple(row) for row in t.float().cpu().tolist())


def layer_snapshot(
    trainer, name: str, max_rows: int = 32, max_cols: int = 64, max_images: int = 16, max_kernels: int = 64
) -> LayerSnapshot:
    params = dict(trainer.model.named_parameters())
    if name not in params:
        raise KeyError(f"no parameter named {name!r}; the model has {', '.join(params)}")
    param = params[name]
    p = param.detach()
    grad = param.grad.detach() if param.grad is not None else None
    update = trainer.last_update(name)
    weight_grid, pooled = pool(as_matrix(p), max_rows, max_cols)
    grad_grid = pool(as_matrix(grad), max_rows, max_cols)[0] if grad is not None else None
    update_grid = pool(as_matrix(update), max_rows, max_cols)[0] if update is not None else None
    images: dict[str, Any] = {}
    input_shape = tuple(trainer.data.input_shape)
    if p.ndim == 2 and p.shape[1] == math.prod(input_shape) and len(input_shape) == 3:
        for key, tensor in (("row_images", p), ("row_grad_images", grad), ("row_update_images", update)):
            if tensor is not None:
                # channels averaged: one picture per row of the weight
                pictures = tensor[:max_images].reshape(-1, *input_shape).mean(dim=1)
                images[key] = tuple(_grid(picture) for picture in pictures)
    if p.ndim == 4:  # a conv kernel (out, in, kh, kw): one small picture per output filter
        for key, tensor in (("kernels", p), ("kernel_grads", grad), ("kernel_updates", update)):
            if tensor is not None:
                kernels = tensor[:max_kernels].mean(dim=1).float().cpu().tolist()  # one transfer for them all
                images[key] = tuple(tuple(tuple(row) for row in kernel) for kernel in kernels)
        images["kernel_filters"] = p.shape[0]
    return LayerSnapshot(
        name=name,
        shape=tuple(p.shape),
        step=trainer.step_count,
        weight=weight_grid,
        grad=grad_grid,
        update=update_grid,
        pooled=pooled,
        **images,
    )
