"""`RunState`: the states a run goes through, as the training thread reports them and every front end reads them.

starting -> running <-> paused -> finished (the step limit; still answers commands) -> stopped; failed when the
training thread raised. `is_over`: failed or stopped, after which the run takes no more commands.
"""

from __future__ import annotations

import enum


class RunState(str, enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"  # reached its step limit; still answers commands such as evaluate until stopped
    FAILED = "failed"  # the training thread raised; `Controller.error` holds the exception
    STOPPED = "stopped"

    @property
    def is_over(self) -> bool:
        return self in (RunState.FAILED, RunState.STOPPED)
