"""The debugger at the fault: every step checked, the run stopped just before the step that tripped a watchpoint,
true numbers at extreme values. Against independent computations (Trainer.step() records, float64 norms)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from nktui.training import RunConfig, RunState, Trainer, WatchHit
from nktui.run.checkpoint import load_checkpoint
from nktui.probe.instruments import Instruments
from nktui.probe.watch import Watcher
from test_debugger import NanAtStep  # a model that returns nan once, counted in a buffer

# The README's demo. (ratio_band is off here: it counts measured steps, which depend on when a reader asks; every
# other watchpoint is evaluated on every step.)
DEMO = RunConfig(device="cpu", model="mlp", lr=50.0, seed=0, steps=10**6, watch_ratio_steps=0)


def run_until_stopped(config: RunConfig, **kwargs) -> tuple[Trainer, list[WatchHit]]:
    controller = Trainer.launch(config, **kwargs)
    try:
        done = (RunState.PAUSED, RunState.FINISHED, RunState.FAILED, RunState.STOPPED)
        assert controller.wait_for(lambda s: s in done, 120), "the run did not stop"
        assert controller.error is None, controller.error_traceback
    finally:
        controller.stop()
        controller.join(10)
    return controller.trainer, [r for r in controller.trainer.records.since(0)[1] if isinstance(r, WatchHit)]


def first_tripping_step(config: RunConfig, steps: int = 40) -> tuple[int, set[str]]:
    """Independently: step a fresh trainer one fully observed step at a time and ask a fresh watcher of each
    record, in order; the first step that trips anything, and what it trips."""
    trainer = Trainer(config.replace(watch=False))
    watcher = Watcher(config)
    for _ in range(steps):
        record = trainer.step()
        hits = watcher.check(record)
        if hits:
            return record.step, {h.watchpoint for h in hits}
        watcher.commit(record)
    raise AssertionError("nothing tripped")


def state_tensors(trainer: Trainer) -> list[torch.Tensor]:
    return [t.detach().clone() for t in trainer.model.state_dict().values()]


def test_the_demo_stops_before_the_same_first_step_every_time():
    k, expected = first_tripping_step(DEMO)
    reference = Trainer(DEMO.replace(watch=False))
    for _ in range(k - 1):
        reference.step()
    for _ in range(10):  # the run's timing differs every time (a reader asks for snapshots at random moments)
        trainer, hits = run_until_stopped(DEMO)
        assert {h.step for h in hits} == {k}
        assert {h.watchpoint for h in hits} == expected
        assert all(h.stopped_before for h in hits)
        assert trainer.step_count == k - 1  # just before step k
        for ours, theirs in zip(state_tensors(trainer), state_tensors(reference), strict=True):
            assert torch.equal(ours, theirs)  # bitwise the run that took k - 1 steps
        assert hits[0].record is not None and hits[0].record.step == k  # the exact numbers of step k


def test_resuming_after_the_stop_takes_the_step_and_goes_on():
    trainer, hits = run_until_stopped(DEMO)
    k = hits[0].step
    controller = trainer.start()  # the same watchpoints stay quiet for that step: it was reported
    try:
        assert controller.wait_for(lambda s: s is RunState.PAUSED, 60) or trainer.step_count > k
    finally:
        controller.stop()
        controller.join(10)
    assert trainer.step_count >= k


def test_a_nan_on_one_unmeasured_step_stops_before_that_step():
    config = RunConfig(device="cpu", steps=10**6, eval_every=0, log_every=1000)
    trainer, hits = run_until_stopped(config, model=NanAtStep(bad_call=137))
    assert [h.watchpoint for h in hits] == ["nonfinite"]
    assert hits[0].step == 137 and hits[0].stopped_before
    assert hits[0].layer == "fc.weight" and "nan" in hits[0].message
    assert trainer.step_count == 136 and int(trainer.model.calls) == 136
    assert all(bool(torch.isfinite(t).all()) for t in trainer.model.state_dict().values() if t.is_floating_point())


def test_headless_at_the_nan_exits_3_with_a_finite_last_pt_from_just_before(tmp_path):
    model = tmp_path / "nan_model.py"
    model.write_text(
        "import math, torch\nfrom torch import nn\n"
        "class M(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.fc = nn.Linear(64, 10)\n"
        "        self.register_buffer('calls', torch.zeros((), dtype=torch.long))\n"
        "    def forward(self, x):\n"
        "        out = self.fc(x.flatten(1))\n"
        "        if self.training:\n"
        "            self.calls += 1\n"
        "            if int(self.calls) == 77: return out * math.nan\n"
        "        return out\n"
        "def build(shape, classes): return M()\n"
    )
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "nktui", "train", "--model", f"{model}:build", "--steps", "2000", "--run-dir",
         str(run), "--eval-every", "0"], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 76
    assert all(bool(torch.isfinite(t).all()) for t in state["model"].values() if t.is_floating_point())
    assert done.stdout.strip().splitlines()[-1].endswith("--paused, then t traces step 77")
    assert done.stderr.count("nonfinite") == 1


def test_huge_finite_values_give_finite_statistics():
    layer = nn.Linear(100, 100, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1e20)
    instruments = Instruments(layer, histogram_bins=8)
    layer.weight.grad = torch.full_like(layer.weight, -1e20)
    instruments.before_update()
    with torch.no_grad():
        layer.weight.mul_(-1.0)  # an update of 2e20 per value
    stats, _ = instruments.after_update().to_host(instruments.names, instruments.shapes)
    s = stats["weight"]
    expected = math.sqrt(10_000) * 1e20  # float64, by hand
    assert s.nonfinite == 0
    assert s.grad_norm == pytest.approx(expected, rel=1e-6)
    assert s.weight_norm == pytest.approx(expected, rel=1e-6)
    assert s.update_norm == pytest.approx(2 * expected, rel=1e-6)
    assert s.grad_mean == pytest.approx(-1e20, rel=1e-6)
    assert s.histogram is not None and sum(s.histogram.counts) == 10_000


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_one_non_finite_value_is_counted_exactly(bad):
    layer = nn.Linear(10, 10, bias=False)
    instruments = Instruments(layer)
    grad = torch.full_like(layer.weight, 3e38)
    grad[3, 4] = bad
    layer.weight.grad = grad
    instruments.before_update()
    stats, _ = instruments.after_update().to_host(instruments.names, instruments.shapes)
    assert stats["weight"].nonfinite == 1


@pytest.mark.parametrize("tiny", [1e-45, -0.0, 0.0])
def test_tiny_and_signed_zero_gradients_are_measured(tiny):
    layer = nn.Linear(4, 4, bias=False)
    instruments = Instruments(layer)
    layer.weight.grad = torch.full_like(layer.weight, tiny)
    instruments.before_update()
    stats, _ = instruments.after_update().to_host(instruments.names, instruments.shapes)
    assert stats["weight"].nonfinite == 0
    assert stats["weight"].grad_norm == pytest.approx(abs(float(torch.tensor(tiny))) * 4, rel=1e-6, abs=1e-50)


# -- watchpoints: independent, and quiet on healthy runs -------------------------------------------------------
def record_with(step, loss, norms: dict[str, float]):
    from nktui.protocol.records import LayerStats, StepRecord, frozen_mapping

    layers = {n: LayerStats(n, (4, 4), g, 0.0, 0.0, 0.0, 1.0, 1e-3, 0) for n, g in norms.items()}
    return StepRecord(step, 1, loss, 0.5, 0.1, layers=frozen_mapping(layers))


def test_two_conditions_on_one_record_both_fire_and_one_never_masks_another():
    watcher = Watcher(RunConfig(watch_vanishing=0))
    for step in range(1, 6):
        record = record_with(step, 2.0, {"a.weight": 1.0, "b.weight": 1.0})
        assert watcher.check(record) == []
        watcher.commit(record)
    jump = record_with(6, 50.0, {"a.weight": 300.0, "b.weight": 1.0})
    hits = watcher.check(jump)
    assert {h.watchpoint for h in hits} == {"loss_jump", "grad_jump"}
    watcher.fired(hits)
    watcher.commit(jump)
    later = record_with(7, 2000.0, {"a.weight": 1.0, "b.weight": 5000.0})
    # loss_jump and grad_jump have fired (for a.weight): grad_jump still fires for another layer
    assert [(h.watchpoint, h.layer) for h in watcher.check(later)] == [("grad_jump", "b.weight")]


def test_a_negligible_layer_is_left_out_of_the_relative_watchpoints():
    watcher = Watcher(RunConfig(watch_vanishing=0))
    for step in range(1, 6):
        record = record_with(step, 2.0, {"conv.bias": 1e-7, "conv.weight": 1.0})
        watcher.commit(record)
    jumpy = record_with(6, 2.0, {"conv.bias": 1e-6, "conv.weight": 1.0})  # 10x its median, but 1e-6 of the model's
    assert watcher.check(jumpy) == []


EXAMPLE = str(Path(__file__).resolve().parent.parent / "examples" / "my_model.py") + ":build"


@pytest.mark.parametrize("model", ["linear", "mlp", "cnn", EXAMPLE])
def test_no_watchpoint_fires_in_5000_healthy_steps(model):
    config = RunConfig(device="cpu", model=model, steps=5000, eval_every=0, log_every=500)
    trainer, hits = run_until_stopped(config)
    assert hits == [], hits[0].message
    assert trainer.step_count == 5000


class HiddenInf(nn.Module):
    """On one training call, a bias turns -inf in front of a ReLU: the loss and every gradient stay finite, so only
    the weights show it (on the next measured step)."""

    def __init__(self, bad_call: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 16), nn.Linear(16, 10)
        self.bad_call = bad_call
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        if self.training:
            self.calls += 1
            if int(self.calls) == self.bad_call:
                with torch.no_grad():
                    self.fc1.bias[0] = -math.inf
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def test_weights_that_turn_inf_unseen_stop_the_run_before_the_step_that_did_it():
    config = RunConfig(device="cpu", steps=10**6, eval_every=0, log_every=50, rewind_every=16)
    trainer, hits = run_until_stopped(config, model=HiddenInf(bad_call=23))
    assert [(h.watchpoint, h.step, h.layer) for h in hits] == [("nonfinite", 23, "fc1.bias")]
    assert hits[0].stopped_before and trainer.step_count == 22
    assert bool(torch.isfinite(trainer.model.fc1.bias).all())


def test_the_vectorised_screen_misses_nothing_the_exact_check_catches():
    """The flush screens its records with numpy first (watch_screen); the hits must be exactly those of checking
    every record one by one, on random runs with jumps, vanishing layers and non-finite values."""
    import random

    from nktui.protocol.records import StepRecord

    names, shapes = ("a.weight", "a.bias", "b.weight"), ((4, 4), (4,), (4, 4))
    config = RunConfig(watch_vanishing=1e-3)
    rng = random.Random(0)
    for _ in range(200):
        records, norms = [], []
        for step in range(1, rng.randint(2, 70)):
            loss = rng.choice([rng.uniform(0.1, 3), rng.uniform(0.1, 3), rng.uniform(20, 500), math.nan])
            row = [rng.choice([rng.uniform(0.5, 2), rng.uniform(150, 400), 1e-9, math.inf]) for _ in names]
            records.append(StepRecord(step, 1, loss, 0.5, 0.1))
            norms.append(row)
        one_by_one, screened = Watcher(config, names, shapes), Watcher(config, names, shapes)
        expected = []
        for record, row in zip(records, norms):
            hits = one_by_one.check(record, row)
            one_by_one.fired(hits)
            one_by_one.commit(record, row)
            expected += [(h.step, h.watchpoint, h.layer) for h in hits]
        got, i = [], 0
        while i < len(records):
            j = i + screened.first_suspect(records[i:], norms[i:])
            screened.commit_many(records[i:j], norms[i:j])
            if j == len(records):
                break
            hits = screened.check(records[j], norms[j])
            screened.fired(hits)
            screened.commit(records[j], norms[j])
            got += [(h.step, h.watchpoint, h.layer) for h in hits]
            i = j + 1
        assert got == expected


def test_commands_taken_at_a_flush_that_trips_a_watchpoint_still_run(controllers, wait_until):
    """The loop flushes before it runs commands; when that flush trips a watchpoint, the commands it had already
    taken run on the paused trainer (they used to be dropped: a screen waited for good, an LR was lost)."""
    import threading

    from nktui.engine.control import Controller
    from nktui.protocol.commands import Evaluate

    trainer = Trainer(RunConfig(model="linear", dataset="digits", log_every=1000))
    trainer.take_step()
    trainer.take_step()
    trainer.set_lr(1e30)  # the steps still pending below blow the loss up
    for _ in range(5):
        trainer.take_step()
    ctl = Controller(paused=False)
    controllers.append(ctl)
    evaluation = ctl.submit(Evaluate())
    ctl.set_lr(0.01)
    ctl.thread = threading.Thread(target=trainer.run, args=(ctl,), daemon=True)
    ctl.thread.start()
    assert evaluation.result(timeout=30).step == trainer.step_count  # run, on the weights it stands at
    assert wait_until(lambda: ctl.state is RunState.PAUSED, timeout=30)
    assert trainer.watch_hit is not None and trainer.watch_hit.watchpoint == "loss_jump"  # (the hit that paused it)
    assert trainer.lr == 0.01


def test_a_step_that_fails_after_its_health_row_leaves_the_next_steps_norms_right():
    """Each pending step keeps its own row of the health block: a step whose update raised (a row written, no step
    added) does not shift the norms of the steps after it."""
    trainer = Trainer(RunConfig(model="mlp", dataset="digits", log_every=1000))
    trainer.take_step(observe=True)
    trainer.flush()
    real_step = trainer.optimizer.step

    def boom(*args, **kwargs):
        raise RuntimeError("optimizer failed")

    trainer.optimizer.step = boom
    with pytest.raises(RuntimeError, match="optimizer failed"):
        trainer.take_step()
    trainer.optimizer.step = real_step
    truth = []
    for _ in range(3):
        trainer.take_step()
        truth.append([torch.linalg.vector_norm(p.grad.double()).item() for p in trainer.instruments.params])
    records, norms = trainer.make_records()
    assert [r.step for r in records] == [2, 3, 4]
    for reported, expected in zip(norms, truth):
        assert reported == pytest.approx(expected, rel=1e-4)
