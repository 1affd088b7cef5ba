"""Models: the article's linear classifier, an MLP, a small CNN, and the user's own `package.module:factory`.

Every model maps a float batch (N, C, H, W) to logits (N, classes); softmax and cross-entropy live in the loss.
Layers are named (`fc1`, `act1`, `out` ...) so that `model.named_parameters()` reads well in the gradient pane.
`build_on` is what the trainer calls: the model built (after a memory estimate: `nktui.engine.sizing`) and
placed on the device, and the user's own model checked with one forward and one backward pass on a batch of two,
so that a model returning (N, 3) for 10 classes, integers or a tuple, or one that raises or calls `sys.exit`, is
one line naming the user's code (`ModelError`, its cause keeping the traceback) before the first step.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ..protocol.config import RunConfig
from ..protocol.errors import ModelError
from .sizing import check_model_fits, memory_error

CHECK_BATCH = 2  # samples in the batch a user's model is checked with

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


def build_on(config: RunConfig, input_shape: tuple[int, ...], num_classes: int, device: torch.device) -> nn.Module:
    """The configured model on `device`, freshly seeded by the caller; a user's model checked (`check_model`).
    ModelError for a model that cannot fit in memory, also when the allocation itself fails."""
    check_model_fits(config, (tuple(input_shape), num_classes))
    try:
        model = build_model(config, input_shape, num_classes).to(device)
    except (MemoryError, RuntimeError) as exc:
        error = memory_error(config, (tuple(input_shape), num_classes), exc)
        if error is None:
            raise
        raise error from None
    if ":" in config.model:
        check_model(model, config.model, tuple(input_shape), num_classes, device)
    return model


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
    except (Exception, SystemExit) as exc:
        raise ModelError(
            f"cannot import {target!r} for --model {spec}: {_what(exc)}{_where(exc)}. "
            "Check the module path (run from the folder that holds the package) or give a file: path/to/model.py:factory"
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelError(f"{target!r} has no callable {attr!r}: define def {attr}(input_shape, num_classes) there")
    return factory


def custom_model(spec: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Call the user's factory with (input_shape, num_classes); it must return an nn.Module with parameters."""
    factory = load_factory(spec)
    try:
        model = factory(tuple(input_shape), num_classes)
    except (Exception, SystemExit) as exc:
        did = "called" if isinstance(exc, SystemExit) else "raised"
        raise ModelError(f"the model factory {spec} {did} {_what(exc)}{_where(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"the model factory {spec} returned {type(model).__name__}, not a torch.nn.Module")
    if not any(p.requires_grad for p in model.parameters()):
        raise ModelError(f"the model from {spec} has no trainable parameters")
    return model


def check_model(model: nn.Module, spec: str, input_shape: tuple[int, ...], num_classes: int,
                device: torch.device | str = "cpu") -> None:
    """One forward and one backward pass of the user's model on CHECK_BATCH images; ModelError saying what is wrong
    (and where in the user's code). In eval mode, under a forked RNG, gradients cleared after: the run starts from
    the same state as without the check (dropout, batch-norm statistics and the random streams are untouched)."""
    shape = "x".join(map(str, input_shape))
    want = f"nktui needs (N, {num_classes}) logits, one row of {num_classes} class scores per image"
    generator = torch.Generator().manual_seed(0)  # (not the global one: the run's random numbers stay as seeded)
    x = torch.rand((CHECK_BATCH, *input_shape), generator=generator).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            try:
                out = model(x)
            except (Exception, SystemExit) as exc:
                raise ModelError(
                    f"your model {spec} fails on a batch of {CHECK_BATCH} {shape} images: {_what(exc)}{_where(exc)}"
                ) from exc
            if not isinstance(out, torch.Tensor):
                raise ModelError(f"your model {spec} returns a {type(out).__name__}, not a tensor: {want}")
            if tuple(out.shape) != (CHECK_BATCH, num_classes):
                got = (f"(N, {', '.join(map(str, out.shape[1:]))})" if out.ndim >= 1 and out.shape[0] == CHECK_BATCH
                       else f"{tuple(out.shape)} for a batch of {CHECK_BATCH}")
                raise ModelError(f"your model {spec} returns {got.replace(', )', ')')}; {want}")
            if not out.is_floating_point():
                raise ModelError(f"your model {spec} returns {str(out.dtype).removeprefix('torch.')} values: {want}, "
                                 "as floating-point numbers")
            if not out.requires_grad:
                raise ModelError(f"your model {spec} returns logits that do not depend on its parameters (no gradient "
                                 "flows back): does its forward detach them or run under torch.no_grad()?")
            try:
                out.float().logsumexp(1).sum().backward()
            except (Exception, SystemExit) as exc:
                raise ModelError(f"your model {spec} fails in its backward pass: {_what(exc)}{_where(exc)}") from exc
    finally:
        for p in model.parameters():
            p.grad = None
        model.train(was_training)


def _what(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"sys.exit({exc.code!r}), which would end nktui: return the model instead"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _where(exc: BaseException) -> str:
    """` (at model.py:12, in forward)`: the innermost frame of the traceback in the user's code (not torch's or
    nktui's), or nothing."""
    import traceback

    skip = (str(Path(torch.__file__).parent), str(Path(__file__).parents[1]))
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(skip)
              and not f.filename.startswith("<")]
    if not frames:
        return ""
    frame = frames[-1]
    return f" (at {Path(frame.filename).name}:{frame.lineno}, in {frame.name})"
