"""Checkpoints: `last.pt` holds a run's full state, written atomically, read back with `weights_only=True`.

A checkpoint is `nktui.engine.state.capture_state(trainer)` with every tensor on the CPU: the model, the
optimizer (moments, step counts, the LR in use), the config, the step and epoch, the data set's name and classes,
the model's parameter signature, and every RNG (torch, CUDA, numpy, Python). The data position needs nothing
more: batch s is a pure function of the seed and s. So restoring a checkpoint and training on gives bit for bit
the weights the run would have had without the stop (on the CPU; CUDA kernels may differ in the last bits).

Writing is atomic (`atomic_save`: a temporary file in the same folder, flushed and fsynced, renamed over the
old one), so a crash or a kill mid-write leaves the previous `last.pt` whole. A state whose weights hold nan or
inf is never written: the last good checkpoint stays.

Reading checks more than the format: `require_resumable` refuses a state that is damaged or edited (a negative
step, no RNG state, weights of other shapes than its signature names) in one line, before anything is built.

Who writes `last.pt`: `nktui.run.checkpoint_keeper.Checkpointer`, attached to the trainer, on the training thread.
Nothing here imports Textual.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..protocol.errors import CheckpointError
from ..safe_files import replacing
from ..engine.state import FORMAT, VERSION, capture_state, map_tensors

LEGACY_FORMAT = "nktui-checkpoint"  # last.pt of nktui before checkpoints held the RNGs: weights only, no resume
REQUIRED = ("model", "optimizer", "config", "step", "epoch", "rng", "signature", "dataset", "classes")


# -- writing -------------------------------------------------------------------------------------------------------
def to_cpu(value: Any) -> Any:
    """The same structure with every tensor on the CPU (loadable on a machine without the GPU)."""
    return map_tensors(value, lambda t: t.detach().cpu())


def checkpoint_state(trainer: Any) -> dict[str, Any]:
    """What `last.pt` holds: the full state, on the CPU. Run it on the training thread (it reads the tensors)."""
    return to_cpu(capture_state(trainer))


def nonfinite_tensor(state: Mapping[str, Any]) -> str | None:
    """The name of the first model tensor in a state's `model` that holds nan or inf, or None."""
    for name, tensor in state["model"].items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


class _RecordingFile:
    """The file torch.save writes through, keeping the OSError of a failed write: torch turns it into a
    RuntimeError ("PytorchStreamWriter failed writing file ..."), and the caller needs the OS's words."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:  # tell, seek ...: the file's own
        return getattr(self.file, name)

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save into a temporary file in the same folder, flush, fsync, then rename over `path`: a crash
    mid-write leaves the previous file intact. A write that fails (a full disk, EIO, a read-only folder) raises
    the OSError, the temporary file is removed, and the previous `path` stays as it was."""
    path = Path(path)
    with replacing(path, "wb") as f:
        recording = _RecordingFile(f)
        try:
            torch.save(obj, recording)
        except RuntimeError:
            if recording.error is not None:  # the disk, not torch: say it in the OS's words
                raise recording.error from None
            raise
    return path


def write_state(state: dict[str, Any], path: str | Path) -> Path:
    """Write a captured state as a checkpoint; CheckpointError (and nothing written) when its weights hold nan/inf."""
    bad = nonfinite_tensor(state)
    if bad is not None:
        raise CheckpointError(f"not saved: the weights at step {state['step']} hold nan/inf (first: {bad})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_save(to_cpu(state), path)


def save_checkpoint(trainer: Any, path: str | Path) -> Path:
    """Write `trainer`'s full state to `path` atomically. On the training thread: `controller.call(lambda t:
    save_checkpoint(t, path))`. CheckpointError when the weights hold nan or inf (the old file stays)."""
    return write_state(capture_state(trainer), path)


# -- reading -------------------------------------------------------------------------------------------------------
def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (tensors on the CPU) with `weights_only=True`; CheckpointError says what is wrong.

    A folder means its `last.pt`. Checkpoints of an older nktui (weights and optimizer, no RNGs) load too; only
    `require_resumable` refuses them."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "last.pt"
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist: give the last.pt of a run directory")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} is not a file: give the last.pt of a run directory")
    try:
        with warnings.catch_warnings():  # ("Detected pickle protocol 4 ...": the line below says what matters)
            warnings.simplefilter("ignore")
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = " ".join(str(exc).split()).split(". ")[0][:160]
        raise CheckpointError(
            f"cannot read checkpoint {p}: it is truncated, corrupt or not an nktui checkpoint ({detail})"
        ) from None
    kind = state.get("format") if isinstance(state, dict) else None
    if kind not in (FORMAT, LEGACY_FORMAT):
        raise CheckpointError(f"{p} is not an nktui checkpoint (no {FORMAT!r} header in it)")
    if kind == FORMAT and state.get("version", 0) > VERSION:
        raise CheckpointError(f"{p} was written by a newer nktui (format {state['version']}); update nktui")
    needed = REQUIRED if kind == FORMAT else ("model", "optimizer", "config", "step", "epoch")
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {p} lacks {', '.join(missing)}: it is incomplete")
    return state


def require_resumable(state: Mapping[str, Any], path: str | Path) -> None:
    """CheckpointError unless the checkpoint holds the full state (an older nktui's last.pt has no RNGs) and that
    state is whole: a step and epoch of at least 0, every RNG's state, weights of the shapes its signature names."""
    if state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} was written by an older nktui without the random number generators' state, so it cannot be "
            "resumed exactly; start a new run (its weights still load with torch.load)"
        )
    problem = _damage(state)
    if problem:
        raise CheckpointError(f"checkpoint {path} is damaged or was edited: {problem}; resume from another one")


def _damage(state: Mapping[str, Any]) -> str | None:
    """What is wrong inside a full state, or None."""
    for name in ("step", "epoch"):
        value = state[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"its {name} is {value!r}, not a whole number of at least 0"
    rng = state["rng"]
    python = rng.get("python") if isinstance(rng, Mapping) else None
    if not isinstance(rng, Mapping) or not isinstance(rng.get("torch"), torch.Tensor) or not (
        isinstance(python, Mapping) and {"version", "state", "gauss"} <= set(python)
    ):
        return "it lacks the random number generators' state (rng: torch and python), so it cannot go on exactly"
    weights, optimizer = state["model"], state["optimizer"]
    if not isinstance(weights, Mapping) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        return "its model is not a set of named tensors"
    if not isinstance(optimizer, Mapping) or "param_groups" not in optimizer or "state" not in optimizer:
        return "its optimizer state lacks param_groups or state"
    for name, shape in state["signature"]:
        tensor = weights.get(name)
        if tensor is None or list(tensor.shape) != list(shape):
            held = "nothing" if tensor is None else "x".join(map(str, tensor.shape)) or "a scalar"
            return f"its signature says {name} is {'x'.join(map(str, shape))}, but it holds {held}"
    return None

