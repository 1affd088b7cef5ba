"""The training engine: usable from a script or a notebook, and imports nothing of the UI.

    from nktui.training import RunConfig, Trainer
    trainer = Trainer(RunConfig(model="mlp"))
    record = trainer.step()

`Trainer` (and with it torch) is imported on first use, so that `nktui.training.launch()` can start the app's
trainer thread, and the app can draw its first frame, before torch has finished importing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocol.config import RunConfig, parse_lr
from ..protocol.errors import CheckpointError, ConfigError, DataError, ModelError, NktuiError
from ..protocol.records import ActivationStats, EvalResult, Histogram, LayerStats, Rewound, StepRecord, WatchHit
from ..protocol.state import RunState
from .buffer import RecordBuffer
from .control import Controller
from .control import launch as _launch

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = [
    "ActivationStats",
    "CheckpointError",
    "ConfigError",
    "Controller",
    "DataError",
    "EvalResult",
    "Histogram",
    "LayerStats",
    "ModelError",
    "NktuiError",
    "RecordBuffer",
    "Rewound",
    "RunConfig",
    "RunState",
    "StepRecord",
    "Trainer",
    "WatchHit",
    "launch",
    "parse_lr",
]


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
