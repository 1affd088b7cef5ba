"""How much memory a run's model needs, estimated from its config before anything is allocated.

`nktui --hidden 100000000` would otherwise allocate until the kernel or PyTorch gives up (a MemoryError, or a
RuntimeError "not enough memory", seconds or minutes later). This module owns the arithmetic: the input shape of
each built-in data set, the parameter count of each built-in model, the bytes a step needs at least (weights,
their gradients, the optimizer's state, one batch as floats), and the memory this machine has free. It imports
no torch, so the command line checks a config before the app's screen opens; `nktui.engine.models` checks again
with the data set's real shape and classes just before it builds the model, and turns an allocation that fails all
the same into the same one line (`memory_error`).
"""

from __future__ import annotations

import math
import os

from ..protocol.config import RunConfig
from ..protocol.errors import ModelError

# (channels, height, width) and classes of the built-in data sets, known without reading them
BUILTIN_SHAPES = {"digits": ((1, 8, 8), 10), "mnist": ((1, 28, 28), 10), "fashion-mnist": ((1, 28, 28), 10),
                  "cifar10": ((3, 32, 32), 10)}
OPTIMIZER_SLOTS = {"sgd": 0, "adam": 2, "adamw": 2}  # float tensors per parameter besides weight and gradient
BYTES = 4  # float32


def known_shape(config: RunConfig) -> tuple[tuple[int, int, int], int] | None:
    """(input shape, classes) from the config alone: an image folder has at least 2 classes; None if unknown."""
    if config.dataset in BUILTIN_SHAPES:
        return BUILTIN_SHAPES[config.dataset]
    if config.dataset.startswith("imagefolder:"):
        return (3, config.image_size, config.image_size), 2
    return None


def parameter_count(config: RunConfig, input_shape: tuple[int, ...], num_classes: int) -> int | None:
    """The number of parameters of a built-in model (what `nktui.engine.models` builds); None for the user's."""
    inputs = math.prod(input_shape)
    if config.model == "linear":
        return inputs * num_classes + num_classes
    if config.model == "mlp":
        widths = (inputs, *config.hidden, num_classes)
        return sum(a * b + b for a, b in zip(widths, widths[1:]))
    if config.model == "cnn":
        channels, height, width = input_shape
        features = 32 * (height // 4) * (width // 4)
        return channels * 16 * 9 + 16 + 16 * 32 * 9 + 32 + features * num_classes + num_classes
    return None


def bytes_needed(config: RunConfig, input_shape: tuple[int, ...], num_classes: int) -> tuple[int, int | None]:
    """(the bytes a training step needs at least, the parameter count or None): weights, gradients and optimizer
    state of a built-in model, plus one batch of pixels as floats (any model)."""
    params = parameter_count(config, input_shape, num_classes)
    slots = OPTIMIZER_SLOTS.get(config.optimizer, 2) + (1 if config.optimizer == "sgd" and config.momentum else 0)
    batch = config.batch_size * math.prod(input_shape) * BYTES
    return (params or 0) * (2 + slots) * BYTES + batch, params


def memory_free() -> int | None:
    """Bytes of memory this machine can still give (Linux: MemAvailable; elsewhere all of it); None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def gigabytes(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e9:.2f} GB"


def too_big_message(config: RunConfig, needed: int, params: int | None, free: int | None) -> str:
    slots = OPTIMIZER_SLOTS.get(config.optimizer, 2) or bool(config.momentum)
    state = f", the {config.optimizer} state" if slots else ""
    what = (f"the model needs about {gigabytes(needed)} of memory ({params:,} parameters with their gradients{state} "
            "and a batch)" if params is not None
            else f"a batch of {config.batch_size} images needs about {gigabytes(needed)} of memory")
    have = f"this machine has {gigabytes(free)} free" if free is not None else "that is more than there is"
    fixes = []
    if config.model == "mlp":
        fixes.append("smaller --hidden sizes")
    if config.dataset.startswith("imagefolder:"):
        fixes.append("a smaller --image-size")
    fixes.append("a smaller --batch-size" if params is None else "a smaller model")
    return f"{what}, but {have}: try {' or '.join(fixes)}"


def check_model_fits(config: RunConfig, shape: tuple[tuple[int, ...], int] | None = None) -> None:
    """ModelError when a step of this config needs more memory than the machine has free. `shape`: (input shape,
    classes) once the data set is loaded; by default what the config alone tells (nothing, for unknown data)."""
    shape = shape or known_shape(config)
    if shape is None:
        return
    needed, params = bytes_needed(config, *shape)
    free = memory_free()
    if free is not None and needed > free:
        raise ModelError(too_big_message(config, needed, params, free))


def memory_error(config: RunConfig, shape: tuple[tuple[int, ...], int], exc: BaseException) -> ModelError | None:
    """The one line for an allocation that failed while building the model (MemoryError, or PyTorch's "not enough
    memory" / "out of memory" RuntimeError); None when `exc` is something else."""
    text = str(exc).lower()
    if not (isinstance(exc, MemoryError) or "not enough memory" in text or "out of memory" in text):
        return None
    needed, params = bytes_needed(config, *shape)
    return ModelError(too_big_message(config, needed, params, memory_free()))
