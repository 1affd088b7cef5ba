"""A run's folder seen from a front end: which folder a run writes to, and the engine's run-file names the front ends
use (so that the app reaches them through the run layer, never the engine).

`next_run_dir` is where a restart writes (`<run-dir>-2`, `-3` ...). The folder itself (made, locked, config.toml,
metrics rows, nktui.log) is `nktui.run.rundir`'s; last.pt and the exit line `nktui.run.checkpoint_keeper`'s
(`RunKeeper`, `holds_step`). Imports neither torch nor Textual.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint_keeper import RunKeeper, holds_step, resume_command
from .rundir import (
    METRICS_FILE,
    RUN_FILES,
    choose_run_dir,
    claim_run_dir,
    earlier_records,
    release_run_dir,
)

__all__ = [
    "METRICS_FILE", "RUN_FILES", "RunKeeper", "choose_run_dir", "claim_run_dir", "earlier_records", "holds_run",
    "holds_step", "next_run_dir", "release_run_dir", "resume_command",
]


def holds_run(path: Path) -> bool:
    return any((path / name).exists() for name in RUN_FILES)


def next_run_dir(path: Path) -> Path:
    """`path` while it holds no run yet, else the first of `path-2`, `path-3` ... that holds none: a restart's
    folder."""
    if not holds_run(path):
        return path
    n = 2
    while holds_run(path.with_name(f"{path.name}-{n}")):
        n += 1
    return path.with_name(f"{path.name}-{n}")
