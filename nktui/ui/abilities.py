"""What the keys may do now, read off the session: which commands apply in the run's state, where a rewind goes and
how far back it reaches, and why a greyed-out key does nothing (said when it is pressed).

A mixin of `Session` (plain Python, no Textual): `self.state`, `self.info`, `self.step_count`, `self.run`, `self.observed`,
`self.scrub_index` and `self.shown_record` are the session's.
"""

from __future__ import annotations

from nktui.protocol import RunState


class Abilities:
    @property
    def can_pause(self) -> bool:
        return self.state in (RunState.RUNNING, RunState.STARTING) and not self.run.pause_requested

    @property
    def can_resume(self) -> bool:
        return self.state is RunState.PAUSED or (
            self.run.pause_requested and self.state in (RunState.RUNNING, RunState.STARTING)
        )

    @property
    def can_step(self) -> bool:
        return self.state is RunState.PAUSED

    @property
    def can_steer(self) -> bool:
        """Commands that need a live trainer (LR, evaluate)."""
        return self.state in (RunState.RUNNING, RunState.PAUSED, RunState.FINISHED)

    def disabled_reason(self, action: str) -> str:
        """Why a key that is greyed out does nothing now, in one line (the app says it when the key is pressed)."""
        state = self.state
        if state is RunState.FINISHED and self.info is not None:
            return (f"the run finished at step {self.step_count}: raise steps in the config pane (c, then Enter) "
                    "and space goes on")
        if state is RunState.FAILED:
            return "the run failed: fix the config (c) and restart (r)"
        if state in (RunState.STARTING, RunState.STOPPED):
            return f"the run is {state.value}"
        if action in ("step", "trace", "rewind", "goto", "whatif") and state is not RunState.PAUSED:
            return "that works while paused: space pauses first"
        if action in ("rewind", "goto"):
            return "nothing to rewind to: the run is at its first kept state"
        return "not now"

    def rewind_target(self) -> int | None:
        """Where `b` goes: to just before the scrubbed step, else one step back; None if nothing to undo."""
        if self.info is None or self.step_count == 0:
            return None
        if self.scrub_index is not None:
            return self.shown_record.step - 1
        return self.step_count - 1

    @property
    def rewind_reach(self) -> tuple[int, int] | None:
        """(oldest, newest) step a rewind can reach (`g`), or None when nothing can be undone."""
        info = self.info
        if info is None or self.step_count == 0 or info.rewinds.oldest_step is None:
            return None
        return info.rewinds.oldest_step, self.step_count - 1

    @property
    def rewind_memory(self) -> tuple[int, int]:
        """(states kept, bytes) of the rewind buffer."""
        info = self.info
        if info is None:
            return 0, 0
        return info.rewinds.states, info.rewinds.memory_bytes
