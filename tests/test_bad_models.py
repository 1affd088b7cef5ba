"""Models that cannot be trained are one line before the first step: too big for memory (estimated before anything
is allocated, and an allocation that fails all the same), and the user's own model checked with one forward and
one backward pass, its errors pointing at the user's code; the check leaves the run as it would have been."""

from __future__ import annotations

import pytest
import torch

from nktui import cli
from nktui.protocol.errors import ModelError
from nktui.training import RunConfig, Trainer
from nktui.engine import models, sizing
from nktui.run.checkpoint import save_checkpoint
from nktui.run.rundir import create_run_dir


def test_the_estimate_counts_what_the_built_in_models_hold():
    for config, shape in ((RunConfig(model="linear"), ((1, 8, 8), 10)),
                          (RunConfig(model="mlp", hidden=(32, 16)), ((1, 28, 28), 10)),
                          (RunConfig(model="cnn"), ((3, 32, 32), 7))):
        built = models.build_model(config, *shape)
        assert sizing.parameter_count(config, *shape) == sum(p.numel() for p in built.parameters())
    assert sizing.parameter_count(RunConfig(model="pkg.mod:build"), (1, 8, 8), 10) is None
    assert sizing.known_shape(RunConfig(dataset="imagefolder:x", image_size=50)) == ((3, 50, 50), 2)


def test_a_model_too_big_is_refused_before_it_is_allocated(monkeypatch):
    monkeypatch.setattr(sizing, "memory_free", lambda: 8 * 10**9)
    monkeypatch.setattr(models, "build_model", lambda *a: pytest.fail("allocated"))
    config = RunConfig(model="mlp", hidden=(100_000_000,), device="cpu")
    with pytest.raises(ModelError) as info:
        Trainer(config)
    assert str(info.value).startswith("the model needs about 60.0 GB of memory (7,500,000,010 parameters")
    assert "this machine has 8.0 GB free: try smaller --hidden sizes" in str(info.value)
    with pytest.raises(ModelError, match="a smaller --image-size"):
        sizing.check_model_fits(RunConfig(dataset="imagefolder:x", image_size=100_000))


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. "
                                   "DefaultCPUAllocator: not enough memory: you tried to allocate 25600000000 bytes.")])
def test_an_allocation_that_fails_anyway_is_the_same_line(error, monkeypatch):
    def build(*args):
        raise error

    monkeypatch.setattr(models, "build_model", build)
    with pytest.raises(ModelError, match="^the model needs about .* of memory"):
        Trainer(RunConfig(device="cpu"))
    monkeypatch.setattr(models, "build_model", lambda *a: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # anything else stays what it is
        Trainer(RunConfig(device="cpu"))


CHECKED = """import torch
from torch import nn
def build(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Dropout(0.5), nn.ReLU(),
                         nn.Linear(32, num_classes))
"""


def test_the_check_leaves_the_run_as_it_would_have_been(tmp_path, monkeypatch):
    """Dropout, batch-norm statistics and the RNG are what they would be without the check: same weights, same
    first steps, bit for bit."""
    (tmp_path / "m.py").write_text(CHECKED)
    config = RunConfig(device="cpu", model=f"{tmp_path / 'm.py'}:build", steps=10)
    calls = []
    original = models.check_model
    monkeypatch.setattr(models, "check_model", lambda *a: (calls.append(1), original(*a)))
    checked = Trainer(config)  # (one after the other: dropout draws from the one global generator)
    weights = {k: v.clone() for k, v in checked.model.state_dict().items()}
    assert all(p.grad is None for p in checked.model.parameters()) and checked.model.training
    losses = [checked.step().loss for _ in range(3)]
    monkeypatch.setattr(models, "check_model", lambda *a: None)
    unchecked = Trainer(config)
    assert calls == [1]
    for name, tensor in unchecked.model.state_dict().items():
        assert torch.equal(weights[name], tensor), name
    assert losses == [unchecked.step().loss for _ in range(3)]


def test_a_model_that_breaks_on_resume_logs_its_traceback_in_the_run(tmp_path, capsys):
    (tmp_path / "m.py").write_text(CHECKED)
    config = RunConfig(device="cpu", model=f"{tmp_path / 'm.py'}:build", steps=20)
    trainer = Trainer(config)
    trainer.step()
    run = create_run_dir(tmp_path / "run", config)
    save_checkpoint(trainer, run / "last.pt")
    (tmp_path / "m.py").write_text(CHECKED.replace("return nn.Sequential(", "return helper(\n") +
                                   "def helper(*layers):\n    raise ValueError('helper broke')\n")
    code = cli.main(["train", "--resume", str(run), "--steps", "30"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "raised ValueError: helper broke (at m.py:8, in helper)" in err
    assert f"(traceback in {run / 'nktui.log'})" in err
    log = (run / "nktui.log").read_text()
    assert "Traceback" in log and "helper broke" in log and 'm.py", line 8' in log
