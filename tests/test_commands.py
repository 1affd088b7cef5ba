"""Named commands (`nktui.protocol.commands`): each training command reaches its one engine function; the
controller's own take effect at once; jobs report progress and cancel through the controller; RunInfo, the step
counter and the rewind reach are published by the training thread."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from nktui.protocol import commands as c
from nktui.protocol.run_info import RunInfo
from nktui.training import RunState
from nktui.engine import commands as engine

EXAMPLES = {
    c.UpdateLive: c.UpdateLive.of(log_every=5),
    c.Evaluate: c.Evaluate(detailed=True),
    c.TraceStep: c.TraceStep(2),
    c.LrWhatIf: c.LrWhatIf((0.1, 0.2)),
    c.RewindTo: c.RewindTo(3),
    c.ComputeSurface: c.ComputeSurface("request"),
    c.SnapshotLayer: c.SnapshotLayer("fc.weight"),
    c.SaveCheckpoint: c.SaveCheckpoint(),
    c.Finish: c.Finish(),
    c.SetHistogramBins: c.SetHistogramBins(64),
}


def test_every_training_command_has_one_handler():
    assert set(engine.HANDLERS) == set(c.TRAINING_COMMANDS) == set(EXAMPLES)
    assert not set(c.TRAINING_COMMANDS) & set(c.CONTROL_COMMANDS)


@pytest.mark.parametrize("kind", c.TRAINING_COMMANDS, ids=lambda k: k.__name__)
def test_each_command_dispatches_to_its_engine_function(kind, monkeypatch):
    seen = []
    monkeypatch.setitem(engine.HANDLERS, kind, lambda trainer, command: seen.append((trainer, command)) or "done")
    command = EXAMPLES[kind]
    assert engine.execute("the trainer", command) == "done"
    assert seen == [("the trainer", command)]


def test_anything_else_is_refused():
    with pytest.raises(TypeError):
        engine.execute(None, c.Pause())
    from nktui.training import Controller

    with pytest.raises(TypeError):
        Controller().submit(lambda trainer: 1)


def test_commands_are_frozen_and_the_protocol_imports_no_torch_nor_textual():
    with pytest.raises(AttributeError):
        c.RewindTo(1).step = 2  # type: ignore[misc]
    assert c.UpdateLive.of({"steps": 9}, watch=False).as_dict() == {"steps": 9, "watch": False}
    assert c.ComputeSurface("a").job != c.ComputeSurface("a").job
    code = ("import sys, nktui.protocol.commands, nktui.protocol.run_info, nktui.engine.control; "
            "print(sorted(m for m in ('torch', 'textual') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_engine_functions_run_on_a_trainer(make_trainer, controllers):
    trainer = make_trainer()
    for _ in range(3):
        trainer.step()
    ctl = trainer.start(paused=True)
    controllers.append(ctl)
    assert ctl.submit(c.Evaluate()).result(timeout=10).step == 3
    assert ctl.submit(c.Evaluate(detailed=True)).result(timeout=10).result.step == 3
    snapshot = ctl.submit(c.SnapshotLayer(trainer.instruments.names[0])).result(timeout=10)
    assert snapshot.step == 3 and snapshot.name == trainer.instruments.names[0]
    assert len(ctl.submit(c.LrWhatIf((0.05, 0.1))).result(timeout=10).lrs) == 2
    assert ctl.submit(c.TraceStep()).result(timeout=10).step == 4
    assert ctl.step_count == 4
    assert ctl.submit(c.RewindTo(2)).result(timeout=10).step == 2
    assert ctl.step_count == 2  # published before the Future was done
    ctl.submit(c.UpdateLive.of(steps=500)).result(timeout=10)
    assert ctl.info.step_limit == 500 == trainer.step_limit
    with pytest.raises(RuntimeError, match="no checkpoint"):
        ctl.submit(c.SaveCheckpoint()).result(timeout=10)


def test_control_commands_take_effect_at_once(make_trainer, controllers, wait_until):
    ctl = make_trainer().start(paused=True)
    controllers.append(ctl)
    assert wait_until(lambda: ctl.state is RunState.PAUSED)
    assert ctl.submit(c.SetLr(0.5)).result(timeout=0) == 0.5
    assert ctl.submit(c.Step()).result(timeout=0) is True
    assert wait_until(lambda: ctl.step_count == 1)
    assert ctl.submit(c.Cancel(12345)).result(timeout=0) is False  # no such job
    ctl.submit(c.Resume())
    assert wait_until(lambda: ctl.step_count > 3)
    ctl.submit(c.Pause())
    assert wait_until(lambda: ctl.state is RunState.PAUSED)
    ctl.submit(c.Stop())
    assert ctl.join(10) and ctl.state is RunState.STOPPED


def test_run_info_is_published_when_built_and_when_the_rewinds_change(make_trainer, controllers, wait_until):
    from nktui.training import RunConfig, launch

    ctl = launch(RunConfig(dataset="digits", model="mlp", hidden=(16,), device="cpu", steps=40), paused=True)
    controllers.append(ctl)
    assert wait_until(lambda: ctl.state is RunState.PAUSED)
    info = ctl.info
    assert isinstance(info, RunInfo) and ctl.records is ctl.trainer.records
    trainer = ctl.trainer
    assert info.layers == trainer.instruments.names and info.shapes == trainer.instruments.shapes
    assert info.weight_shapes == dict(zip(trainer.trajectory.names, trainer.trajectory.shapes))
    assert (info.step_limit, info.device, info.device_type) == (40, "cpu", "cpu")
    assert info.classes == trainer.data.classes and info.data.val_size == trainer.data.val_size
    assert info.rewinds.oldest_step is None and info.rewinds.states == 0
    for _ in range(3):
        assert ctl.step()
    assert wait_until(lambda: ctl.step_count == 3 and ctl.state is RunState.PAUSED)
    assert wait_until(lambda: ctl.info.rewinds.states == len(trainer.rewinds) > 0)
    assert ctl.info.rewinds.oldest_step == trainer.rewinds.oldest_step
    assert ctl.info.layers is info.layers  # the rest is the same value


def test_a_surface_reports_progress_and_cancels_through_the_controller(make_trainer, controllers, wait_until):
    from nktui.protocol.results import SurfaceCancelled, SurfaceRequest

    trainer = make_trainer()
    for _ in range(3):
        trainer.step()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    ctl = trainer.start(paused=True)
    controllers.append(ctl)
    job = c.ComputeSurface(SurfaceRequest(resolution=301, budget=None))  # ~90,000 points
    future = ctl.submit(job)
    assert wait_until(lambda: (p := ctl.progress(job.job)) is not None and p.done > 0, timeout=30)
    progress = ctl.progress(job.job)
    assert progress.total > progress.done and progress.phase.startswith("loss surface")
    assert ctl.submit(c.Cancel(job.job)).result(timeout=0) is True
    with pytest.raises(SurfaceCancelled):
        future.result(timeout=10)
    assert ctl.progress(job.job) is None and not ctl.is_cancelled(job.job)  # forgotten once done
    assert all(a.equal(b) for a, b in zip(before, trainer.model.parameters()))
    assert ctl.step() and wait_until(lambda: trainer.step_count == 4)


def test_a_job_cancelled_before_it_starts_never_runs(make_trainer, controllers, wait_until):
    from nktui.protocol.results import SurfaceRequest

    trainer = make_trainer()
    trainer.step()
    ctl = trainer.start(paused=True)
    controllers.append(ctl)
    assert wait_until(lambda: ctl.state is RunState.PAUSED)
    gate = ctl.call(lambda t: time.sleep(0.5))  # the training thread is busy meanwhile
    job = c.ComputeSurface(SurfaceRequest(resolution=9))
    future = ctl.submit(job)
    assert ctl.submit(c.Cancel(job.job)).result(timeout=0) is True
    gate.result(timeout=10)
    assert future.cancelled()


def test_finish_saves_then_evaluates_and_reports_a_save_it_could_not_make(make_trainer, controllers, tmp_path):
    from nktui.run.checkpoint import load_checkpoint
    from nktui.run.checkpoint_keeper import Checkpointer

    trainer = make_trainer()
    trainer.checkpointer = Checkpointer(tmp_path / "last.pt")
    for _ in range(3):
        trainer.step()
    ctl = trainer.start(paused=True)
    controllers.append(ctl)
    finished = ctl.submit(c.Finish()).result(timeout=30)
    assert (finished.step, finished.val.step, finished.train.step) == (3, 3, 3)
    assert finished.save_error is None and not finished.unsaved
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 3

    def full_disk(_trainer):
        raise OSError(28, "No space left on device")

    trainer.checkpointer.save = full_disk
    finished = ctl.submit(c.Finish()).result(timeout=30)
    assert finished.unsaved and "No space left on device" in finished.save_error and "last.pt" in finished.save_error
    assert finished.trace is None  # (an OSError is the user's disk, not a bug: no traceback for the log)
