"""A flush's check: every record against the watchpoints, in step order, and what to publish.

The part of a flush that any training loop hosts (nktui's own, and later a user's): the numpy screen finds the
first record the exact check must see (`watch_screen`), the records before it are folded into the histories in
bulk, and from there each record is checked exactly. Each record is published followed by its hits. While
running (`hold`), the first record that trips a watchpoint stops the check: it and the records after it are handed
back unpublished as a `Flagged`, for the fault finder (`nktui.engine.debugger.fault`) to re-take exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..protocol.records import StepRecord, WatchHit
from .watch import Watcher


@dataclass
class Flagged:
    """A step whose record tripped watchpoints at a flush while running: not published yet."""

    record: StepRecord
    hits: list[WatchHit]
    later: list[StepRecord]  # the records of the steps after it, not checked yet
    later_norms: list[list[float] | None]


@dataclass
class Checked:
    publish: list = field(default_factory=list)  # records, each followed by its hits, in step order
    records: list[StepRecord] = field(default_factory=list)  # the step records among them
    flagged: Flagged | None = None  # (only with hold)
    last_hits: list[WatchHit] = field(default_factory=list)  # the newest hits reported, if any


def check_in_order(watcher: Watcher, records: list[StepRecord], norms: list[list[float] | None], *,
                   hold: bool = False) -> Checked:
    """Check `records` (with each unobserved one's gradient norms) in step order; see the module docstring."""
    checked = Checked(records=records)
    out = checked.publish
    i = 0
    while i < len(records):
        j = i + watcher.first_suspect(records[i:], norms[i:])  # (numpy, all at once: see watch_screen)
        watcher.commit_many(records[i:j], norms[i:j])
        out.extend(records[i:j])
        if j == len(records):
            break
        record, grad_norms = records[j], norms[j]
        hits = watcher.check(record, grad_norms)  # the exact check, from the first suspect on
        if hits and hold:
            checked.flagged = Flagged(record, hits, records[j + 1:], norms[j + 1:])
            checked.records = records[:j]
            break
        watcher.commit(record, grad_norms)
        out.append(record)
        if hits:
            watcher.fired(hits)
            out.extend(hits)
            checked.last_hits = hits
        i = j + 1
    return checked
