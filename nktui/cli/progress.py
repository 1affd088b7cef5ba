"""Progress of `nktui train`: a rich progress bar on a terminal, plain lines otherwise.

Both follow the records `nktui.cli.train` reads (`add`) and report the mean loss and accuracy since the last
report, the latest LR, samples/s and validation accuracy. They run on the reading thread, never the trainer's.
"""

from __future__ import annotations

from typing import TextIO

from ..render.format import number, rate  # (text only: no Textual)
from ..protocol import EvalResult, StepRecord
from ..engine import Trainer


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

    def warn(self, line: str, err) -> bool:
        """A warning while the run trains (a full disk), on stderr; False when it did not get through."""
        return err.say(line)

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
        parts = [f"step {self.step}/{self.limit}", f"epoch {self.epoch}", f"loss {number(means[0], 4)}", f"acc {means[1]:.3f}"]
        parts.append(f"lr {self.lr:g}")
        if self.rate:
            parts.append(f"{rate(self.rate)} samples/s")
        if self.val is not None:
            parts.append(f"val_acc {self.val.accuracy:.3f}")
        # One write with its newline: print() writes the text and the newline apart, and a ctrl+c arriving between
        # the two (KeyboardInterrupt is raised between bytecodes) glued the next line onto this one.
        self.out.write(" ".join(parts) + "\n")
        self.out.flush()


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
            stats.append(f"loss {number(self._means[0], 4)}")
        stats.append(f"lr {self.lr:g}")
        if self.rate:
            stats.append(f"{rate(self.rate)} samples/s")
        if self._means is not None and self.wide:
            stats.append(f"acc {self._means[1]:.3f}")
        if self.val is not None:
            stats.append(f"val_acc {self.val.accuracy:.3f}")
        if self.wide:
            stats.append(f"epoch {self.epoch}")
        self.bar.update(self.task, completed=self.step, stats=" ".join(stats))

    def warn(self, line: str, err) -> bool:
        """On the terminal the bar is on: above the bar (a plain write there would tear it); elsewhere, stderr."""
        if not err.isatty():
            return err.say(line)
        self.bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        return self.out.problem is None

    def close(self) -> None:
        self.refresh()
        self.bar.stop()


# -- the run ---------------------------------------------------------------------------------------------------
