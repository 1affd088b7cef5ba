"""Controller and the training thread: pause, single steps, learning rate, stop, failures, calls."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest
import torch
from torch import nn

from nktui.training import ConfigError, Controller, DataError, ModelError, RunConfig, RunState, StepRecord, Trainer

LONG = 100_000  # a step limit the tests never reach


def step_records(trainer: Trainer) -> list[StepRecord]:
    return [r for r in trainer.records.since(0)[1] if isinstance(r, StepRecord)]


def latest_step(trainer: Trainer) -> int:
    recs = step_records(trainer)
    return recs[-1].step if recs else 0


def run_on_thread(trainer: Trainer, ctl: Controller) -> Controller:
    """What Trainer.start does, with a controller of the test's own making."""
    ctl.trainer = trainer
    ctl.thread = threading.Thread(target=trainer.run, args=(ctl,), name="nktui-trainer", daemon=True)
    ctl.thread.start()
    return ctl


class PauseAtStepBoundary(Controller):
    """Asks for a pause once `at` steps are done, just as the loop asks for its next command: after the loop has
    decided whether to flush the step before. A user's pause can arrive at exactly that moment."""

    def __init__(self, trainer: Trainer, at: int) -> None:
        super().__init__(paused=False)
        self._watch, self._at = trainer, at

    def next_command(self, **kwargs):
        if self._watch.step_count == self._at and not self.pause_requested:
            self.pause()
        return super().next_command(**kwargs)


# -- pause and single steps ----------------------------------------------------------------------------------------
def test_pause_between_steps_publishes_every_step_before_pausing(make_trainer, controllers, wait_until):
    trainer = make_trainer(steps=LONG, log_every=1000, eval_every=0)
    ctl = run_on_thread(trainer, PauseAtStepBoundary(trainer, at=5))
    controllers.append(ctl)
    assert ctl.wait_for(lambda s: s is RunState.PAUSED or s.is_over, timeout=30)
    assert ctl.state is RunState.PAUSED, ctl.error_traceback
    # the pause took effect before the next step started
    assert trainer.step_count == 5
    # and a reader who sees PAUSED sees every step made so far (steps 2-5 were not observed, so not yet flushed)
    assert [r.step for r in step_records(trainer)] == [1, 2, 3, 4, 5]

    seq = trainer.records.last_seq
    assert ctl.step() is True
    assert wait_until(lambda: latest_step(trainer) >= 6)
    new = [r for r in trainer.records.since(seq)[1] if isinstance(r, StepRecord)]
    assert [r.step for r in new] == [6]  # exactly one update, one new record
    assert new[0].observed and set(new[0].layers) == {"fc.weight", "fc.bias"}
    assert trainer.step_count == 6
    assert ctl.state is RunState.PAUSED


def test_pause_on_a_running_thread(make_trainer, controllers, wait_until):
    trainer = make_trainer(steps=LONG, log_every=1000, eval_every=0)
    ctl = trainer.start()
    controllers.append(ctl)
    assert wait_until(lambda: trainer.step_count >= 3)
    ctl.pause()
    assert ctl.wait_for(lambda s: s is RunState.PAUSED, timeout=30)
    n = trainer.step_count
    assert latest_step(trainer) == n  # everything before the pause is published
    assert not wait_until(lambda: trainer.step_count != n, timeout=0.2)  # and nothing more happens

    ctl.resume()
    assert wait_until(lambda: trainer.step_count >= n + 3)
    ctl.stop()
    assert ctl.join(timeout=10)
    assert ctl.state is RunState.STOPPED
    assert [r.step for r in step_records(trainer)] == list(range(1, trainer.step_count + 1))


def test_several_single_steps_queue_that_many(make_trainer, controllers, wait_until):
    trainer = make_trainer(steps=LONG)
    ctl = trainer.start(paused=True)
    controllers.append(ctl)
    assert ctl.wait_for(lambda s: s is RunState.PAUSED, timeout=30)
    assert trainer.step_count == 0 and trainer.records.last_seq == 0  # a paused start makes no step

    assert [ctl.step() for _ in range(3)] == [True, True, True]
    assert wait_until(lambda: latest_step(trainer) >= 3)
    assert not wait_until(lambda: trainer.step_count > 3, timeout=0.2)
    recs = step_records(trainer)
    assert [r.step for r in recs] == [1, 2, 3]
    assert all(r.observed for r in recs)
    assert ctl.state is RunState.PAUSED


def test_step_returns_false_while_running(make_trainer, controllers, wait_until):
    trainer = make_trainer(steps=LONG)
    ctl = trainer.start(paused=False)
    controllers.append(ctl)
    assert ctl.wait_for(lambda s: s is RunState.RUNNING, timeout=30)
    assert ctl.step() is False
    ctl.pause()  # a requested pause is enough to queue a step
    assert ctl.step() is True


def test_set_lr_through_the_controller(make_trainer, controllers, wait_until):
    trainer = make_trainer(steps=LONG, lr=0.1)
    ctl = trainer.start()
    controllers.append(ctl)
    assert wait_until(lambda: trainer.step_count >= 2)
    ctl.pause()
    assert ctl.wait_for(lambda s: s.value == "paused", timeout=30)
    n = trainer.step_count
    assert ctl.set_lr(0.02) == 0.02
    assert ctl.step()
    assert wait_until(lambda: latest_step(trainer) == n + 1)
    recs = step_records(trainer)
    newest, previous = recs[-1], recs[-2]
    assert previous.lr == 0.1
    assert newest.lr == 0.02
    for stats in newest.layers.values():
        assert stats.update_norm == pytest.approx(0.02 * stats.grad_norm, rel=1e-5)
    assert trainer.lr == 0.02


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "abc", ""])
def test_controller_rejects_bad_lr_and_queues_nothing(bad):
    ctl = Controller()
    with pytest.raises(ConfigError, match="^lr "):
        ctl.set_lr(bad)
    cmd = ctl.next_command()
    assert cmd.lr is None and cmd.take_step


# -- stop and failure ----------------------------------------------------------------------------------------------
def test_stop_ends_the_thread(make_trainer, wait_until):
    trainer = make_trainer(steps=LONG, log_every=1000, eval_every=0)
    ctl = trainer.start()
    assert wait_until(lambda: trainer.step_count >= 5)
    ctl.stop()
    assert ctl.join(timeout=10)
    assert ctl.state is RunState.STOPPED
    assert ctl.error is None
    assert latest_step(trainer) == trainer.step_count  # the last steps' records were flushed on the way out
    assert ctl.step() is False


def test_stop_while_paused(make_trainer):
    trainer = make_trainer(steps=LONG)
    ctl = trainer.start(paused=True)
    assert ctl.wait_for(lambda s: s is RunState.PAUSED, timeout=30)
    ctl.stop()
    assert ctl.join(timeout=10)
    assert ctl.state is RunState.STOPPED
    assert trainer.step_count == 0


class Boom(nn.Module):
    """Trains normally for `ok` steps, then its forward raises."""

    def __init__(self, ok: int) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)
        self.calls, self.ok = 0, ok

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.ok:
            raise RuntimeError("forward exploded on purpose")
        return self.fc(x.flatten(1))


def test_an_exception_on_the_thread_fails_the_run_visibly(make_trainer):
    trainer = make_trainer(model_obj=Boom(ok=2), steps=LONG, eval_every=0)
    ctl = trainer.start()
    assert ctl.wait_for(lambda s: s.is_over, timeout=30)
    assert ctl.state is RunState.FAILED
    assert isinstance(ctl.error, RuntimeError) and "exploded on purpose" in str(ctl.error)
    assert "Traceback" in ctl.error_traceback and "exploded on purpose" in ctl.error_traceback
    assert ctl.join(timeout=10)
    assert [r.step for r in step_records(trainer)] == [1, 2]  # the steps before the fault are kept
    assert ctl.step() is False
    with pytest.raises(RuntimeError, match="failed"):
        ctl.call(lambda t: 1).result(timeout=5)


def test_launch_builds_on_the_training_thread(controllers):
    ctl = Trainer.launch(RunConfig(dataset="digits", model="linear", steps=LONG, device="cpu"), paused=True)
    controllers.append(ctl)
    assert ctl.wait_for(lambda s: s is RunState.PAUSED or s.is_over, timeout=30)
    assert ctl.state is RunState.PAUSED, ctl.error_traceback
    assert isinstance(ctl.trainer, Trainer)
    future = ctl.call(lambda t: (threading.current_thread().name, t is ctl.trainer))
    assert isinstance(future, Future)
    assert future.result(timeout=10) == ("nktui-trainer", True)
    assert ctl.trainer.step_count == 0  # a call runs at the boundary without taking a step


@pytest.mark.parametrize(
    "config, error, says",
    [
        (dict(dataset="imagefolder:/nonexistent/nktui-test"), DataError, "/nonexistent/nktui-test"),
        (dict(model="nktui_no_such_module_xyz:build"), ModelError, "cannot import"),
        (dict(batch_size=5000), ConfigError, "5000"),
        (dict(lr=0), ConfigError, "lr must be greater than 0"),
    ],
)
def test_launch_with_a_bad_config_fails(config, error, says):
    ctl = Trainer.launch(RunConfig(**{"device": "cpu", **config}))
    assert ctl.wait_for(lambda s: s.is_over, timeout=60)
    assert ctl.state is RunState.FAILED
    assert isinstance(ctl.error, error) and says in str(ctl.error)
    assert ctl.error_traceback
    assert ctl.trainer is None
    assert ctl.join(timeout=10)


def test_call_runs_on_the_training_thread_while_running(make_trainer, controllers):
    trainer = make_trainer(steps=LONG)
    ctl = trainer.start()
    controllers.append(ctl)
    future = ctl.call(lambda t: (threading.current_thread().name, t.step_count))
    name, _ = future.result(timeout=10)
    assert name == "nktui-trainer"
    bad = ctl.call(lambda t: 1 / 0)
    assert isinstance(bad.exception(timeout=10), ZeroDivisionError)
    assert ctl.call(lambda t: 42).result(timeout=10) == 42  # the run goes on
    assert ctl.state is RunState.RUNNING


def test_finished_run_answers_calls_until_stopped_and_never_hangs_after(make_trainer):
    trainer = make_trainer(steps=5)
    ctl = trainer.start()
    assert ctl.wait_for(lambda s: s.value == "finished" or s.is_over, timeout=30)
    assert ctl.state is RunState.FINISHED
    assert trainer.step_count == 5
    assert trainer.last_eval is not None and trainer.last_eval.step == 5  # evaluated at the end
    assert ctl.step() is False
    result = ctl.call(lambda t: t.evaluate()).result(timeout=10)
    assert result.step == 5
    ctl.stop()
    assert ctl.join(timeout=10)
    late = ctl.call(lambda t: "ran")
    with pytest.raises(RuntimeError):
        late.result(timeout=5)  # an error at once, not a future that waits forever


def test_call_after_stop_fails_at_once(make_trainer):
    trainer = make_trainer(steps=LONG)
    ctl = trainer.start(paused=True)
    ctl.stop()
    assert ctl.join(timeout=10)
    assert ctl.state is RunState.STOPPED
    with pytest.raises(RuntimeError, match="stopped"):
        ctl.call(lambda t: 1).result(timeout=5)


def test_epochs_run_finishes_at_its_step_limit(make_trainer):
    trainer = make_trainer(epochs=1, log_every=10)
    ctl = trainer.start()
    assert ctl.wait_for(lambda s: s.value == "finished" or s.is_over, timeout=30)
    assert trainer.step_count == trainer.data.steps_per_epoch == 44
    ctl.stop()
    assert ctl.join(timeout=10)


# -- the controller alone, without a thread ------------------------------------------------------------------------
def test_controller_single_steps_and_blocking():
    ctl = Controller(paused=True)
    assert ctl.state is RunState.STARTING
    assert [ctl.step(), ctl.step()] == [True, True]
    for _ in range(2):
        cmd = ctl.next_command()
        assert cmd.take_step and cmd.single_step and cmd.observe and not cmd.stop

    got: list = []
    waiter = threading.Thread(target=lambda: got.append(ctl.next_command()), daemon=True)
    waiter.start()
    assert ctl.wait_for(lambda s: s is RunState.PAUSED, timeout=10)  # no tokens left: it blocks, reporting PAUSED
    assert not got
    ctl.stop()
    waiter.join(timeout=10)
    assert got and got[0].stop and not got[0].take_step


def test_controller_commands_while_running():
    ctl = Controller()
    assert ctl.step() is False
    cmd = ctl.next_command()
    assert cmd.take_step and not cmd.observe and cmd.lr is None

    ctl.set_lr("0.5")
    cmd = ctl.next_command()
    assert cmd.take_step and cmd.lr == 0.5
    assert ctl.next_command().lr is None  # taken once

    ctl.request_observation()
    assert ctl.next_command().observe
    assert not ctl.next_command().observe

    ctl.pause()
    ctl.set_lr(0.25)
    cmd = ctl.next_command()  # a command is waiting: returned without a step, the pause stays
    assert cmd.lr == 0.25 and not cmd.take_step
    ctl.resume()
    assert ctl.next_command().take_step
    assert ctl.state is RunState.RUNNING


def test_controller_finished_loop_does_not_step_or_report_paused():
    ctl = Controller()
    ctl.report(RunState.FINISHED)
    ctl.resume()
    future = ctl.call(lambda t: t)
    cmd = ctl.next_command(can_step=False)
    assert not cmd.take_step and len(cmd.calls) == 1 and cmd.calls[0][1] is future
    assert ctl.state is RunState.FINISHED


def test_wait_for_times_out_and_states():
    ctl = Controller()
    assert ctl.wait_for(lambda s: s is RunState.RUNNING, timeout=0.01) is False
    assert {s for s in RunState if s.is_over} == {RunState.FAILED, RunState.STOPPED}
    ctl.fail(ValueError("x"))
    assert ctl.state is RunState.FAILED and "ValueError: x" in ctl.error_traceback
    assert isinstance(ctl.call(lambda t: 1).exception(timeout=1), RuntimeError)
    assert ctl.join() is True  # no thread
