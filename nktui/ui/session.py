"""Session: the app's side of one training run, in plain Python (no Textual, no tensor work).

It launches the trainer on its own thread, pulls what the trainer published at the UI's pace (`poll()`), keeps the
plot history and the newest records, and sends commands through the controller. The app owns one Session at a
time; restarting means stopping this one and starting another. Tests can drive a Session without a screen.
"""

from __future__ import annotations

from dataclasses import dataclass

from nktui.training import Controller, EvalResult, NktuiError, RunConfig, RunState, StepRecord, launch
from nktui.training.history import RunHistory

HISTOGRAM_BINS = 16


@dataclass
class Changes:
    """What one poll brought: the widgets redraw only what changed."""

    steps: bool = False
    observed: bool = False
    evaluation: bool = False
    state: bool = False

    def __bool__(self) -> bool:
        return self.steps or self.observed or self.evaluation or self.state


class Session:
    def __init__(self, config: RunConfig, *, paused: bool = False, **trainer_kwargs) -> None:
        self.config = config
        self.controller: Controller = launch(config, paused=paused, **trainer_kwargs)
        self.history = RunHistory()
        self.latest_step: StepRecord | None = None
        self.latest_observed: StepRecord | None = None
        self.latest_eval: EvalResult | None = None
        self.lr = config.lr
        self._seq = 0
        self._state = self.controller.state
        self._configured = False

    # -- reading ---------------------------------------------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self.controller.state

    @property
    def trainer(self):  # -> Trainer | None (not imported here: torch loads on the training thread)
        return self.controller.trainer

    @property
    def step_limit(self) -> int | None:
        return self.trainer.step_limit if self.trainer else None

    def poll(self, *, want_snapshot: bool = True) -> Changes:
        """Take everything published since the last poll. Cheap: no tensor work, no waiting for the trainer."""
        changes = Changes()
        trainer = self.trainer
        if trainer is not None:
            if not self._configured:  # histograms feed the gradient pane's sparklines
                trainer.instruments.histogram_bins = HISTOGRAM_BINS
                self._configured = True
            if want_snapshot and self.state is RunState.RUNNING:
                self.controller.request_snapshot()  # the next step carries per-layer statistics
            self._seq, records = trainer.records.since(self._seq)
            for record in records:
                self.history.add(record)
                if isinstance(record, StepRecord):
                    self.latest_step = record
                    self.lr = record.lr
                    changes.steps = True
                    if record.observed:
                        self.latest_observed = record
                        changes.observed = True
                else:
                    self.latest_eval = record
                    changes.evaluation = True
        state = self.controller.state
        if state is not self._state:
            self._state = state
            changes.state = True
        return changes

    @property
    def error_text(self) -> str | None:
        error = self.controller.error
        if error is None:
            return None
        if isinstance(error, NktuiError):
            return str(error)
        return f"{type(error).__name__}: {error}"

    # -- commands ----------------------------------------------------------------------------------------------------
    @property
    def can_pause(self) -> bool:
        return self.state in (RunState.RUNNING, RunState.STARTING) and not self.controller.pause_requested

    @property
    def can_resume(self) -> bool:
        return self.state is RunState.PAUSED or (
            self.controller.pause_requested and self.state in (RunState.RUNNING, RunState.STARTING)
        )

    @property
    def can_step(self) -> bool:
        return self.state is RunState.PAUSED

    @property
    def can_steer(self) -> bool:
        """Commands that need a live trainer (LR, evaluate)."""
        return self.state in (RunState.RUNNING, RunState.PAUSED, RunState.FINISHED)

    def toggle_pause(self) -> None:
        if self.can_pause:
            self.controller.pause()
        elif self.can_resume:
            self.controller.resume()

    def step(self) -> bool:
        return self.controller.step()

    def set_lr(self, value: object) -> float:
        """Validate and send a new LR (ConfigError with the reason otherwise; the old LR stays)."""
        lr = self.controller.set_lr(value)
        self.lr = lr
        return lr

    def evaluate(self):
        return self.controller.call(lambda trainer: trainer.evaluate())

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop at the next step boundary and wait for the thread; True if it ended in time."""
        self.controller.stop()
        return self.controller.join(timeout)
