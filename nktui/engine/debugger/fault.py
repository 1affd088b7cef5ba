"""The fault finder: when a watchpoint trips while the run trains, put the trainer just before the step that did it.

The training loop runs ahead of what it has checked: records, and with them the watchpoints, are made at a flush,
up to FLUSH_EVERY steps after the steps themselves. When a flush finds a step k whose record trips a watchpoint
(`Trainer.flush(hold=True)` stops there and leaves a `Flagged`), `stop_before` runs on the training thread:

1. For nan or inf, find the first step that made anything non-finite: the loss and the per-step gradient norms
   of later steps say so, but weights can turn nan or inf unseen (a -inf bias before a ReLU). So the newest kept
   state whose weights are all finite is restored and the steps from there to k are replayed one by one, each
   checked exactly (loss, gradients, weights after the update); the first that fails is the new k.
2. Go back to the state after k - 1 (`RewindBuffer`: a kept state plus bitwise replay) and take step k again,
   observed: its full statistics in float64, exact where the per-step float32 norms could overflow.
3. Check that exact record. If it trips a watchpoint, put the trainer back before step k (the state kept just
   before the re-take) and report the hits, each with that record; the loop pauses. If it does not because a
   float32 norm overflowed on a huge but finite gradient that is within bounds after all, step k stands and the
   run goes on from there. If it does not for another reason (the fault did not reproduce: a model with state
   outside its buffers, a nondeterministic kernel), the hits seen are reported all the same, saying so.

Steps between k and where the loop had got to are undone; they were never published, except those after a
non-finite step found in 1., which a `Rewound` record takes back. The same seed gives the same k every time,
whatever the readers' timing, because every step is checked and k is the first one in step order.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from ...probe.flush_check import Flagged
from ...protocol.records import Rewound, StepRecord, WatchHit
from .rewind import RewindError
from ..state import capture_state, restore_state


def stop_before(trainer, flagged: Flagged) -> list[WatchHit]:
    """Put `trainer` just before the flagged step (see the module docstring); the hits it publishes, or [] when
    the exact re-take showed no watchpoint after all (the run then stands after that step)."""
    step = flagged.record.step
    now = trainer.step_count
    try:
        if any(hit.watchpoint == "nonfinite" for hit in flagged.hits):
            step = _first_nonfinite_step(trainer, step)
        trainer.rewinds.rewind_to(trainer, step - 1)
    except RewindError as exc:  # rewinding is off or the state is gone: report the hits where the run stands
        hits = [replace(hit, message=f"{hit.message} (the run could not go back before it: {exc})")
                for hit in flagged.hits]
        trainer.watcher.commit(flagged.record)
        trainer.records.publish(flagged.record)
        _publish(trainer, hits)
        trainer.publish_checked(flagged.later, flagged.later_norms)
        return hits
    trainer.rewinds.before_step(trainer, single=True)  # the state before step k: `b` and the restore below
    before = capture_state(trainer, portable=False)
    trainer.take_step(observe=True)  # step k again, with the full statistics
    record = trainer.make_records()[0][0]
    trainer.watcher.forget_after(step - 1)
    hits = trainer.watcher.check(record)
    if not hits:
        if _overflow_only(flagged, record):  # huge but finite gradients: the step stands, the run goes on
            trainer.watcher.commit(record)
            trainer.records.publish(record)
            return []
        # The step did not do it again (a fault that does not reproduce: a model with state of its own outside
        # its buffers, a nondeterministic kernel): report what was seen, before the step, and say so.
        hits = [replace(h, message=f"{h.message}; taken again, step {step} did not reproduce it") for h in flagged.hits]
    restore_state(trainer, before)
    trainer.forget_observed()
    if step - 1 < flagged.record.step - 1:  # records of steps after the first non-finite one were published
        trainer.records.publish(Rewound(step=step - 1, from_step=now))
    return _publish(trainer, [replace(h, record=record, stopped_before=True) for h in hits])


def _publish(trainer, hits: list[WatchHit]) -> list[WatchHit]:
    trainer.watcher.fired(hits)
    trainer.records.publish_many(hits)
    trainer.watch_hit, trainer.watch_hits = hits[0], hits
    return hits


def _overflow_only(flagged: Flagged, exact: StepRecord) -> bool:
    """Whether every hit was a float32 gradient norm that overflowed while the exact one is finite."""
    hits = flagged.hits
    return math.isfinite(flagged.record.loss) and math.isfinite(exact.loss) and all(
        h.watchpoint == "nonfinite" and h.layer in exact.layers and math.isfinite(exact.layers[h.layer].grad_norm)
        for h in hits
    )


def _first_nonfinite_step(trainer, flagged_step: int) -> int:
    """The first step at or before `flagged_step` whose loss, gradients or updated weights are not all finite,
    by replaying from the newest kept state whose weights are finite (RewindError when there is none)."""
    rewinds = trainer.rewinds
    kept = rewinds.newest(at_most=flagged_step - 1)
    while kept is not None and not _finite_state(kept[1]):
        kept = rewinds.newest(at_most=kept[0] - 1)
    if kept is None:
        raise RewindError(f"no kept state before step {flagged_step} has finite weights")
    rewinds.restore_and_replay(trainer, kept[1], kept[0])
    params = [p for _, p in trainer.model.named_parameters()]
    while trainer.step_count < flagged_step - 1:
        lr = rewinds.lr_for(trainer.step_count + 1)
        if lr is not None:
            trainer.set_lr(lr)
        loss = trainer.take_step()
        grads = [p.grad for p in params if p.grad is not None]
        # One host sync per replayed step: only here, after a watchpoint, never while training.
        finite = torch.stack([torch.isfinite(loss).all(), *(torch.isfinite(t).all() for t in (*grads, *params))])
        if not bool(finite.all()):
            trainer.discard_pending()
            return trainer.step_count
    trainer.discard_pending()
    return flagged_step


def _finite_state(state: dict[str, Any]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state["model"].values() if t.is_floating_point())
