"""Exports of a run next to `metrics.jsonl`: `metrics.csv` and TensorBoard event files, written from records.

    runs/20250101-120000/
        metrics.jsonl                   always (nktui.run.rundir.MetricsWriter)
        metrics.csv                     --csv
        events.out.tfevents.*           --tensorboard: `tensorboard --logdir runs` shows every run side by side

Every writer here has `write(records)` and `close()` and is called by whoever reads `trainer.records` (`nktui
train`'s main thread, the app's poll), never by the trainer: an export costs the training loop nothing. `RunWriters`
hands the same records to all of a run's writers; `open_writers` makes the ones a RunConfig asks for. A writer that
cannot write (a full disk, EIO, a read-only folder) never raises: it stops taking rows, and `RunWriters.take_warnings`
says so once, naming the file and the first step it lacks (`nktui.safe_files`).

metrics.csv holds the same rows as metrics.jsonl's step and eval rows, in the same order, under a fixed header:

    step,epoch,loss,accuracy,lr,samples_per_sec,val_loss,val_accuracy,fc.weight/grad_norm,fc.weight/update_ratio,...

A step row fills the training columns and one `<layer>/grad_norm` and `<layer>/update_ratio` pair per parameter
tensor; an eval row fills `val_loss` and `val_accuracy`. An empty cell is a value JSONL writes as `null` (not
measured, or not finite). TensorBoard gets the scalars `train/loss`, `train/accuracy`, `train/lr`,
`train/samples_per_sec`, `val/loss`, `val/accuracy`, `grad_norm/<layer>`, `update_ratio/<layer>`, and each
layer's gradient histogram `grad/<layer>` (from `LayerStats.histogram`; the driver asks the trainer for them at
launch). TensorBoard is optional: `pip install 'nktui[tensorboard]'`.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import threading
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..protocol.config import RunConfig
from ..protocol.errors import ConfigError
from ..protocol.records import EvalResult, LayerStats, StepRecord
from .rundir import METRICS_FILE, MetricsWriter
from ..safe_files import describe_write_error

CSV_FILE = "metrics.csv"
TENSORBOARD_BINS = 30  # gradient histogram bins when TensorBoard asks for histograms and nobody else did
TENSORBOARD_HINT = "pip install 'nktui[tensorboard]' (or pip install tensorboard)"
BASE_COLUMNS = ("step", "epoch", "loss", "accuracy", "lr", "samples_per_sec", "val_loss", "val_accuracy")
LAYER_COLUMNS = ("grad_norm", "update_ratio")


class Writer(Protocol):
    def write(self, records: Iterable[Any]) -> int: ...

    def close(self) -> None: ...


# -- metrics.csv ------------------------------------------------------------------------------------------------
def csv_header(layers: Sequence[str]) -> list[str]:
    return [*BASE_COLUMNS, *(f"{layer}/{column}" for layer in layers for column in LAYER_COLUMNS)]


def csv_values(row: dict[str, Any], layers: Sequence[str]) -> list[Any]:
    """A metrics.jsonl row as the CSV's cells (None: an empty cell)."""
    if row["type"] == "eval":
        cells = [row["step"], row["epoch"], None, None, None, None, row["loss"], row["accuracy"]]
        return cells + [None] * (len(layers) * len(LAYER_COLUMNS))
    cells = [row[name] for name in BASE_COLUMNS[:6]] + [None, None]
    for layer in layers:
        stats = row["layers"].get(layer, {})
        cells += [stats.get(column) for column in LAYER_COLUMNS]
    return cells


class CsvWriter(MetricsWriter):
    """Appends the step and eval rows of records to `metrics.csv` (watchpoint hits, rewinds and resumes are events
    with no columns here); the header (from the model's parameter names) is written when the file is new."""

    def __init__(self, path: str | Path, log_every: int, layers: Sequence[str]) -> None:
        self.layers = tuple(layers)
        super().__init__(path, log_every)
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer)
        if self._file.is_new:
            self._file.append(self._line(csv_header(self.layers)))

    def _line(self, cells: list[Any]) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._csv.writerow(cells)
        return self._buffer.getvalue()

    def _emit(self, row: dict[str, Any]) -> str | None:
        if row["type"] not in ("step", "eval"):
            return None
        return self._line(["" if v is None else v for v in csv_values(row, self.layers)])


def read_csv(path: str | Path) -> list[dict[str, float | int | None]]:
    """metrics.csv's rows as dicts of numbers (an empty cell: None); `step` and `epoch` as ints."""
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            values: dict[str, float | int | None] = {}
            for key, cell in row.items():
                values[key] = None if cell == "" else int(cell) if key in ("step", "epoch") else float(cell)
            out.append(values)
    return out


# -- TensorBoard ------------------------------------------------------------------------------------------------
def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def check_exports(config: RunConfig) -> None:
    """ConfigError before anything starts when an export needs a package that is not installed."""
    if config.tensorboard and not tensorboard_available():
        raise ConfigError(f"--tensorboard needs the tensorboard package, which is not installed: {TENSORBOARD_HINT}")


def tensorboard_histogram(stats: LayerStats) -> dict[str, Any] | None:
    """`SummaryWriter.add_histogram_raw` arguments for a layer's gradient histogram, or None without one.

    Our histogram has equal-width bins between the gradient's min and max. TensorBoard stores each bucket by its
    right edge, so, as torch's own `add_histogram` does, an empty bucket ending at the minimum goes first: the
    buckets are then (-inf, lo], (lo, e1], ..., (e_n-1, hi]. The sum and the sum of squares come from the
    gradient's mean and norm, which are exact over every value (the counts are too)."""
    hist = stats.histogram
    if hist is None or not hist.counts:
        return None
    edges = hist.edges()
    counts = [0, *hist.counts]
    if hist.hi <= hist.lo:  # every value the same: one bucket
        edges, counts = [hist.lo, hist.hi], [0, sum(hist.counts)]
    n = stats.numel
    return {
        "min": hist.lo,
        "max": hist.hi,
        "num": n,
        "sum": stats.grad_mean * n,
        "sum_squares": stats.grad_norm**2,
        "bucket_limits": edges,
        "bucket_counts": counts,
    }


class TensorBoardWriter:
    """Scalars and gradient histograms of the logged steps and every validation, as TensorBoard event files in
    `log_dir` (torch's SummaryWriter: its own thread writes the file, flushed every `flush_secs` and on close).

    A write error (a full disk) never raises: `error` keeps it, `lost_from` the first step it lost, and the writer
    takes nothing more. The writing thread's own report of it (a traceback on stderr) is kept quiet."""

    def __init__(self, log_dir: str | Path, log_every: int, *, flush_secs: int = 10) -> None:
        check_exports(RunConfig(tensorboard=True))
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.path = self.log_dir  # (what a warning names)
        self.log_every = log_every
        self.rows = 0
        self.last_step: int | None = None
        self.lost_from: int | None = None
        self.error: OSError | None = None
        self._writer = None
        try:
            self._writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=flush_secs)
        except OSError as exc:
            self.error = exc
            return
        worker = _event_thread(self._writer)
        if worker is not None:
            _quiet_threads.add(worker)
            _install_thread_hook()

    def _scalar(self, tag: str, value: float | None, step: int) -> None:
        if value is not None and math.isfinite(value):  # TensorBoard draws nan as a gap anyway; leave it out
            self._writer.add_scalar(tag, value, step)

    def write(self, records: Iterable[Any]) -> int:
        if self.error is not None or self._writer is None:
            return 0
        written = 0
        step = None
        try:
            for record in records:
                if isinstance(record, StepRecord) and record.step % self.log_every == 0:
                    step = record.step
                    self._scalar("train/loss", record.loss, step)
                    self._scalar("train/accuracy", record.accuracy, step)
                    self._scalar("train/lr", record.lr, step)
                    self._scalar("train/samples_per_sec", record.samples_per_sec, step)
                    for name, stats in record.layers.items():
                        self._scalar(f"grad_norm/{name}", stats.grad_norm, step)
                        self._scalar(f"update_ratio/{name}", stats.update_ratio, step)
                        histogram = tensorboard_histogram(stats)
                        if histogram is not None:
                            self._writer.add_histogram_raw(f"grad/{name}", global_step=step, **histogram)
                    written += 1
                    self.last_step = step
                elif isinstance(record, EvalResult) and record.split == "val":
                    step = record.step
                    self._scalar("val/loss", record.loss, record.step)
                    self._scalar("val/accuracy", record.accuracy, record.step)
                    written += 1
                    self.last_step = step
        except OSError as exc:  # (raised here once the writing thread has failed)
            self.error = exc
            self.lost_from = self.last_step if step is None else step
        self.rows += written
        return written

    def flush(self) -> None:
        if self._writer is not None and self.error is None:
            try:
                self._writer.flush()
            except OSError as exc:
                self.error = exc

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                writer.close()
            except OSError as exc:
                self.error = self.error or exc


_quiet_threads: weakref.WeakSet = weakref.WeakSet()  # TensorBoard's writing threads: their OSError is reported here
_hook_installed = False


def _event_thread(writer: Any) -> threading.Thread | None:
    """The thread that writes a SummaryWriter's event file (torch -> tensorboard internals; None if not found)."""
    event_writer = getattr(getattr(writer, "file_writer", None), "event_writer", None)
    worker = getattr(getattr(event_writer, "_async_writer", None), "_worker", None)
    return worker if isinstance(worker, threading.Thread) else None


def _install_thread_hook() -> None:
    """A write error kills TensorBoard's writing thread, and Python prints its traceback; the writer's next call
    raises the same error, which `TensorBoardWriter.write` turns into one warning. So those tracebacks are not
    printed (every other thread's exceptions go to the hook as before)."""
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if args.thread in _quiet_threads and issubclass(args.exc_type, OSError):
            return
        previous(args)

    threading.excepthook = hook


# -- all of a run's writers -------------------------------------------------------------------------------------
class RunWriters:
    """The writers of one run, fed the same records. `rows` counts metrics.jsonl's rows (the first writer).

    A writer that cannot write (a full disk, EIO, a read-only folder) never stops the run: it drops what follows,
    and `take_warnings` gives one line for the writers that failed since the last call (never one per row)."""

    def __init__(self, writers: Sequence[Writer], files: Sequence[str]) -> None:
        self.writers = list(writers)
        self.names = tuple(files)  # what each writer writes: metrics.jsonl, metrics.csv ...
        self._reported: set[int] = set()

    @property
    def rows(self) -> int:
        return getattr(self.writers[0], "rows", 0) if self.writers else 0

    @property
    def files(self) -> tuple[str, ...]:
        """What the run wrote, for the closing summary: `metrics.jsonl`, or `metrics.jsonl (to step 40)` when a
        write failed after that row; a file that got no row is not named."""
        shown = []
        for name, writer in zip(self.names, self.writers, strict=True):
            if getattr(writer, "error", None) is None:
                shown.append(name)
            elif getattr(writer, "last_step", None) is not None:
                shown.append(f"{name} (to step {writer.last_step})")
        return tuple(shown)

    @property
    def failed(self) -> tuple[str, ...]:
        """The files some rows could not be written to."""
        return tuple(name for name, w in zip(self.names, self.writers, strict=True) if getattr(w, "error", None))

    def write(self, records: Iterable[Any]) -> int:
        records = list(records)
        counts = []
        for writer in self.writers:
            try:
                counts.append(writer.write(records))
            except OSError as exc:  # (a writer of another kind: the same rule)
                counts.append(0)
                if getattr(writer, "error", None) is None:
                    writer.error = exc
        return counts[0] if counts else 0

    def take_warnings(self) -> list[str]:
        """One line for the writers that failed since the last call (none when nothing new failed)."""
        new = [(i, w) for i, w in enumerate(self.writers) if getattr(w, "error", None) and i not in self._reported]
        if not new:
            return []
        self._reported.update(i for i, _ in new)
        parts = []
        for i, writer in new:
            lost = getattr(writer, "lost_from", None)
            parts.append(describe_write_error(writer.error, getattr(writer, "path", self.names[i]))
                         + (f" (its rows from step {lost} on are missing)" if lost is not None else ""))
        return ["; ".join(parts) + f"; the run goes on without {'it' if len(new) == 1 else 'them'}"]

    def close(self) -> None:
        """Close every writer; a write error here is one more warning (`take_warnings`), never an exception."""
        errors = []
        for writer in self.writers:
            try:
                writer.close()
            except OSError as exc:
                if getattr(writer, "error", None) is None:
                    writer.error = exc
            except Exception as exc:  # close them all, then report the first failure (a bug)
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> RunWriters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_writers(run_dir: str | Path, config: RunConfig, layers: Sequence[str]) -> RunWriters:
    """metrics.jsonl, plus metrics.csv (`config.csv`) and TensorBoard event files (`config.tensorboard`), all in
    `run_dir`. `layers`: the model's parameter names, in order (`trainer.instruments.names`): the CSV's columns."""
    run_dir = Path(run_dir)
    writers: list[Writer] = []
    files: list[str] = []
    try:
        writers.append(MetricsWriter(run_dir / METRICS_FILE, config.log_every))
        files.append(METRICS_FILE)
        if config.csv:
            writers.append(CsvWriter(run_dir / CSV_FILE, config.log_every, layers))
            files.append(CSV_FILE)
        if config.tensorboard:
            writers.append(TensorBoardWriter(run_dir, config.log_every))
            files.append("TensorBoard events")
    except BaseException:
        for writer in writers:
            writer.close()
        raise
    return RunWriters(writers, files)
