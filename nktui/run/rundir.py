"""The run directory: where a run's files go, `metrics.jsonl` rows made from records, and `last.pt` checkpoints.

    runs/20250101-120000/
        config.toml     RunConfig.save() at the start: `nktui --config runs/.../config.toml` repeats the run
        metrics.jsonl   one JSON object per line, written by the reader of `trainer.records` (never the trainer);
                        a full disk cuts it at a whole row and is said once (nktui.safe_files)
        last.pt         the newest checkpoint, written atomically on the training thread (nktui.run.checkpoint)
        nktui.log       the traceback, when the training thread failed; how a run stopped on a signal
        .lock           held (flock) by the nktui process whose run writes here; it holds that process's id

A run owns its folder: `claim_run_dir` makes it (a fresh `runs/<date-time>` with an exclusive mkdir, `-2`, `-3` ...
when another process made that name first) and locks it (`nktui.run.runlock`: `.lock`, flock) for as long as
the run can write there; a folder another live nktui process holds is refused with one line naming its pid, and so
is one nktui cannot write into (`check_writable`: a read-only folder or mount, before anything trains).

metrics.jsonl rows:

    {"type": "step", "step": 50, "epoch": 3, "loss": 0.41, "lr": 0.1, "accuracy": 0.91, "samples_per_sec": 3021.0,
     "layers": {"fc.weight": {"grad_norm": 0.52, "update_ratio": 0.0031}, ...}}
    {"type": "eval", "step": 66, "epoch": 3, "loss": 0.38, "accuracy": 0.92}
    {"type": "resume", "step": 100}     the run went on from a checkpoint of step 100 (rows after it replace any
                                        earlier rows of the same steps)

A step row is written for every step whose number is a multiple of `log_every` (those steps are observed, so
they carry per-layer statistics; layer names are `model.named_parameters()` names). An eval row is written for
every validation evaluation. JSON has no NaN or infinity: a non-finite number (a diverged loss, an update ratio
over a zero weight) is written as `null`, so every line stays valid JSON for `json.loads`, jq or pandas.

Checkpoints hold the run's full state (`nktui.engine.state`: model, optimizer, config, step, epoch, every RNG) as
plain values (CPU tensors, dicts, lists, numbers, strings), so they load with `torch.load(path, weights_only=True)`.
Nothing here imports Textual.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..protocol.config import RunConfig
from ..protocol.errors import ConfigError
from ..protocol.records import EvalResult, Resumed, Rewound, StepRecord, WatchHit
from ..safe_files import AppendFile
from .runlock import (  # noqa: F401 (the lock's names are importable from here too)
    LOCK_FILE,
    check_not_in_use,
    in_use_message,
    lock_folder,
    lock_holder,
    release_run_dir,
    remove_stale_temporaries,
)

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "last.pt"
LOG_FILE = "nktui.log"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE)
CHECKPOINT_FORMAT = "nktui-checkpoint"  # last.pt before it held the full state (now "nktui-state"); still loads


# -- where the run goes -----------------------------------------------------------------------------------------
def default_run_dir(base: str | Path = "runs", now: float | None = None) -> Path:
    """`runs/<YYYYmmdd-HHMMSS>` under the current folder; `-2`, `-3` ... appended when that name is taken. Nothing
    is created: `claim_run_dir(path, fresh=True)` makes the folder, and takes the next name if this one went first."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    path = Path(base) / stamp
    n = 2
    while path.exists():
        path = Path(base) / f"{stamp}-{n}"
        n += 1
    return path


def choose_run_dir(config: RunConfig) -> Path:
    """The folder this run will write to; nothing is created yet (`claim_run_dir` does that).

    `config.run_dir` is used as given, but not when another nktui process is using it (RunDirInUse names it) or it
    already holds a run's files (those are never overwritten: ConfigError names the fix); no `run_dir` means a
    fresh `runs/<date-time>/`.
    """
    if config.run_dir is None:
        return default_run_dir()
    path = Path(config.run_dir).expanduser()
    try:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--run-dir {path} is a file, not a folder: give a new folder for the run's files")
        check_not_in_use(path)
        _check_holds_no_run(path)
    except OSError as exc:  # a name too long, a folder nktui may not look into ...
        raise ConfigError(f"cannot use --run-dir {path}: {exc.strerror or exc}") from None
    return path


def _check_holds_no_run(path: Path) -> None:
    taken = [name for name in RUN_FILES if (path / name).exists()]
    if taken:
        raise ConfigError(
            f"--run-dir {path} already holds a run ({', '.join(taken)}): give a new folder, "
            "or leave --run-dir out to get a fresh runs/<date-time>/"
        )


def create_run_dir(path: Path, config: RunConfig) -> Path:
    """Make the folder and write `config.toml` into it. The file leaves `run_dir` out: `--config` of it repeats the
    run into a fresh folder instead of refusing this one, which already holds a run. (A run claims its folder
    first: `claim_run_dir`, through `RunKeeper.create`.)"""
    try:
        path.mkdir(parents=True, exist_ok=True)
        dataclasses.replace(config, run_dir=None).save(path / CONFIG_FILE)
    except OSError as exc:
        raise ConfigError(f"cannot write the run directory {path}: {exc.strerror or exc}") from None
    return path


# -- claiming the folder: made, and locked (nktui.run.runlock) -----------------------------------------------
def claim_run_dir(path: str | Path, *, fresh: bool = False, resume: bool = False) -> Path:
    """Make the run directory and lock it for this process; returns the folder (see the module's docstring).

    `fresh`: `path` is a new name (the default `runs/<date-time>`, an app restart's `-2`): the folder is made with
    an exclusive mkdir, and when another process made it first the next free `path-2`, `path-3` ... is made
    instead, so two runs started in the same second get two folders. Otherwise the folder may exist; it is refused
    when another process holds its lock (RunDirInUse) or, unless `resume` (a run going on in its own folder), when
    it already holds a run's files (ConfigError). A second claim from this process is granted (one lock, counted).
    """
    path = Path(path)
    try:
        if fresh:
            parents = _missing(path.parent)
            path = _make_fresh(path)
            made = [path, *parents]
        else:
            if path.exists() and not path.is_dir():
                raise ConfigError(f"--run-dir {path} is a file, not a folder: give a new folder for the run's files")
            made = _missing(path)
            path.mkdir(parents=True, exist_ok=True)
        claim = lock_folder(path, made)
    except OSError as exc:
        raise ConfigError(f"cannot write the run directory {path}: {exc.strerror or exc}") from None
    if not fresh and not resume:
        try:
            _check_holds_no_run(path)  # (again, now that no other process can start writing here)
        except ConfigError:
            release_run_dir(path, used=False)
            raise
    if claim.count == 1:
        try:
            check_writable(path)
        except OSError as exc:  # before anything trains: a run that could save nothing is refused
            release_run_dir(path, used=resume)
            why = exc.strerror or exc
            if resume:
                raise ConfigError(f"cannot resume in {path}: nktui cannot write there ({why}), so last.pt could not "
                                  "move on; give --run-dir NEW to write the resumed run elsewhere") from None
            raise ConfigError(f"cannot write the run directory {path}: {why}") from None
        remove_stale_temporaries(path)
    return path


def check_writable(path: Path) -> None:
    """OSError unless a new file can be made in `path` (where last.pt's temporary file goes): a read-only folder
    or file system. (A root process may write where the permission bits say no: it is the OS that decides.)"""
    probe = path / f".{CHECKPOINT_FILE}.tmp-{os.getpid()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.close(fd)
    probe.unlink()


def _missing(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist, deepest first (what a claim made, to remove unused)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _make_fresh(path: Path) -> Path:
    """Make `path`, or the first of `path-2`, `path-3` ... that no other process made first. A `name-2` (chosen
    beside a `name` that exists) goes on with `name-3`, not `name-2-2`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base, n = path, 2
    stem, dash, number = path.name.rpartition("-")
    if dash and number.isdigit() and path.with_name(stem).exists():
        base, n = path.with_name(stem), int(number) + 1
    candidate = path
    while True:
        try:
            candidate.mkdir()  # atomic: of two processes making the same name, one gets FileExistsError
            return candidate
        except FileExistsError:
            candidate = base.with_name(f"{base.name}-{n}")
            n += 1


# -- metrics.jsonl ------------------------------------------------------------------------------------------------
def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those become None (`null`)."""
    if value is None or not math.isfinite(value):
        return None
    return value


def step_row(record: StepRecord) -> dict[str, Any]:
    return {
        "type": "step",
        "step": record.step,
        "epoch": record.epoch,
        "loss": finite_or_none(record.loss),
        "lr": finite_or_none(record.lr),
        "accuracy": finite_or_none(record.accuracy),
        "samples_per_sec": finite_or_none(record.samples_per_sec),
        "layers": {
            name: {"grad_norm": finite_or_none(s.grad_norm), "update_ratio": finite_or_none(s.update_ratio)}
            for name, s in record.layers.items()
        },
    }


def eval_row(result: EvalResult) -> dict[str, Any]:
    return {
        "type": "eval",
        "step": result.step,
        "epoch": result.epoch,
        "loss": finite_or_none(result.loss),
        "accuracy": finite_or_none(result.accuracy),
    }


class MetricsWriter:
    """Appends rows for records to `metrics.jsonl`. Call `write()` from the thread that reads the records.

    A full disk or a write error never raises: the batch that failed is cut off whole (`AppendFile`), `error` says
    why and `lost_from` the step of its first row, and later rows are dropped (the caller says so once)."""

    def __init__(self, path: str | Path, log_every: int) -> None:
        self.path = Path(path)
        self.log_every = log_every
        self.rows = 0
        self.last_step: int | None = None  # the step of the newest row written
        self.lost_from: int | None = None  # the step of the first row that could not be written
        self._fired_row: int | None = None
        self._file = AppendFile(self.path)

    @property
    def error(self) -> OSError | None:
        return self._file.error

    def row_for(self, record) -> dict[str, Any] | None:
        """The row a record gets, or None for a step that is not logged."""
        if isinstance(record, EvalResult):
            return eval_row(record) if record.split == "val" else None
        if isinstance(record, WatchHit):
            return {"type": "watch", "step": record.step, "watchpoint": record.watchpoint, "layer": record.layer,
                    "value": finite_or_none(record.value), "message": record.message}
        if isinstance(record, Rewound):
            return {"type": "rewind", "step": record.step, "from_step": record.from_step}
        if isinstance(record, Resumed):
            return {"type": "resume", "step": record.step}
        if isinstance(record, StepRecord) and record.step % self.log_every == 0:
            return step_row(record)
        return None

    def write(self, records: Iterable[StepRecord | EvalResult]) -> int:
        """Write the rows of these records (one write); returns how many rows were written (0 once it failed)."""
        lines: list[str] = []
        first_step = last_step = None
        for record in records:
            fired = record.record if isinstance(record, WatchHit) else None
            if fired is not None and fired.step % self.log_every and fired.step != self._fired_row:
                self._fired_row = fired.step  # the step that fired gets its row, though not a log step (once)
                rows = [step_row(fired), self.row_for(record)]
            else:
                rows = [self.row_for(record)]
            for row in rows:
                text = None if row is None else self._emit(row)
                if text is not None:
                    lines.append(text)
                    first_step = row["step"] if first_step is None else first_step
                    last_step = row["step"]
        if not lines:
            return 0
        if not self._file.append("".join(lines)):
            if self.lost_from is None:
                self.lost_from = first_step
            return 0
        self.rows += len(lines)
        self.last_step = last_step
        return len(lines)

    def _emit(self, row: dict[str, Any]) -> str | None:
        """The line of one row; None if this file has no place for it. (Subclasses write other formats.)"""
        return json.dumps(row, allow_nan=False, separators=(",", ":")) + "\n"

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a metrics.jsonl file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def earlier_records(path: str | Path, up_to: int) -> list[StepRecord | EvalResult]:
    """A run's history as its metrics.jsonl has it (one step row every log_every steps, every validation), as
    records for the plot, up to step `up_to`: what a resumed run shows of the steps before it. Rows after a resume
    row replace those of the same steps before it; a row that is not valid JSON ends the reading (a run killed
    mid-line). [] when the file is missing or unreadable."""
    rows: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    break
                if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                    continue
                if row.get("type") == "resume":
                    rows = [r for r in rows if r["step"] <= row["step"]]
                elif row.get("type") in ("step", "eval") and row["step"] <= up_to:
                    rows.append(row)
    except (OSError, UnicodeDecodeError):
        return []
    records: list[StepRecord | EvalResult] = []
    for row in rows:
        loss, accuracy = row.get("loss"), row.get("accuracy")
        if not isinstance(loss, (int, float)) or not isinstance(accuracy, (int, float)):
            continue  # (a non-finite loss is written as null: nothing to plot)
        epoch = row.get("epoch", 0) if isinstance(row.get("epoch"), int) else 0
        if row["type"] == "step":
            lr = row.get("lr") if isinstance(row.get("lr"), (int, float)) else 0.0
            records.append(StepRecord(row["step"], epoch, float(loss), float(accuracy), float(lr)))
        else:
            records.append(EvalResult(row["step"], epoch, float(loss), float(accuracy), (), ()))
    return records


# -- checkpoints: in nktui.run.checkpoint (the full state); the names stay importable from here -------------
CHECKPOINT_FUNCTIONS = ("atomic_save", "checkpoint_state", "load_checkpoint", "save_checkpoint")


def __getattr__(name: str) -> Any:  # imported on first use: this module itself needs no torch
    if name in CHECKPOINT_FUNCTIONS:
        from . import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def write_log(run_dir: str | Path, text: str) -> Path:
    """Append text (a traceback) to the run's nktui.log."""
    path = Path(run_dir) / LOG_FILE
    with open(path, "a", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")
    return path
