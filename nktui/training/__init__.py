"""The script API: the engine's and the protocol's public names in one place, usable from a script or a notebook.

    from nktui.training import RunConfig, Trainer
    trainer = Trainer(RunConfig(model="mlp"))
    record = trainer.step()

A re-export only: the code lives in `nktui.protocol` (config, errors, records, states) and `nktui.engine` (the
trainer, its controller, `launch`); nothing inside nktui imports this module. `Trainer` (and with it torch) is
imported on first use, as `nktui.engine` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..engine import Controller, RecordBuffer, launch
from ..protocol.config import RunConfig, parse_lr
from ..protocol.errors import CheckpointError, ConfigError, DataError, ModelError, NktuiError
from ..protocol.records import ActivationStats, EvalResult, Histogram, LayerStats, Rewound, StepRecord, WatchHit
from ..protocol.state import RunState

if TYPE_CHECKING:
    from ..engine.trainer import Trainer

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


def __getattr__(name: str) -> Any:
    if name == "Trainer":
        from ..engine.trainer import Trainer

        return Trainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
