"""Shared fixtures for the test suite.

Engine tests build small trainers on the bundled digits set (8x8 images, 1,797 samples) on the CPU; a run takes
milliseconds per step. Threads started through `controllers` are stopped and joined at teardown so that a failing
test never leaves a training thread behind.
"""

from __future__ import annotations

import os
import time

import pytest

# The tests train tiny models: one intra-op thread is faster than two that spin-wait for each other between
# microsecond-sized ops, and far faster on a loaded machine. Set before torch is imported; an explicit
# OMP_NUM_THREADS in the environment wins (e.g. to run the suite multi-threaded).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# An error in the interface fails the test that caused it (the app's error boundary lets it through); the boundary's
# own test switches this off.
os.environ["NKTUI_RAISE"] = "1"
# Unicode whatever this machine's locale and TERM (a CI's TERM=dumb would draw the snapshots in ASCII); the ASCII
# tests force it themselves (tests/test_terminals.py).
os.environ["NKTUI_ASCII"] = "0"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: trains to an accuracy target for a few seconds; runs by default, skip with -m 'not slow'",
    )


@pytest.fixture
def make_trainer():
    """make_trainer(**overrides) -> a Trainer on digits, CPU, plain SGD, batch 32, seed 0 (overridable)."""
    from nktui.training import RunConfig, Trainer

    def make(*, model_obj=None, **overrides):
        values = dict(dataset="digits", model="linear", optimizer="sgd", lr=0.1, batch_size=32, seed=0, device="cpu")
        values.update(overrides)
        return Trainer(RunConfig(**values), model=model_obj)

    return make


@pytest.fixture
def controllers():
    """A list to append every Controller a test starts; each is stopped and joined when the test ends."""
    started: list = []
    yield started
    for ctl in started:
        ctl.stop()
    for ctl in started:
        ctl.join(timeout=10)


@pytest.fixture
def wait_until():
    """wait_until(predicate, timeout=10.0) -> bool: poll until predicate() is true (no timing assertion)."""

    def wait(predicate, timeout: float = 10.0, interval: float = 0.002) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(interval)
        return True

    return wait


@pytest.fixture
def apps():
    """A list to put the apps a test makes into: each one's trainer is stopped at the end, also when the test failed
    half-way (a training thread must not run on into the next test)."""
    made: list = []
    yield made
    for app in made:
        if app.session is not None:
            app.session.stop(5.0)
