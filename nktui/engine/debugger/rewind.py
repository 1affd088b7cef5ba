"""Rewind: go back to an earlier step and go on from there, bit for bit.

`RewindBuffer` keeps full training states (see `nktui.engine.state`): one every `interval` steps, the newest
`depth` + 1 of them, so that every step of the last `depth` x `interval` is in reach (a watchpoint goes back to
just before the offending step: `nktui.engine.debugger.fault`); and, apart from those, one before each of the last
RECENT single steps taken while paused (people step by hand: `b` then costs no replay). To reach a step between
two kept states it restores the older one and replays the steps in between: batches are a pure function of the
step and every RNG is restored, so the replay is bitwise identical on the CPU. The learning rate each step used is
logged, so replayed steps use the rate they used the first time. With `interval` 0 only the states before single
steps are kept, `depth` of them.

After a rewind the trainer publishes `Rewound(step)`: readers drop what they had for later steps.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ...protocol.errors import NktuiError
from ...protocol.records import Rewound
from ..state import capture_state, restore_state, state_bytes


class RewindError(NktuiError):
    """The step asked for is not reachable (too old, or in the future)."""


RECENT = 4  # states kept before the latest single steps, besides the periodic ones


class RewindBuffer:
    def __init__(self, depth: int = 20, interval: int = 64) -> None:
        self.depth = depth
        self.interval = interval
        self._periodic: deque[tuple[int, dict[str, Any]]] = deque(maxlen=depth + 1 if interval else 1)
        self._recent: deque[tuple[int, dict[str, Any]]] = deque(maxlen=RECENT if interval else max(depth, 1))
        self._lr_log: list[tuple[int, float]] = []  # (first step that used it, lr), in step order
        self._bytes_each = 0
        self._replaying = False  # replayed steps read the LR log; they must not write to it

    # -- keeping states ----------------------------------------------------------------------------------------
    def before_step(self, trainer, *, single: bool) -> None:
        """Called before every step: keep a state if this step is a single step or falls on the interval."""
        if self.depth <= 0:
            return
        step = trainer.step_count
        periodic = bool(self.interval and step % self.interval == 0)
        if not (single or periodic) or any(s == step for s, _ in self._kept()):
            return
        state = capture_state(trainer, portable=False)
        (self._periodic if periodic else self._recent).append((step, state))
        if not self._bytes_each:
            self._bytes_each = state_bytes(state)

    def _kept(self) -> list[tuple[int, dict[str, Any]]]:
        """Every kept state, oldest first."""
        return sorted((*self._periodic, *self._recent), key=lambda kept: kept[0])

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
        """The earliest step a rewind can reach (None: nothing kept)."""
        kept = self._kept()
        return kept[0][0] if kept else None

    def newest(self, at_most: int | None = None) -> tuple[int, dict[str, Any]] | None:
        """(step, state) of the newest kept state (at or before step `at_most`), or None."""
        kept = [(s, state) for s, state in self._kept() if at_most is None or s <= at_most]
        return kept[-1] if kept else None

    @property
    def memory_bytes(self) -> int:
        return self._bytes_each * len(self)

    def __len__(self) -> int:
        return len(self._periodic) + len(self._recent)

    # -- going back ---------------------------------------------------------------------------------------------
    def rewind_to(self, trainer, step: int) -> Rewound:
        """Put the trainer at `step` (that many updates done): restore the newest kept state at or before it,
        then replay the steps in between with the LRs they used."""
        now = trainer.step_count
        if step > now:
            raise RewindError(f"cannot rewind forward: the run is at step {now}, not past {step}")
        if step < 0:
            raise RewindError("cannot rewind before step 0")
        kept = self.newest(at_most=step)
        if kept is None:
            oldest = self.oldest_step
            where = f"the oldest kept state is step {oldest}" if oldest is not None else "no states are kept yet"
            raise RewindError(f"cannot rewind to step {step}: {where} (keep more with --rewind-depth)")
        self.restore_and_replay(trainer, kept[1], step)
        for states in (self._periodic, self._recent):
            while states and states[-1][0] > step:
                states.pop()
        self._lr_log = [(s, lr) for s, lr in self._lr_log if s <= step + 1]
        return Rewound(step=step, from_step=now)

    def restore_and_replay(self, trainer, state: dict[str, Any], step: int) -> None:
        """Restore a kept state, then replay unobserved steps, with the LRs they used, up to `step`."""
        restore_state(trainer, state)
        self._replaying = True
        try:
            while trainer.step_count < step:
                lr = self.lr_for(trainer.step_count + 1)
                if lr is not None:
                    trainer.set_lr(lr)
                trainer.take_step()
        finally:
            self._replaying = False
            trainer.discard_pending()  # these steps were published the first time
        next_lr = self.lr_for(step + 1)
        if next_lr is not None:  # "replay with the same LR": the next step uses what it used before
            trainer.set_lr(next_lr)
