"""`RunClient`: what a front end holds of one run. Named commands out (`nktui.protocol.commands`), records, results
and the run's published values in (`RunInfo`, the step counter, the GPU reading, a long job's progress).

In-process: it wraps the run's `RunDriver` (and through it the engine's `Controller`), so that the app
(`nktui.ui.session.Session`) imports nothing of the engine (`nktui --in-process`, and the tests' real engine). A
run in its own process is reached through `nktui.host.remote.RemoteRunClient`, with the same methods; tests also
give the app a fake one fed with recorded records (`tests/fake_run.py`).

    client = RunClient(config, keeper=keeper, paused=True)   # claims the folder (a failure: claim_error), launches
    client.state, client.info, client.step_count, client.gpu    # what the training thread published
    client.drain()                                              # the records since the last drain (also exported)
    client.submit(Evaluate())                                   # a Future of the result
    client.pause(); client.resume(); client.step(); client.set_lr(0.01); client.stop()

Importing this module imports neither torch nor Textual.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..protocol import NktuiError, RunConfig, RunState
from ..protocol.commands import Cancel, JobProgress
from ..protocol.run_info import RunInfo
from ..engine.gpu import GpuReading, gpu_text  # noqa: F401 (plain Python: the status bar's GPU text, from here)
from .driver import SAVE_TIMEOUT, RunDriver, save_problem  # noqa: F401 (the app reaches them through the client)
from .files import RunKeeper


class RunClient:
    """One run seen from a front end, in-process: every method returns at once (a Future for what the training
    thread computes), except `stop` and `save_and_wait`, which wait at most their timeout."""

    def __init__(self, config: RunConfig, *, keeper: RunKeeper | None = None, paused: bool = False,
                 **trainer_kwargs: Any) -> None:
        """`keeper`: the run directory to write, claimed here before the trainer is built; a folder that cannot be
        claimed (another nktui holds it) leaves the run without files and says why in `claim_error`."""
        self.config = config
        self.claim_error: str | None = None
        if keeper is not None:
            try:
                keeper.claim()
            except NktuiError as exc:
                self.claim_error, keeper = str(exc), None
        self.driver = RunDriver(config, keeper)
        self.driver.launch(paused=paused, **trainer_kwargs)

    # -- the engine, for tests and scripts only (the app never reads it) -------------------------------------------
    @property
    def controller(self) -> Any:
        return self.driver.controller

    # -- what the run published ----------------------------------------------------------------------------------
    @property
    def keeper(self) -> RunKeeper | None:
        return self.driver.keeper

    @property
    def state(self) -> RunState:
        return self.driver.controller.state

    @property
    def info(self) -> RunInfo | None:
        """The run as the training thread described it; None until the trainer is built."""
        return self.driver.controller.info

    @property
    def step_count(self) -> int:
        return self.driver.controller.step_count

    @property
    def gpu(self) -> GpuReading | None:
        """The newest reading of the card, taken by a thread of the run once a second (CUDA only)."""
        return self.driver.controller.gpu

    @property
    def records(self) -> Any:
        """The run's record buffer: `records.since(seq)` -> (newest seq, the records after `seq`)."""
        return self.driver.controller.records

    @property
    def error(self) -> BaseException | None:
        return self.driver.controller.error

    @property
    def error_traceback(self) -> str:
        return self.driver.controller.error_traceback

    @property
    def pause_requested(self) -> bool:
        return self.driver.controller.pause_requested

    @property
    def alive(self) -> bool:
        """Whether the training thread still runs."""
        thread = self.driver.controller.thread
        return thread is not None and thread.is_alive()

    def job_progress(self, job: int) -> JobProgress | None:
        """How far a job (a loss surface) has come, as the training thread last reported it."""
        return self.driver.controller.progress(job)

    # -- commands ------------------------------------------------------------------------------------------------
    def submit(self, command: Any) -> Future:
        """Send a named command (`nktui.protocol.commands`) to the run; a Future of its result."""
        return self.driver.controller.submit(command)

    def cancel(self, job: int) -> bool:
        return self.submit(Cancel(job)).result()

    def pause(self) -> None:
        self.driver.controller.pause()

    def pause_measured(self) -> None:
        """Pause, the last step before it measured (per-layer statistics): every pane shows it."""
        self.driver.controller.pause_measured()

    def resume(self) -> None:
        self.driver.controller.resume()

    def step(self) -> bool:
        return self.driver.controller.step()

    def set_lr(self, value: object) -> float:
        """Validate and send a new LR; ConfigError with the reason otherwise."""
        return self.driver.controller.set_lr(value)

    def request_observation(self) -> None:
        """The next step carries per-layer statistics."""
        self.driver.controller.request_observation()

    # -- the run's files (the driver's) --------------------------------------------------------------------------
    def built(self) -> None:
        self.driver.built()

    def drain(self) -> list[Any]:
        """The records since the last drain, oldest first, written to the run's exports on the way."""
        return self.driver.drain()

    def create_run_dir(self) -> Path | None:
        return self.driver.create_run_dir()

    def open_exports(self, run_dir: str | Path) -> Any:
        return self.driver.open_exports(run_dir)

    @property
    def exports(self) -> Any:
        return self.driver.exports

    def writer_warnings(self) -> list[str]:
        return self.driver.writer_warnings()

    @property
    def checkpoint_error(self) -> str | None:
        return self.driver.checkpoint_error

    def log_failure(self) -> Path | None:
        return self.driver.log_failure()

    def save(self) -> Future:
        return self.driver.save()

    def save_fault_state(self) -> Future:
        return self.driver.save_fault_state()

    def save_and_wait(self, timeout: float = SAVE_TIMEOUT) -> str | None:
        return self.driver.save_and_wait(timeout)

    def stop(self, timeout: float | None = 2.0) -> bool:
        return self.driver.stop(timeout)

    def close_exports(self) -> None:
        self.driver.close_exports()

    def exit_line(self, what: str, *, finished: bool = False) -> str | None:
        return self.driver.exit_line(what, finished=finished)

    def release(self, ended: bool = True) -> None:
        self.driver.release(ended)
