"""Controller: the thread-safe command channel from any thread (the UI, a script, a signal handler) to the
training thread, and the run's state (`nktui.protocol.state.RunState`) as the training thread reports it.

Commands only set fields under a lock; the training loop collects them at the next step boundary with
`next_command()`, so nothing ever changes in the middle of a step. When nothing is pending, the loop's check is
one attribute read (no lock), which keeps the per-step cost of being steerable near zero.

    ctl = trainer.start(paused=True)
    ctl.step()            # exactly one update, then paused again
    ctl.set_lr(0.01)      # the next update uses it
    ctl.resume(); ctl.pause(); ctl.stop(); ctl.join()
    ctl.submit(Evaluate())  # a named command (nktui.protocol.commands), run between steps; a Future of its result

What the training thread publishes for other threads sits here as immutable values (`nktui.engine.published`):
`info` (the run's RunInfo), `step_count`, `records` (the trainer's RecordBuffer), `gpu` (the newest GpuReading on
CUDA) and each running job's progress (`progress(job)`). Readers never need the trainer itself.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from nktui.protocol.commands import (
    CONTROL_COMMANDS,
    TRAINING_COMMANDS,
    Cancel,
    Command as NamedCommand,
    JobProgress,
    Pause,
    Resume,
    SetLr,
    Step,
    Stop,
)

from ..protocol.config import parse_lr
from ..protocol.state import RunState


@dataclass
class Command:
    """What the training loop should do at this step boundary."""

    take_step: bool = False
    single_step: bool = False  # a step taken while paused: observe it and publish it at once
    observe: bool = False  # somebody will look at the next step: compute its per-layer statistics
    stop: bool = False
    lr: float | None = None
    calls: list[tuple[Any, Future]] = field(default_factory=list)  # named commands, or callables fn(trainer)


RUN = Command(take_step=True)  # the fast path's answer; never mutated


class Controller:
    def __init__(self, *, paused: bool = False) -> None:
        self._cond = threading.Condition()
        self._state = RunState.STARTING
        self._pause = paused
        self._step_tokens = 0
        self._stop = False
        self._lr: float | None = None
        self._observe = False
        self._pause_after = False  # pause once the next step is taken (pause_measured)
        self._calls: list[tuple[Any, Future]] = []  # (a named command or fn(trainer), its Future)
        self._jobs: dict[int, Future] = {}  # cancellable commands not yet done, by job number
        self._cancelled: set[int] = set()
        self._progress: dict[int, JobProgress] = {}
        self._pending = False  # any command waiting; read without the lock on the fast path
        self.error: BaseException | None = None
        self.error_traceback: str = ""
        self.thread: threading.Thread | None = None
        self.trainer: Any = None  # the Trainer this controller steers, once it exists (for scripts and tests)
        # published by the training thread (nktui.engine.published); immutable values, replaced whole:
        self.info: Any = None  # nktui.protocol.run_info.RunInfo, once the trainer is built
        self.records: Any = None  # the trainer's RecordBuffer, once it exists
        self.step_count = 0  # updates made so far
        self.gpu: Any = None  # the newest nktui.engine.gpu.GpuReading (CUDA only)

    # -- commands: any thread ----------------------------------------------------------------------------------
    def pause(self) -> None:
        self._command(_pause=True)

    def pause_measured(self) -> None:
        """Pause after one more step, which is measured: what the UI shows of the paused run (its gradients, its
        step) is then all of one step. (The step before a plain pause carries no per-layer statistics.)"""
        with self._cond:
            if self._state is RunState.RUNNING and not self._pause:
                self._observe = self._pause_after = True
                self._mark()
            else:
                self._pause = True
                self._mark()

    def resume(self) -> None:
        self._command(_pause=False)

    def step(self) -> bool:
        """Queue exactly one update to be taken while paused; each call is one more. Returns False (and does
        nothing) unless a pause is in effect or requested and the run can still step."""
        with self._cond:
            if not self._pause or self._state in (RunState.FINISHED, RunState.FAILED, RunState.STOPPED):
                return False
            self._step_tokens += 1
            self._mark()
        return True

    def set_lr(self, lr: object) -> float:
        """Validate (ConfigError for <= 0, nan, inf, text) and queue a new learning rate for the next update."""
        value = parse_lr(lr)
        self._command(_lr=value)
        return value

    def request_observation(self) -> None:
        """Ask for per-layer statistics of the next step (a reader is about to look)."""
        if not self._observe:
            self._command(_observe=True)

    def submit(self, command: NamedCommand) -> Future:
        """Send a named command (`nktui.protocol.commands`). A training command runs on the training thread at the
        next step boundary (`nktui.engine.commands.HANDLERS`) and the Future gets its result; the controller's
        own (pause, resume, step, set LR, stop, cancel) take effect now and return a done Future."""
        if isinstance(command, CONTROL_COMMANDS):
            future: Future = Future()
            try:
                future.set_result(self._control(command))
            except Exception as exc:
                future.set_exception(exc)
            return future
        if not isinstance(command, TRAINING_COMMANDS):
            raise TypeError(f"not a command: {command!r}")
        future = self._enqueue(command)
        job = getattr(command, "job", None)
        if job is not None and not future.done():
            with self._cond:
                self._jobs[job] = future
            future.add_done_callback(lambda _: self._forget_job(job))
        return future

    def _control(self, command: NamedCommand) -> Any:
        if isinstance(command, Pause):
            return self.pause_measured() if command.measured else self.pause()
        if isinstance(command, Resume):
            return self.resume()
        if isinstance(command, Step):
            return self.step()
        if isinstance(command, SetLr):
            return self.set_lr(command.lr)
        if isinstance(command, Stop):
            return self.stop()
        if isinstance(command, Cancel):
            return self.cancel(command.job)
        raise TypeError(f"not a control command: {command!r}")

    def cancel(self, job: int) -> bool:
        """Stop job `job`: before it starts (its Future is cancelled), or while it runs (it checks
        `is_cancelled`). True if it was still pending or running."""
        with self._cond:
            future = self._jobs.get(job)
            if future is None:
                return False
            self._cancelled.add(job)
        future.cancel()  # (fails, harmlessly, once the training thread has started it)
        return True

    def call(self, fn: Callable[[Any], Any]) -> Future:
        """Run fn(trainer) on the training thread at the next step boundary; the Future gets its result. For
        scripts, tests and the engine's own use: front ends send named commands (`submit`)."""
        return self._enqueue(fn)

    # -- jobs: the training thread reports, any thread reads -----------------------------------------------------
    def is_cancelled(self, job: int) -> bool:
        return job in self._cancelled

    def report_progress(self, progress: JobProgress) -> None:
        self._progress[progress.job] = progress

    def all_progress(self) -> list[JobProgress]:
        """Every running job's newest progress."""
        return list(self._progress.values())

    def progress(self, job: int) -> JobProgress | None:
        """The newest progress job `job` reported; None before it started (or once it is done)."""
        return self._progress.get(job)

    def _forget_job(self, job: int) -> None:
        with self._cond:
            self._jobs.pop(job, None)
            self._cancelled.discard(job)
            self._progress.pop(job, None)

    def _enqueue(self, work: Any) -> Future:
        future: Future = Future()
        with self._cond:
            if self._state.is_over:
                future.set_exception(RuntimeError(f"the run is {self._state.value}"))
                return future
            if self._stop:  # the loop has taken (or will take) its last command: nobody would run fn
                future.set_exception(RuntimeError("the run is stopping"))
                return future
            self._calls.append((work, future))
            self._mark()
        return future

    def stop(self) -> None:
        self._command(_stop=True)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the training thread to end; True if it has."""
        if self.thread is None:
            return True
        self.thread.join(timeout)
        return not self.thread.is_alive()

    # -- state: any thread -------------------------------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self._state

    @property
    def pause_requested(self) -> bool:
        return self._pause

    def wait_for(self, predicate: Callable[[RunState], bool], timeout: float | None = None) -> bool:
        """Block until predicate(state) holds; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not predicate(self._state):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    # -- the training loop's side ------------------------------------------------------------------------------
    def next_command(self, *, can_step: bool = True, before_wait: Callable[[], Any] | None = None) -> Command:
        """Called by the loop between steps. Returns at once while running; blocks while paused (or when the
        loop cannot step, e.g. finished) until a command arrives. `before_wait` runs (without the lock) once
        before it would block and before PAUSED is reported: the loop publishes its pending records there."""
        if not self._pending and not self._pause and can_step:
            return RUN  # fast path: one attribute read per step
        with self._cond:
            while True:
                cmd = Command(stop=self._stop, lr=self._lr, observe=self._observe, calls=self._calls)
                self._lr, self._calls = None, []
                if not self._stop and can_step:
                    if not self._pause:
                        cmd.take_step = True
                    elif self._step_tokens:
                        self._step_tokens -= 1
                        cmd.take_step = cmd.single_step = cmd.observe = True
                if cmd.take_step:
                    self._observe = False
                    if self._pause_after:  # this step is the measured last one: pause after it
                        self._pause_after, self._pause = False, True
                self._pending = bool(self._stop or self._calls or self._step_tokens or self._observe)
                if cmd.stop or cmd.take_step or cmd.lr is not None or cmd.calls:
                    if cmd.take_step and self._state is not RunState.RUNNING and not cmd.single_step:
                        self._set_state(RunState.RUNNING)
                    return cmd
                if before_wait is not None:
                    hook, before_wait = before_wait, None
                    self._cond.release()
                    try:
                        hook()
                    finally:
                        self._cond.acquire()
                    continue  # a command may have come in meanwhile
                if can_step:
                    self._set_state(RunState.PAUSED)
                self._cond.wait()

    def report(self, state: RunState) -> None:
        with self._cond:
            self._set_state(state)

    def fail(self, error: BaseException) -> None:
        with self._cond:
            self.error = error
            self.error_traceback = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self._set_state(RunState.FAILED)
            for _, future in self._calls:
                future.set_exception(RuntimeError("the run failed"))
            self._calls = []

    # -- internals ---------------------------------------------------------------------------------------------
    def _command(self, **fields: Any) -> None:
        with self._cond:
            for name, value in fields.items():
                setattr(self, name, value)
            self._mark()

    def _mark(self) -> None:
        self._pending = True
        self._cond.notify_all()

    def _set_state(self, state: RunState) -> None:
        self._state = state
        self._cond.notify_all()


def launch(build: Callable[[], Any], *, paused: bool = False) -> Controller:
    """Start a training thread that first calls `build()` to make the trainer, then runs `trainer.run()`.

    Building on the training thread keeps every tensor op on one thread (see `Trainer.launch` for why). Until
    the trainer exists, `controller.trainer` is None and the state is STARTING; if `build()` raises (missing
    data, a model that does not import), the run ends FAILED with that error.
    """
    controller = Controller(paused=paused)

    def build_and_run() -> None:
        try:
            trainer = build()
        except BaseException as exc:
            controller.fail(exc)
            return
        controller.trainer = trainer
        trainer.run(controller)

    controller.thread = threading.Thread(target=build_and_run, name="nktui-trainer", daemon=True)
    controller.thread.start()
    return controller
