"""Who writes a run's last.pt, and when: `Checkpointer` on the training thread, `RunKeeper` for the reader.

`Checkpointer` is attached to the trainer (`Trainer(..., checkpointer=...)`) and writes last.pt on the training
thread: every `checkpoint_every` steps (every SAVE_EVERY_SECONDS of training when that is 0), after a fault (the
newest state the rewind buffer kept from before it, so a crash costs at most `rewind_every` steps), and whenever
a reader asks. `RunKeeper` is the reader's side (the app's thread, `nktui train`'s main thread):

    keeper = RunKeeper(run_dir, config)                      # or resume=ResumePlan: go on from a checkpoint
    keeper.claim()                                           # the folder, made and locked (RunDirInUse: taken)
    controller = launch(config, **keeper.trainer_kwargs())  # the trainer gets the checkpointer (and the state)
    keeper.create()                                          # once the trainer is built: config.toml
    keeper.save(controller)                                  # a Future: last.pt now (the `s` key, the end, an exit)
    keeper.log_failure(controller.error_traceback)           # the run failed: the traceback into nktui.log
    print(keeper.exit_line("quit at step 120"))              # `... Resume: nktui --resume runs/X/last.pt`
    keeper.release()                                         # the run is over: another process may use the folder

`holds_step(step, where=...)` is the one "last.pt holds step N" sentence; the exit lines, warnings and notices use it.

The files themselves (full state, atomic writes, nan refused) are `nktui.run.checkpoint`'s. Importing this
module imports neither torch nor Textual: the app builds its keeper before torch has loaded.
"""

from __future__ import annotations

import shlex
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..protocol.config import RunConfig
from ..protocol.errors import CheckpointError
from .rundir import CHECKPOINT_FILE, LOG_FILE, claim_run_dir, create_run_dir, release_run_dir, write_log

SAVE_EVERY_SECONDS = 600.0  # with checkpoint_every 0, last.pt is still written this often while training
TIME_CHECK_STEPS = 64  # the clock is read once per this many steps, not every step


class Checkpointer:
    """Writes `path` (a run's last.pt) for a trainer, on the training thread.

    `every`: also every that many steps (0: every SAVE_EVERY_SECONDS of training instead). `saved_step` is the
    step of the newest file written, `error` the newest failure to write one (a full disk, nan weights); a failed
    save never stops the run."""

    def __init__(self, path: str | Path, every: int = 0, *, seconds: float = SAVE_EVERY_SECONDS) -> None:
        self.path = Path(path)
        self.every = every
        self.seconds = seconds if not every else 0.0
        self.saved_step: int | None = None
        self.error: str | None = None
        self.saves = 0  # files written
        self.fault_state: dict[str, Any] | None = None  # after a fault: the state just before the failing step
        self._last_time = time.monotonic()

    def due(self, step: int) -> bool:
        """Whether the periodic save falls on this step (cheap: called after every step)."""
        if self.every:
            return step % self.every == 0
        if self.seconds and step % TIME_CHECK_STEPS == 0:
            return time.monotonic() - self._last_time >= self.seconds
        return False

    def save(self, trainer: Any) -> int:
        """Write the trainer's state now; returns its step. Raises CheckpointError / OSError (see `try_save`)."""
        from ..engine.state import capture_state

        return self._write(capture_state(trainer))

    def try_save(self, trainer: Any) -> int | None:
        """`save`, but a failure is kept in `error` instead of raised: the periodic saves use this."""
        try:
            return self.save(trainer)
        except (CheckpointError, OSError) as exc:
            self.error = _describe(exc, self.path)
            self._last_time = time.monotonic()  # do not retry every step
            return None

    def after_fault(self, trainer: Any) -> int | None:
        """The run failed: write the state just before the failing step (`state_before_fault`), if newer than
        last.pt, and keep it in `fault_state` (the `s` key of a failed run writes it again). Never raises."""
        try:
            self.fault_state = state_before_fault(trainer)
            if self.fault_state is None:
                return None
            if self.saved_step is not None and self.fault_state["step"] <= self.saved_step:
                return None
            return self._write(self.fault_state)
        except BaseException as exc:  # the device may be unusable after the fault: the old last.pt stays
            self.error = _describe(exc, self.path)
            return None

    def save_fault_state(self) -> int:
        """Write the state kept at the fault again (a failed run's `s`); CheckpointError when there is none."""
        if self.fault_state is None:
            raise CheckpointError("no good state was kept from before the fault")
        return self._write(self.fault_state)

    def _write(self, state: dict[str, Any]) -> int:
        from .checkpoint import write_state

        write_state(state, self.path)
        self.saved_step = int(state["step"])
        self.saves += 1
        self.error = None
        self._last_time = time.monotonic()
        return self.saved_step


def state_before_fault(trainer: Any) -> dict[str, Any] | None:
    """After an exception inside a step: the state just before that step, as a checkpoint.

    Replayed from the newest kept state (exact: every RNG as it was when the step began). If the replay fails too,
    the live weights, when the fault came before the optimizer touched them (their RNG may have moved in the
    failed forward pass); else the newest kept state; None when there is none."""
    from ..engine.state import capture_state, make_portable

    live = None if trainer.updating else capture_state(trainer)
    try:
        trainer.rewinds.rewind_to(trainer, trainer.step_count)
        return capture_state(trainer)
    except BaseException:
        if live is not None:
            return live
        kept = trainer.rewinds.newest()
        return make_portable(kept[1], trainer) if kept is not None else None


class RunKeeper:
    """A run directory seen from the thread that reads the records: makes it, asks for last.pt, logs, says how to
    resume. Its `checkpointer` goes to the trainer (`trainer_kwargs`)."""

    def __init__(self, run_dir: str | Path, config: RunConfig, *, resume: Any = None, headless: bool = False,
                 fresh: bool = False) -> None:
        """`resume`: a `nktui.cli.resume.ResumePlan` (its state is handed to the trainer, once). `headless`: the resume
        command to suggest is `nktui train --resume` rather than `nktui --resume`. `fresh`: `run_dir` is a new name
        (a default `runs/<date-time>`): if another process makes that folder first, `claim` takes `run_dir-2` ..."""
        self.run_dir = Path(run_dir)
        self.fresh = fresh
        self.claimed = False
        self.config = config
        self.checkpoint = self.run_dir / CHECKPOINT_FILE
        self.checkpointer = Checkpointer(self.checkpoint, config.checkpoint_every)
        self.resume = resume
        self.headless = headless
        self.created = False
        self.failure_logged = False
        if resume is not None and getattr(resume, "in_place", False):
            self.checkpointer.saved_step = resume.step  # last.pt is there already, holding that step

    def trainer_kwargs(self) -> dict[str, Any]:
        """What the trainer is built with: the checkpointer, and the checkpoint to resume from (the first time)."""
        kwargs: dict[str, Any] = {"checkpointer": self.checkpointer}
        if self.resume is not None:
            kwargs["resume"] = self.resume.state
        return kwargs

    def claim(self) -> Path:
        """Make the folder and lock it for this run (`nktui.run.rundir.claim_run_dir`): RunDirInUse when another
        process holds it. Done before the trainer is built, so that of two runs started on one folder together one
        is refused at once; a fresh name may become `name-2`: `run_dir` and `checkpoint` say where the files go."""
        if not self.claimed:
            in_place = bool(getattr(self.resume, "in_place", False))
            self.run_dir = claim_run_dir(self.run_dir, fresh=self.fresh and not in_place, resume=in_place)
            self.claimed = True
            self.checkpoint = self.checkpointer.path = self.run_dir / CHECKPOINT_FILE
        return self.run_dir

    def create(self) -> Path:
        """Claim the folder (if not yet) and write config.toml (ConfigError when it cannot be written)."""
        create_run_dir(self.claim(), self.config)
        self.created = True
        return self.run_dir

    def release(self) -> None:
        """The run is over (its trainer stopped): unlock the folder for other processes; a folder this run made and
        never wrote to is removed again. Idempotent."""
        if self.claimed:
            self.claimed = False
            release_run_dir(self.run_dir, used=self.created)

    def hold_until_exit(self) -> None:
        """The trainer did not stop in time and may still write here: `release` leaves the lock to the OS."""
        self.claimed = False

    def save(self, controller: Any) -> Future:
        """Ask the training thread to write last.pt at its next step boundary; the Future gets the step saved."""
        from nktui.protocol.commands import SaveCheckpoint

        return controller.submit(SaveCheckpoint())  # (the trainer's checkpointer is this one: trainer_kwargs)

    def save_fault_state(self) -> Future:
        """A failed run's `s`: write the state kept from just before the failing step, on a thread of its own (the
        training thread has ended). The Future gets the step written, or the error."""
        import threading

        future: Future = Future()

        def write() -> None:
            try:
                future.set_result(self.checkpointer.save_fault_state())
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=write, name="nktui-fault-save", daemon=True).start()
        return future

    def log_failure(self, text: str) -> Path | None:
        """Append a traceback to nktui.log (once per failure); None when the folder was never made."""
        if not self.created or self.failure_logged or not text:
            return None
        self.failure_logged = True
        try:
            return write_log(self.run_dir, text)
        except OSError:  # a full disk: the traceback still goes to stderr (the app: its error line)
            return None

    def log_build_failure(self, text: str) -> Path | None:
        """A trainer that could not be built (the user's model failed its check): its traceback into nktui.log when
        the folder already held this run (a resume in place); None otherwise (a new folder is removed again)."""
        if not (self.claimed and getattr(self.resume, "in_place", False)) or not text:
            return None
        try:
            return write_log(self.run_dir, text)
        except OSError:
            return None

    def note(self, line: str) -> None:
        """Append a line to nktui.log when the folder exists (how a run ended, when nobody may see the terminal)."""
        if self.created:
            try:
                write_log(self.run_dir, line)
            except OSError:
                pass

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE

    @property
    def saved_step(self) -> int | None:
        return self.checkpointer.saved_step

    def resume_command(self) -> str:
        return resume_command(self.checkpoint, headless=self.headless)

    def exit_line(self, what: str, *, further: int | None = None) -> str:
        """The last line to print: what happened, what last.pt holds, and the command that resumes from it (with
        `--steps further` for a run that had finished: resuming it as it was would finish at once)."""
        step = self.saved_step
        if step is None:
            return f"nktui: {what}; no checkpoint was written (run directory: {self.run_dir})"
        if further is not None:
            return (f"nktui: {what}; {holds_step(step, where=self.checkpoint)}. Train further: {self.resume_command()} "
                    f"--steps {further}")
        return f"nktui: {what}; {holds_step(step, where=self.checkpoint)}. Resume: {self.resume_command()}"


def holds_step(step: int | None, *, where: str | Path = "last.pt", still: bool = False,
               none: str = "no last.pt was written") -> str:
    """What a run's checkpoint holds, in the one sentence every front end says it with: `runs/X/last.pt holds step
    40` (`still holds` after a save that failed); `none` when no file was written."""
    if step is None:
        return none
    return f"{where} {'still ' if still else ''}holds step {step}"


def resume_command(path: str | Path, *, headless: bool) -> str:
    """The command that continues from `path`: `nktui --resume runs/X/last.pt` (or `nktui train --resume ...`)."""
    return f"nktui {'train ' if headless else ''}--resume {shlex.quote(str(path))}"


def _describe(exc: BaseException, path: Path) -> str:
    if isinstance(exc, CheckpointError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot write {path}: {exc.strerror or exc}"
    return f"cannot write {path}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
