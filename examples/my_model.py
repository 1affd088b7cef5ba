"""An example of bringing your own model to nktui.

    nktui --model examples/my_model.py:build                 # the app
    nktui train --model examples/my_model.py:build --steps 500

nktui calls `build(input_shape, num_classes)` with the input shape (channels, height, width) and the number of
classes, and trains the module it returns. The module maps a float batch (N, C, H, W) with pixels in [0, 1] to
logits (N, num_classes): no softmax, nktui's loss (cross-entropy) applies it. Named submodules give readable rows in
the gradient pane (`features.0.weight`, `head.weight`...), and convolution kernels get heat maps like any layer.
"""

from __future__ import annotations

from torch import nn


class SmallConvNet(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, width: int = 8) -> None:
        super().__init__()
        channels, height, width_px = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, kernel_size=3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d((4, 4)),  # any input size works: 8x8 digits, 28x28 MNIST, 32x32 CIFAR
        )
        self.head = nn.Linear(width * 4 * 4, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def build(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return SmallConvNet(input_shape, num_classes)
