"""nktui's own training loop: the trainer, its thread and controller, the data, models and optimizers, the state a
checkpoint holds, and the debugger (`nktui.engine.debugger`). Imports nothing of the UI, the command line or the
run's files (`nktui.run` hands it what it needs: a checkpointer, a state to resume from).

Scripts use the re-export `nktui.training` (`from nktui.training import RunConfig, Trainer`).

`Trainer` (and with it torch) is imported on first use, so that `nktui.engine.launch()` can start the app's
trainer thread, and the app can draw its first frame, before torch has finished importing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocol.config import RunConfig
from .buffer import RecordBuffer
from .control import Controller
from .control import launch as _launch

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["Controller", "RecordBuffer", "Trainer", "launch"]


def launch(config: RunConfig, *, paused: bool = False, **trainer_kwargs: Any) -> Controller:
    """`Trainer.launch(config)`, with torch imported on the training thread rather than the caller's."""

    def build():
        from .trainer import Trainer

        return Trainer(config, **trainer_kwargs)

    return _launch(build, paused=paused)


def __getattr__(name: str) -> Any:
    if name == "Trainer":
        from .trainer import Trainer

        return Trainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
