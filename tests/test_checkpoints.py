"""Checkpoint files: the full training state, written atomically, never a broken state, read back with
weights_only=True; the Checkpointer's periodic saves and the save after a fault."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nktui.protocol.errors import CheckpointError
from nktui.training import RunConfig, RunState, Trainer
from nktui.run.checkpoint import (
    LEGACY_FORMAT,
    atomic_save,
    checkpoint_state,
    load_checkpoint,
    require_resumable,
    save_checkpoint,
)
from nktui.run.checkpoint_keeper import Checkpointer
from nktui.engine.state import FORMAT


def test_last_pt_holds_the_full_state_and_loads_weights_only(make_trainer, tmp_path):
    trainer = make_trainer(optimizer="adam", lr=1e-3)
    for _ in range(7):
        trainer.step()
    save_checkpoint(trainer, tmp_path / "last.pt")
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["format"] == FORMAT and state["step"] == 7 and state["epoch"] == trainer.epoch
    assert set(state["rng"]) >= {"torch", "python", "numpy"}
    assert torch.equal(state["rng"]["torch"], torch.get_rng_state())
    assert state["dataset"] == "digits" and len(state["classes"]) == 10
    assert state["config"] == trainer.config.to_dict()
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(state["model"][name], tensor)
    adam = state["optimizer"]["state"][0]
    assert torch.equal(adam["exp_avg"], trainer.optimizer.state_dict()["state"][0]["exp_avg"])
    assert load_checkpoint(tmp_path)["step"] == 7  # a run directory means its last.pt


def test_a_crash_mid_write_leaves_the_old_checkpoint_loadable(make_trainer, tmp_path, monkeypatch):
    trainer = make_trainer()
    trainer.step()
    path = save_checkpoint(trainer, tmp_path / "last.pt")
    trainer.step()
    real_save = torch.save

    def half_then_crash(obj, f):  # what a kill or a full disk mid-write leaves: half a file
        real_save(obj, f)
        f.truncate(f.tell() // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(OSError):
        save_checkpoint(trainer, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_weights_holding_nan_are_never_written(make_trainer, tmp_path):
    trainer = make_trainer()
    trainer.step()
    path = save_checkpoint(trainer, tmp_path / "last.pt")
    with torch.no_grad():
        trainer.model.fc.bias[3] = math.nan
    trainer.step_count = 2
    with pytest.raises(CheckpointError, match=r"step 2 hold nan/inf \(first: fc\.bias\)"):
        save_checkpoint(trainer, path)
    assert load_checkpoint(path)["step"] == 1


def test_truncated_foreign_and_old_files_are_refused_with_a_reason(make_trainer, tmp_path):
    trainer = make_trainer()
    path = save_checkpoint(trainer, tmp_path / "last.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated, corrupt or not an nktui checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="is not an nktui checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    state = checkpoint_state(trainer)
    del state["rng"]
    atomic_save(state, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="lacks rng"):
        load_checkpoint(tmp_path / "partial.pt")
    old = {"format": LEGACY_FORMAT, "version": 1, **{k: checkpoint_state(trainer)[k] for k in
                                                      ("model", "optimizer", "config", "step", "epoch")}}
    atomic_save(old, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")  # its weights still load ...
    with pytest.raises(CheckpointError, match="cannot be resumed exactly"):  # ... but it cannot be resumed
        require_resumable(loaded, tmp_path / "old.pt")


def test_checkpoint_every_n_steps_while_training(tmp_path, controllers):
    checkpointer = Checkpointer(tmp_path / "last.pt", every=25)
    controller = Trainer.launch(RunConfig(device="cpu", steps=110, batch_size=32), checkpointer=checkpointer)
    controllers.append(controller)
    assert controller.wait_for(lambda s: s is RunState.FINISHED, 60)
    assert checkpointer.saved_step == 100 and checkpointer.saves == 4 and checkpointer.error is None
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 100


class FailsAtStep(nn.Module):
    """A linear model whose forward pass raises at one training step (a bug in the user's model)."""

    def __init__(self, bad_step: int) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)
        self.calls, self.bad_step = 0, bad_step

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.bad_step:
                raise RuntimeError(f"boom at step {self.bad_step}")
        return self.fc(x.flatten(1))


def test_a_fault_writes_the_newest_good_state_and_never_an_older_one(tmp_path, controllers):
    config = RunConfig(device="cpu", steps=10**6, rewind_every=16, eval_every=0)
    checkpointer = Checkpointer(tmp_path / "last.pt")
    torch.manual_seed(0)
    controller = Trainer.launch(config, model=FailsAtStep(50), checkpointer=checkpointer)
    controllers.append(controller)
    assert controller.wait_for(lambda s: s is RunState.FAILED, 60)
    assert "boom at step 50" in controller.error_traceback
    assert controller.trainer.step_count == 49
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 49  # the state just before the failing step 50 (kept state 48, one step replayed)
    trainer = Trainer(config, model=FailsAtStep(10**9))
    from nktui.engine.state import resume_from

    resume_from(trainer, state)  # loadable into a fresh trainer of the same model
    assert trainer.step_count == 49
    torch.manual_seed(0)
    fresh = Trainer(config, model=FailsAtStep(10**9))
    for _ in range(49):
        fresh.take_step()
    for name, value in fresh.model.state_dict().items():  # the very weights of 49 good steps
        assert torch.equal(state["model"][name], value), name

    newer = Checkpointer(tmp_path / "newer.pt")
    newer.saved_step = 49  # a periodic save later than any kept state: the fault must not replace it
    assert newer.after_fault(controller.trainer) is None and not (tmp_path / "newer.pt").exists()
