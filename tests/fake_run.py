"""A fake `nktui.run.client.RunClient` for UI tests: a run that is only its published values and recorded records.

No trainer thread, no torch: a test sets `info`, the state and the step counter and feeds records (`publish`), and
the app's Session reads them as it reads a real run's (memray's live TUI tests its widgets this way). Commands are
recorded in `commands` and answered at once (`answers` maps a command's type to its result; None otherwise);
pause, resume and step move the fake's own state as a trainer would.

    fake = FakeRun(info=run_info(layers=("fc.weight", "fc.bias")), state=RunState.RUNNING)
    app = NktuiApp(config, run_client=lambda config, paused: fake)
    fake.publish(step_record(1, loss=2.3, layers=...), ...)
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from nktui.protocol import LayerStats, RunState, StepRecord
from nktui.protocol.config import parse_lr
from nktui.protocol.run_info import DataSummary, RewindReach, RunInfo


def run_info(layers=("fc.weight", "fc.bias"), shapes=((10, 64), (10,)), *, step_limit: int = 100,
             device: str = "cpu") -> RunInfo:
    """A RunInfo like the digits MLP's: the layers the gradient pane lists, the step limit the status bar shows."""
    return RunInfo(
        layers=tuple(layers), shapes=tuple(shapes), parameters=tuple(layers), parameter_shapes=tuple(shapes),
        step_limit=step_limit, device=device, device_type=device.split(":")[0], device_description=device,
        data=DataSummary("digits", (1, 8, 8), tuple(str(i) for i in range(10)), 1437, 360, 45),
        rewinds=RewindReach(),
    )


def layer_stats(name: str, shape: tuple[int, ...], grad_norm: float, *, weight_norm: float = 1.0,
                update_norm: float = 1e-3) -> LayerStats:
    return LayerStats(name, shape, grad_norm, 0.0, grad_norm / 4, grad_norm / 2, weight_norm, update_norm, 0)


def step_record(step: int, loss: float, *, lr: float = 0.05, accuracy: float = 0.5, info: RunInfo | None = None,
                grad_norm: float | None = None, epoch: int = 0) -> StepRecord:
    """A step's record; with `grad_norm`, an observed one (per-layer statistics for every layer of `info`)."""
    layers = {}
    if grad_norm is not None:
        info = info or run_info()
        layers = {name: layer_stats(name, shape, grad_norm * (i + 1))
                  for i, (name, shape) in enumerate(zip(info.layers, info.shapes, strict=True))}
    return StepRecord(step, epoch, loss, accuracy, lr, 1000.0, layers)


class _Records:
    """The buffer's one method the app uses: `since(seq)`."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def since(self, seq: int) -> tuple[int, list[Any]]:
        return len(self.items), self.items[seq:]


class FakeRun:
    """What `Session` needs of a RunClient, with nothing behind it (see the module's docstring)."""

    def __init__(self, *, info: RunInfo | None = None, state: RunState = RunState.PAUSED, gpu: Any = None) -> None:
        self.info = info
        self.state = state
        self.step_count = 0
        self.gpu = gpu
        self.records = _Records()
        self.error: BaseException | None = None
        self.error_traceback = ""
        self.pause_requested = False
        self.alive = True
        self.keeper = None
        self.claim_error: str | None = None
        self.exports = None
        self.checkpoint_error: str | None = None
        self.commands: list[Any] = []
        self.answers: dict[type, Any] = {}
        self.progress: dict[int, Any] = {}
        self._seq = 0
        self.lr: float | None = None

    # -- feeding it ---------------------------------------------------------------------------------------------
    def publish(self, *records: Any) -> None:
        """Records the run made: the step counter follows the newest step record."""
        for record in records:
            self.records.items.append(record)
            if isinstance(record, StepRecord):
                self.step_count = max(self.step_count, record.step)

    # -- what the Session reads -------------------------------------------------------------------------------------
    def drain(self) -> list[Any]:
        self._seq, records = self.records.since(self._seq)
        return records

    def job_progress(self, job: int) -> Any:
        return self.progress.get(job)

    def built(self) -> None:
        pass

    def writer_warnings(self) -> list[str]:
        return []

    # -- commands ------------------------------------------------------------------------------------------------
    def submit(self, command: Any) -> Future:
        self.commands.append(command)
        future: Future = Future()
        future.set_result(self.answers.get(type(command)))
        return future

    def cancel(self, job: int) -> bool:
        self.commands.append(("cancel", job))
        return True

    def pause(self) -> None:
        self.commands.append("pause")
        if self.state is RunState.RUNNING:
            self.state = RunState.PAUSED

    pause_measured = pause

    def resume(self) -> None:
        self.commands.append("resume")
        if self.state is RunState.PAUSED:
            self.state = RunState.RUNNING

    def step(self) -> bool:
        self.commands.append("step")
        return self.state is RunState.PAUSED

    def set_lr(self, value: object) -> float:
        lr = parse_lr(value)  # (ConfigError with the reason, as the real run says it)
        self.commands.append(("lr", lr))
        self.lr = lr
        return lr

    def request_observation(self) -> None:
        pass

    # -- files: a fake run writes none ---------------------------------------------------------------------------
    def create_run_dir(self) -> None:
        return None

    def open_exports(self, run_dir: Any) -> None:
        return None

    def close_exports(self) -> None:
        pass

    def log_failure(self) -> None:
        return None

    def save(self) -> Future:
        raise AssertionError("a fake run has no run directory")

    save_fault_state = save

    def save_and_wait(self, timeout: float = 2.0) -> None:
        return None

    def stop(self, timeout: float | None = 2.0) -> bool:
        self.commands.append("stop")
        if not self.state.is_over:
            self.state = RunState.STOPPED
        self.alive = False
        return True

    def exit_line(self, what: str, *, finished: bool = False) -> None:
        return None

    def release(self, ended: bool = True) -> None:
        pass
