"""LR what-if: the loss on the next batch after the next step, at a dozen learning rates, before taking it.

The optimizer's update is linear in the learning rate for SGD (with or without momentum), Adam and AdamW: the
step at rate lr' is (lr'/lr) times the step at rate lr. So one real step at the current LR gives the update
direction Δ, and the loss at lr' is the loss at W + (lr'/lr)·Δ: a few forward passes, not a few training runs. At
lr' = lr exactly, the weights are those of the real step, so that point of the curve is the loss the step would
actually give. Everything is undone afterwards (`capture_state` / `restore_state`): the run does not move.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ...protocol.results import WhatIf
from ..state import capture_state, restore_state


def log_spaced(center: float, count: int = 13, decades: float = 3.0) -> tuple[float, ...]:
    """`count` rates from center/10^(decades/2) to center*10^(decades/2), log-spaced, with `center` exactly."""
    half = count // 2
    out = [center * 10 ** (decades / 2 * (i - half) / half) for i in range(count)]
    out[half] = center
    return tuple(out)


def lr_whatif(trainer, lrs: tuple[float, ...] | None = None) -> WhatIf:
    """The curve for the trainer's next step; the trainer is left exactly as it was."""
    lr = trainer.lr
    lrs = lrs or log_spaced(lr)
    state = capture_state(trainer, portable=False)
    step_index = trainer.step_count
    x, y = trainer.data.train_batch(step_index)
    model = trainer.model
    names = [name for name, _ in trainer.trainable_params]
    rng = torch.get_rng_state()
    try:
        model.train()
        before = {name: p.detach().clone() for name, p in trainer.trainable_params}
        with torch.no_grad():
            loss_now = float(F.cross_entropy(model(x), y))
        torch.set_rng_state(rng)  # the real step would see this RNG state (dropout masks)
        loss = F.cross_entropy(model(x), y)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()
        after = {name: p.detach().clone() for name, p in trainer.trainable_params}
        buffers = dict(model.named_buffers())
        losses = []
        with torch.no_grad():
            for candidate in lrs:
                if candidate == lr:
                    weights = after  # the real step's weights, bit for bit
                else:
                    scale = candidate / lr
                    weights = {n: before[n] + scale * (after[n] - before[n]) for n in names}
                torch.set_rng_state(rng)
                out = functional_call(model, {**weights, **buffers}, (x,))
                losses.append(float(F.cross_entropy(out, y)))
    finally:
        restore_state(trainer, state)
    return WhatIf(step=step_index + 1, current_lr=lr, lrs=tuple(lrs), losses=tuple(losses), loss_now=loss_now)
