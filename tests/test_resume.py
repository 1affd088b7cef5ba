"""`--resume`: training to step 200 in one go equals training to 100, stopping and resuming to 200, bit for bit,
through the real command line; what a resumed run may change, where it writes, and resuming in the app."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from nktui import cli
from nktui.cli.resume import plan_resume
from nktui.protocol.errors import ConfigError
from nktui.training import RunConfig, RunState, Trainer
from nktui.run.checkpoint import load_checkpoint, save_checkpoint
from nktui.run.rundir import create_run_dir, read_metrics

ARGS = ["--model", "mlp", "--hidden", "16", "--momentum", "0.9", "--batch-size", "32", "--device", "cpu"]


def train(*args: str, capsys) -> tuple[int, str]:
    code = cli.main(["train", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out


def test_resume_is_bitwise_through_the_cli(tmp_path, capsys):
    assert train(*ARGS, "--steps", "200", "--run-dir", str(tmp_path / "whole"), capsys=capsys)[0] == 0
    assert train(*ARGS, "--steps", "100", "--run-dir", str(tmp_path / "split"), capsys=capsys)[0] == 0
    assert load_checkpoint(tmp_path / "split" / "last.pt")["step"] == 100
    code, out = train("--resume", str(tmp_path / "split" / "last.pt"), "--steps", "200", capsys=capsys)
    assert code == 0
    assert out.splitlines()[-1] == f"train further: nktui train --resume {tmp_path / 'split' / 'last.pt'} --steps 400"

    whole = load_checkpoint(tmp_path / "whole" / "last.pt")
    split = load_checkpoint(tmp_path / "split" / "last.pt")
    assert whole["step"] == split["step"] == 200
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, split["model"][name]), name
    momenta = whole["optimizer"]["state"]
    assert momenta and all(
        torch.equal(momenta[i]["momentum_buffer"], split["optimizer"]["state"][i]["momentum_buffer"]) for i in momenta
    )
    assert torch.equal(whole["rng"]["torch"], split["rng"]["torch"])

    # The resumed run went on in the checkpoint's own folder: a resume row, then the new rows, no step twice.
    rows = read_metrics(tmp_path / "split" / "metrics.jsonl")
    kinds = [(r["type"], r["step"]) for r in rows if r["type"] in ("step", "resume")]
    assert kinds == [("step", 50), ("step", 100), ("resume", 100), ("step", 150), ("step", 200)]
    assert RunConfig.load(tmp_path / "split" / "config.toml").steps == 200


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """runs/a/last.pt of an SGD run at step 5 (batch 32), with its config.toml beside it."""
    config = RunConfig(device="cpu", batch_size=32, steps=20)
    trainer = Trainer(config)
    for _ in range(5):
        trainer.step()
    trainer.set_lr(0.03)  # the LR in use differs from the config's: a resume goes on with it
    run_dir = create_run_dir(tmp_path / "runs" / "a", config)
    return save_checkpoint(trainer, run_dir / "last.pt")


def test_a_resume_goes_on_in_its_folder_with_its_config_and_lr(checkpoint):
    config, plan = plan_resume(checkpoint, {"steps": 50})
    assert (plan.run_dir, plan.in_place, plan.step) == (checkpoint.parent, True, 5)
    assert config == RunConfig(device="cpu", batch_size=32, steps=50, lr=0.03)
    config, plan = plan_resume(checkpoint.parent, {"steps": 50, "lr": 0.2, "device": "cpu", "batch_size": 32})
    assert config.lr == 0.2 and plan.state["optimizer"]["param_groups"][0]["lr"] == 0.2
    trainer = Trainer(config, resume=plan.state)
    assert trainer.step_count == 5 and trainer.lr == 0.2


def test_a_resume_refuses_what_would_change_the_model_or_data(checkpoint, tmp_path):
    with pytest.raises(ConfigError, match=r"--batch-size 64 differs from its 32.*--config .*config\.toml"):
        plan_resume(checkpoint, {"batch_size": 64})
    with pytest.raises(ConfigError, match=r"--model mlp differs from its linear"):
        plan_resume(checkpoint, {"model": "mlp"})
    with pytest.raises(ConfigError, match=r"at step 5 and this run stops at step 5: give --steps above 5"):
        plan_resume(checkpoint, {"steps": 5})
    with pytest.raises(ConfigError, match="--resume or --config, not both"):
        cli.build_config(["train", "--resume", str(checkpoint), "--config", str(checkpoint.parent / "config.toml")])
    with pytest.raises(ConfigError, match="already holds a run"):  # --run-dir must be a new folder
        plan_resume(checkpoint, {"run_dir": str(checkpoint.parent)})
    _, plan = plan_resume(checkpoint, {"run_dir": str(tmp_path / "elsewhere")})
    assert plan.run_dir == tmp_path / "elsewhere" and not plan.in_place


def test_a_checkpoint_outside_a_run_directory_gets_a_fresh_one(checkpoint, tmp_path, monkeypatch):
    loose = tmp_path / "copy.pt"
    loose.write_bytes(checkpoint.read_bytes())
    monkeypatch.chdir(tmp_path)
    _, plan = plan_resume(loose, {})
    assert plan.run_dir.parent == Path("runs") and not plan.in_place


async def test_the_app_resumes_paused_at_the_checkpoint_and_saves_on_quit(checkpoint):
    from nktui.ui.app import NktuiApp

    config, plan = plan_resume(checkpoint, {})
    app = NktuiApp(config, paused=True, run_dir=plan.run_dir, resume=plan)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(600):
            if app.session.state is RunState.PAUSED:
                break
            await pilot.pause(0.05)
        app.tick()
        assert app.session.run.controller.trainer.step_count == 5 and app.resume is None
        assert re.search(r"\bstep 5/20\b", app.status_bar.text)
        await pilot.press("n")
        for _ in range(200):
            if app.session.run.controller.trainer.step_count == 6:
                break
            await pilot.pause(0.05)
        await pilot.press("q")
    assert load_checkpoint(checkpoint)["step"] == 6
    assert app.exit_line.endswith(f"holds step 6. Resume: nktui --resume {checkpoint}")
    rows = [json.loads(line) for line in (checkpoint.parent / "metrics.jsonl").read_text().splitlines()]
    assert rows[0] == {"type": "resume", "step": 5}
