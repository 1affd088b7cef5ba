"""Numbers that are 0 up to float rounding are shown as 0, judged against the tensor's scale, so that what the layer
detail shows (and its snapshot) does not depend on the last bits of a float (another CPU, another BLAS)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from rich.console import Console, Group
from torch import nn

from nktui.render.format import ROUNDING, number, number_at_scale
from nktui.probe.instruments import Instruments
from nktui.ui.screens.layer_detail import histogram_text, stats_table


def test_number_at_scale():
    assert number_at_scale(1.16e-10, 0.0847) == "0"
    assert number_at_scale(-1.38e-10, 0.0847) == "0"
    assert number_at_scale(0.0, 0.0) == "0"
    assert number_at_scale(ROUNDING * 0.5, 1.0) == "0"
    assert number_at_scale(1e-3, 0.08) == number(1e-3)  # a real mean is kept
    assert number_at_scale(1e-10, 1e-9) == number(1e-10)  # tiny, but not against its own (tiny) scale
    assert number_at_scale(1e-10, 0.0) == number(1e-10)
    assert number_at_scale(1e-10, math.nan) == number(1e-10)
    assert number_at_scale(math.nan, 1.0) == "nan"
    assert number_at_scale(None, 1.0) == "-"
    assert number_at_scale(0.5, 2.0, digits=2) == "0.5"


def softmax_layer_gradient() -> tuple[nn.Linear, torch.Tensor]:
    """A linear layer's weight gradient under cross-entropy: every column sums to 0 over the classes, so the mean is
    0 exactly, and float32 leaves ~1e-10 of it."""
    torch.manual_seed(0)
    layer = nn.Linear(64, 10)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    F.cross_entropy(layer(x), y).backward()
    return layer, layer.weight.grad.clone()


def detail_text(layer: nn.Linear, grad: torch.Tensor) -> tuple[str, float]:
    """The layer detail's stats and histogram as plain text, with its statistics taken by the real instruments."""
    instruments = Instruments(layer, histogram_bins=16)
    layer.weight.grad = grad.clone()
    instruments.before_update()
    layers, _ = instruments.after_update().to_host(instruments.names, instruments.shapes)
    stats = layers["weight"]
    console = Console(width=120, record=True, color_system=None, file=open("/dev/null", "w"))
    console.print(Group(stats_table(stats, 3, 0.1), histogram_text(stats)))
    return console.export_text(), stats.grad_mean


def test_layer_detail_shows_the_same_text_for_gradients_that_differ_in_the_last_bits():
    layer, grad = softmax_layer_gradient()
    nudged = grad.clone().flatten()
    # a few ulps on eight middle-sized values (neither the extremes nor 0): the sum moves in its last bits
    order = nudged.abs().argsort()
    for i in order[len(order) // 2 : len(order) // 2 + 8]:
        nudged[i] = torch.nextafter(nudged[i], torch.tensor(math.inf))
        nudged[i] = torch.nextafter(nudged[i], torch.tensor(math.inf))
    nudged = nudged.view_as(grad)
    assert not torch.equal(grad, nudged)
    assert torch.allclose(grad, nudged, rtol=1e-6, atol=0)

    text, mean = detail_text(layer, grad)
    nudged_text, nudged_mean = detail_text(layer, nudged)
    assert mean != nudged_mean and number(mean) != number(nudged_mean)  # the raw means do differ...
    assert text == nudged_text  # ...and the screen does not
    assert "grad mean   0 " in text
    assert "grad |max|" in text and "Gradient values" in text
