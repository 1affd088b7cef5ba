"""The full state of a training run: capture it, restore it. Checkpoints, resume and rewind all use these two.

A state is a dict of tensors and plain values only (no pickled code), so a file of it loads with
`torch.load(path, weights_only=True)`. It holds the model, the optimizer (moments, step counts, LR), the config, the
step count, and every random number generator (torch, CUDA, numpy, Python's random). The data order needs
nothing: batch s is a pure function of the seed and s (`nktui.engine.batches.BatchOrder`), so restoring the step
count restores the position inside the epoch.

`capture_state` copies the tensors (clones), so the caller owns them; `restore_state` checks that the state fits
this trainer (same parameter names and shapes, same data set) and raises CheckpointError saying what differs.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch

from ..protocol.errors import CheckpointError

FORMAT = "nktui-state"
VERSION = 1


class Checkpointing(Protocol):
    """What the trainer needs of whoever writes its checkpoints (`Trainer(..., checkpointer=...)`, on the training
    thread): the run layer's `nktui.run.checkpoint_keeper.Checkpointer` is one. The engine never imports it."""

    def due(self, step: int) -> bool:
        """Whether the periodic save falls on this step (called after every step: cheap)."""

    def try_save(self, trainer: Any) -> int | None:
        """Write the trainer's state now; a failure is kept, not raised (the periodic saves)."""

    def save(self, trainer: Any) -> int:
        """Write the trainer's state now and return its step (the `SaveCheckpoint` command); raises on failure."""

    def after_fault(self, trainer: Any) -> int | None:
        """The run failed inside a step: write the state from just before it, if there is one. Never raises."""


def seed_everything(seed: int) -> None:
    """Seed every RNG that `capture_state` saves: python's, numpy's, torch's (and with it every CUDA device's)."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy

        numpy.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy comes with torchvision
        pass


def model_signature(model: torch.nn.Module) -> list[list]:
    """[[name, [shape...]], ...] of every parameter and buffer: what a state must match to be loaded."""
    return [[name, list(t.shape)] for name, t in model.state_dict().items()]


def map_tensors(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """The same structure (mappings as dicts, lists, tuples) with `fn(t)` in place of every tensor `t`: the one
    walk over a state, for copies (`capture_state`), the CPU copy of a checkpoint and the byte count."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, Mapping):
        return {k: map_tensors(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [map_tensors(v, fn) for v in value]
    if isinstance(value, tuple):
        return tuple(map_tensors(v, fn) for v in value)
    return value


def _clone(value: Any) -> Any:
    return map_tensors(value, lambda t: t.detach().clone())


def capture_rng(portable: bool = True) -> dict[str, Any]:
    """Every RNG's state. `portable`: as tensors and plain values (a checkpoint file); otherwise as the generators
    return them (in memory: no conversions)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [t.clone() for t in torch.cuda.get_rng_state_all()]
    state["python"] = random.getstate()
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy comes with torchvision
        pass
    else:
        state["numpy"] = numpy.random.get_state()
    return _portable_rng(state) if portable else state


def _portable_rng(rng: dict[str, Any]) -> dict[str, Any]:
    """RNG states as the generators return them (`capture_rng(portable=False)`), as tensors and plain values: what
    a file loaded with `weights_only=True` can hold. `restore_rng` takes either form."""
    rng = dict(rng)
    version, internal, gauss = rng["python"]
    rng["python"] = {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}
    if "numpy" in rng:
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        rng["numpy"] = {"kind": kind, "keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
                        "has_gauss": int(has_gauss), "cached": float(cached)}
    return rng


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    py = state["python"]
    random.setstate(py if isinstance(py, tuple) else (py["version"], tuple(py["state"].tolist()), py["gauss"]))
    if "numpy" in state:
        import numpy

        np_state = state["numpy"]
        if isinstance(np_state, tuple):
            numpy.random.set_state(np_state)
        else:
            keys = np_state["keys"].numpy().astype("uint32")
            numpy.random.set_state((np_state["kind"], keys, np_state["pos"], np_state["has_gauss"], np_state["cached"]))


def capture_state(trainer, *, portable: bool = True) -> dict[str, Any]:
    """Everything needed to continue this run bit for bit, as cloned tensors and plain values. (It does not
    flush the trainer's pending records: the training loop calls it between steps.)

    `portable=False` is for states kept in memory (rewind, what-if): the RNG states stay as Python objects and
    the config is not copied, which makes the capture several times cheaper; such a state cannot be saved."""
    state = {
        "format": FORMAT,
        "version": VERSION,
        "step": trainer.step_count,
        "epoch": trainer.epoch,
        "dataset": trainer.data.name,
        "classes": list(trainer.data.classes),
        "signature": _signature(trainer),
        "model": _clone(trainer.model.state_dict()),
        "optimizer": _clone(trainer.optimizer.state_dict()),
        "rng": capture_rng(portable),
    }
    if portable:
        state["config"] = trainer.config.to_dict()
    return state


def make_portable(state: dict[str, Any], trainer) -> dict[str, Any]:
    """A state captured with portable=False, made fit for a file: RNG states as tensors, the config added."""
    if "config" in state:
        return state
    return {**state, "rng": _portable_rng(state["rng"]), "config": trainer.config.to_dict()}


_SIGNATURES: weakref.WeakKeyDictionary[torch.nn.Module, list[list]] = weakref.WeakKeyDictionary()


def _signature(trainer) -> list[list]:
    """The model's signature, computed once per model (its parameters and buffers never change shape)."""
    signature = _SIGNATURES.get(trainer.model)
    if signature is None:
        signature = _SIGNATURES[trainer.model] = model_signature(trainer.model)
    return signature


def check_compatible(trainer, state: dict[str, Any]) -> None:
    """CheckpointError naming the difference if `state` was not made by a run like this one."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError("this is not an nktui checkpoint (no nktui-state header)")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"this checkpoint is of a newer nktui (format {state['version']}); update nktui")
    if state.get("dataset") != trainer.data.name or list(state.get("classes", [])) != list(trainer.data.classes):
        raise CheckpointError(
            f"this checkpoint is of data set {state.get('dataset')!r} with {len(state.get('classes', []))} classes, "
            f"but this run uses {trainer.data.name!r} with {trainer.data.num_classes}"
        )
    theirs = {name: shape for name, shape in state.get("signature", [])}
    ours = {name: shape for name, shape in model_signature(trainer.model)}
    if theirs != ours:
        missing = sorted(set(ours) - set(theirs))
        extra = sorted(set(theirs) - set(ours))
        reshaped = sorted(n for n in set(ours) & set(theirs) if ours[n] != theirs[n])
        details = []
        if missing:
            details.append(f"it lacks {', '.join(missing[:4])}")
        if extra:
            details.append(f"it has {', '.join(extra[:4])} that this model does not")
        if reshaped:
            n = reshaped[0]
            details.append(f"{n} is {'x'.join(map(str, theirs[n]))} there and {'x'.join(map(str, ours[n]))} here")
        model = state.get("config", {}).get("model", "?")
        raise CheckpointError(
            f"this checkpoint is of another model (model {model!r}): {'; '.join(details)}"
        )


def restore_state(trainer, state: dict[str, Any]) -> None:
    """Put the trainer back exactly where `state` was captured (model, optimizer, step, RNGs)."""
    check_compatible(trainer, state)
    trainer.flush()
    load_weights(trainer.model, state["model"], "this checkpoint", trainer.config.model)
    trainer.optimizer.load_state_dict(_clone(state["optimizer"]))  # ours to keep: the state may be restored again
    trainer.step_count = int(state["step"])
    try:
        restore_rng(state["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise CheckpointError(f"the random number generators' state in this checkpoint cannot be restored "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}): it is damaged") from None


def resume_from(trainer: Any, state: dict[str, Any], *, lr: float | None = None) -> None:
    """Put a freshly built trainer where the checkpoint stopped: weights, optimizer, step, RNGs. `lr`: the LR to
    go on with instead of the one the checkpoint was using. CheckpointError if the state is of another model or
    data set (it says what differs)."""
    restore_state(trainer, state)
    if lr is not None:
        trainer.set_lr(lr)
    trainer.trajectory.clear()  # the descent path starts here: the steps before are not in memory
    trainer.trajectory.record(trainer.step_count)


def load_weights(model: torch.nn.Module, weights: Any, source: str, name: str) -> None:
    """`model.load_state_dict(weights)`; CheckpointError saying what does not fit (names, shapes) otherwise."""
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"the weights in {source} do not fit the model {name!r}: {detail}") from None


def state_bytes(state: dict[str, Any]) -> int:
    """Bytes of tensor data in a state: what keeping it in memory costs."""
    sizes: list[int] = []
    map_tensors(state, lambda t: sizes.append(t.numel() * t.element_size()))
    return sum(sizes)
