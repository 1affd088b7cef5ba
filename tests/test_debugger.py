"""The debugger's engine: traced steps, rewind and replay, the LR what-if, watchpoints."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nktui.protocol.records import Rewound
from nktui.training import RunConfig, RunState, Trainer, WatchHit
from nktui.run.history import RunHistory
from nktui.engine.debugger.rewind import RewindError
from nktui.engine.debugger.whatif import log_spaced, lr_whatif

CONFIGS = {
    "sgd": RunConfig(device="cpu", model="mlp", hidden=(32,), lr=0.1),
    "momentum": RunConfig(device="cpu", model="mlp", hidden=(32,), lr=0.05, momentum=0.9),
    "adam": RunConfig(device="cpu", model="mlp", hidden=(32,), optimizer="adam", lr=1e-3),
}


def weights(trainer: Trainer) -> list[torch.Tensor]:
    return [t.detach().clone() for t in trainer.model.state_dict().values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# -- trace ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CONFIGS)
def test_traced_step_is_the_step_that_step_commits(name):
    traced, plain = Trainer(CONFIGS[name]), Trainer(CONFIGS[name])
    for _ in range(3):
        traced.step()
        plain.step()
    trace = traced.trace_step(sample_index=5)
    record = plain.step()
    assert same(weights(traced), weights(plain))  # the trace committed exactly what step() commits
    assert trace.step == record.step == 4
    assert trace.batch_loss == record.loss
    assert trace.record.loss == record.loss
    for update in trace.updates:
        layer = record.layers[update.name]
        assert update.grad_norm == pytest.approx(layer.grad_norm, rel=1e-6)
        assert update.update_norm == pytest.approx(layer.update_norm, rel=1e-6)
        assert update.weight_norm_before == pytest.approx(layer.weight_norm, rel=1e-6)


def test_trace_phases_hold_the_real_numbers():
    trainer = Trainer(CONFIGS["sgd"])
    x, y = trainer.data.train_batch(0)
    with torch.no_grad():
        logits = trainer.model(x)
    trace = trainer.trace_step(sample_index=2)
    probs = F.softmax(logits[2], dim=0)
    assert trace.label == int(y[2])
    assert trace.probabilities == pytest.approx(probs.tolist(), rel=1e-5)
    assert trace.sample_loss == pytest.approx(float(-torch.log(probs[y[2]])), rel=1e-5)
    assert trace.batch_loss == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)
    assert [f.name for f in trace.forward] == ["fc1", "act1", "out"]  # forward order
    assert [b.name for b in trace.backward] == ["out", "act1", "fc1"]  # backward order: output layer first
    assert trace.forward[1].dead_fraction is not None  # the ReLU reports dead units
    # plain SGD: the update is -lr * grad up to float rounding
    for update in trace.updates:
        assert update.difference_norm <= 1e-5 * max(update.lr_grad_norm, 1e-12)
        assert update.update_norm == pytest.approx(0.1 * update.grad_norm, rel=1e-5)
        for index, before, after, grad in update.examples:
            assert after == pytest.approx(before - 0.1 * grad, abs=1e-7)
    assert "plain SGD" in trace.update_rule


def test_momentum_update_differs_from_lr_grad_and_says_so():
    trainer = Trainer(CONFIGS["momentum"])
    for _ in range(5):
        trainer.step()
    trace = trainer.trace_step()
    assert any(u.difference_norm > 0.1 * u.lr_grad_norm for u in trace.updates)
    assert "momentum" in trace.update_rule


# -- rewind and replay ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CONFIGS)
def test_rewind_one_step_and_replay_is_bitwise(name):
    trainer = Trainer(CONFIGS[name])
    for _ in range(4):
        trainer.step()
    before = weights(trainer)
    first = trainer.step()
    after = weights(trainer)
    event = trainer.rewind(1)
    assert event == Rewound(step=4, from_step=5)
    assert trainer.step_count == 4
    assert same(weights(trainer), before)
    again = trainer.step()
    assert again.loss == first.loss
    assert same(weights(trainer), after)


def test_rewind_through_a_kept_state_and_replay_equals_a_fresh_run():
    config = CONFIGS["momentum"].replace(rewind_every=8, rewind_depth=4, steps=10**6)
    trainer = Trainer(config)
    controller = trainer.start()
    try:
        assert controller.wait_for(lambda s: s is RunState.RUNNING, 10)
        while trainer.step_count < 60:
            pass
        controller.pause()
        assert controller.wait_for(lambda s: s is RunState.PAUSED, 10)
        target = trainer.step_count - 11  # between two kept states: restore one, replay the rest
        controller.call(lambda t: t.rewind_to(target)).result(timeout=10)
        reference = Trainer(config)
        for _ in range(target):
            reference.take_step()
        assert trainer.step_count == target
        assert same(weights(trainer), weights(reference))
    finally:
        controller.stop()
        controller.join(5)


def test_replayed_steps_use_the_lr_they_used_and_a_new_lr_applies_after_rewind():
    trainer = Trainer(CONFIGS["sgd"])
    trainer.step()
    trainer.set_lr(0.02)
    trainer.step()
    second = trainer.step()
    assert second.lr == 0.02
    trainer.rewind(2)  # back to step 1: step 2 used 0.02 and will again
    assert trainer.lr == 0.02
    trainer.set_lr(0.5)  # ...unless the user changes it
    redo = trainer.step()
    assert redo.lr == 0.5
    assert redo.layers["out.weight"].update_norm == pytest.approx(0.5 * redo.layers["out.weight"].grad_norm, rel=1e-5)


def test_rewind_errors_say_why():
    trainer = Trainer(CONFIGS["sgd"].replace(rewind_depth=2, rewind_every=0))
    for _ in range(5):
        trainer.step()
    with pytest.raises(RewindError, match="oldest kept state is step 3"):
        trainer.rewind_to(1)
    with pytest.raises(RewindError, match="forward"):
        trainer.rewind_to(9)


def test_history_drops_what_a_rewind_undid():
    trainer = Trainer(CONFIGS["sgd"])
    history = RunHistory()
    for _ in range(6):
        history.add(trainer.step())
    trainer.rewind_to(3)
    history.extend(r for r in trainer.records.since(0)[1] if isinstance(r, Rewound))
    assert [p.first for p in history.train_loss.points()] == [1, 2, 3]


# -- LR what-if -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CONFIGS)
def test_whatif_at_the_current_lr_equals_taking_the_step(name):
    trainer = Trainer(CONFIGS[name])
    for _ in range(3):
        trainer.step()
    state = weights(trainer)
    curve = lr_whatif(trainer)
    assert same(weights(trainer), state) and trainer.step_count == 3  # the run did not move
    assert curve.lrs == log_spaced(trainer.lr) and curve.current_lr in curve.lrs
    x, y = trainer.data.train_batch(3)
    with torch.no_grad():
        loss_now = float(F.cross_entropy(trainer.model(x), y))
    trainer.step()
    with torch.no_grad():
        loss_after = float(F.cross_entropy(trainer.model(x), y))
    assert curve.loss_now == loss_now
    assert curve.losses[curve.lrs.index(curve.current_lr)] == loss_after


def test_whatif_points_follow_the_update_direction():
    trainer = Trainer(CONFIGS["sgd"])
    x, y = trainer.data.train_batch(0)
    curve = lr_whatif(trainer, lrs=(0.05, 0.1, 0.4))
    clone = Trainer(CONFIGS["sgd"].replace(lr=0.4))  # plain SGD: a step at 0.4 is the same direction, 4x as long
    clone.step()
    with torch.no_grad():
        expected = float(F.cross_entropy(clone.model(x), y))
    assert curve.losses[2] == pytest.approx(expected, rel=1e-5)


# -- watchpoints ------------------------------------------------------------------------------------------------
class NanAtStep(nn.Module):
    """A linear model whose forward pass returns NaN on one training call, counted in a buffer (so a rewind, which
    restores the buffers, restores the count too: the replayed steps are the steps that happened)."""

    def __init__(self, bad_call: int) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)
        self.bad_call = bad_call
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        out = self.fc(x.flatten(1))
        if not self.training:
            return out
        self.calls += 1
        return out * math.nan if int(self.calls) == self.bad_call else out


def run_until_paused(trainer: Trainer) -> list[WatchHit]:
    controller = trainer.start()
    try:
        assert controller.wait_for(lambda s: s is RunState.PAUSED, 30), "the watchpoint did not pause the run"
    finally:
        controller.stop()
        controller.join(5)
    return [r for r in trainer.records.since(0)[1] if isinstance(r, WatchHit)]


def test_nan_loss_pauses_and_names_the_first_bad_layer():
    trainer = Trainer(RunConfig(device="cpu", steps=10**6, eval_every=0), model=NanAtStep(bad_call=10))
    hits = run_until_paused(trainer)
    assert hits[0].watchpoint == "nonfinite" and hits[0].step == 10
    assert hits[0].layer == "fc.weight"
    assert "nan" in hits[0].message


def test_huge_lr_fires_a_watchpoint():
    trainer = Trainer(RunConfig(device="cpu", model="mlp", lr=50.0, steps=10**6, log_every=1))
    hits = run_until_paused(trainer)
    assert hits[0].watchpoint in ("loss_jump", "grad_jump", "ratio_band", "nonfinite")
    assert hits[0].step <= 5


def test_deep_sigmoid_mlp_fires_vanishing():
    config = RunConfig(device="cpu", model="mlp", hidden=(64,) * 6, activation="sigmoid", steps=10**6)
    hits = run_until_paused(Trainer(config))
    assert hits[0].watchpoint == "vanishing" and hits[0].layer == "fc1.weight"
    assert hits[0].value < config.watch_vanishing


def test_dead_relus_fire_when_activations_are_measured():
    config = RunConfig(device="cpu", model="mlp", hidden=(32,), activations=True, steps=10**6, watch_vanishing=0)
    trainer = Trainer(config)
    with torch.no_grad():
        trainer.model.fc1.bias.fill_(-100.0)  # every unit of fc1 is negative: its ReLU outputs 0 for everything
    hits = run_until_paused(trainer)
    assert hits[0].watchpoint == "dead_relu" and hits[0].layer == "act1" and hits[0].value == 1.0


def test_a_watchpoint_fires_once_per_layer_and_a_rewind_re_arms_it():
    trainer = Trainer(RunConfig(device="cpu", model="mlp", hidden=(64,) * 6, activation="sigmoid"))
    trainer.step()
    trainer.step()
    hits = [r for r in trainer.records.since(0)[1] if isinstance(r, WatchHit)]
    assert [h.watchpoint for h in hits] == ["vanishing"]
    trainer.rewind(1)
    trainer.step()
    hits = [r for r in trainer.records.since(0)[1] if isinstance(r, WatchHit)]
    assert len(hits) == 2


def test_watchpoints_can_be_switched_off():
    trainer = Trainer(RunConfig(device="cpu", steps=10**6, watch=False), model=NanAtStep(bad_call=3))
    for _ in range(5):
        trainer.step()
    assert not [r for r in trainer.records.since(0)[1] if isinstance(r, WatchHit)]


def test_replay_through_lr_changes_uses_each_steps_own_lr():
    """Regression: replayed steps used to log their LR again and scramble the log they were reading."""
    config = CONFIGS["sgd"].replace(rewind_every=0)
    trainer = Trainer(config)
    trainer.step()
    trainer.rewind_to(0)  # the first state is kept before step 1
    trainer.set_lr(0.02)
    trainer.step()
    trainer.set_lr(0.7)
    for _ in range(3):
        trainer.take_step()
    trainer.rewind_to(3)  # restore step 0, replay 1 (lr 0.02), 2 and 3 (lr 0.7)
    reference = Trainer(config)
    reference.set_lr(0.02)
    reference.take_step()
    reference.set_lr(0.7)
    reference.take_step()
    reference.take_step()
    assert same(weights(trainer), weights(reference))
    assert trainer.lr == 0.7  # step 4 used 0.7 the first time
