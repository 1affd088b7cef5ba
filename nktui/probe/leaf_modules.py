"""The model's leaf modules, the ones whose forward hooks see each layer's output: one walk for every hook.

`leaf_modules(model, skip)`: (name, module) for each named submodule that has no children of its own, in
`named_modules()` order (forward order for sequential models), the root itself excluded, and modules of the types
in `skip` left out (the instruments and the step trace pass `instruments.PASS_THROUGH`: layers whose output is
their input rearranged).
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn


def leaf_modules(model: nn.Module, skip: tuple[type, ...] = ()) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if name and next(module.children(), None) is None and not isinstance(module, skip):
            yield name, module
