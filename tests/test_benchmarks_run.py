"""The benchmark scripts still run against today's code (a smoke test, no timing asserted: the figures come from
running them by hand, benchmarks/RESULTS.md). They reach into the app and the engine the way a profiler would, so a
refactor can break them without any other test noticing: tui_overhead.py once hung for good after the Session
changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run(*args: str, timeout: float = 240) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_the_whole_app_benchmark_measures_a_pair_of_windows():
    pytest.importorskip("pty")
    out = run("benchmarks/tui_overhead.py", "--rounds", "1", "--windows", "1", "--window", "0.3", "--warmup", "0.2")
    assert "ratio app/bare:" in out and "first frame:" in out and "terminal output:" in out


@pytest.mark.parametrize("mode", ["bare", "nktui"])
def test_the_instruction_count_children_train(mode):
    run("benchmarks/overhead.py", "--child", mode, "20")
