"""Waiting for the training thread without blocking the UI: a Future polled by a widget's timer.

Work that touches tensors runs on the training thread (a named command, `Session.submit`), which returns a Future. A screen hands
that Future to `when_done`, which checks it a few times a second on the UI thread and calls back there: no widget
is ever touched from the training thread, and the UI never waits.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from textual.dom import DOMNode
from textual.timer import Timer


def when_done(
    node: DOMNode,
    future: Future,
    on_result: Callable[[Any], None],
    on_error: Callable[[BaseException], None],
    interval: float = 0.1,
) -> Timer:
    """Call on_result(value) or on_error(exception) on the UI thread once `future` is done; returns the timer
    (stop it to stop waiting)."""

    def check() -> None:
        if not future.done():
            return
        timer.stop()
        error = future.exception()
        if error is not None:
            on_error(error)
        else:
            on_result(future.result())

    timer = node.set_interval(interval, check)
    return timer
