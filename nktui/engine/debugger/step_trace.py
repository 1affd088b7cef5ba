"""A traced step: the four phases of one real update, with the numbers of the step that was committed.

`Trainer.trace_step()` runs the ordinary step function with a `Tracer` attached, so what it shows is the step
that happened, not a re-computation that could differ:
  1. forward: the batch, one sample as an image, each layer's output statistics in forward order;
  2. softmax and loss: that sample's logits, softmax probabilities, its one-hot label and cross-entropy, the batch
     loss (linear sum -> logits -> softmax -> cross-entropy, as in the article);
  3. backward: the gradient arriving at each layer's output, in backward order (output layer first), and each
     parameter's gradient norm, so vanishing or exploding gradients show as they flow;
  4. update: per parameter the change the optimizer made next to -lr * grad, with the difference explained.
Everything is copied to plain Python values; the trace (`nktui.protocol.results.StepTrace`) holds no tensors.
Norms, means and the per-sample loss are computed in float64 (the loss from log-softmax, never as the log of a
rounded probability), so a step whose values are huge but finite shows them as they are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...protocol.records import StepRecord, ratio
from ...protocol.results import BackwardLayer, ForwardLayer, ParamUpdate, StepTrace
from ...probe.instruments import PASS_THROUGH, RELU_LIKE, wide_dtype
from ...probe.leaf_modules import leaf_modules

class Tracer:
    """Attached to one step by the trainer: hooks for the forward and backward passes, copies around the update."""

    def __init__(self, model: nn.Module, sample_index: int = 0, examples: int = 3) -> None:
        self.model = model
        self.sample_index = sample_index
        self.examples = examples
        self._handles: list = []
        self._forward: list[tuple[str, str, tuple[int, ...], torch.Tensor]] = []
        self._backward: list[tuple[str, str, torch.Tensor]] = []
        self._before: dict[str, torch.Tensor] = {}
        self.trace_fields: dict = {}

    def attach(self) -> None:
        for name, module in leaf_modules(self.model, skip=PASS_THROUGH):
            self._handles.append(module.register_forward_hook(self._hook(name, module)))

    def _hook(self, name: str, module: nn.Module):
        relu_like = isinstance(module, RELU_LIKE)
        kind = type(module).__name__

        def forward_hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                return
            out = output.detach()
            dead = (out <= 0).all(dim=0).float().mean() if relu_like and out.ndim > 1 else out.new_tensor(math.nan)
            wide = out.to(wide_dtype(out.device))
            stats = torch.stack([wide.mean(), wide.std(correction=0), dead.to(wide.dtype)])
            self._forward.append((name, kind, tuple(out.shape), stats))
            if output.requires_grad:  # the gradient arriving at this output, recorded during backward
                output.register_hook(lambda grad: self._backward.append(
                    (name, kind, torch.linalg.vector_norm(grad, dtype=wide_dtype(grad.device)))))

        return forward_hook

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def after_backward(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor) -> None:
        i = min(self.sample_index, len(y) - 1)
        with torch.no_grad():
            log_probs = F.log_softmax(logits[i].to(wide_dtype(logits.device)), dim=0)
            probs = log_probs.exp()
            self.trace_fields.update(
                sample_index=i,
                sample_image=tuple(tuple(tuple(row) for row in channel) for channel in x[i].float().cpu().tolist()),
                label=int(y[i]),
                logits=tuple(logits[i].float().cpu().tolist()),
                probabilities=tuple(probs.cpu().tolist()),
                sample_loss=float(-log_probs[y[i]]),  # -log p[label], from log-softmax: exact where p rounds to 0
                batch_loss=float(loss),
                batch_accuracy=float((logits.argmax(1) == y).float().mean()),
                batch_size=len(y),
            )

    def before_update(self, named_params: list[tuple[str, nn.Parameter]]) -> None:
        self._before = {name: p.detach().clone() for name, p in named_params}

    def after_update(self, named_params: list[tuple[str, nn.Parameter]], lr: float) -> None:
        updates = []
        with torch.no_grad():
            for name, p in named_params:
                before = self._before[name]
                wide = wide_dtype(p.device)
                grad = (p.grad if p.grad is not None else torch.zeros_like(p)).to(wide)
                delta = p.detach().to(wide) - before.to(wide)  # float64: no overflow between finite values
                plain = -lr * grad
                top = torch.topk(grad.abs().flatten(), min(self.examples, grad.numel())).indices.tolist()
                flat_before, flat_after, flat_grad = before.flatten(), p.detach().flatten(), grad.flatten()
                updates.append(
                    ParamUpdate(
                        name=name,
                        shape=tuple(p.shape),
                        grad_norm=float(torch.linalg.vector_norm(grad)),
                        lr_grad_norm=float(torch.linalg.vector_norm(plain)),
                        update_norm=float(torch.linalg.vector_norm(delta)),
                        difference_norm=float(torch.linalg.vector_norm(delta - plain)),
                        weight_norm_before=float(torch.linalg.vector_norm(before, dtype=wide)),
                        weight_norm_after=float(torch.linalg.vector_norm(p.detach(), dtype=wide)),
                        examples=tuple(
                            (j, float(flat_before[j]), float(flat_after[j]), float(flat_grad[j])) for j in top
                        ),
                    )
                )
        self.trace_fields["updates"] = tuple(updates)
        self.detach()

    def finish(self, *, step: int, lr: float, optimizer, config, classes, record: StepRecord | None) -> StepTrace:
        forward = tuple(
            ForwardLayer(name, kind, shape, *(_nan_to_none(v, i) for i, v in enumerate(stats.tolist())))
            for name, kind, shape, stats in self._forward
        )
        backward = tuple(BackwardLayer(name, kind, float(norm)) for name, kind, norm in self._backward)
        return StepTrace(
            step=step,
            lr=lr,
            optimizer=config.optimizer,
            classes=tuple(classes),
            forward=forward,
            backward=backward,
            update_rule=update_rule(config, self.trace_fields["updates"]),
            record=record,
            **{k: v for k, v in self.trace_fields.items() if k != "updates"},
            updates=self.trace_fields["updates"],
        )


def _nan_to_none(value: float, column: int):
    return None if column == 2 and value != value else value


def update_rule(config, updates: tuple[ParamUpdate, ...]) -> str:
    """One line on how the optimizer's actual update relates to -lr * grad, with the measured difference."""
    plain = math.hypot(*(u.lr_grad_norm for u in updates))  # (hypot: no overflow on the way)
    actual = math.hypot(*(u.update_norm for u in updates))
    diff = math.hypot(*(u.difference_norm for u in updates))
    rel = ratio(diff, plain)
    if config.optimizer == "sgd" and config.momentum == 0 and config.weight_decay == 0:
        return (f"plain SGD: the update is exactly -lr × grad (‖difference‖ / ‖lr·grad‖ = {rel:.1e}, "
                "float rounding)")
    if config.optimizer == "sgd":
        parts = []
        if config.momentum:
            parts.append(f"momentum adds {config.momentum:g} × the previous step's velocity")
        if config.weight_decay:
            parts.append(f"weight decay adds -lr × {config.weight_decay:g} × W")
        return (f"SGD: {' and '.join(parts)}, so the update is {ratio(actual, plain):.2f} × as long "
                f"as -lr × grad (‖difference‖ / ‖lr·grad‖ = {rel:.2f})")
    return (f"{config.optimizer}: each weight's step is -lr × m/(√v + ε), scaled per weight by its gradient history, "
            f"not by ‖grad‖: ‖update‖ = {actual:.3g} vs ‖lr·grad‖ = {plain:.3g} (‖difference‖ / ‖lr·grad‖ = {rel:.2f})")
