"""`nktui train`: one run without the app, from a validated RunConfig to a run directory and a closing summary.

Threads: the trainer is built and trained on its own thread (`Trainer.launch`), and every tensor operation,
evaluation and checkpoint save happens there (`controller.call`). This thread runs no tensor code at all: it
polls `trainer.records` a few times a second, writes `metrics.jsonl` rows, prints progress (a rich bar on a
terminal, plain lines otherwise), and at the end asks the training thread for the final evaluations and
`last.pt`. Ctrl+C stops at a step boundary and still saves `last.pt` and prints the summary (exit 0).

Exit codes: 0 finished or interrupted; 2 bad input (a one-line `nktui: error:`); 1 the run failed while
training (the traceback goes to stderr and to `<run-dir>/nktui.log`). Imports no Textual.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .cli import one_line, print_error
from .training import EvalResult, NktuiError, RunConfig, RunState, StepRecord, Trainer
from .training.devices import describe_device
from .training.rundir import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    MetricsWriter,
    choose_run_dir,
    create_run_dir,
    save_checkpoint,
    write_log,
)

POLL_SECONDS = 0.2  # how often the records are read
DONE = (RunState.FINISHED, RunState.FAILED, RunState.STOPPED)
WATCH_FLAGS = {  # the flag that switches each watchpoint off
    "grad_jump": "--watch-grad-jump 0",
    "ratio_band": "--watch-ratio-low 0 --watch-ratio-high 0",
    "dead_relu": "--watch-dead-relu 0",
    "vanishing": "--watch-vanishing 0",
}


@dataclass(frozen=True)
class Final:
    """What the training thread reports at the end: the step reached and both evaluations of the final weights."""

    step: int
    epoch: int
    train: EvalResult
    val: EvalResult


def finalize(trainer: Trainer, checkpoint: Path) -> Final:
    """On the training thread: evaluate the final weights on both splits and save `last.pt`."""
    trainer.flush()
    val = trainer.last_eval
    if val is None or val.step != trainer.step_count:  # stopped between evaluations: evaluate these weights
        val = trainer.evaluate("val")
    train = trainer.evaluate("train")
    save_checkpoint(trainer, checkpoint)
    return Final(trainer.step_count, trainer.epoch, train, val)


# -- progress --------------------------------------------------------------------------------------------------
class Progress:
    """Follows the records: a mean of loss and accuracy since the last report, the latest lr, rate and val acc."""

    def __init__(self, out: TextIO, trainer: Trainer) -> None:
        self.out = out
        self.limit = trainer.step_limit
        self.log_every = trainer.config.log_every
        self.step = self.epoch = 0
        self.lr = trainer.config.lr
        self.rate: float | None = None
        self.val: EvalResult | None = None
        self._loss = self._acc = 0.0
        self._n = 0

    def add(self, records: list) -> None:
        for record in records:
            if isinstance(record, EvalResult):
                self.val = record
                continue
            if not isinstance(record, StepRecord):  # watchpoint hits and rewinds: not progress
                continue
            self.step, self.epoch, self.lr = record.step, record.epoch, record.lr
            self.rate = record.samples_per_sec or self.rate
            self._loss += record.loss
            self._acc += record.accuracy
            self._n += 1
            if record.step % self.log_every == 0:
                self.report()

    def take_means(self) -> tuple[float, float] | None:
        if not self._n:
            return None
        means = self._loss / self._n, self._acc / self._n
        self._loss = self._acc = 0.0
        self._n = 0
        return means

    def report(self) -> None:  # a log step: plain output prints a line
        pass

    def refresh(self) -> None:  # after each poll: the bar redraws
        pass

    def close(self) -> None:
        pass


class PlainProgress(Progress):
    """`step 50/2000 epoch 3 loss 0.4123 acc 0.906 lr 0.1 3021 samples/s val_acc 0.917`, every log_every steps;
    loss and acc are means over the steps since the previous line."""

    def report(self) -> None:
        means = self.take_means()
        if means is None:
            return
        parts = [f"step {self.step}/{self.limit}", f"epoch {self.epoch}", f"loss {means[0]:.4f}", f"acc {means[1]:.3f}"]
        parts.append(f"lr {self.lr:g}")
        if self.rate:
            parts.append(f"{self.rate:.0f} samples/s")
        if self.val is not None:
            parts.append(f"val_acc {self.val.accuracy:.3f}")
        print(" ".join(parts), file=self.out, flush=True)


class BarProgress(Progress):
    """A rich progress bar with the step count, loss, accuracy, lr, samples/s and validation accuracy."""

    def __init__(self, out: TextIO, trainer: Trainer) -> None:
        super().__init__(out, trainer)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        console = Console(file=out)
        self.wide = console.width >= 120  # narrower terminals get the essentials: steps, loss, lr, samples/s
        columns = [TextColumn("step")] if self.wide else []
        columns += [
            MofNCompleteColumn(),
            BarColumn(bar_width=24 if self.wide else 10),
            TextColumn("{task.fields[stats]}"),
        ]
        columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(compact=True)] if self.wide else []
        self.bar = RichProgress(*columns, console=console, refresh_per_second=4)
        self.task = self.bar.add_task("train", total=self.limit, stats="")
        self.bar.start()
        self._means: tuple[float, float] | None = None

    def refresh(self) -> None:
        self._means = self.take_means() or self._means
        stats = []
        if self._means is not None:
            stats.append(f"loss {self._means[0]:.4f}")
        stats.append(f"lr {self.lr:g}")
        if self.rate:
            stats.append(f"{self.rate:,.0f} samples/s")
        if self._means is not None and self.wide:
            stats.append(f"acc {self._means[1]:.3f}")
        if self.val is not None:
            stats.append(f"val_acc {self.val.accuracy:.3f}")
        if self.wide:
            stats.append(f"epoch {self.epoch}")
        self.bar.update(self.task, completed=self.step, stats=" ".join(stats))

    def close(self) -> None:
        self.refresh()
        self.bar.stop()


# -- the run ---------------------------------------------------------------------------------------------------
def run_headless(config: RunConfig, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Train `config` to its end (or Ctrl+C) and return the exit code."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        run_dir = choose_run_dir(config)
    except NktuiError as exc:
        print_error(exc, err)
        return 2
    controller = Trainer.launch(config, paused=True)  # built on the training thread, held before step 1
    try:
        while not controller.wait_for(lambda s: s is not RunState.STARTING, timeout=POLL_SECONDS):
            pass
    except KeyboardInterrupt:
        controller.stop()
        print("nktui: interrupted before the first step; nothing was written", file=err, flush=True)
        return 0
    if controller.state is RunState.FAILED:
        error = controller.error
        if isinstance(error, NktuiError):
            print_error(error, err)
            return 2
        print(controller.error_traceback, end="", file=err, flush=True)  # a bug: keep its traceback
        return 1
    trainer: Trainer = controller.trainer
    try:
        create_run_dir(run_dir, config)
    except NktuiError as exc:
        controller.stop()
        print_error(exc, err)
        return 2
    try:
        return _train(controller, trainer, run_dir, out, err)
    finally:
        controller.stop()
        controller.join(timeout=10)


def _describe(trainer: Trainer, run_dir: Path) -> str:
    c, data = trainer.config, trainer.data
    n_params = sum(p.numel() for p in trainer.model.parameters())  # shapes only: no tensor work
    epochs = trainer.step_limit / data.steps_per_epoch
    shape = "x".join(str(s) for s in data.input_shape[1:])
    return (
        f"nktui train: {data.name} ({data.train_size} train / {data.val_size} val, {shape}, {data.num_classes} "
        f"classes), model {c.model} ({n_params:,} parameters), {c.optimizer} lr {c.lr:g}, batch {c.batch_size}, "
        f"{trainer.step_limit} steps ({epochs:.3g} epochs) on {describe_device(trainer.device)}\n"
        f"run directory: {run_dir}"
    )


@dataclass
class Outcome:
    code: int
    final: Final | None = None  # set when last.pt was written
    wall: float = 0.0
    interrupted: bool = False
    errors: tuple[str, ...] = ()  # printed to stderr once the progress bar is gone
    stopped_by: str | None = None  # the watchpoint that ended the run


def _train(controller: Any, trainer: Trainer, run_dir: Path, out: TextIO, err: TextIO) -> int:
    print(_describe(trainer, run_dir), file=out, flush=True)
    writer = MetricsWriter(run_dir / METRICS_FILE, trainer.config.log_every)
    progress = (BarProgress if out.isatty() else PlainProgress)(out, trainer)
    seq = 0
    lost = 0

    def drain() -> None:
        nonlocal seq, lost
        new_seq, records = trainer.records.since(seq)
        lost += new_seq - seq - len(records)  # only if this thread fell a whole buffer behind
        seq = new_seq
        writer.write(records)
        progress.add(records)
        progress.refresh()

    try:
        outcome = _follow(controller, trainer, run_dir, drain)
    finally:
        progress.close()
        writer.close()
    if lost:
        print(f"nktui: warning: fell {lost} records behind; some rows are missing from metrics.jsonl", file=err)
    for line in outcome.errors:
        print(line, end="" if line.endswith("\n") else "\n", file=err, flush=True)
    if outcome.final is not None:
        _summary(out, trainer, outcome, run_dir)
    return outcome.code


def _follow(controller: Any, trainer: Trainer, run_dir: Path, drain: Callable[[], None]) -> Outcome:
    """Release the held run, follow its records until it ends or Ctrl+C, then evaluate and save last.pt."""
    started = time.perf_counter()
    interrupted = False
    controller.resume()
    try:
        while True:
            state = controller.state  # read before draining: once it is done, this drain gets every record
            drain()
            if state in DONE or trainer.watch_hit is not None:  # a watchpoint paused the run: end it, code 3
                break
            controller.wait_for(lambda s: s in DONE, timeout=POLL_SECONDS)
    except KeyboardInterrupt:
        interrupted = True
        controller.pause()  # takes effect at the next step boundary; finalize runs there
    wall = time.perf_counter() - started

    if controller.state is RunState.FAILED:
        drain()
        log = write_log(run_dir, controller.error_traceback)
        error = controller.error
        what = one_line(error) if isinstance(error, NktuiError) else f"{type(error).__name__}: {one_line(error)}"
        summary = (
            f"nktui: error: training failed after step {trainer.step_count}: {what} (traceback in {log}; "
            "last.pt was not written)"
        )
        return Outcome(1, errors=(controller.error_traceback, summary))

    checkpoint = run_dir / CHECKPOINT_FILE
    future = controller.call(lambda t: finalize(t, checkpoint))
    try:
        while True:
            try:
                final: Final = future.result(timeout=POLL_SECONDS)
                break
            except FutureTimeout:
                continue
    except KeyboardInterrupt:
        return Outcome(130, errors=("nktui: interrupted while saving: exiting without writing last.pt",))
    except OSError as exc:  # the disk is full, the folder went away ...
        return Outcome(1, errors=(f"nktui: error: cannot write {checkpoint}: {exc.strerror or exc}",))
    finally:
        controller.stop()
        controller.join(timeout=10)
    drain()  # the evaluation finalize may have made
    hit = trainer.watch_hit
    if hit is not None:
        switch = WATCH_FLAGS.get(hit.watchpoint, "--no-watch")
        message = (f"nktui: watchpoint {hit.watchpoint}: {hit.message}. Stopped at step {final.step}; last.pt holds it "
                   f"(to train on regardless: {switch}; all watchpoints off: --no-watch)")
        return Outcome(3, final, wall, errors=(message,), stopped_by=hit.watchpoint)
    return Outcome(0, final, wall, interrupted and final.step < trainer.step_limit)


def _summary(out: TextIO, trainer: Trainer, outcome: Outcome, run_dir: Path) -> None:
    final, wall, interrupted = outcome.final, outcome.wall, outcome.interrupted
    steps = final.step
    rate = steps * trainer.config.batch_size / wall if wall > 0 else 0.0
    if outcome.stopped_by:
        head = (f"stopped by the {outcome.stopped_by} watchpoint at step {steps} of {trainer.step_limit} "
                f"(epoch {final.epoch}) after {wall:.1f} s; last.pt holds step {steps}")
    elif interrupted:
        head = (
            f"interrupted at step {steps} of {trainer.step_limit} (epoch {final.epoch}): stopped at a step "
            f"boundary after {wall:.1f} s; last.pt holds step {steps}"
        )
    else:
        head = f"finished {steps} steps (epoch {final.epoch}) in {wall:.1f} s, {rate:,.0f} samples/s"
    lines = [head]
    for label, ev in (("train", final.train), ("validation", final.val)):
        correct = sum(ev.confusion[i][i] for i in range(len(ev.confusion)))
        lines.append(f"{label:<10}  loss {ev.loss:.4f}  accuracy {ev.accuracy:.4f}  ({correct}/{ev.size})")
    lines.append(f"run directory: {run_dir}  (config.toml, metrics.jsonl, last.pt)")
    print("\n".join(lines), file=out, flush=True)
