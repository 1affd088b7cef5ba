"""Bad input never costs a run or a terminal: on the command line one line and exit code 2, in the app a notice or
the error line with the app still up; a fault inside the trainer, a nan, a terminal of 40x10."""

from __future__ import annotations

import pickle
import struct

import pytest
import torch
from pilot_support import START_DEADLINE, record_notifications, until
from textual.widgets import Input

from nktui import cli
from nktui.training import RunConfig, RunState, Trainer
from nktui.run.checkpoint import load_checkpoint, save_checkpoint
from nktui.run.rundir import create_run_dir, read_metrics
from nktui.ui.app import NktuiApp
from nktui.ui.screens.confirm import ConfirmDialog
from nktui.ui.widgets.too_small import TooSmall

MLP_FILE = """from torch import nn
def build(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, {hidden}), nn.Tanh(), nn.Linear({hidden}, num_classes))
"""
RAISES_FILE = "def build(input_shape, num_classes):\n    raise RuntimeError('factory boom')\n"
FAILS_AT_50 = """import torch
from torch import nn
class M(nn.Module):
    def __init__(self):
        super().__init__(); self.fc = nn.Linear(64, 10); self.calls = 0
    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == 50: raise RuntimeError('boom at step 50')
        return self.fc(x.flatten(1))
def build(input_shape, num_classes):
    return M()
"""
NAN_AT_10 = FAILS_AT_50.replace("raise RuntimeError('boom at step 50')", "return self.fc(x.flatten(1)) * float('nan')")
NAN_AT_10 = NAN_AT_10.replace("self.calls == 50", "self.calls == 10")


@pytest.fixture
def files(tmp_path):
    """Broken inputs on disk: folders, a file, model files, checkpoints."""
    (tmp_path / "empty").mkdir()
    for name in ("cat", "dog"):
        (tmp_path / "no_images" / name).mkdir(parents=True)
    (tmp_path / "no_images" / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "file.txt").write_text("a file")
    (tmp_path / "raises.py").write_text(RAISES_FILE)
    (tmp_path / "mlp.py").write_text(MLP_FILE.format(hidden=16))
    config = RunConfig(device="cpu", model=f"{tmp_path / 'mlp.py'}:build", steps=20)
    trainer = Trainer(config)
    trainer.step()
    run = create_run_dir(tmp_path / "run", config)
    checkpoint = save_checkpoint(trainer, run / "last.pt")
    data = checkpoint.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    for name, edit in EDITED_CHECKPOINTS.items():
        state = load_checkpoint(checkpoint)
        edit(state)
        torch.save(state, tmp_path / f"{name}.pt")
    with open(tmp_path / "protocol4.pt", "wb") as f:
        pickle.dump({"format": "nktui-state", "step": 1}, f, protocol=4)
    for name, source in USER_MODELS.items():
        (tmp_path / f"{name}.py").write_text(source)
    raw = tmp_path / "mnist0" / "MNIST" / "raw"  # MNIST's files with headers that say 0 images
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">4B3I", 0, 0, 8, 3, 0, 28, 28))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">4BI", 0, 0, 8, 1, 0))
    (tmp_path / "config.toml").write_text("lr = 0.1\n")
    return tmp_path


EDITED_CHECKPOINTS = {  # name: how a good checkpoint was damaged
    "negative_step": lambda s: s.update(step=-3),
    "no_rng": lambda s: s.update(rng={}),
    "wrong_shape": lambda s: s["model"].update({"1.weight": torch.zeros(3, 64)}),
}
MODEL_HEAD = "import sys\nimport torch\nfrom torch import nn\n"
USER_MODELS = {  # name: a model file that gets its output, or its factory, wrong
    "three_classes": MODEL_HEAD + "def build(input_shape, num_classes):\n"
                     "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))\n",
    "integers": MODEL_HEAD + "class M(nn.Linear):\n    def forward(self, x):\n"
                "        return super().forward(x.flatten(1)).long()\n"
                "def build(input_shape, num_classes):\n    return M(64, num_classes)\n",
    "a_tuple": MODEL_HEAD + "class M(nn.Linear):\n    def forward(self, x):\n"
               "        return super().forward(x.flatten(1)), 'aux'\n"
               "def build(input_shape, num_classes):\n    return M(64, num_classes)\n",
    "exits": MODEL_HEAD + "def build(input_shape, num_classes):\n    sys.exit(3)\n",
    "bad_forward": MODEL_HEAD + "class M(nn.Linear):\n    def forward(self, x):\n"
                   "        return x @ self.weight\n"
                   "def build(input_shape, num_classes):\n    return M(64, num_classes)\n",
}


CASES = {  # name: (arguments, what the one line says)
    "lr empty": (["--lr="], "lr is empty"),
    "batch bigger than the data": (["--batch-size", "5000"], "larger than the training set (1438 samples)"),
    "empty data folder": (["--dataset", "imagefolder:{tmp}/empty"], "has no subfolders"),
    "no images": (["--dataset", "imagefolder:{tmp}/no_images"], "has no images"),
    "a file as a folder": (["--dataset", "imagefolder:{tmp}/file.txt"], "is a file, not a folder"),
    "empty torchvision folder": (["--dataset", "fashion-mnist", "--data-dir", "{tmp}/empty", "--no-download"],
                                 "FashionMNIST/raw/"),
    "factory raises": (["--model", "{tmp}/raises.py:build"], "raised RuntimeError: factory boom"),
    "truncated checkpoint": (["--resume", "{tmp}/cut.pt"], "truncated, corrupt or not an nktui checkpoint"),
    "missing checkpoint": (["--resume", "{tmp}/nothing.pt"], "does not exist"),
    "resume with another model": (["--resume", "{tmp}/run", "--model", "linear"], "--model linear differs from"),
    "seed too big": (["--seed", str(2**63)], "seed must be a whole number from 0 to 2**63 - 1"),
    "seed negative": (["--seed", "-1"], "seed must be a whole number from 0 to 2**63 - 1"),
    "seed too big in TOML": (["--config", "{tmp}/seed.toml"], "not 18446744073709551616"),
    "model too big": (["--model", "mlp", "--hidden", "10000000000"], "the model needs about"),
    "images too big": (["--dataset", "imagefolder:{tmp}/no_images", "--image-size", "100000"], "the model needs about"),
    "run-dir name too long": (["--run-dir", "{tmp}/" + "r" * 256], "a name of 256 bytes"),
    "run-dir empty": (["--run-dir", ""], "--run-dir is empty"),
    "config empty": (["--config", ""], "--config is empty"),
    "config /dev/zero": (["--config", "/dev/zero"], "is not a regular file"),
    "hidden empty": (["--hidden", ""], "hidden is empty"),
    "hidden with a hole": (["--hidden", "128,,64"], "an empty layer size in '128,,64'"),
    "ratio band upside down": (["--watch-ratio-low", "2", "--watch-ratio-high", "1"], "must be below watch_ratio_high"),
    "dead relu not a fraction": (["--watch-dead-relu", "5"], "watch_dead_relu must be a number in [0, 1]"),
    "resume at a negative step": (["--resume", "{tmp}/negative_step.pt"], "its step is -3"),
    "resume without rng": (["--resume", "{tmp}/no_rng.pt"], "lacks the random number generators' state"),
    "resume wrong-shape weights": (["--resume", "{tmp}/wrong_shape.pt"], "1.weight is 16x64, but it holds 3x64"),
    "resume a protocol-4 pickle": (["--resume", "{tmp}/protocol4.pt"], "not an nktui checkpoint"),
    "resume empty": (["--resume", ""], "--resume is empty"),
    "zero-image mnist": (["--dataset", "mnist", "--data-dir", "{tmp}/mnist0", "--no-download"], "has no images"),
    "model returns 3 classes": (["--model", "{tmp}/three_classes.py:build"],
                                "returns (N, 3); nktui needs (N, 10) logits"),
    "model returns integers": (["--model", "{tmp}/integers.py:build"], "returns int64 values"),
    "model returns a tuple": (["--model", "{tmp}/a_tuple.py:build"], "returns a tuple, not a tensor"),
    "factory calls sys.exit": (["--model", "{tmp}/exits.py:build"], "called sys.exit(3)"),
    "forward fails": (["--model", "{tmp}/bad_forward.py:build"], "(at bad_forward.py:6, in forward)"),
}


APP_CHECKS_ITSELF = ("batch bigger than the data", "empty data folder", "no images", "a file as a folder",
                     "empty torchvision folder", "factory raises", "zero-image mnist", "model returns 3 classes",
                     "model returns integers", "model returns a tuple", "factory calls sys.exit",
                     "forward fails")  # once its trainer is built: the app tests below


@pytest.mark.parametrize(
    "case, command",
    [(case, "train") for case in CASES] + [(case, "app") for case in CASES if case not in APP_CHECKS_ITSELF],
)
def test_bad_input_on_the_command_line_is_one_line_and_exit_2(case, command, files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    monkeypatch.setattr("nktui.ui.app.NktuiApp.run", lambda self: pytest.fail("the app started"), raising=True)
    args, expected = CASES[case]
    args = [a.replace("{tmp}", str(files)) for a in args]
    (files / "seed.toml").write_text(f"seed = {2**64}\n")
    before = sorted(p.name for p in (files / "run").iterdir())
    code = cli.main((["train"] if command == "train" else []) + args + ["--steps", "30", "--device", "cpu"])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("nktui: error: ") and expected in lines[0], lines[0]
    assert not (files / "runs").exists()  # nothing written ...
    assert sorted(p.name for p in (files / "run").iterdir()) == before  # ... and nothing lost


def test_a_checkpoint_of_another_model_says_what_differs(files, capsys):
    (files / "mlp.py").write_text(MLP_FILE.format(hidden=32))  # the model file changed since the checkpoint
    code = cli.main(["train", "--resume", str(files / "run" / "last.pt"), "--steps", "30"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "another model" in err and "1.bias is 16 there and 32 here" in err
    assert load_checkpoint(files / "run" / "last.pt")["step"] == 1  # untouched


def test_a_nan_ends_nktui_train_with_code_3_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    (tmp_path / "nan.py").write_text(NAN_AT_10)
    run = tmp_path / "run"
    code = cli.main(["train", "--model", f"{tmp_path / 'nan.py'}:build", "--device", "cpu", "--steps", "1000",
                     "--checkpoint-every", "5", "--log-every", "1", "--run-dir", str(run)])
    out, err = capsys.readouterr()
    assert code == 3, err
    assert "watchpoint nonfinite" in err and "fc.weight" in err and "Traceback" not in err
    state = load_checkpoint(run / "last.pt")  # just before the step that went nan
    assert state["step"] == 9 and all(torch.isfinite(t).all() for t in state["model"].values())
    assert "did not reproduce" in err  # (this model counts its calls in a Python attribute, which no rewind restores)
    assert out.splitlines()[-1] == f"reproduce: nktui --resume {run / 'last.pt'} --paused, then t traces step 10"
    assert [r["watchpoint"] for r in read_metrics(run / "metrics.jsonl") if r["type"] == "watch"] == ["nonfinite"]


# -- the app -----------------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def stop_sessions(monkeypatch):
    """Every app made here has its trainer stopped at the end, also when the test failed half-way."""
    made: list[NktuiApp] = []
    original = NktuiApp.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(NktuiApp, "__init__", init)
    yield
    for app in made:
        if app.session is not None:
            app.session.stop(5.0)


async def test_bad_data_in_the_app_is_shown_and_the_app_stays_up(files):
    app = NktuiApp(RunConfig(device="cpu", steps=10**6, dataset=f"imagefolder:{files / 'no_images'}"), paused=True)
    seen = record_notifications(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.session.state is RunState.FAILED, "the failure", START_DEADLINE)
        await until(pilot, lambda: "has no images" in str(app.error_line.render()), "the error line")  # (the tick)
        assert app.error_line.display
        assert any("has no images" in m and s == "error" for m, s in seen)
        for changes, expected in (
            ({"dataset": "digits"}, None),
            ({"batch_size": "5000"}, "larger than the training set"),
            ({"batch_size": "32", "model": f"{files / 'raises.py'}:build"}, "factory boom"),
        ):
            for field, value in changes.items():
                app.query_one(f"#f-{field}", Input).value = value
            before = app.session
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: app.session is not before, "the restart")  # (the old run failed too)
            if expected is None:
                continue
            await until(pilot, lambda: app.session.state is RunState.FAILED, f"{changes} to fail", START_DEADLINE)
            await until(pilot, lambda: expected in str(app.error_line.render()), "the error line")
            assert app.is_running
        app.query_one("#f-model", Input).value = "linear"
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: app.session.state is RunState.PAUSED, "the fixed config to start", START_DEADLINE)


async def test_a_trainer_fault_keeps_the_app_up_with_the_traceback_logged(tmp_path):
    (tmp_path / "fails.py").write_text(FAILS_AT_50)
    config = RunConfig(device="cpu", steps=10**6, model=f"{tmp_path / 'fails.py'}:build", rewind_every=16)
    app = NktuiApp(config, paused=False, run_dir=tmp_path / "run")
    seen = record_notifications(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.session.state is RunState.FAILED, "the fault", START_DEADLINE)
        await until(pilot, lambda: app.error_line.display, "the error line")
        shown = str(app.error_line.render())
        assert "boom at step 50" in shown and "nktui.log" in shown and "holds step" in shown
        assert app.is_running and app.check_action("step", ()) is None
        await pilot.press("s")  # a failed run saves the state from just before the failing step
        await until(pilot, lambda: any("holds step 49" in m for m, _ in seen), "the save")
        await pilot.press("q")
    assert "RuntimeError: boom at step 50" in (tmp_path / "run" / "nktui.log").read_text()
    state = load_checkpoint(tmp_path / "run" / "last.pt")  # from just before the fault, loadable
    assert state["step"] == 49


async def test_a_nan_pauses_the_app_names_the_layer_and_keeps_last_pt_finite(tmp_path):
    (tmp_path / "nan.py").write_text(NAN_AT_10)
    config = RunConfig(device="cpu", steps=10**6, model=f"{tmp_path / 'nan.py'}:build", checkpoint_every=5)
    app = NktuiApp(config, paused=False, run_dir=tmp_path / "run")
    seen = record_notifications(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.session.state is RunState.PAUSED, "the nan to pause the run", START_DEADLINE)
        await until(pilot, lambda: app.error_line.display, "the watchpoint line")
        shown = str(app.error_line.render())
        assert "nonfinite" in shown and "fc.weight" in shown and "just before step 10" in shown
        assert app.session.run.controller.trainer.step_count == 9
        await pilot.press("s")  # the weights before the bad step are finite: they are saved
        await until(pilot, lambda: any("holds step 9" in m for m, _ in seen), "the save")
        await pilot.press("q")
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 9 and all(torch.isfinite(t).all() for t in state["model"].values())
    assert "holds step 9" in app.exit_line and "nan/inf" not in app.exit_line


async def test_a_40x10_terminal_says_it_needs_more_room_and_recovers():
    app = NktuiApp(RunConfig(device="cpu", steps=10**6), paused=True)
    async with app.run_test(size=(40, 10)) as pilot:
        await pilot.pause(0.3)
        message = app.query_one(TooSmall)
        main = app.query_one("#main")
        assert app.has_class("-too-small") and message.display and not main.display and not app.status_bar.display
        assert "at least 60x16; this one is 40x10" in " ".join(str(message.render()).split())
        await pilot.resize_terminal(100, 30)
        await pilot.pause(0.3)
        assert not app.has_class("-too-small") and not message.display and main.display
        assert app.gradient_pane.display and app.gradient_pane.size.width > 0 and app.status_bar.size.height == 1
        await pilot.resize_terminal(20, 5)
        await pilot.pause(0.2)
        assert "this one is 20x5" in " ".join(str(message.render()).split())
        await pilot.press("q")
    assert app.return_code == 0 and app.session.closed
