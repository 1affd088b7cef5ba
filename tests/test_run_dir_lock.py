"""A run owns its run directory: race-free fresh names, a `.lock` held for the run's life, stale temporaries removed.

The points are about processes, so most tests use real ones: two `nktui train` on one `--run-dir`, claims racing
from several processes in the same second, a holder killed with SIGKILL whose lock is then taken over.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nktui import cli
from nktui.cli.resume import plan_resume
from nktui.protocol.errors import RunDirInUse
from nktui.training import ConfigError, RunConfig
from nktui.run.checkpoint_keeper import RunKeeper
from nktui.run.rundir import (
    LOCK_FILE,
    check_not_in_use,
    choose_run_dir,
    claim_run_dir,
    default_run_dir,
    lock_holder,
    release_run_dir,
    remove_stale_temporaries,
)

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
HOLDER = """
import sys, time
from pathlib import Path
from nktui.run.rundir import claim_run_dir
path = claim_run_dir(sys.argv[1])
print("ready", flush=True)
time.sleep(600)
"""
RACER = """
import sys, time
from nktui.run.rundir import claim_run_dir, default_run_dir
start, now = float(sys.argv[1]), float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
print(claim_run_dir(default_run_dir(now=now), fresh=True), flush=True)
"""


def nktui(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nktui", *args], cwd=cwd, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def in_use_line(stderr: str, path: str, pid: int) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert re.fullmatch(
        rf"nktui: error: {re.escape(path)} is in use by nktui process {pid} \(started \d{{4}}-\d\d-\d\d "
        rf"\d\d:\d\d:\d\d\): .*give another --run-dir", lines[0]), lines[0]
    return lines[0]


@pytest.fixture
def holder(tmp_path):
    """A process that claimed tmp_path/held and sleeps (killed at the end); yields (process, folder)."""
    folder = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "ready"
    yield proc, folder
    if proc.poll() is None:
        proc.kill()
    proc.wait()


# -- two runs, one folder --------------------------------------------------------------------------------------
def test_two_nktui_train_on_the_same_run_dir_one_is_refused_the_other_finishes(tmp_path):
    runs = [nktui("train", "--steps", "3000", "--run-dir", "runs/same", "--device", "cpu", cwd=tmp_path)
            for _ in range(2)]
    results = [(p, *p.communicate(timeout=300)) for p in runs]
    refused = [r for r in results if r[0].returncode == 2]
    finished = [r for r in results if r[0].returncode == 0]
    assert len(refused) == 1 and len(finished) == 1, [(p.returncode, err) for p, _, err in results]
    (loser, out, err), (winner, winner_out, _) = refused[0], finished[0]
    in_use_line(err, "runs/same", winner.pid)
    assert out == "" and "finished 3000 steps" in winner_out
    rows = [json.loads(line) for line in (tmp_path / "runs/same/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["type"] == "step"] == sorted({r["step"] for r in rows if r["type"] == "step"})
    assert json.loads((tmp_path / "runs/same" / LOCK_FILE).read_text())["pid"] == winner.pid


def test_a_run_dir_in_use_refuses_train_resume_and_the_app_before_its_screen(holder, tmp_path, monkeypatch, capsys):
    proc, folder = holder
    refused = nktui("train", "--steps", "5", "--run-dir", str(folder), cwd=tmp_path)
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 2
    in_use_line(err, str(folder), proc.pid)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("nktui.ui.app.NktuiApp.run", lambda self: pytest.fail("the app's screen opened"))
    assert cli.main(["--run-dir", str(folder), "--steps", "5", "--device", "cpu"]) == 2
    in_use_line(capsys.readouterr().err, str(folder), proc.pid)
    with pytest.raises(RunDirInUse, match=f"in use by nktui process {proc.pid}"):
        claim_run_dir(folder)
    with pytest.raises(RunDirInUse, match=f"in use by nktui process {proc.pid}"):
        choose_run_dir(RunConfig(run_dir=str(folder)))


def test_resuming_a_run_that_is_still_going_is_refused_until_it_stops(tmp_path):
    run = nktui("train", "--steps", "1000000", "--checkpoint-every", "20", "--run-dir", "runs/long", "--device",
                "cpu", cwd=tmp_path)
    checkpoint = tmp_path / "runs/long/last.pt"
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.1)
        resume = nktui("train", "--resume", "runs/long/last.pt", "--steps", "2000000", cwd=tmp_path)
        _, err = resume.communicate(timeout=120)
        assert resume.returncode == 2
        in_use_line(err, "runs/long", run.pid)
        app = nktui("--resume", "runs/long", cwd=tmp_path)  # the app: refused before it takes the terminal
        out, err = app.communicate(timeout=120)
        assert app.returncode == 2 and out == ""
        in_use_line(err, "runs/long", run.pid)
    finally:
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=60)
    assert run.returncode == 0
    config, plan = plan_resume(checkpoint, {"steps": 2000000})  # free again: the run is over
    assert plan.in_place and plan.run_dir == checkpoint.parent


# -- fresh names ------------------------------------------------------------------------------------------------
def test_default_run_dirs_claimed_in_the_same_second_by_four_processes_differ(tmp_path):
    now = time.mktime((2025, 1, 2, 3, 4, 5, 0, 0, -1))
    start = time.time() + 2.0  # all four claim at once, well after python has started
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(start), str(now)], cwd=tmp_path, env=ENV,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    paths = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(paths) == ["runs/20250102-030405", "runs/20250102-030405-2", "runs/20250102-030405-3",
                             "runs/20250102-030405-4"]
    holders = {json.loads((tmp_path / p / LOCK_FILE).read_text())["pid"] for p in paths}
    assert holders == {p.pid for p in procs}


def test_default_run_dirs_claimed_by_threads_at_once_differ(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    now = time.mktime((2025, 1, 2, 3, 4, 5, 0, 0, -1))
    names = [default_run_dir(now=now) for _ in range(8)]  # all chosen before any is made: the same name
    assert len(set(names)) == 1
    barrier, got = threading.Barrier(8), []

    def claim(name):
        barrier.wait()
        got.append(claim_run_dir(name, fresh=True))

    threads = [threading.Thread(target=claim, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 8 and all(p.is_dir() for p in got)
    for path in got:
        release_run_dir(path)


def test_a_fresh_keeper_takes_the_next_name_when_another_process_made_it_first(holder, tmp_path):
    proc, folder = holder
    keeper = RunKeeper(folder, RunConfig(steps=5), fresh=True)
    assert keeper.create() == folder.with_name("held-2") == keeper.run_dir
    assert keeper.checkpoint == keeper.checkpointer.path == folder.with_name("held-2") / "last.pt"
    assert (keeper.run_dir / "config.toml").exists() and not (folder / "config.toml").exists()
    keeper.release()
    keeper.release()  # idempotent


# -- dead holders, stale temporaries -----------------------------------------------------------------------------
def test_the_lock_of_a_killed_process_is_taken_over_and_its_temporaries_removed(holder, tmp_path):
    proc, folder = holder
    stale = folder / f".last.pt.tmp-{proc.pid}"
    stale.write_bytes(b"half a checkpoint")
    with pytest.raises(RunDirInUse, match=f"in use by nktui process {proc.pid}"):
        check_not_in_use(folder)
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # (reaped: its pid is free)
    check_not_in_use(folder)  # the kernel dropped the dead process's lock
    run = nktui("train", "--steps", "30", "--run-dir", str(folder), "--device", "cpu", cwd=tmp_path)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert not stale.exists()
    assert {p.name for p in folder.iterdir()} == {".lock", "config.toml", "metrics.jsonl", "last.pt", "nktui.log"}
    assert lock_holder(folder)["pid"] == run.pid  # the file stays; the lock went with the process


def test_only_temporaries_of_dead_processes_are_removed(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        live_tmp = tmp_path / f".last.pt.tmp-{sleeper.pid}"
        dead_tmp = tmp_path / f".last.pt.tmp-{dead.pid}"
        own_tmp = tmp_path / f".last.pt.tmp-{os.getpid()}"  # of an earlier process with this pid
        other = tmp_path / "notes.tmp-12"
        for p in (live_tmp, dead_tmp, own_tmp, other):
            p.write_text("x")
        assert sorted(remove_stale_temporaries(tmp_path)) == sorted([dead_tmp, own_tmp])
        assert live_tmp.exists() and other.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


# -- the rules in one process -----------------------------------------------------------------------------------
def test_claims_in_one_process_are_counted_and_a_held_run_is_not_overwritten(tmp_path):
    folder = tmp_path / "run"
    assert claim_run_dir(folder) == folder
    assert claim_run_dir(folder) == folder  # this process holds it already: granted, counted
    check_not_in_use(folder)  # (not in use by another process)
    release_run_dir(folder)
    probe = subprocess.run([sys.executable, "-c", f"from nktui.run.rundir import check_not_in_use; "
                            f"check_not_in_use({str(folder)!r})"], env=ENV, capture_output=True, text=True)
    assert probe.returncode == 1 and f"in use by nktui process {os.getpid()}" in probe.stderr
    release_run_dir(folder)
    probe = subprocess.run(probe.args, env=ENV, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr  # released: free for other processes
    (folder / "config.toml").write_text("")
    with pytest.raises(ConfigError, match="already holds a run"):
        claim_run_dir(folder)
    assert claim_run_dir(folder, resume=True) == folder  # a resume goes on in its own folder
    release_run_dir(folder)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        claim_run_dir(tmp_path / "file")


# -- the app: the first folder before the screen, a restart's beside it -------------------------------------------
def test_the_app_claims_its_folder_before_the_screen_and_a_restart_the_next_one(tmp_path, monkeypatch):
    from nktui.run import runlock
    from nktui.ui import run_lifecycle
    from nktui.ui.session import Session

    monkeypatch.chdir(tmp_path)
    seen: dict[str, object] = {}

    def session_that_wrote_its_folder(app) -> Session:
        session = Session(app.config, paused=True, keeper=run_lifecycle.make_keeper(app, app.config))
        deadline = time.monotonic() + 60
        while not session.keeper.created:
            assert time.monotonic() < deadline, session.error_text
            session.poll()
            time.sleep(0.05)
        return session

    class App:  # what run_lifecycle.run needs of NktuiApp, with two sessions: the first and a restart
        def __init__(self, config, *, paused, run_dir, resume, handle_signals):
            self.config, self.run_dir, self.resume = config, run_dir, resume
            self.session, self.exit_line, self.return_code = None, None, 0

        def run(self):
            seen["locked before the screen"] = lock_holder(self.run_dir)["pid"] == os.getpid()
            self.session = session_that_wrote_its_folder(self)
            seen["first"] = self.session.keeper.run_dir
            self.session.close("restarted")
            self.session = session_that_wrote_its_folder(self)
            seen["restart"] = self.session.keeper.run_dir
            self.exit_line = self.session.close("quit")
            return 0

    assert run_lifecycle.run(App, RunConfig(device="cpu", steps=5)) == 0
    first = seen["first"]
    assert seen["locked before the screen"] and first.parent == Path("runs")
    assert seen["restart"] == first.with_name(f"{first.name}-2")
    for folder in (first, seen["restart"]):
        assert {p.name for p in folder.iterdir()} >= {".lock", "config.toml", "metrics.jsonl", "last.pt"}
        check_not_in_use(folder)
    assert not runlock._held  # every claim given back when the app ended


def test_a_run_that_never_starts_leaves_no_folder_and_no_lock(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    given = tmp_path / "given"
    given.mkdir()
    (given / "notes.txt").write_text("mine")
    for args in (["train"], ["train", "--run-dir", str(given)]):
        assert cli.main([*args, "--model", str(tmp_path / "nope.py") + ":build", "--steps", "3"]) == 2
        assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # made for the claim, removed again: nothing was written
    assert [p.name for p in given.iterdir()] == ["notes.txt"]  # a folder given: as it was, without a .lock


def test_a_taken_suffixed_name_goes_on_counting(tmp_path):
    (tmp_path / "20250102-030405").mkdir()
    (tmp_path / "20250102-030405-2").mkdir()
    got = claim_run_dir(tmp_path / "20250102-030405-2", fresh=True)  # chosen, then made by another process
    assert got == tmp_path / "20250102-030405-3"
    release_run_dir(got)
    assert claim_run_dir(tmp_path / "20250102-030405", fresh=True) == tmp_path / "20250102-030405-4"
    release_run_dir(tmp_path / "20250102-030405-4")
