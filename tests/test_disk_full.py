"""A full disk or a write error loses only what it must (#12): one warning, the run goes on, last.pt never worse
than the newest state that could be written, and the exit line and code say what was saved.

The ENOSPC cases run everywhere by making the writers' writes fail (monkeypatch); the same cases on a real full
file system (a small tmpfs) run where this process may mount one (root), and are skipped otherwise."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nktui.cli.train import run_headless
from nktui.protocol.errors import ConfigError
from nktui.protocol.records import EvalResult
from nktui.training import RunConfig
from nktui import safe_files
from nktui.run.checkpoint import load_checkpoint
from nktui.run.exporters import RunWriters
from nktui.run.rundir import MetricsWriter, claim_run_dir, read_metrics, release_run_dir

ROOT = Path(__file__).resolve().parents[1]
ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def eval_record(step: int) -> EvalResult:
    return EvalResult(step=step, epoch=0, loss=0.5, accuracy=0.9, confusion=((1,),), classes=("a",))


def fail_writes_after(monkeypatch, calls: int) -> None:
    """Every AppendFile write after the first `calls` fails with ENOSPC, half of its batch written first."""
    real, count = os.write, [0]

    def write(fd, data):
        count[0] += 1
        if count[0] > calls:
            real(fd, bytes(data[: len(data) // 2]))
            raise ENOSPC
        return real(fd, data)

    monkeypatch.setattr(safe_files, "_os_write", write)


# -- the writers ---------------------------------------------------------------------------------------------------
def test_a_failed_batch_is_cut_off_whole_and_said_once(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    writers = RunWriters([MetricsWriter(path, 1)], ["metrics.jsonl"])
    fail_writes_after(monkeypatch, 2)
    for step in range(1, 6):
        writers.write([eval_record(step)])
    warnings = writers.take_warnings()
    assert len(warnings) == 1 and writers.take_warnings() == []  # once, not a line per row
    assert f"cannot write {path}: No space left on device (its rows from step 3 on are missing)" in warnings[0]
    assert [row["step"] for row in read_metrics(path)] == [1, 2]  # every line whole: no half row at the end
    assert writers.files == ("metrics.jsonl (to step 2)",)
    writers.close()


def test_config_toml_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    RunConfig(lr=0.5).save(path)
    monkeypatch.setattr(safe_files.os, "fsync", lambda fd: (_ for _ in ()).throw(ENOSPC))
    with pytest.raises(OSError):
        RunConfig(lr=0.25).save(path)
    assert RunConfig.load(path).lr == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


# -- nktui train, in this process ----------------------------------------------------------------------------------
def headless(config: RunConfig, **kwargs) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_headless(config, out=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_metrics_that_cannot_be_written_are_one_warning_and_last_pt_is_saved(tmp_path, monkeypatch):
    fail_writes_after(monkeypatch, 1)
    run_dir = tmp_path / "run"
    config = RunConfig(device="cpu", steps=60, log_every=1, csv=True, run_dir=str(run_dir))
    code, out, err = headless(config)
    assert code == 4, err  # trained and saved, but a metrics file is missing rows
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if line.startswith("nktui: warning: cannot write")]
    assert len(warnings) == 1 and len(err.splitlines()) == 1, err
    assert "metrics.jsonl" in warnings[0] and "metrics.csv" in warnings[0] and "the run goes on" in warnings[0]
    assert load_checkpoint(run_dir / "last.pt")["step"] == 60
    assert "finished 60 steps" in out and "last.pt" in out.splitlines()[-2]
    log = (run_dir / "nktui.log").read_text()
    assert f"nktui train: finished 60 steps; {run_dir / 'last.pt'} holds step 60." in log


def test_a_final_save_that_does_not_fit_exits_1_and_keeps_the_old_last_pt(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert headless(RunConfig(device="cpu", steps=20, run_dir=str(run_dir)))[0] == 0
    from nktui.cli.resume import plan_resume
    from nktui.run import checkpoint

    config, plan = plan_resume(run_dir / "last.pt", {"steps": 40})

    def full(obj, f):
        f.write(b"x" * 100)
        raise ENOSPC

    monkeypatch.setattr(checkpoint.torch, "save", full)
    code, out, err = headless(config, resume=plan)
    assert code == 1, err
    assert err.splitlines() == [
        f"nktui: error: the final state (step 40) was not saved: cannot write {run_dir / 'last.pt'}: No space left "
        "on device; last.pt still holds step 20"
    ]
    monkeypatch.undo()
    assert load_checkpoint(run_dir / "last.pt")["step"] == 20  # the old one, whole
    assert out.splitlines()[-1] == f"resume: nktui train --resume {run_dir / 'last.pt'}"  # not "train further"
    assert "(config.toml, metrics.jsonl, last.pt (step 20))" in out
    assert not list(run_dir.glob(".*.tmp-*"))
    assert "the final state was not saved" in (run_dir / "nktui.log").read_text().splitlines()[-1]


def test_a_resume_into_a_folder_that_cannot_be_written_is_refused_before_training(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert headless(RunConfig(device="cpu", steps=20, run_dir=str(run_dir)))[0] == 0
    from nktui.cli.resume import plan_resume
    from nktui.run import rundir

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(rundir, "check_writable", read_only)
    config, plan = plan_resume(run_dir, {"steps": 40})
    code, out, err = headless(config, resume=plan)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"nktui: error: cannot resume in {run_dir}: nktui cannot write there (Read-only file system), so last.pt "
        "could not move on; give --run-dir NEW to write the resumed run elsewhere"
    ]
    assert load_checkpoint(run_dir / "last.pt")["step"] == 20
    with pytest.raises(ConfigError, match="cannot write the run directory"):
        claim_run_dir(tmp_path / "other")
    release_run_dir(tmp_path / "other")


# -- a real full file system, a real read-only one ----------------------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    """A 1 MiB tmpfs under tmp_path (unmounted afterwards); skipped where mounting is not permitted."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not permitted'})")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of `folder` to the last byte; returns the ballast file."""
    ballast = folder / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0")
        except OSError:
            pass
    return ballast


def start_training(run_dir: Path, log: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "nktui", "train", "--device", "cpu", "--steps", "1000000", "--log-every", "1",
               "--checkpoint-every", "20", "--run-dir", str(run_dir), *args]
    return subprocess.Popen(command, stdout=open(log.with_suffix(".out"), "w"), stderr=open(log, "w"), env=env)


def wait_for(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_on_a_full_tmpfs_the_run_goes_on_then_says_its_final_state_is_lost(tmpfs, tmp_path):
    run_dir, log = tmpfs / "run", tmp_path / "err.txt"
    proc = start_training(run_dir, log)
    wait_for(lambda: (run_dir / "last.pt").exists() and (run_dir / "metrics.jsonl").stat().st_size, "rows, last.pt")
    fill(tmpfs)
    wait_for(lambda: "warning: cannot write" in log.read_text(), "the warning")
    time.sleep(1)  # it trains on (and the periodic saves fail)
    assert proc.poll() is None
    proc.terminate()
    assert proc.wait(timeout=60) == 1
    err = log.read_text()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert sum("metrics.jsonl" in line for line in lines) == 1, err  # said once
    assert sum("last.pt" in line and "warning" in line for line in lines) <= 1, err
    assert lines[-1].startswith("nktui: error: the final state (step ") and "No space left on device" in lines[-1]
    saved = load_checkpoint(run_dir / "last.pt")  # the newest that fitted, whole
    assert lines[-1].endswith(f"last.pt still holds step {saved['step']}")
    rows = read_metrics(run_dir / "metrics.jsonl")  # every row whole (json.loads raises on a half row)
    assert rows and {row["type"] for row in rows} <= {"step", "eval"} and rows[-1]["type"] in ("step", "eval")
    assert any(row["type"] == "step" for row in rows)


def test_space_freed_after_the_warning_lets_the_final_save_through_exit_4(tmpfs, tmp_path):
    run_dir, log = tmpfs / "run", tmp_path / "err.txt"
    proc = start_training(run_dir, log)
    wait_for(lambda: (run_dir / "last.pt").exists() and (run_dir / "metrics.jsonl").stat().st_size, "rows, last.pt")
    ballast = fill(tmpfs)
    wait_for(lambda: "warning: cannot write" in log.read_text(), "the warning")
    ballast.unlink()
    proc.terminate()
    assert proc.wait(timeout=60) == 4, log.read_text()
    out = log.with_suffix(".out").read_text()
    state = load_checkpoint(run_dir / "last.pt")
    assert f"interrupted at step {state['step']} " in out  # last.pt holds the final state
    assert "metrics.jsonl (to step " in out
    assert "Traceback" not in log.read_text()


def test_a_resume_on_a_read_only_mount_is_one_line_and_exit_2(tmpfs):
    run_dir = tmpfs / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "nktui", "train", "--device", "cpu"]
    first = subprocess.run([*base, "--steps", "20", "--run-dir", str(run_dir)], capture_output=True, env=env)
    assert first.returncode == 0
    assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)]).returncode == 0
    done = subprocess.run([*base, "--resume", str(run_dir / "last.pt"), "--steps", "40"], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("nktui: error: cannot ")
    assert "Read-only file system" in done.stderr and done.stdout == ""
    assert torch.load(run_dir / "last.pt", weights_only=True)["step"] == 20
