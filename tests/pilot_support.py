"""What the Pilot tests share: waiting on the app without blind sleeps, and failing fast with the trainer's error.

Import the `ui_thread_idle` fixture into a test module (`from pilot_support import ui_thread_idle`) to make it
autouse there. A test that waits for the trainer to start uses `started()`, which stops at once with the run's own
error when the run failed instead (a missing data file, a model that raises), rather than waiting out a deadline.
"""

from __future__ import annotations

import asyncio
import io
import time

import pytest
import textual.app
import textual.pilot
from rich.console import Console
from textual._wait import SLEEP_GRANULARITY, SLEEP_IDLE
from textual.widgets import Static

from nktui.training import RunState

DEADLINE = 20.0  # seconds; generous for a loaded 2-core machine, only a failing test ever waits this long
START_DEADLINE = 60.0  # the first app of a test run also imports torch and builds the first trainer


async def _ui_thread_idle(min_sleep: float = SLEEP_GRANULARITY, max_sleep: float = 1.0) -> None:
    """Textual's `wait_for_idle`, measuring the UI thread's CPU time instead of the whole process's.

    Pilot waits after each key until the process looks idle (CPU time not advancing), for up to a second. The
    training thread (and torch's worker threads) keep the process busy while a run trains, so every key press
    would wait the full second; what the tests need is the UI thread to have handled the key.
    """
    start = time.monotonic()
    while True:
        cpu = time.thread_time()
        await asyncio.sleep(SLEEP_GRANULARITY)
        elapsed = time.monotonic() - start
        if elapsed >= max_sleep or (elapsed > min_sleep and time.thread_time() - cpu < SLEEP_IDLE):
            return


@pytest.fixture(autouse=True)
def ui_thread_idle(monkeypatch):
    monkeypatch.setattr(textual.app, "wait_for_idle", _ui_thread_idle)
    monkeypatch.setattr(textual.pilot, "wait_for_idle", _ui_thread_idle)


def _run_error(app) -> str:
    session = getattr(app, "session", None)
    if session is None or session.state is not RunState.FAILED:
        return ""
    return f" (the run failed: {session.error_text})"


async def until(pilot, predicate, what: str, timeout: float = DEADLINE) -> None:
    """Let the app run until predicate() holds; fail naming `what` (and the run's error, if any) after the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{_run_error(pilot.app)}")
        await pilot.pause(0.05)


async def started(pilot, state: RunState = RunState.PAUSED) -> None:
    """Wait for the trainer to reach `state`, then tick once so the app has seen the trainer (and configured it).

    A run that fails on the way fails the test at once with its error.
    """
    app = pilot.app

    def reached() -> bool:
        if app.session.state is RunState.FAILED and state is not RunState.FAILED:
            raise AssertionError(f"the run failed instead of reaching {state.value}: {app.session.error_text}")
        return app.session.state is state

    await until(pilot, reached, f"state {state.value}", START_DEADLINE)
    app.tick()


def plain(widget: Static, width: int = 200) -> str:
    """The text a Static shows, without styles (it may hold markup, a Content or any Rich renderable)."""
    content = widget.content
    if isinstance(content, str):
        return widget.visual.plain if hasattr(widget.visual, "plain") else content
    if hasattr(content, "plain"):
        return content.plain
    console = Console(file=io.StringIO(), width=width, color_system=None)
    with console.capture() as capture:
        console.print(content)
    return capture.get()


def record_notifications(app) -> list[tuple[str, str]]:
    """Every (message, severity) the app notifies from now on."""
    seen: list[tuple[str, str]] = []
    notify = app.notify

    def recording(message, *, title="", severity="information", **kwargs):
        seen.append((str(message), severity))
        return notify(message, title=title, severity=severity, **kwargs)

    app.notify = recording
    return seen
