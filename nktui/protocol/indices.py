"""Positions in a row-major tensor, as coordinates and as one flat number: the one copy of that arithmetic.

`fc.weight[6,42]` and `fc.weight[426]` name the same weight of a 10 x 64 tensor. The loss surface's weight
dialog, its default directions, the descent path's recorded vectors and the trace's examples all convert between
the two, through these. Plain Python (no torch), so the renderers can use it too.
"""

from __future__ import annotations

from collections.abc import Sequence


def ravel(index: Sequence[int], shape: Sequence[int]) -> int:
    """Coordinates -> flat position in row-major order (`(6, 42)` in 10 x 64 -> 426); a scalar's `()` -> 0."""
    flat = 0
    for i, size in zip(index, shape):
        flat = flat * size + i
    return flat


def unravel(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    """Flat position -> coordinates (426 in 10 x 64 -> `(6, 42)`); a scalar's shape `()` gives `()`. A size of 0
    (a tensor with nothing in it) gives coordinate 0 there rather than dividing by zero."""
    coords = []
    for size in reversed(shape):
        coords.append(flat % size if size else 0)
        flat //= size if size else 1
    return tuple(reversed(coords))
