"""The engine's side of the named commands (`nktui.protocol.commands`): one function of (trainer, command) per
command class that runs on the training thread, in `HANDLERS`.

`Controller.submit(command)` queues a training command with a Future; the loop (`Trainer.run`) takes it at the
next step boundary and calls `execute(trainer, command)`, whose value (or exception) goes into the Future. The
loop imports this module (with torch); the handlers import the rest of the debugger when first used.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from nktui.protocol.commands import (
    ComputeSurface,
    Finish,
    Evaluate,
    JobProgress,
    LrWhatIf,
    RewindTo,
    SaveCheckpoint,
    SetHistogramBins,
    SnapshotLayer,
    TraceStep,
    TrainingCommand,
    UpdateLive,
)

from ..protocol.errors import ConfigError, NktuiError
from ..protocol.results import Finished, SurfaceCancelled
from ..safe_files import describe_write_error
from .debugger.landscape import SurfaceProgress

MAX_HISTOGRAM_BINS = 256  # (a command from an attached client is checked like any input)


def update_live(trainer, command: UpdateLive) -> None:
    trainer.update_live(**command.as_dict())


def evaluate(trainer, command: Evaluate):
    if command.detailed:
        from .evaluation import evaluate_in_detail

        return evaluate_in_detail(trainer, command.split)
    return trainer.evaluate(command.split)


def trace_step(trainer, command: TraceStep):
    return trainer.trace_step(command.sample_index)


def lr_whatif(trainer, command: LrWhatIf):
    from .debugger.whatif import lr_whatif

    return lr_whatif(trainer, command.lrs)


def rewind_to(trainer, command: RewindTo):
    return trainer.rewind_to(command.step)


def compute_surface(trainer, command: ComputeSurface):
    """Progress goes to the controller as `JobProgress` values; `Cancel(job)` is read there at every grid row."""
    from .debugger.landscape import compute_surface

    controller = getattr(trainer, "controller", None)
    progress = SurfaceProgress() if controller is None else _ReportedProgress(command.job, controller)
    return compute_surface(trainer, command.request, progress)


def snapshot_layer(trainer, command: SnapshotLayer):
    from .debugger.layer_snapshot import layer_snapshot

    return layer_snapshot(trainer, command.name, command.max_rows, command.max_cols, command.max_images,
                          command.max_kernels)


def save_checkpoint(trainer, command: SaveCheckpoint) -> int:
    if trainer.checkpointer is None:
        raise RuntimeError("this run has no checkpoint file to save to")
    return trainer.checkpointer.save(trainer)


def finish(trainer, command: Finish) -> Finished:
    trainer.flush()
    save_error, unsaved, trace = None, False, None
    try:
        if trainer.checkpointer is not None:
            trainer.checkpointer.save(trainer)
    except NktuiError as exc:  # weights holding nan/inf: refused, said after the summary
        save_error = str(exc)
    except Exception as exc:  # a full disk (OSError), or a bug: the previous last.pt stays, and the run says so
        save_error, unsaved = describe_write_error(exc, trainer.checkpointer.path), True
        if not isinstance(exc, OSError):
            trace = traceback.format_exc()
    val = trainer.last_eval
    if val is None or val.step != trainer.step_count:  # stopped between evaluations: evaluate these weights
        val = trainer.evaluate("val")
    train = trainer.evaluate("train")
    return Finished(trainer.step_count, trainer.epoch, train, val, save_error, unsaved, trace)


def set_histogram_bins(trainer, command: SetHistogramBins) -> None:
    if not (isinstance(command.bins, int) and 1 <= command.bins <= MAX_HISTOGRAM_BINS):
        raise ConfigError(f"histogram bins must be a whole number from 1 to {MAX_HISTOGRAM_BINS}, not {command.bins!r}")
    if not trainer.instruments.histogram_bins:
        trainer.instruments.histogram_bins = command.bins


HANDLERS: dict[type, Callable[[Any, Any], Any]] = {
    UpdateLive: update_live,
    Evaluate: evaluate,
    TraceStep: trace_step,
    LrWhatIf: lr_whatif,
    RewindTo: rewind_to,
    ComputeSurface: compute_surface,
    SnapshotLayer: snapshot_layer,
    SaveCheckpoint: save_checkpoint,
    Finish: finish,
    SetHistogramBins: set_histogram_bins,
}


def execute(trainer, command: TrainingCommand) -> Any:
    """Run one command on the trainer (on the training thread); TypeError for anything that is not one."""
    handler = HANDLERS.get(type(command))
    if handler is None:
        raise TypeError(f"not a training command: {command!r}")
    return handler(trainer, command)


class _ReportedProgress(SurfaceProgress):
    """A surface's progress, owned by the training thread: each check (a grid row, a slice point) publishes a
    `JobProgress` on the controller and asks it whether the job was cancelled."""

    def __init__(self, job: int, controller) -> None:
        super().__init__()
        self.job = job
        self.controller = controller

    def check(self) -> None:
        self.controller.report_progress(JobProgress(self.job, self.done, self.total, self.phase))
        if self.controller.is_cancelled(self.job):
            raise SurfaceCancelled("cancelled")
        super().check()
