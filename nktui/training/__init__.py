"""The training engine: usable from a script or a notebook, and imports nothing of the UI.

    from nktui.training import RunConfig, Trainer
    trainer = Trainer(RunConfig(model="mlp"))
    record = trainer.step()
"""

from .buffer import RecordBuffer
from .config import RunConfig, parse_lr
from .control import Controller, RunState
from .errors import CheckpointError, ConfigError, DataError, ModelError, NktuiError
from .records import ActivationStats, EvalResult, Histogram, LayerStats, StepRecord
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
    "RunConfig",
    "RunState",
    "StepRecord",
    "Trainer",
    "parse_lr",
]
