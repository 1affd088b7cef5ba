"""`nktui train`: one run without the app, from a validated RunConfig to a run directory and a closing summary.

Threads: the trainer is built and trained on its own thread (`Trainer.launch`), and every tensor operation,
evaluation and checkpoint save happens there (`controller.call`). This thread runs no tensor code at all: it
polls `trainer.records` a few times a second, writes `metrics.jsonl` rows (and metrics.csv and TensorBoard events
with `--csv`, `--tensorboard`: `nktui.run.exporters`), prints progress (a rich bar on a terminal, plain lines
otherwise), and at the end asks the training thread for `last.pt` and the final evaluations. Ctrl+C, SIGTERM
and SIGHUP (the terminal or the SSH connection went away: `nktui.run.signals`) stop at a step boundary, save
`last.pt` first, print the summary and, as the last line, how to resume (exit 0). `--resume` continues a
checkpoint (`nktui.cli.resume`); `--checkpoint-every N` also saves every N steps (`nktui.run.checkpoint_keeper`).
The run serves its socket in the run directory (`nktui.host.run_host`): `nktui attach` opens the app on it, and
an attached app's `q`, stop, ends it as a signal would.

Write faults never end a run: a metrics file that cannot be written (a full disk) or a periodic last.pt that does
not fit is one warning and the run goes on; stdout or stderr closed, full or gone (`nktui.streams`) drops what
could not be printed, and what matters of it goes to nktui.log (a reader that went away, `| head`, stops the run
as a signal would). nktui.log gets one line per exit: what happened, what last.pt holds, how to go on.

Exit codes: 0 finished or interrupted, everything written; 2 bad input (a one-line `nktui: error:`), a run
directory that cannot be written included; 1 the run failed while training (the traceback goes to stderr and to
`<run-dir>/nktui.log`), or its final state could not be saved (one line says what last.pt still holds); 3 a
watchpoint stopped it; 4 last.pt holds the final state but a metrics file is missing rows (a full disk: the
warning named it). Imports no Textual.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TextIO

from ..messages import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_ROWS_LOST,
    EXIT_WATCHPOINT,
    one_line,
    print_error,
)
from ..run.signals import StopSignals
from ..streams import StreamOutput
from ..protocol import NktuiError, RunConfig, RunState
from ..protocol.config import watch_off_flags
from ..run.driver import DONE, Final, RunDriver
from ..run.files import RunKeeper, choose_run_dir, holds_step
from ..engine import Trainer
from ..engine.devices import describe_device
from ..run.exporters import check_exports
from ..engine.gpu import gpu_line, gpu_monitor
from .progress import BarProgress, PlainProgress
from .run_report import Outcome, Reporter, last_line, summary

POLL_SECONDS = 0.2  # how often the records are read
ATTACHED_POLL_SECONDS = 0.1  # ... while an app is attached (nktui attach): its plot follows within ~0.2 s
WATCH_FLAGS = watch_off_flags()  # the flags that switch each watchpoint off, from the settings' metadata


# -- progress --------------------------------------------------------------------------------------------------
def run_headless(config: RunConfig, *, out: TextIO | None = None, err: TextIO | None = None, resume: Any = None) -> int:
    """Train `config` to its end (or Ctrl+C, SIGTERM, SIGHUP) and return the exit code. `resume`: a
    `nktui.cli.resume.ResumePlan` to go on from."""
    out = StreamOutput(sys.stdout if out is None else out, "stdout")  # (None: closed when nktui started)
    err = StreamOutput(sys.stderr if err is None else err, "stderr")
    try:
        check_exports(config)  # --tensorboard without tensorboard installed: say so before anything starts
        run_dir = resume.run_dir if resume is not None else choose_run_dir(config)
    except NktuiError as exc:
        print_error(exc, err)
        return EXIT_BAD_INPUT
    # The folder is claimed (made and locked: one run a folder) before the trainer is built; `fresh`: a default
    # runs/<date-time> that another process made first becomes runs/<date-time>-2.
    fresh = config.run_dir is None and not getattr(resume, "in_place", False)
    driver = RunDriver(config, RunKeeper(run_dir, config, resume=resume, headless=True, fresh=fresh))
    try:
        driver.claim()
    except NktuiError as exc:
        print_error(exc, err)
        return EXIT_BAD_INPUT
    # SIGINT, SIGTERM and SIGHUP only count (stops.count): the loops below read it at each poll, so the stop is
    # taken where the code expects it, never as an exception from whatever the main thread was doing (a lock, a
    # wait, half a line of output).
    try:
        with StopSignals() as stops:
            return _run(driver, stops, out, err)
    finally:
        driver.release()


def _run(driver: RunDriver, stops: StopSignals, out: StreamOutput, err: StreamOutput) -> int:
    # built on the training thread (with the checkpoint to resume from), held before step 1
    keeper = driver.keeper
    controller = driver.launch(paused=True)
    try:
        while not controller.wait_for(lambda s: s is not RunState.STARTING, timeout=POLL_SECONDS):
            if stops:
                raise KeyboardInterrupt(stops.name)
    except KeyboardInterrupt:  # (raised by Python itself where the handlers could not be installed)
        controller.stop()
        err.say("nktui: interrupted before the first step; nothing was written")
        return EXIT_OK
    if controller.state is RunState.FAILED:
        error = controller.error
        if isinstance(error, NktuiError):  # (one from the user's code keeps that code's traceback as its cause)
            log = keeper.log_build_failure(controller.error_traceback) if error.__cause__ is not None else None
            print_error(f"{error} (traceback in {log})" if log else error, err)
            return EXIT_BAD_INPUT
        err.say(controller.error_traceback)  # a bug: keep its traceback
        return EXIT_FAILED
    driver.built()  # torch and the model: out of the cyclic collector's walks (see nktui.gc_policy)
    trainer: Trainer = controller.trainer
    try:
        driver.create_run_dir()
    except NktuiError as exc:
        controller.stop()
        print_error(exc, err)
        return EXIT_BAD_INPUT
    try:
        return _train(driver, trainer, stops, out, err)
    finally:
        if not driver.stop(timeout=10):  # the training thread may still write last.pt: the folder stays
            driver.release(ended=False)  # locked until this process exits


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


def _train(driver: RunDriver, trainer: Trainer, stops: StopSignals, out: StreamOutput, err: StreamOutput) -> int:
    keeper = driver.keeper
    run_dir = keeper.run_dir
    report = Reporter(out, err, keeper)
    report.say(_describe(trainer, run_dir))
    host = _serve(driver, report)  # `nktui attach` can open this run
    writer = driver.open_exports()  # metrics.jsonl, --csv, --tensorboard
    progress = report.progress = (BarProgress if out.isatty() else PlainProgress)(out, trainer)
    reader_gone = False
    save_warned = False

    def drain() -> None:
        nonlocal reader_gone, save_warned
        records = driver.drain()
        for line in driver.writer_warnings():  # a full disk: once, not a line per row
            report.warn(f"nktui: warning: {line}")
        save_error = driver.checkpoint_error  # a periodic last.pt that could not be written: once
        if save_error and not save_warned:
            save_warned = True
            step = driver.saved_step
            kept = holds_step(step, still=True, none="no last.pt was written yet")
            report.warn(f"nktui: warning: {save_error}; {kept}; the run goes on (the final save tries again)")
        progress.add(records)
        progress.refresh()
        if host is not None:
            host.tick(records)
        report.note_streams()
        if out.gone and not reader_gone:  # `nktui train | head` has read enough: stop as a signal would (once:
            reader_gone = True  # the drains while finishing go on quietly)
            raise KeyboardInterrupt("the reader of stdout went away")

    try:
        outcome = _follow(driver, trainer, stops, drain, host)
    finally:
        progress.close()
        report.progress = None
        driver.close_exports()
    for line in writer.take_warnings():  # (closing the files may have failed too)
        report.warn(f"nktui: warning: {line}")
    if driver.lost:
        report.tell(err, f"nktui: warning: fell {driver.lost} records behind; some rows are missing from metrics.jsonl")
    if outcome.traceback:
        err.say(outcome.traceback)  # (nktui.log has it)
    for line in outcome.errors:
        report.tell(err, line)
    if outcome.code == EXIT_OK and writer.failed:  # last.pt holds the final state, but the rows are not all there
        outcome.code = EXIT_ROWS_LOST
    if outcome.final is not None:
        summary(report, trainer, outcome, run_dir, writer.files)
    ended_by = host.end_request[0] if host is not None and host.end_request is not None else None
    stopped = (f"stopped by {stops.name} at step {{step}}" if stops.name
               else f"{ended_by} at step {{step}} (from an attached app)" if ended_by
               else "stopped at step {step}: the reader of stdout went away" if reader_gone else None)
    line = last_line(report, trainer, outcome, stopped)
    if host is not None:
        host.close(line)
    return outcome.code


def _serve(driver: RunDriver, report: Reporter) -> Any:
    """The run's socket, for `nktui attach`; a socket that cannot be made is a warning, and the run goes on."""
    from ..host.run_host import RunHost

    host = RunHost(driver, mode="train")
    try:
        host.start()
    except OSError as exc:
        report.warn(f"nktui: warning: nktui attach cannot reach this run: {exc}")
        return None
    return host


def _follow(driver: RunDriver, trainer: Trainer, stops: StopSignals, drain: Callable[[], None],
            host: Any = None) -> Outcome:
    """Release the held run, follow its records until it ends or Ctrl+C (a stop signal), then save last.pt and
    evaluate."""
    controller, keeper = driver.controller, driver.keeper
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
            if host is not None and host.end_request is not None:  # `q`, stop, in an attached app
                raise KeyboardInterrupt(host.end_request[0])
            attached = host is not None and host.server.viewers
            controller.wait_for(lambda s: s in DONE, timeout=ATTACHED_POLL_SECONDS if attached else POLL_SECONDS)
    except KeyboardInterrupt:  # a stop signal, the reader of stdout gone (drain), or Python's own ctrl+c
        interrupted = True
        controller.pause()  # takes effect at the next step boundary; finalize runs there
    wall = time.perf_counter() - started

    if controller.state is RunState.FAILED:
        drain()
        log = driver.log_failure()
        error = controller.error
        what = one_line(error) if isinstance(error, NktuiError) else f"{type(error).__name__}: {one_line(error)}"
        kept = ("last.pt was not written" if keeper.saved_step is None
                else f"{holds_step(keeper.saved_step)}, from before the fault")
        where = f"traceback in {log}" if log is not None else "traceback above"
        line = f"nktui: error: training failed after step {trainer.step_count}: {what} ({where}; {kept})"
        return Outcome(EXIT_FAILED, errors=(line,), traceback=controller.error_traceback)

    future = driver.finalize()
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
        held = holds_step(keeper.saved_step)
        return Outcome(EXIT_INTERRUPTED, errors=(f"nktui: interrupted again while finishing: exiting now; {held}",))
    finally:
        driver.stop(timeout=10)
    drain()  # the evaluation finalize may have made
    errors = (f"nktui: warning: {final.save_error}",) if final.save_error else ()
    if final.unsaved:  # the disk is full, the folder went read-only ...: the final state is not in last.pt
        step = final.saved_step
        kept = holds_step(step, still=True)
        line = f"nktui: error: the final state (step {final.step}) was not saved: {final.save_error}; {kept}"
        return Outcome(EXIT_FAILED, final, wall, interrupted and final.step < trainer.step_limit, errors=(line,))
    hit = trainer.watch_hit
    if hit is not None:
        switch = WATCH_FLAGS.get(hit.watchpoint)
        regardless = f"{switch}, or --no-watch for all of them" if switch else "--no-watch"
        lines = [f"nktui: watchpoint {h.watchpoint}: {h.message}" for h in trainer.watch_hits or [hit]]
        lines[-1] += f" (to train on regardless: {regardless})"
        return Outcome(EXIT_WATCHPOINT, final, wall, errors=(*errors, *lines), stopped_by=hit.watchpoint)
    return Outcome(EXIT_OK, final, wall, interrupted and final.step < trainer.step_limit, errors=errors)
