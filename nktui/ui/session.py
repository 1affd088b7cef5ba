"""Session: the app's side of one training run, in plain Python (no Textual, no tensor work).

It launches the trainer on its own thread, pulls what the trainer published at the UI's pace (`poll()`), keeps the
plot history and the newest records, and sends commands through the controller. The app owns one Session at a
time; restarting means stopping this one and starting another. Tests can drive a Session without a screen.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from nktui.training import (
    Controller, EvalResult, NktuiError, Rewound, RunConfig, RunState, StepRecord, WatchHit, launch,
)
from nktui.training.history import RunHistory

HISTOGRAM_BINS = 16
SCRUB_DEPTH = 1000  # observed steps kept for scrubbing back and forth


@dataclass
class Changes:
    """What one poll brought: the widgets redraw only what changed."""

    steps: bool = False
    observed: bool = False
    evaluation: bool = False
    state: bool = False
    rewound: Rewound | None = None
    watch: WatchHit | None = None

    def __bool__(self) -> bool:
        return bool(self.steps or self.observed or self.evaluation or self.state or self.rewound or self.watch)


class Session:
    def __init__(self, config: RunConfig, *, paused: bool = False, **trainer_kwargs) -> None:
        self.config = config
        self.controller: Controller = launch(config, paused=paused, **trainer_kwargs)
        self.history = RunHistory()
        self.latest_step: StepRecord | None = None
        self.latest_observed: StepRecord | None = None
        self.latest_eval: EvalResult | None = None
        self.lr = config.lr
        self.observed: deque[StepRecord] = deque(maxlen=SCRUB_DEPTH)  # per-layer records, for scrubbing
        self.recent: deque[StepRecord] = deque(maxlen=256)  # the newest step records, to step back on a rewind
        self.scrub_index: int | None = None  # position in `observed` while scrubbing; None: follow the newest
        self.watch_hit: WatchHit | None = None  # the newest watchpoint hit, until the run goes on
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
                    self.recent.append(record)
                    self.lr = record.lr
                    changes.steps = True
                    if record.observed:
                        self.latest_observed = record
                        self.observed.append(record)
                        changes.observed = True
                elif isinstance(record, EvalResult):
                    self.latest_eval = record
                    changes.evaluation = True
                elif isinstance(record, Rewound):
                    self._forget_after(record.step)
                    changes.rewound = record
                    changes.observed = True
                elif isinstance(record, WatchHit):
                    self.watch_hit = changes.watch = record
        state = self.controller.state
        if state is not self._state:
            self._state = state
            changes.state = True
        return changes

    def _forget_after(self, step: int) -> None:
        """A rewind undid the steps after `step`: drop their records."""
        for records in (self.observed, self.recent):
            while records and records[-1].step > step:
                records.pop()
        self.latest_step = self.recent[-1] if self.recent else None
        self.latest_observed = self.observed[-1] if self.observed else None
        if self.latest_step is not None:
            self.lr = self.latest_step.lr
        self.scrub_index = None
        self.watch_hit = None

    # -- scrubbing through the observed steps ----------------------------------------------------------------------
    @property
    def shown_record(self) -> StepRecord | None:
        """The observed step the gradient pane shows: the scrubbed one, or the newest."""
        if self.scrub_index is not None and self.observed:
            return self.observed[self.scrub_index]
        return self.latest_observed

    @property
    def can_scrub(self) -> bool:
        return self.state in (RunState.PAUSED, RunState.FINISHED) and len(self.observed) > 1

    def scrub(self, delta: int) -> StepRecord | None:
        """Move the shown step `delta` observed steps back (-) or forward (+); past the newest: follow it again."""
        if not self.observed:
            return None
        index = (len(self.observed) - 1 if self.scrub_index is None else self.scrub_index) + delta
        index = max(0, index)
        self.scrub_index = None if index >= len(self.observed) - 1 else index
        return self.shown_record

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
        self.watch_hit = None
        self.scrub_index = None
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

    def update_live(self, **changes) -> None:
        """Change settings that apply to the running trainer (the watchpoints): validated here (ConfigError), then
        handed to the trainer at its next step boundary. A restart keeps them."""
        self.config = self.config.replace(**changes)
        self.controller.call(lambda trainer: trainer.update_live(**changes))

    def evaluate(self):
        return self.controller.call(lambda trainer: trainer.evaluate())

    # -- the debugger: trace, rewind, LR what-if (each runs on the training thread) -----------------------------------
    def trace_step(self):
        """A Future of the StepTrace of one step taken now (while paused)."""
        return self.controller.call(lambda trainer: trainer.trace_step())

    def lr_whatif(self):
        def compute(trainer):
            from nktui.training.whatif import lr_whatif

            return lr_whatif(trainer)

        return self.controller.call(compute)

    def rewind_target(self) -> int | None:
        """Where `b` goes: to just before the scrubbed step, else one step back; None if nothing to undo."""
        trainer = self.trainer
        if trainer is None or trainer.step_count == 0:
            return None
        if self.scrub_index is not None:
            return self.shown_record.step - 1
        return trainer.step_count - 1

    def rewind_to(self, step: int):
        return self.controller.call(lambda trainer: trainer.rewind_to(step))

    @property
    def rewind_memory(self) -> tuple[int, int]:
        """(states kept, bytes) of the rewind buffer."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0
        return len(trainer.rewinds), trainer.rewinds.memory_bytes

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop at the next step boundary and wait for the thread; True if it ended in time."""
        self.controller.stop()
        return self.controller.join(timeout)
