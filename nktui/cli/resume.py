"""`--resume PATH`: continue a run from its checkpoint, for the app and for `nktui train`.

The config comes from the checkpoint. Flags given on the command line override it, but only those that leave the
model, the data and the optimizer as they were (CHANGEABLE, the fields whose `Setting` says `resume`: how long,
the learning rate, the device, where the files go, how often to measure, log, evaluate and checkpoint, the
watchpoints). Any other flag that differs from the checkpoint's value is refused with a message naming it: a run
with another model or data set is a new run (`--config <run-dir>/config.toml` with the change). `--steps N` is the
global step to stop at, so `--resume runs/X/last.pt --steps 2000` trains from wherever last.pt stopped up to step
2000.

Where a resumed run writes: into the checkpoint's own run directory when the checkpoint sits in one (a folder with
config.toml or metrics.jsonl next to it): config.toml is rewritten with the resumed config, metrics.jsonl gets a
`{"type": "resume", "step": N}` row and then the new rows (rows after a resume row replace those of the same steps
before it, if the run had gone on past its last checkpoint), and last.pt is overwritten as the run goes on. With
`--run-dir DIR` (a new folder) the resumed run writes there instead and the old folder is left as it was; a
checkpoint outside any run directory gets a fresh `runs/<date-time>/`. A folder whose run is still going on in
another nktui process (its `.lock` is held) is refused with a line naming that process.

The checkpoint is read here, on the main thread, before the app or the trainer starts: its config decides what to
build, and a corrupt, truncated or foreign file is refused with one line (exit code 2). Imports no Textual.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol.config import RESUMABLE, RunConfig
from ..protocol.errors import ConfigError

CHANGEABLE = RESUMABLE  # the fields whose Setting says resume: every other shapes the model, the data or the optimizer


@dataclass(frozen=True)
class ResumePlan:
    """A checkpoint to continue from, read and checked, and where the resumed run writes."""

    path: Path  # the checkpoint file
    state: dict[str, Any] = dataclasses.field(repr=False, compare=False)  # what the trainer restores
    step: int  # the step the checkpoint holds
    run_dir: Path
    in_place: bool  # True: the run goes on in the checkpoint's own run directory


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def plan_resume(path: str | Path, given: dict[str, Any]) -> tuple[RunConfig, ResumePlan]:
    """(the config to go on with, the plan) for `--resume path` with the command line's `given` flags (field name ->
    value as parsed; `lr` already a float). ConfigError / CheckpointError say what is wrong."""
    from ..run.checkpoint import load_checkpoint, require_resumable
    from ..run.rundir import (
        CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, check_not_in_use, choose_run_dir, default_run_dir,
    )

    file = Path(path).expanduser()
    if file.is_dir():
        file = file / CHECKPOINT_FILE
    state = load_checkpoint(file)
    require_resumable(state, file)
    saved = RunConfig.from_dict(state["config"], source=str(file))
    values = saved.to_dict()
    values.pop("run_dir", None)  # the checkpoint's folder counts, not the path it was started with
    # --steps and --epochs are two ways to say how long: the one on the command line replaces the checkpoint's.
    if "steps" in given and "epochs" not in given:
        values.pop("epochs", None)
    if "epochs" in given and "steps" not in given:
        values.pop("steps", None)
    values.update(given)
    groups = state["optimizer"].get("param_groups", [])
    if "lr" not in given and groups:
        values["lr"] = float(groups[0]["lr"])  # go on with the LR the run was using (it may have been changed)
    config = RunConfig.from_dict(values, source="--resume").validate()
    changed = [name for name in given if name not in CHANGEABLE and getattr(config, name) != getattr(saved, name)]
    if changed:
        name = changed[0]
        raise ConfigError(
            f"--resume goes on with the checkpoint's model, data and optimizer, but {flag(name)} "
            f"{_shown(getattr(config, name))} differs from its {_shown(getattr(saved, name))}. On resume you can "
            "change --steps/--epochs, --lr, --device, --run-dir, --log-every, --eval-every, --checkpoint-every and "
            f"the watchpoints; to change {flag(name)}, start a new run: --config {file.parent / CONFIG_FILE} "
            f"{flag(name)} ..."
        )
    step = int(state["step"])
    if config.steps is not None and config.steps <= step:
        raise ConfigError(
            f"the checkpoint is at step {step} and this run stops at step {config.steps}: give --steps above {step} "
            f"to train on (--steps is the global step to stop at)"
        )
    for group in groups:  # the optimizer's state carries the LR: make it the one this run goes on with
        group["lr"] = config.lr
    folder = file.parent
    if "run_dir" in given:
        run_dir, in_place = choose_run_dir(config), False
    elif (folder / CONFIG_FILE).exists() or (folder / METRICS_FILE).exists():
        check_not_in_use(folder)  # RunDirInUse: the run is still going on (or resumed already) in another process
        run_dir, in_place = folder, True
    else:
        run_dir, in_place = default_run_dir(), False
    return config, ResumePlan(path=file, state=state, step=step, run_dir=run_dir, in_place=in_place)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "''"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
