"""Flat positions and coordinates (nktui.protocol.indices): the one copy of the arithmetic, both ways."""

from __future__ import annotations

import itertools

from nktui.render.format import index_text
from nktui.protocol.indices import ravel, unravel


def test_ravel_and_unravel_are_row_major_and_inverse():
    shape = (2, 3, 4)
    for flat, index in enumerate(itertools.product(*(range(s) for s in shape))):
        assert ravel(index, shape) == flat
        assert unravel(flat, shape) == index


def test_a_scalar_and_an_empty_tensor():
    assert ravel((), ()) == 0 and unravel(0, ()) == ()
    assert unravel(0, (0, 3)) == (0, 0)  # nothing to index, and no division by zero
    assert index_text(0, ()) == "0" and index_text(426, (10, 64)) == "6,42"
