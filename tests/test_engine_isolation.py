"""The engine is usable without the UI: importing and training with it never imports textual, nor the run layer,
the app or the command line (the run hands the engine its checkpointer and the state to resume from)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_engine_does_not_import_textual():
    assert run_python("import nktui.training, sys; print('textual' in sys.modules)") == "False"


def test_the_engine_and_the_probe_import_no_run_layer_app_nor_command_line():
    out = run_python(
        """
        import sys, pkgutil, importlib, nktui.engine, nktui.engine.debugger, nktui.probe
        for package in (nktui.engine, nktui.engine.debugger, nktui.probe):
            for info in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{package.__name__}.{info.name}")
        print(sorted(m for m in sys.modules if m == "textual" or m.startswith(("textual.", "nktui.run", "nktui.ui",
                                                                             "nktui.cli", "nktui.training"))))
        """
    )
    assert out.splitlines()[-1] == "[]"


def test_training_a_step_does_not_import_textual():
    out = run_python(
        """
        import json, sys
        from nktui.training import RunConfig, Trainer
        trainer = Trainer(RunConfig(dataset="digits", model="mlp", hidden=(16,), batch_size=32, device="cpu"))
        record = trainer.step()
        result = trainer.evaluate()
        ctl = trainer.start(paused=True)
        ctl.step()
        ctl.stop()
        ctl.join(10)
        ui_prefixes = ("textual.", "rich", "nktui.ui", "nktui.render", "nktui.run", "nktui.cli")
        ui = sorted(m for m in sys.modules if m == "textual" or m.startswith(ui_prefixes))
        print(json.dumps({"step": record.step, "loss": record.loss, "observed": record.observed,
                          "accuracy": result.accuracy, "state": ctl.state.value, "ui": ui}))
        """
    )
    report = json.loads(out.splitlines()[-1])
    assert report["ui"] == []
    assert report["step"] == 1 and report["observed"]
    assert 0 < report["loss"] < 10
    assert 0 <= report["accuracy"] <= 1
    assert report["state"] == "stopped"
