"""Rewind: go back to an earlier step and go on from there, bit for bit.

`RewindBuffer` keeps up to `depth` full training states (see `nktui.training.state`): one before every step taken
while paused (people step by hand, so the copy costs nothing noticeable) and one every `interval` steps while
running (so a watchpoint that fires can still go back to just before the offending step). To reach a step between
two kept states it restores the older one and replays the steps in between: batches are a pure function of the
step and every RNG is restored, so the replay is bitwise identical on the CPU. The learning rate each step used is
logged, so replayed steps use the rate they used the first time.

After a rewind the trainer publishes `Rewound(step)`: readers drop what they had for later steps.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .errors import NktuiError
from .records import Rewound
from .state import capture_state, restore_state, state_bytes


class RewindError(NktuiError):
    """The step asked for is not reachable (too old, or in the future)."""


class RewindBuffer:
    def __init__(self, depth: int = 20, interval: int = 32) -> None:
        self.depth = depth
        self.interval = interval
        self._states: deque[tuple[int, dict[str, Any]]] = deque(maxlen=max(depth, 1))
        self._lr_log: list[tuple[int, float]] = []  # (first step that used it, lr), in step order
        self._bytes_each = 0
        self._replaying = False  # replayed steps read the LR log; they must not write to it

    # -- keeping states ----------------------------------------------------------------------------------------
    def before_step(self, trainer, *, single: bool) -> None:
        """Called before every step: keep a state if this step is a single step or falls on the interval."""
        if self.depth <= 0:
            return
        step = trainer.step_count
        if not (single or (self.interval and step % self.interval == 0)):
            return
        if self._states and self._states[-1][0] == step:
            return
        state = capture_state(trainer, portable=False)
        self._states.append((step, state))
        if not self._bytes_each:
            self._bytes_each = state_bytes(state)

    def note_lr(self, step: int, lr: float) -> None:
        """The update numbered `step` used `lr` (called for every step; only changes are logged)."""
        if self._replaying:
            return
        while self._lr_log and self._lr_log[-1][0] > step:  # entries of steps a rewind undid
            self._lr_log.pop()
        if not self._lr_log or self._lr_log[-1][1] != lr:
            self._lr_log.append((step, lr))

    def lr_for(self, step: int) -> float | None:
        lr = None
        for first, value in self._lr_log:
            if first > step:
                break
            lr = value
        return lr

    # -- reading ----------------------------------------------------------------------------------------------
    @property
    def oldest_step(self) -> int | None:
        return self._states[0][0] if self._states else None

    def newest(self) -> tuple[int, dict[str, Any]] | None:
        """(step, state) of the newest kept state, or None (a fault's checkpoint is written from it)."""
        return self._states[-1] if self._states else None

    @property
    def memory_bytes(self) -> int:
        return self._bytes_each * len(self._states)

    def __len__(self) -> int:
        return len(self._states)

    # -- going back ---------------------------------------------------------------------------------------------
    def rewind_to(self, trainer, step: int) -> Rewound:
        """Put the trainer at `step` (that many updates done): restore the newest kept state at or before it,
        then replay the steps in between with the LRs they used."""
        now = trainer.step_count
        if step > now:
            raise RewindError(f"cannot rewind forward: the run is at step {now}, not past {step}")
        if step < 0:
            raise RewindError("cannot rewind before step 0")
        candidates = [(s, state) for s, state in self._states if s <= step]
        if not candidates:
            oldest = self.oldest_step
            where = f"the oldest kept state is step {oldest}" if oldest is not None else "no states are kept yet"
            raise RewindError(f"cannot rewind to step {step}: {where} (keep more with --rewind-depth)")
        start, state = candidates[-1]
        trainer.flush()
        restore_state(trainer, state)
        self._replaying = True
        try:
            while trainer.step_count < step:
                lr = self.lr_for(trainer.step_count + 1)
                if lr is not None:
                    trainer.set_lr(lr)
                trainer._train_step(observe=False)
        finally:
            self._replaying = False
            trainer.discard_pending()  # these steps were published the first time
        next_lr = self.lr_for(step + 1)
        if next_lr is not None:  # "replay with the same LR": the next step uses what it used before
            trainer.set_lr(next_lr)
        while self._states and self._states[-1][0] > step:
            self._states.pop()
        self._lr_log = [(s, lr) for s, lr in self._lr_log if s <= step + 1]
        return Rewound(step=step, from_step=now)
