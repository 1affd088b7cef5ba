"""Models: the article's linear classifier, an MLP, a small CNN, and the user's own `package.module:factory`.

Every model maps a float batch (N, C, H, W) to logits (N, classes); softmax and cross-entropy live in the loss.
Layers are named (`fc1`, `act1`, `out` ...) so that `model.named_parameters()` reads well in the gradient pane.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections import OrderedDict
from pathlib import Path

from torch import nn

from .config import RunConfig
from .errors import ModelError

ACTIVATION_MODULES = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def linear(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The article's model: every pixel times a weight, plus a bias, per class -> logits."""
    return nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc=nn.Linear(math.prod(input_shape), num_classes)))


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden=(128, 64), activation: str = "relu") -> nn.Module:
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    width = math.prod(input_shape)
    for i, size in enumerate(hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(width, size)
        layers[f"act{i}"] = ACTIVATION_MODULES[activation]()
        width = size
    layers["out"] = nn.Linear(width, num_classes)
    return nn.Sequential(layers)


def cnn(input_shape: tuple[int, ...], num_classes: int, activation: str = "relu") -> nn.Module:
    """conv-act-pool twice, then a linear layer. Works from 8x8 (digits) up; odd sizes are floored by pooling."""
    channels, height, width = input_shape
    act = ACTIVATION_MODULES[activation]
    features = 32 * (height // 4) * (width // 4)
    if features == 0:
        raise ModelError(f"the cnn model needs images of at least 4x4 pixels, not {height}x{width}")
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(channels, 16, 3, padding=1),
            act1=act(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(16, 32, 3, padding=1),
            act2=act(),
            pool2=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            out=nn.Linear(features, num_classes),
        )
    )


def build_model(config: RunConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The configured model, on the CPU with freshly seeded weights (the caller seeds and moves it)."""
    if config.model == "linear":
        return linear(input_shape, num_classes)
    if config.model == "mlp":
        return mlp(input_shape, num_classes, config.hidden, config.activation)
    if config.model == "cnn":
        return cnn(input_shape, num_classes, config.activation)
    return custom_model(config.model, input_shape, num_classes)


def load_factory(spec: str):
    """`package.module:factory` or `path/to/file.py:factory` -> the factory callable."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ModelError(f"a custom model is given as package.module:factory or file.py:factory, not {spec!r}")
    try:
        if target.endswith(".py"):
            path = Path(target).expanduser()
            if not path.is_file():
                raise ModelError(f"model file {path} does not exist")
            module_spec = importlib.util.spec_from_file_location(f"nktui_user_model_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            # Compiled from the source every time, never from a __pycache__ file: a .pyc is trusted when the
            # source's size and mtime (whole seconds) match, so a file edited within a second could load stale.
            exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)
        else:
            if "" not in sys.path:  # `python -m` puts the current folder on the path; a console script does not
                sys.path.insert(0, "")
            module = importlib.import_module(target)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"cannot import {target!r} for --model {spec}: {type(exc).__name__}: {exc}. "
            "Check the module path (run from the folder that holds the package) or give a file: path/to/model.py:factory"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelError(f"{target!r} has no callable {attr!r}: define def {attr}(input_shape, num_classes) there")
    return factory


def custom_model(spec: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Call the user's factory with (input_shape, num_classes); it must return an nn.Module with parameters."""
    factory = load_factory(spec)
    try:
        model = factory(tuple(input_shape), num_classes)
    except Exception as exc:
        raise ModelError(f"the model factory {spec} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"the model factory {spec} returned {type(model).__name__}, not a torch.nn.Module")
    if not any(p.requires_grad for p in model.parameters()):
        raise ModelError(f"the model from {spec} has no trainable parameters")
    return model
