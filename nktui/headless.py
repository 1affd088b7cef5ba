"""`nktui train`: one run without the app, from a validated RunConfig to a run directory and a closing summary.

Threads: the trainer is built and trained on its own thread (`Trainer.launch`), and every tensor operation,
evaluation and checkpoint save happens there (`controller.call`). This thread runs no tensor code at all: it
polls `trainer.records` a few times a second, writes `metrics.jsonl` rows (and metrics.csv and TensorBoard events
with `--csv`, `--tensorboard`: `nktui.training.exporters`), prints progress (a rich bar on a terminal, plain lines
otherwise), and at the end asks the training thread for `last.pt` and the final evaluations. Ctrl+C, SIGTERM
and SIGHUP (the terminal or the SSH connection went away: `nktui.signals`) stop at a step boundary, save
`last.pt` first, print the summary and, as the last line, how to resume (exit 0). `--resume` continues a
checkpoint (`nktui.resume`); `--checkpoint-every N` also saves every N steps (`nktui.training.keeper`).

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
from .gc_policy import freeze_what_is_built
from .progress import BarProgress, PlainProgress
from .signals import StopSignals
from .training import EvalResult, NktuiError, RunConfig, RunState, Trainer
from .training.devices import describe_device
from .training.exporters import check_exports, enable_histograms, open_writers
from .training.gpu import gpu_line, gpu_monitor
from .training.keeper import RunKeeper, resume_command
from .training.rundir import choose_run_dir

POLL_SECONDS = 0.2  # how often the records are read
DONE = (RunState.FINISHED, RunState.FAILED, RunState.STOPPED)
WATCH_FLAGS = {  # the flag that switches each watchpoint off
    "loss_jump": "--watch-loss-jump 0",
    "grad_jump": "--watch-grad-jump 0",
    "ratio_band": "--watch-ratio-low 0 --watch-ratio-high 0",
    "dead_relu": "--watch-dead-relu 0",
    "vanishing": "--watch-vanishing 0",
}


@dataclass(frozen=True)
class Final:
    """What the training thread reports at the end: the step reached, what last.pt holds now (or why it could
    not be written) and both evaluations of the final weights."""

    step: int
    epoch: int
    train: EvalResult
    val: EvalResult
    saved_step: int | None = None
    save_error: str | None = None


def finalize(trainer: Trainer, keeper: RunKeeper) -> Final:
    """On the training thread: save `last.pt` first (weights holding nan/inf are refused: the last good one stays),
    then evaluate the final weights on both splits."""
    trainer.flush()
    save_error = None
    try:
        keeper.checkpointer.save(trainer)
    except (NktuiError, OSError) as exc:  # nan weights, a full disk: say so after the summary
        save_error = str(exc) if isinstance(exc, NktuiError) else f"cannot write last.pt: {exc.strerror or exc}"
    val = trainer.last_eval
    if val is None or val.step != trainer.step_count:  # stopped between evaluations: evaluate these weights
        val = trainer.evaluate("val")
    train = trainer.evaluate("train")
    return Final(trainer.step_count, trainer.epoch, train, val, keeper.saved_step, save_error)


# -- progress --------------------------------------------------------------------------------------------------
def run_headless(config: RunConfig, *, out: TextIO | None = None, err: TextIO | None = None, resume: Any = None) -> int:
    """Train `config` to its end (or Ctrl+C, SIGTERM, SIGHUP) and return the exit code. `resume`: a
    `nktui.resume.ResumePlan` to go on from."""
    out = ReaderOutput(sys.stdout if out is None else out)
    err = sys.stderr if err is None else err
    try:
        check_exports(config)  # --tensorboard without tensorboard installed: say so before anything starts
        run_dir = resume.run_dir if resume is not None else choose_run_dir(config)
    except NktuiError as exc:
        print_error(exc, err)
        return 2
    # The folder is claimed (made and locked: one run a folder) before the trainer is built; `fresh`: a default
    # runs/<date-time> that another process made first becomes runs/<date-time>-2.
    fresh = config.run_dir is None and not getattr(resume, "in_place", False)
    keeper = RunKeeper(run_dir, config, resume=resume, headless=True, fresh=fresh)
    try:
        keeper.claim()
    except NktuiError as exc:
        print_error(exc, err)
        return 2
    # SIGINT, SIGTERM and SIGHUP only count (stops.count): the loops below read it at each poll, so the stop is
    # taken where the code expects it, never as an exception from whatever the main thread was doing (a lock, a
    # wait, half a line of output).
    try:
        with StopSignals() as stops:
            return _run(config, keeper, stops, out, err)
    finally:
        keeper.release()


class ReaderOutput:
    """stdout for `nktui train | head`: once the reader has gone (a broken pipe), writes are dropped instead of
    raising, and `gone` says so; the run then stops at a step boundary and saves last.pt, as on a stop signal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self.stream.write(text)
            except BrokenPipeError:
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self.gone = True

    def isatty(self) -> bool:
        return self.stream.isatty()


def _run(config: RunConfig, keeper: RunKeeper, stops: StopSignals, out: TextIO, err: TextIO) -> int:
    # built on the training thread (with the checkpoint to resume from), held before step 1
    controller = Trainer.launch(config, paused=True, **keeper.trainer_kwargs())
    try:
        while not controller.wait_for(lambda s: s is not RunState.STARTING, timeout=POLL_SECONDS):
            if stops:
                raise KeyboardInterrupt(stops.name)
    except KeyboardInterrupt:  # (raised by Python itself where the handlers could not be installed)
        controller.stop()
        print("nktui: interrupted before the first step; nothing was written", file=err, flush=True)
        return 0
    if controller.state is RunState.FAILED:
        error = controller.error
        if isinstance(error, NktuiError):  # (one from the user's code keeps that code's traceback as its cause)
            log = keeper.log_build_failure(controller.error_traceback) if error.__cause__ is not None else None
            print_error(f"{error} (traceback in {log})" if log else error, err)
            return 2
        print(controller.error_traceback, end="", file=err, flush=True)  # a bug: keep its traceback
        return 1
    freeze_what_is_built()  # torch and the model: out of the cyclic collector's walks (see nktui.gc_policy)
    trainer: Trainer = controller.trainer
    try:
        keeper.create()
    except NktuiError as exc:
        controller.stop()
        print_error(exc, err)
        return 2
    try:
        return _train(controller, trainer, keeper, stops, out, err)
    finally:
        controller.stop()
        if not controller.join(timeout=10):  # the training thread may still write last.pt: the folder stays
            keeper.hold_until_exit()  # locked until this process exits


def _describe(trainer: Trainer, run_dir: Path) -> str:
    c, data = trainer.config, trainer.data
    n_params = sum(p.numel() for p in trainer.model.parameters())  # shapes only: no tensor work
    epochs = trainer.step_limit / data.steps_per_epoch
    shape = "x".join(str(s) for s in data.input_shape[1:])
    return (
        f"nktui train: {data.name} ({data.train_size} train / {data.val_size} val, {shape}, {data.num_classes} "
        f"classes), model {c.model} ({n_params:,} parameters), {c.optimizer} lr {c.lr:g}, batch {c.batch_size}, "
        f"{trainer.step_limit} steps ({epochs:.3g} epochs) on {describe_device(trainer.device)}\n"
        + (f"{gpu}\n" if (gpu := _gpu_line(trainer)) else "")
        + f"run directory: {run_dir}"
    )


def _gpu_line(trainer: Trainer) -> str | None:
    """`GPU cuda:0: NVIDIA H100 80GB HBM3, 1.2 of 79.6 GiB in use, 0% busy` on CUDA; None elsewhere."""
    monitor = gpu_monitor(trainer.device)
    return gpu_line(monitor.reading()) if monitor is not None else None


@dataclass
class Outcome:
    code: int
    final: Final | None = None  # set when the run ended at a step boundary and was evaluated
    wall: float = 0.0
    interrupted: bool = False
    errors: tuple[str, ...] = ()  # printed to stderr once the progress bar is gone
    stopped_by: str | None = None  # the watchpoint that ended the run


def _train(controller: Any, trainer: Trainer, keeper: RunKeeper, stops: StopSignals, out: TextIO, err: TextIO) -> int:
    run_dir = keeper.run_dir
    print(_describe(trainer, run_dir), file=out, flush=True)
    writer = open_writers(run_dir, trainer.config, trainer.instruments.names)  # metrics.jsonl, --csv, --tensorboard
    enable_histograms(trainer, trainer.config)
    progress = (BarProgress if out.isatty() else PlainProgress)(out, trainer)
    seq = 0
    lost = 0
    reader_gone = False

    def drain() -> None:
        nonlocal seq, lost, reader_gone
        new_seq, records = trainer.records.since(seq)
        lost += new_seq - seq - len(records)  # only if this thread fell a whole buffer behind
        seq = new_seq
        writer.write(records)
        progress.add(records)
        progress.refresh()
        if getattr(out, "gone", False) and not reader_gone:  # `nktui train | head` has read enough: stop as a
            reader_gone = True  # signal would (once: the drains while finishing go on quietly)
            raise KeyboardInterrupt("the reader of stdout went away")

    try:
        outcome = _follow(controller, trainer, keeper, stops, drain)
    finally:
        progress.close()
        writer.close()
    if lost:
        print(f"nktui: warning: fell {lost} records behind; some rows are missing from metrics.jsonl", file=err)
    for line in outcome.errors:
        print(line, end="" if line.endswith("\n") else "\n", file=err, flush=True)
    if outcome.final is not None:
        _summary(out, trainer, outcome, run_dir, writer.files)
    _last_line(out, trainer, keeper, outcome, stops.name)
    return outcome.code


def _last_line(out: TextIO, trainer: Trainer, keeper: RunKeeper, outcome: Outcome, signal: str | None) -> None:
    """How to go on from last.pt: the last line printed (and, after a signal, noted in nktui.log)."""
    if keeper.saved_step is None:
        return
    command = keeper.resume_command()
    hit = trainer.watch_hit
    if outcome.stopped_by and hit is not None:  # (the app, paused there, is where to look at it)
        line = f"reproduce: {resume_command(keeper.checkpoint, headless=False)} --paused, then t traces step {hit.step}"
    elif outcome.final is not None and outcome.final.step >= trainer.step_limit:
        line = f"train further: {command} --steps {2 * trainer.step_limit}"
    else:
        line = f"resume: {command}"
    if signal is not None:
        keeper.note(f"nktui train: stopped by {signal} at step {trainer.step_count}; {line}")
    try:
        print(line, file=out, flush=True)
    except (OSError, ValueError):  # the terminal or the pipe is gone (SIGHUP): nktui.log has it
        pass


def _follow(controller: Any, trainer: Trainer, keeper: RunKeeper, stops: StopSignals,
            drain: Callable[[], None]) -> Outcome:
    """Release the held run, follow its records until it ends or Ctrl+C (a stop signal), then save last.pt and
    evaluate."""
    started = time.perf_counter()
    interrupted = False
    controller.resume()
    try:
        while True:
            state = controller.state  # read before draining: once it is done, this drain gets every record
            drain()
            if state in DONE or trainer.watch_hit is not None:  # a watchpoint paused the run: end it, code 3
                break
            if stops:
                raise KeyboardInterrupt(stops.name)
            controller.wait_for(lambda s: s in DONE, timeout=POLL_SECONDS)
    except KeyboardInterrupt:  # a stop signal, the reader of stdout gone (drain), or Python's own ctrl+c
        interrupted = True
        controller.pause()  # takes effect at the next step boundary; finalize runs there
    wall = time.perf_counter() - started

    if controller.state is RunState.FAILED:
        drain()
        log = keeper.log_failure(controller.error_traceback)
        error = controller.error
        what = one_line(error) if isinstance(error, NktuiError) else f"{type(error).__name__}: {one_line(error)}"
        kept = ("last.pt was not written" if keeper.saved_step is None
                else f"last.pt holds step {keeper.saved_step}, from before the fault")
        summary = f"nktui: error: training failed after step {trainer.step_count}: {what} (traceback in {log}; {kept})"
        return Outcome(1, errors=(controller.error_traceback, summary))

    checkpoint = keeper.checkpoint
    future = controller.call(lambda t: finalize(t, keeper))
    signals_before = stops.count
    try:
        while True:
            try:
                final: Final = future.result(timeout=POLL_SECONDS)
                break
            except FutureTimeout:
                # A ctrl+c now interrupts the save; a repeated SIGTERM or SIGHUP (a hang-up often comes twice) not.
                if "SIGINT" in stops.names[signals_before:]:
                    raise KeyboardInterrupt("SIGINT") from None
    except KeyboardInterrupt:
        held = "no last.pt was written" if keeper.saved_step is None else f"last.pt holds step {keeper.saved_step}"
        return Outcome(130, errors=(f"nktui: interrupted again while finishing: exiting now; {held}",))
    except OSError as exc:  # the disk is full, the folder went away ...
        return Outcome(1, errors=(f"nktui: error: cannot write {checkpoint}: {exc.strerror or exc}",))
    finally:
        controller.stop()
        controller.join(timeout=10)
    drain()  # the evaluation finalize may have made
    errors = (f"nktui: warning: {final.save_error}",) if final.save_error else ()
    hit = trainer.watch_hit
    if hit is not None:
        switch = WATCH_FLAGS.get(hit.watchpoint)
        regardless = f"{switch}, or --no-watch for all of them" if switch else "--no-watch"
        lines = [f"nktui: watchpoint {h.watchpoint}: {h.message}" for h in trainer.watch_hits or [hit]]
        lines[-1] += f" (to train on regardless: {regardless})"
        return Outcome(3, final, wall, errors=(*errors, *lines), stopped_by=hit.watchpoint)
    return Outcome(0, final, wall, interrupted and final.step < trainer.step_limit, errors=errors)


def _summary(out: TextIO, trainer: Trainer, outcome: Outcome, run_dir: Path, files: tuple[str, ...]) -> None:
    final, wall, interrupted = outcome.final, outcome.wall, outcome.interrupted
    steps = final.step
    rate = steps * trainer.config.batch_size / wall if wall > 0 else 0.0
    if outcome.stopped_by:
        hit = trainer.watch_hit
        where = f"just before step {hit.step}" if hit is not None and hit.stopped_before else f"at step {steps}"
        head = (f"stopped by the {outcome.stopped_by} watchpoint {where} of {trainer.step_limit} "
                f"(epoch {final.epoch}) after {wall:.1f} s; {_held(final)}")
    elif interrupted:
        head = (
            f"interrupted at step {steps} of {trainer.step_limit} (epoch {final.epoch}): stopped at a step "
            f"boundary after {wall:.1f} s; {_held(final)}"
        )
    else:
        head = f"finished {steps} steps (epoch {final.epoch}) in {wall:.1f} s, {rate:,.0f} samples/s"
    lines = [head]
    for label, ev in (("train", final.train), ("validation", final.val)):
        correct = sum(ev.confusion[i][i] for i in range(len(ev.confusion)))
        lines.append(f"{label:<10}  loss {ev.loss:.4f}  accuracy {ev.accuracy:.4f}  ({correct}/{ev.size})")
    written = ("last.pt",) if final.saved_step is not None else ()
    lines.append(f"run directory: {run_dir}  ({', '.join(('config.toml', *files, *written))})")
    print("\n".join(lines), file=out, flush=True)


def _held(final: Final) -> str:
    return f"last.pt holds step {final.saved_step}" if final.saved_step is not None else "no last.pt was written"
