"""Stop signals: ctrl+c (SIGINT), SIGTERM and SIGHUP end a run cleanly instead of killing it.

People leave nktui training on a GPU box over SSH. When the connection drops, the kernel sends SIGHUP; `kill` and
job schedulers send SIGTERM; ctrl+c is SIGINT (in the app it arrives as a key instead, bound to the same clean
quit). Each of them makes the app and `nktui train` stop the trainer at a step boundary, write last.pt, give the
terminal back and exit 0, and print how to resume as the last line.

`StopSignals` installs the handlers (main thread only; restored on exit) and calls back with the signal's name.
After SIGHUP the terminal is gone: writing to it fails (EIO) or blocks, so `detach_from_terminal` points the
standard streams that were the terminal (or a pipe, whose reader went with it) at /dev/null first; a file
(`nktui train > log.txt`) keeps its output. `exit_watchdog` is the last resort: if the process is still alive
a few seconds after the signal (a wedged terminal write, say), it exits anyway, after the checkpoint had its
chance, and `leave` skips the interpreter's slow teardown once the run is saved. Imports neither torch nor Textual.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
received: list[str] = []  # every stop signal this process received, in order


def handled(signals: tuple[int, ...] = STOP_SIGNALS) -> list[int]:
    """The signals to handle: all but those this process was started ignoring (`nohup` ignores SIGHUP, a shell's
    background job SIGINT), which stay ignored."""
    return [sig for sig in signals if signal.getsignal(sig) is not signal.SIG_IGN]


def terminal_fds() -> list[int]:
    """Standard fds that are a terminal, a pipe or a socket: what a hang-up can break. Read at install time, while
    the terminal is still there (a hung-up terminal no longer answers isatty)."""
    fds = []
    for fd in (0, 1, 2):
        try:
            mode = os.fstat(fd).st_mode
            if os.isatty(fd) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                fds.append(fd)
        except OSError:
            continue
    return fds


def detach_from_terminal(fds: list[int] | None = None) -> None:
    """Point `fds` (default: the standard streams that are a terminal or a pipe) at /dev/null: reads see end of
    file, writes vanish instead of failing."""
    fds = terminal_fds() if fds is None else fds
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        return
    try:
        for fd in fds:
            try:
                os.dup2(null, fd)
            except OSError:
                pass
    finally:
        os.close(null)


class StopSignals:
    """`with StopSignals(on_stop) as stops:` calls on_stop(name) (on the main thread) for SIGINT, SIGTERM and
    SIGHUP; `stops.name` is the first signal's name. A SIGHUP detaches from the terminal before on_stop runs.

    Outside the main thread (Python only lets the main thread set handlers) it does nothing."""

    def __init__(self, on_stop: Callable[[str], None] | None = None, signals: tuple[int, ...] = STOP_SIGNALS) -> None:
        self.on_stop = on_stop
        self.signals = signals
        self.name: str | None = None  # the first signal's
        self.names: list[str] = []  # every signal's, in order
        self.count = 0
        self.event = threading.Event()
        self._previous: dict[int, object] = {}
        self._fds = terminal_fds()  # now, while the terminal is there to answer

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in handled(self.signals):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except (OSError, ValueError):
                continue
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            try:
                signal.signal(sig, previous)  # type: ignore[arg-type]
            except (OSError, ValueError, TypeError):
                pass
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        self.received(signal.Signals(signum).name)

    def received(self, name: str) -> None:
        """What a signal does (also callable from an event loop's own signal handler)."""
        if name == "SIGHUP":
            detach_from_terminal(self._fds)
        self.count += 1
        self.names.append(name)
        received.append(name)
        if self.name is None:
            self.name = name
        self.event.set()
        if self.on_stop is not None:
            self.on_stop(name)

    def __bool__(self) -> bool:
        return self.name is not None


def exit_watchdog(seconds: float, last_words: Callable[[], None] | None = None, code: int = 0) -> threading.Thread:
    """A daemon thread that, unless the process has exited by then, calls last_words() and exits with `code` after
    `seconds`: what guarantees that a signal ends the process even if the terminal or a thread is stuck."""

    def watch() -> None:
        time.sleep(seconds)
        try:
            if last_words is not None:
                last_words()
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001 - exiting regardless is the point
            pass
        os._exit(code)

    thread = threading.Thread(target=watch, name="nktui-exit-watchdog", daemon=True)
    thread.start()
    return thread


def leave(code: int) -> int:
    """The command line's last step: after a stop signal, flush stdout and stderr and end the process now
    (os._exit), skipping the interpreter's teardown, which takes a second or more once torch is loaded; whoever
    sent the signal expects the process gone within seconds. Every file was closed before. Without a stop signal
    it returns `code` (to `sys.exit`)."""
    if not received:
        return code
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)
