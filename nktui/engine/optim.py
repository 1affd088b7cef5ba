"""Optimizers: plain SGD as in the article (w <- w - lr * dL/dw), SGD with momentum or Nesterov, Adam, AdamW."""

from __future__ import annotations

import torch
from torch import nn

from ..protocol.config import RunConfig, parse_lr


def build_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    raise AssertionError(f"RunConfig.validate() lets through unknown optimizer {config.optimizer!r}")


def get_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def set_lr(optimizer: torch.optim.Optimizer, lr: object) -> float:
    """Set every parameter group's learning rate; raises ConfigError for <= 0, nan, inf or text."""
    value = parse_lr(lr)
    for group in optimizer.param_groups:
        group["lr"] = value
    return value
