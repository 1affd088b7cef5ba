"""stdout or stderr closed, full or gone (#12): `nktui train` still trains and saves, prints no traceback, and what
it could not print goes to the run's nktui.log; and the app, whose metrics cannot be written, keeps training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nktui import safe_files
from nktui.run.checkpoint import load_checkpoint
from pilot_support import record_notifications, until, ui_thread_idle  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
TRAIN = [sys.executable, "-m", "nktui", "train", "--device", "cpu", "--log-every", "10"]


def close_fd(fd: int):
    return lambda: os.close(fd)


@pytest.mark.parametrize("case", ["stdout closed", "stdout full", "stderr closed"])
def test_a_closed_or_full_stream_costs_the_run_nothing(case, tmp_path):
    run_dir = tmp_path / "run"
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    if case == "stdout closed":
        kwargs = {"stderr": subprocess.PIPE, "preexec_fn": close_fd(1)}
    elif case == "stdout full":
        kwargs = {"stderr": subprocess.PIPE, "stdout": open("/dev/full", "w")}
    elif case == "stderr closed":
        kwargs = {"stdout": subprocess.PIPE, "preexec_fn": close_fd(2)}
    done = subprocess.run([*TRAIN, "--steps", "40", "--run-dir", str(run_dir)], env=ENV, cwd=tmp_path, timeout=120,
                          **kwargs)
    assert done.returncode == 0, done.stderr
    assert not done.stderr or b"Traceback" not in done.stderr, done.stderr.decode()
    if done.stderr is not None:
        assert done.stderr == b""
    assert load_checkpoint(run_dir / "last.pt")["step"] == 40
    log = (run_dir / "nktui.log").read_text()
    if case.startswith("stdout"):
        why = "closed" if case == "stdout closed" else "full (No space left on device)"
        assert f"nktui train: stdout is {why}: what it could not print is written here" in log
        assert "validation loss" in log  # the summary's results
    assert log.splitlines()[-1] == (f"nktui train: finished 40 steps; {run_dir / 'last.pt'} holds step 40. Train "
                                    f"further: nktui train --resume {run_dir / 'last.pt'} --steps 80")
    assert {p.name for p in run_dir.iterdir()} == {".lock", "config.toml", "metrics.jsonl", "last.pt", "nktui.log"}


def test_a_reader_that_stops_after_one_line_leaves_a_line_in_nktui_log(tmp_path):
    run_dir = tmp_path / "run"
    command = " ".join([*TRAIN, "--steps", "1000000", "--log-every", "1", "--run-dir", str(run_dir)])
    done = subprocess.run(["bash", "-c", f"{command} 2>{tmp_path / 'err'} | head -1; exit ${{PIPESTATUS[0]}}"],
                          env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert done.stdout.startswith("nktui train: digits") and len(done.stdout.splitlines()) == 1
    assert (tmp_path / "err").read_text() == ""
    state = load_checkpoint(run_dir / "last.pt")
    assert 0 < state["step"] < 1000000
    last = (run_dir / "nktui.log").read_text().splitlines()[-1]
    assert last == (f"nktui train: stopped at step {state['step']}: the reader of stdout went away; "
                    f"{run_dir / 'last.pt'} holds step {state['step']}. Resume: nktui train --resume "
                    f"{run_dir / 'last.pt'}")


async def test_the_app_whose_metrics_cannot_be_written_shows_a_notice_and_trains_on(tmp_path, monkeypatch):
    from nktui.training import RunConfig, RunState
    from nktui.ui.app import NktuiApp

    real, count = os.write, [0]

    def write(fd, data):  # metrics.jsonl takes its first batch, then the disk is full
        count[0] += 1
        if count[0] > 1:
            raise OSError(28, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(safe_files, "_os_write", write)
    run_dir = tmp_path / "run"
    app = NktuiApp(RunConfig(device="cpu", steps=10**6), paused=False, run_dir=run_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        seen = record_notifications(app)
        await until(pilot, lambda: any("No space left on device" in m for m, _ in seen), "the notice")
        step = app.session.run.controller.trainer.step_count
        await until(pilot, lambda: app.session.run.controller.trainer.step_count > step + 20, "training on")
        await pilot.pause(0.5)
        notices = [m for m, _ in seen if "cannot write" in m]
        assert len(notices) == 1 and "metrics.jsonl" in notices[0] and "the run goes on" in notices[0]
        assert app.session.state is RunState.RUNNING
        await pilot.press("q")
    assert app.return_code in (0, None)
    state = load_checkpoint(run_dir / "last.pt")
    assert state["step"] == app.session.run.controller.trainer.step_count > step
    assert app.exit_line.startswith(f"nktui: quit at step {state['step']};")
    assert "nktui: warning: cannot write" in (run_dir / "nktui.log").read_text()
