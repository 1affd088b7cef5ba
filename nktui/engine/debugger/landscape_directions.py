"""The two directions of a loss surface's plane: moving the model's weights along them, and projecting a
trajectory onto them. Used by `nktui.engine.debugger.landscape`; runs on the training thread.

- `weight_directions`: two single weights (one-hot directions); moving sets just those two entries.
- `random_directions`: Li et al. 2018 filter-normalised random directions (see `filter_normalise`).
- `path_directions`: the two principal directions of the recorded trajectory.

Flat vectors (trajectory entries, projections) hold every parameter in `model.named_parameters()` order.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ...protocol.indices import unravel
from ...protocol.results import WeightRef


class Directions:
    """Base: d1 and d2 as flat CPU vectors for projecting; subclasses move the model along them."""

    x_label = "d1"
    y_label = "d2"
    min_span = 1.0

    def __init__(self, d1: torch.Tensor, d2: torch.Tensor) -> None:
        self.flat = torch.stack([d1, d2]).double()  # (2, P)
        gram = self.flat @ self.flat.T
        self._gram_inverse = torch.linalg.pinv(gram)

    def project(self, deltas: torch.Tensor) -> torch.Tensor:
        """(T, P) parameter differences -> (T, 2) coordinates c minimising ||delta - c1 d1 - c2 d2||."""
        return (deltas.double() @ self.flat.T) @ self._gram_inverse

    def in_plane(self, deltas: torch.Tensor) -> torch.Tensor:
        return self.project(deltas) @ self.flat

    @contextmanager
    def moving(self):  # pragma: no cover - interface
        """Yields move(a, b): put the weights at theta + a * d1 + b * d2. Restores theta on exit."""
        raise NotImplementedError
        yield


class WeightDirections(Directions):
    min_span = 0.05

    def __init__(self, model: nn.Module, w1: WeightRef, w2: WeightRef) -> None:
        params = dict(model.named_parameters())
        for ref in (w1, w2):
            if ref.name not in params:
                raise ValueError(f"no parameter {ref.name!r}; the model has {', '.join(params)}")
        if w1 == w2:
            raise ValueError(f"W1 and W2 are both {w1}: choose two different weights")
        self.p1, self.p2 = params[w1.name], params[w2.name]
        self.i1, self.i2 = w1.flat(tuple(self.p1.shape)), w2.flat(tuple(self.p2.shape))
        offsets, total = {}, 0
        for name, p in params.items():
            offsets[name] = total
            total += p.numel()
        d1, d2 = torch.zeros(total), torch.zeros(total)
        d1[offsets[w1.name] + self.i1] = 1.0
        d2[offsets[w2.name] + self.i2] = 1.0
        super().__init__(d1, d2)
        self.x_label, self.y_label = f"W1 {w1}", f"W2 {w2}"
        # Scale of a weight of these layers: the grid is at least a tenth of it wide (the path sets it otherwise).
        scale = max(float(self.p1.detach().abs().max()), float(self.p2.detach().abs().max()), 0.5)
        self.min_span = 0.2 * scale

    @contextmanager
    def moving(self):
        flat1, flat2 = self.p1.data.view(-1), self.p2.data.view(-1)
        v1, v2 = flat1[self.i1].clone(), flat2[self.i2].clone()

        def move(a: float, b: float) -> None:
            flat1[self.i1] = v1 + a
            flat2[self.i2] = v2 + b

        try:
            yield move
        finally:
            flat1[self.i1] = v1
            flat2[self.i2] = v2


class VectorDirections(Directions):
    """Directions over whole parameter tensors: per-parameter tensors on the model's device (None: no direction)."""

    def __init__(self, model: nn.Module, d1: list[torch.Tensor | None], d2: list[torch.Tensor | None], labels) -> None:
        params = list(model.parameters())
        flat = [
            torch.cat([(d if d is not None else torch.zeros(p.numel())).reshape(-1).float().cpu() for d, p in zip(ds, params)])
            for ds in (d1, d2)
        ]
        super().__init__(*flat)
        self.x_label, self.y_label = labels
        keep = [i for i in range(len(params)) if d1[i] is not None or d2[i] is not None]
        self.params = [params[i] for i in keep]
        zero = [torch.zeros_like(params[i]) for i in keep]
        self.d1 = [d1[i].to(params[i]) if d1[i] is not None else z for i, z in zip(keep, zero)]
        self.d2 = [d2[i].to(params[i]) if d2[i] is not None else z for i, z in zip(keep, zero)]

    @contextmanager
    def moving(self):
        params = [p.data for p in self.params]
        base = [p.clone() for p in params]
        row = [p.clone() for p in params]
        last_b = [None]

        def move(a: float, b: float) -> None:
            if last_b[0] != b:  # theta + b * d2, once per grid row
                torch._foreach_copy_(row, base)
                torch._foreach_add_(row, self.d2, alpha=b)
                last_b[0] = b
            torch._foreach_copy_(params, row)
            torch._foreach_add_(params, self.d1, alpha=a)

        try:
            yield move
        finally:
            torch._foreach_copy_(params, base)


def weight_directions(model: nn.Module, w1: WeightRef, w2: WeightRef) -> WeightDirections:
    return WeightDirections(model, w1, w2)


def filter_normalise(direction: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Li et al.'s filter normalisation: each output row (dim 0: a neuron's weights, a conv filter) of `direction`
    scaled to the norm of the same row of `weight`. 1-D and 0-D parameters (biases, norms' scales) get zeros."""
    if weight.ndim <= 1:
        return torch.zeros_like(direction)
    d = direction.reshape(direction.shape[0], -1)
    w = weight.reshape(weight.shape[0], -1)
    scale = w.norm(dim=1, keepdim=True) / d.norm(dim=1, keepdim=True).clamp_min(torch.finfo(d.dtype).tiny)
    return (d * scale).reshape(direction.shape)


def random_directions(model: nn.Module, seed: int = 0) -> VectorDirections:
    """Two filter-normalised Gaussian directions, drawn from their own generator (the run's RNG is untouched)."""
    generator = torch.Generator().manual_seed(seed)
    out: tuple[list, list] = ([], [])
    for p in model.parameters():
        weight = p.detach().float().cpu()
        for ds in out:
            d = torch.randn(weight.shape, generator=generator)
            ds.append(filter_normalise(d, weight) if weight.ndim > 1 else None)
    return VectorDirections(model, out[0], out[1], ("α (random direction 1)", "β (random direction 2)"))


def path_directions(model: nn.Module, history: list[torch.Tensor], now: torch.Tensor, offsets) -> VectorDirections:
    """The two principal directions of [theta_t - theta_now] over the recorded steps (unit vectors)."""
    if len(history) < 2:
        raise ValueError("the path plane needs two or more recorded steps before this one: take a few steps (n)")
    deltas = torch.stack(history) - now
    _, singular, vh = torch.linalg.svd(deltas.double(), full_matrices=False)
    if len(singular) < 2 or float(singular[1]) <= 1e-12 * max(float(singular[0]), 1e-300):
        raise ValueError("the recorded steps all lie on one line: take a few more steps (n) for a plane")
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    per_param: tuple[list, list] = ([], [])
    for k, ds in enumerate(per_param):
        direction = vh[k].float()
        # Sign: the path's oldest point has positive coordinates, so the descent comes in from the upper right.
        if float(deltas[0].double() @ vh[k]) < 0:
            direction = -direction
        for name, p in zip(names, params):
            ds.append(direction[offsets[name] : offsets[name] + p.numel()].view(p.shape))
    directions = VectorDirections(model, per_param[0], per_param[1], ("path direction 1", "path direction 2"))
    directions.min_span = 1e-3 * max(float(now.norm()), 1e-3)
    return directions


def largest_gradient_weights(model: nn.Module, layer: str | None, x: torch.Tensor, y: torch.Tensor):
    """The two weights of `layer` (default: the first parameter with two or more dimensions) with the largest
    |gradient|: the training gradient of the last step when there is one, else that of the evaluation batch."""
    params = dict(model.named_parameters())
    if layer is None:
        layer = next((n for n, p in params.items() if p.ndim >= 2), None) or next(iter(params))
    if layer not in params:
        raise ValueError(f"no parameter {layer!r}; the model has {', '.join(params)}")
    p = params[layer]
    if p.numel() < 2:
        raise ValueError(f"{layer} holds a single weight: choose a layer with two or more")
    grad = p.grad
    if grad is None:  # no step yet: the gradient of the loss on the evaluation batch (does not touch .grad)
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad():
                grad = torch.autograd.grad(F.cross_entropy(model(x), y), p)[0]
        finally:
            model.train(was_training)
    top = grad.detach().abs().reshape(-1).topk(2).indices.tolist()
    shape = tuple(p.shape)
    return WeightRef(layer, unravel(top[0], shape)), WeightRef(layer, unravel(top[1], shape))
