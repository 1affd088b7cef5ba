"""What a run and its front ends say to each other: the settings, the errors, the run's states, the records and the
debugger's results. Imports neither torch nor Textual (a test checks it in a subprocess), so any thread or process
can read all of it without loading the engine.

| module | owns |
| --- | --- |
| `config.py` | `RunConfig`: every setting and what the front ends make of it (`Setting`), validation with messages
|   | for the user, TOML in and out |
| `settings.py`, `config_file.py` | `Setting` and `setting()`; config files read bounded, values written as TOML |
| `errors.py` | `NktuiError` and its subclasses: errors whose message is written for the user |
| `state.py` | `RunState`: starting, running, paused, finished, failed, stopped |
| `records.py` | what the trainer publishes: `StepRecord`, `EvalResult`, `Rewound`, `Resumed`, `WatchHit` |
| `results.py` | what the debugger returns: `StepTrace`, `WhatIf`, `Surface` (asked for by a `SurfaceRequest`),
|   | `LayerSnapshot`, `Evaluation` |
| `commands.py` | the named commands a front end sends (pause, step, set LR, evaluate, trace, rewind to, ...) |
| `run_info.py` | `RunInfo`: what the run is (layers, step limit, device, data, rewind reach), published by the run |
| `indices.py` | a tensor's coordinates to its flat position and back |
"""

from __future__ import annotations

from .config import RunConfig, parse_lr
from .errors import CheckpointError, ConfigError, DataError, ModelError, NktuiError, RunDirInUse
from .records import ActivationStats, EvalResult, Histogram, LayerStats, Resumed, Rewound, StepRecord, WatchHit
from .results import (
    BackwardLayer,
    ClassMetrics,
    Evaluation,
    ForwardLayer,
    LayerSnapshot,
    LineSlice,
    ParamUpdate,
    PathPoint,
    StepTrace,
    Surface,
    SurfaceCancelled,
    SurfaceRequest,
    WeightRef,
    WhatIf,
    WrongExample,
)
from .state import RunState

__all__ = [
    "ActivationStats",
    "BackwardLayer",
    "CheckpointError",
    "ClassMetrics",
    "ConfigError",
    "DataError",
    "EvalResult",
    "Evaluation",
    "ForwardLayer",
    "Histogram",
    "LayerSnapshot",
    "LayerStats",
    "LineSlice",
    "ModelError",
    "NktuiError",
    "ParamUpdate",
    "PathPoint",
    "Resumed",
    "Rewound",
    "RunConfig",
    "RunDirInUse",
    "RunState",
    "StepRecord",
    "StepTrace",
    "Surface",
    "SurfaceCancelled",
    "SurfaceRequest",
    "WatchHit",
    "WeightRef",
    "WhatIf",
    "WrongExample",
    "parse_lr",
]
