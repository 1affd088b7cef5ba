"""Named commands: everything a front end asks of the training thread, as frozen values (no closures cross).

    future = controller.submit(Evaluate(detailed=True))    # a Future of the result
    job = ComputeSurface(request)
    controller.submit(job); controller.submit(Cancel(job.job))

The training thread runs a command at its next step boundary through one engine function per command class
(`nktui.engine.commands.HANDLERS`). The controller's own commands (`Pause`, `Resume`, `Step`, `SetLr`, `Stop`,
`Cancel`) take effect at once, on the caller's thread, and their Future is already done when `submit` returns.

A long command carries a `job` number: `Cancel(job)` stops it (at its next grid row for a surface; before it starts
if the training thread has not picked it up), and while it runs it reports `JobProgress` values, which the
controller keeps for any thread to read (`Controller.progress(job)`). Nothing here imports torch or Textual.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

_jobs = itertools.count((os.getpid() << 24) + 1)  # (two clients of one run never pick the same number)


def new_job() -> int:
    """A number no other job of this process has."""
    return next(_jobs)


# -- run on the training thread, between steps -----------------------------------------------------------------
@dataclass(frozen=True)
class UpdateLive:
    """Change settings that apply without a rebuild (watchpoints, log interval, step limit): `Trainer.update_live`."""

    changes: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, changes: Mapping[str, Any] | None = None, **more: Any) -> UpdateLive:
        return cls(tuple({**(changes or {}), **more}.items()))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.changes)


@dataclass(frozen=True)
class Evaluate:
    """Evaluate the weights as they are: an `EvalResult`, or with `detailed` an `Evaluation` (per-class metrics and
    the most confidently wrong samples)."""

    split: str = "val"
    detailed: bool = False


@dataclass(frozen=True)
class TraceStep:
    """Take one fully observed step and record its phases: a `StepTrace`."""

    sample_index: int = 0


@dataclass(frozen=True)
class LrWhatIf:
    """The next step's loss for a range of learning rates, the trainer left as it was: a `WhatIf`."""

    lrs: tuple[float, ...] | None = None


@dataclass(frozen=True)
class RewindTo:
    """Go back to the state after `step` updates, bit for bit: a `Rewound`."""

    step: int


@dataclass(frozen=True)
class ComputeSurface:
    """The loss surface for a `nktui.engine.debugger.landscape.SurfaceRequest`: a `Surface`. Cancellable by `job`."""

    request: Any  # a SurfaceRequest (a frozen dataclass of plain values)
    job: int = field(default_factory=new_job)


@dataclass(frozen=True)
class SnapshotLayer:
    """One parameter tensor's weight, gradient and last update as plain grids: a `LayerSnapshot`."""

    name: str
    max_rows: int = 32
    max_cols: int = 64
    max_images: int = 16
    max_kernels: int = 64


@dataclass(frozen=True)
class SaveCheckpoint:
    """Write last.pt through the trainer's checkpointer: the step saved."""


@dataclass(frozen=True)
class Finish:
    """A run's end (`nktui train`'s): its pending records published, last.pt written through the checkpointer
    (weights holding nan/inf are refused: the last good one stays), then the final weights evaluated on both
    splits. The Future gets a `nktui.protocol.results.Finished`."""


@dataclass(frozen=True)
class SetHistogramBins:
    """Gradient histograms with `bins` bins on observed steps from now on (TensorBoard's), unless the trainer makes
    histograms already (it keeps its own bins)."""

    bins: int


# -- taken by the controller at once, on the caller's thread ---------------------------------------------------
@dataclass(frozen=True)
class Pause:
    """`measured`: pause after one more step, which is fully observed (what the app shows of the paused run)."""

    measured: bool = False


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class Step:
    """One update while paused: the Future holds False when the run cannot step now."""


@dataclass(frozen=True)
class SetLr:
    """A new learning rate from the next update on (validated: ConfigError in the Future)."""

    lr: Any


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Cancel:
    """Stop the job `job` (a `ComputeSurface.job`): the Future holds whether it was still pending or running."""

    job: int


# -- asked of the run process (nktui.host) by an attached client ---------------------------------------------------
@dataclass(frozen=True)
class SaveNow:
    """last.pt now: the Future gets the step it holds (a failed run: the state from before the failing step)."""


@dataclass(frozen=True)
class EndRun:
    """Stop the run for good: last.pt saved, the trainer stopped, the process ends; the Future gets the exit line
    (what last.pt holds and how to resume)."""

    reason: str = "stopped"


@dataclass(frozen=True)
class Note:
    """A line into the run's nktui.log (a client's warning or traceback)."""

    text: str


HOST_COMMANDS: tuple[type, ...] = (SaveNow, EndRun, Note)

TrainingCommand = Union[UpdateLive, Evaluate, TraceStep, LrWhatIf, RewindTo, ComputeSurface, SnapshotLayer,
                        SaveCheckpoint, Finish, SetHistogramBins]
ControlCommand = Union[Pause, Resume, Step, SetLr, Stop, Cancel]
Command = Union[TrainingCommand, ControlCommand]

TRAINING_COMMANDS: tuple[type, ...] = (UpdateLive, Evaluate, TraceStep, LrWhatIf, RewindTo, ComputeSurface,
                                       SnapshotLayer, SaveCheckpoint, Finish, SetHistogramBins)
CONTROL_COMMANDS: tuple[type, ...] = (Pause, Resume, Step, SetLr, Stop, Cancel)


@dataclass(frozen=True)
class JobProgress:
    """How far a job has come: `done` of `total` units (grid points for a surface) in its `phase`."""

    job: int
    done: int = 0
    total: int = 0
    phase: str = "waiting for the training thread"

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0
