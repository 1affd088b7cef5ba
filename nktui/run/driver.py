"""The one run driver: a run's life from the reader's side, for the app's Session and for `nktui train` alike.

    driver = RunDriver(config, keeper)          # keeper: the run directory (nktui.run.files.RunKeeper), or None
    driver.claim()                              # the folder made and locked (NktuiError: taken, cannot be made)
    driver.launch(paused=True)                  # the trainer built and trained on its own thread (nktui.training)
    ...  driver.info is not None                # built: its RunInfo is published
    driver.create_run_dir()                     # config.toml (NktuiError: the folder cannot be written)
    driver.open_exports()                       # metrics.jsonl, --csv, --tensorboard (OSError, NktuiError)
    records = driver.drain()                    # every poll: what came since the last one, written to the exports
    driver.writer_warnings(), driver.checkpoint_error   # write problems (a full disk): the run goes on
    driver.save() / driver.save_and_wait(timeout)       # last.pt now (a Future), or before an exit (a problem line)
    driver.finalize()                           # `nktui train`'s end: last.pt first, then both evaluations
    driver.stop(timeout); driver.close_exports(); driver.release(ended)

Each front end keeps its own words (the app's notices, `nktui train`'s warnings and summary); what they say about
last.pt is `holds_step`'s one sentence, and how to go on is `RunKeeper.exit_line`. The driver runs on the reader's
thread and does no tensor work itself: what needs the trainer is asked of the training thread. Importing this
module imports neither torch nor Textual.
"""

from __future__ import annotations

from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..gc_policy import freeze_what_is_built
from ..protocol import EvalResult, NktuiError, RunConfig, RunState
from ..protocol.commands import Finish
from ..protocol.run_info import RunInfo
from ..safe_files import describe_write_error
from ..engine import Controller, launch
from .checkpoint_keeper import RunKeeper

HISTOGRAM_BINS = 16  # gradient histograms of observed steps: the gradient pane's sparklines, from step 1
SAVE_TIMEOUT = 2.0  # an app's exit waits at most this long for the trainer to write last.pt
DONE = (RunState.FINISHED, RunState.FAILED, RunState.STOPPED)


def save_problem(exc: BaseException, keeper: RunKeeper) -> str:
    """Why last.pt was not written, in one line: nan weights say so; a full disk in the OS's words."""
    return str(exc) if isinstance(exc, NktuiError) else describe_write_error(exc, keeper.checkpoint)


@dataclass(frozen=True)
class Final:
    """What the training thread reports at the end: the step reached, what last.pt holds now (or why it could
    not be written) and both evaluations of the final weights. `unsaved`: the final state could not be written
    (a full disk, a folder gone read-only), as opposed to weights holding nan/inf, which are never written."""

    step: int
    epoch: int
    train: EvalResult
    val: EvalResult
    saved_step: int | None = None
    save_error: str | None = None
    unsaved: bool = False


class RunDriver:
    """One run: its trainer thread (a `Controller`), its folder (`keeper`, None: no files) and its exports."""

    def __init__(self, config: RunConfig, keeper: RunKeeper | None = None) -> None:
        self.config = config
        self.keeper = keeper
        self.controller: Controller | None = None
        self.exports: Any = None  # the open writers (nktui.run.exporters.RunWriters)
        self.writers: Any = None  # the same, kept after closing: what they wrote, what failed
        self.seq = 0  # the newest record drained
        self.lost = 0  # records that fell out of the buffer before a drain saw them
        self._frozen = False

    # -- starting ------------------------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path | None:
        return self.keeper.run_dir if self.keeper is not None else None

    def claim(self) -> Path | None:
        """Make and lock the folder before the trainer is built (NktuiError: another nktui holds it)."""
        return self.keeper.claim() if self.keeper is not None else None

    def launch(self, *, paused: bool = False, **trainer_kwargs: Any) -> Controller:
        """Start the training thread; the trainer is built there (`nktui.engine.launch`), with the keeper's
        checkpointer and the checkpoint to resume from, and TensorBoard's histograms when the config asks."""
        if self.config.tensorboard:  # gradient histograms on observed steps, for TensorBoard to draw
            from .exporters import TENSORBOARD_BINS

            trainer_kwargs.setdefault("histogram_bins", TENSORBOARD_BINS)
        trainer_kwargs.setdefault("histogram_bins", HISTOGRAM_BINS)  # the app's sparklines, attached or not
        if self.keeper is not None:
            trainer_kwargs = {**trainer_kwargs, **self.keeper.trainer_kwargs()}
        self.controller = launch(self.config, paused=paused, **trainer_kwargs)
        return self.controller

    @property
    def info(self) -> RunInfo | None:
        return self.controller.info if self.controller is not None else None

    def built(self) -> None:
        """Once the trainer is built: what is alive now (torch, the model) out of the cyclic collector's walks."""
        if not self._frozen:
            self._frozen = True
            freeze_what_is_built()

    def create_run_dir(self) -> Path | None:
        """config.toml into the claimed folder (NktuiError when it cannot be written); None without a folder."""
        if self.keeper is None:
            return None
        if not self.keeper.created:
            self.keeper.create()
        return self.keeper.run_dir

    def open_exports(self, run_dir: str | Path | None = None) -> Any:
        """metrics.jsonl (and metrics.csv, TensorBoard events) in `run_dir` (default: the keeper's folder), fed by
        every `drain` from now on. Needs the built run's layer names. OSError / NktuiError when they cannot open."""
        from .exporters import open_writers

        if self.exports is None:
            folder = run_dir if run_dir is not None else self.run_dir
            self.exports = self.writers = open_writers(folder, self.config, self.info.layers)
        return self.exports

    # -- following -----------------------------------------------------------------------------------------------
    def drain(self) -> list[Any]:
        """The records published since the last drain (oldest first), written to the exports here, on the reader's
        thread: exports cost the training loop nothing."""
        new_seq, records = self.controller.records.since(self.seq)
        self.lost += new_seq - self.seq - len(records)  # only if the reader fell a whole buffer behind
        self.seq = new_seq
        if self.exports is not None and records:
            self.exports.write(records)
        return records

    def writer_warnings(self) -> list[str]:
        """One line for the export files that failed since the last call (a full disk); the run goes on."""
        return self.exports.take_warnings() if self.exports is not None else []

    @property
    def checkpoint_error(self) -> str | None:
        """Why the newest periodic last.pt could not be written (a full disk, nan weights), if it could not."""
        return self.keeper.checkpointer.error if self.keeper is not None else None

    @property
    def saved_step(self) -> int | None:
        return self.keeper.saved_step if self.keeper is not None else None

    def log_failure(self) -> Path | None:
        """The run failed: its traceback into nktui.log (once); the log's path, None when there is no folder."""
        return self.keeper.log_failure(self.controller.error_traceback) if self.keeper is not None else None

    # -- saving and ending ---------------------------------------------------------------------------------------
    def save(self) -> Future:
        """last.pt at the training thread's next step boundary; the Future gets the step saved."""
        return self.keeper.save(self.controller)

    def save_fault_state(self) -> Future:
        """A failed run's save: the state kept from just before the failing step."""
        return self.keeper.save_fault_state()

    def save_and_wait(self, timeout: float = SAVE_TIMEOUT) -> str | None:
        """Before an exit: pause (no step after the one saved), write last.pt and wait at most `timeout` seconds.
        None when it was written, else the problem in one line (the previous last.pt stays)."""
        self.controller.pause()
        future = self.save()
        try:
            future.result(timeout)
        except FutureTimeout:
            return "the trainer did not reach a step boundary in time, so last.pt was not updated"
        except Exception as exc:  # nan weights, a full disk
            return save_problem(exc, self.keeper)
        return None

    def finalize(self) -> Future:
        """`nktui train`'s end, on the training thread: last.pt first, then the final weights evaluated on both
        splits; the Future gets a `Final`."""
        keeper, final = self.keeper, Future()

        def done(finished: Future) -> None:  # (on the training thread, as the command completes)
            try:
                if finished.cancelled():
                    raise CancelledError()
                result = finished.result()  # (raises the command's own error)
                if result.trace and keeper is not None:
                    keeper.note(result.trace)
                saved = keeper.saved_step if keeper is not None else None
                final.set_result(Final(result.step, result.epoch, result.train, result.val, saved,
                                       result.save_error, result.unsaved))
            except BaseException as exc:  # whatever happened, the caller hears it rather than wait for good
                final.set_exception(exc)

        self.controller.submit(Finish()).add_done_callback(done)
        return final

    def stop(self, timeout: float | None = 2.0) -> bool:
        """Stop at the next step boundary and wait for the thread; True if it ended in time."""
        self.controller.stop()
        return self.controller.join(timeout)

    def close_exports(self) -> None:
        """Close the export files (a write error here is one more warning, never an exception)."""
        if self.exports is not None:
            exports, self.exports = self.exports, None
            exports.close()

    def exit_line(self, what: str, *, finished: bool = False) -> str | None:
        """The last line to print (what last.pt holds, how to go on), also into nktui.log; None without a folder."""
        if self.keeper is None:
            return None
        info = self.info
        further = 2 * info.step_limit if finished and info is not None else None
        line = self.keeper.exit_line(what, further=further)
        self.keeper.note(line)
        return line

    def release(self, ended: bool = True) -> None:
        """The folder is free for another process; a trainer that did not stop (`ended` False) may still write
        last.pt, so then the lock stays until this process exits."""
        if self.keeper is None:
            return
        if ended:
            self.keeper.release()
        else:
            self.keeper.hold_until_exit()
