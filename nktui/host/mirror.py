"""What a run process keeps of its own records so that a client attaching late sees what one there from the start
sees: the plot history (bounded and bucketed: `nktui.run.history`), the newest step records (for a rewind), the
observed steps (the scrub buffer), the latest evaluation and watchpoint hit. `RunMirror` is fed on the host's
thread; `snapshot()` is one frame of it. `Snapshot` is that frame read back on the client's side, handed to the
app's Session as the first "record" of a connection (and again after a client fell behind and was resynced).
Imports neither torch nor Textual.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from ..protocol import EvalResult, Rewound, StepRecord, WatchHit
from ..protocol.wire import WireError, from_wire, records_from_wire, records_to_wire, to_wire
from ..run.history import RunHistory

SCRUB_DEPTH = 1000  # observed steps kept for scrubbing back and forth (the app's Session keeps as many)
FIRST_OBSERVED = 50  # the newest observed steps in a viewer's first frame; the older ones follow in a second
RECENT_DEPTH = 256  # the newest step records, to step back on a rewind


class RunMirror:
    """The records' state a view needs, fed by `add` (one thread: the host's)."""

    def __init__(self) -> None:
        self.history = RunHistory()
        self.recent: deque[StepRecord] = deque(maxlen=RECENT_DEPTH)
        self.observed: deque[StepRecord] = deque(maxlen=SCRUB_DEPTH)
        self.latest_eval: EvalResult | None = None
        self.watch_hits: list[WatchHit] = []  # the newest step's hits (one step can trip several watchpoints)

    def add(self, records: list[Any]) -> None:
        for record in records:
            self.history.add(record)
            if isinstance(record, StepRecord):
                self.recent.append(record)
                if record.observed:
                    self.observed.append(record)
            elif isinstance(record, EvalResult):
                self.latest_eval = record
            elif isinstance(record, WatchHit):
                if self.watch_hits and self.watch_hits[0].step != record.step:
                    self.watch_hits = []
                self.watch_hits.append(record)
            elif isinstance(record, Rewound):
                for kept in (self.observed, self.recent):
                    while kept and kept[-1].step > record.step:
                        kept.pop()
                self.watch_hits = []

    def snapshot(self) -> tuple[dict[str, Any], bytes, list[Any]]:
        """(header fields, blob) of the mirror with its newest FIRST_OBSERVED observed steps, and the older ones
        (for a `backlog` frame after it: what a first frame draws comes first, the rest of the scrub buffer
        0.1 to 0.5 s later)."""
        recent, blob = records_to_wire(list(self.recent))
        observed = list(self.observed)
        return {
            "history": self.history.export(),
            "recent": recent,
            "observed": [to_wire(r) for r in observed[-FIRST_OBSERVED:]],
            "latest_eval": to_wire(self.latest_eval),
            "watch_hits": [to_wire(h) for h in self.watch_hits],
        }, blob, observed[:-FIRST_OBSERVED]


@dataclass(frozen=True)
class ScrubBacklog:
    """The older observed steps of a viewer's first frame, oldest first: they go before the ones it has."""

    observed: tuple[StepRecord, ...]

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> ScrubBacklog:
        observed = tuple(from_wire(r) for r in message.get("observed", ()))
        if not all(isinstance(r, StepRecord) for r in observed):
            raise WireError("a backlog whose steps are not step records")
        return cls(observed)


@dataclass(frozen=True)
class Snapshot:
    """A run's mirror as a client received it (see the module's docstring)."""

    history: RunHistory
    recent: tuple[StepRecord, ...]
    observed: tuple[StepRecord, ...]
    latest_eval: EvalResult | None
    watch_hits: tuple[WatchHit, ...]

    @classmethod
    def from_message(cls, message: dict[str, Any], blob: bytes) -> Snapshot:
        try:
            history = RunHistory()
            history.restore(message["history"])
            recent = tuple(records_from_wire(message["recent"], blob))
            observed = tuple(from_wire(r) for r in message["observed"])
            snapshot = cls(history, recent, observed, from_wire(message["latest_eval"]),
                           tuple(from_wire(h) for h in message["watch_hits"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"a malformed snapshot: {exc}") from None
        if not all(isinstance(r, StepRecord) for r in recent + observed):
            raise WireError("a snapshot whose steps are not step records")
        if not all(isinstance(h, WatchHit) for h in snapshot.watch_hits):
            raise WireError("a snapshot whose watchpoint hits are not hits")
        return snapshot
