"""`RunHost`: a run served to clients from the process that owns it. It answers their commands (on each connection's
reader thread: the engine's controller is thread-safe), keeps the `RunMirror` for late attachers and, at each
tick of the owning loop, sends every viewer the records that came and the run's status in one frame.

Two loops own a host: `serve_run` below (the run process `nktui` starts and attaches to) and `nktui train`'s
own progress loop (which calls `tick`). Both drain the run's records once (`RunDriver.drain`, which writes the
exports) and hand them to `tick`.

    host = RunHost(driver); host.start()      # the socket in the run directory
    host.tick(records)                        # after each drain
    host.end_request                          # a client asked to stop the run (EndRun): the loop ends it
    host.close(line)                          # clients told "the run ended" with the exit line

Imports neither torch nor Textual.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from concurrent.futures import Future
from typing import Any

from .. import __version__
from ..messages import one_line
from ..engine.gpu import GpuReading
from ..protocol import NktuiError, RunState
from ..protocol.commands import CONTROL_COMMANDS, TRAINING_COMMANDS, EndRun, Finish, Note, SaveNow, Stop
from ..protocol.wire import VERSION, WireError, error_to_wire, pack, records_to_wire, register, to_wire
from ..run.driver import RunDriver
from .mirror import RunMirror
from .server import SOCKET_FILE, SocketServer

register(GpuReading)
REASON_CHARS = 200  # what a client may say of why it stopped the run (it goes into the exit line)
NOTE_CHARS = 20_000  # a line a client asks to put into nktui.log (a warning, a traceback)
RATE_SECONDS = 2.0  # the steps/s `nktui ls` shows, over this long
OBSERVE_SECONDS = 0.2  # while a viewer is attached and the run trains, a step is measured this often


class RunHost:
    def __init__(self, driver: RunDriver, *, mode: str = "app") -> None:
        self.driver = driver
        self.mode = mode  # "app": a run process of its own; "train": nktui train's
        self.mirror = RunMirror()
        resume = getattr(driver.keeper, "resume", None)
        if resume is not None:  # the plot goes on from the run's own history, at metrics.jsonl's resolution
            from ..run.files import METRICS_FILE, earlier_records

            # (into the plot only: the newest step a viewer sees is the checkpoint's, from the run itself)
            self.mirror.history.extend(earlier_records(resume.path.parent / METRICS_FILE, resume.step))
        self.started = time.time()
        self.server = SocketServer(driver.run_dir / SOCKET_FILE, welcome=self.welcome, handle=self.handle)
        self.end_request: tuple[str, Future] | None = None
        self.warnings: list[str] = []  # lines for the viewers at the next tick (a full disk)
        self.failure_log: str | None = None
        self._info_sent: Any = None
        self._last_observe = 0.0
        self.news_bytes = 0  # bytes of news sent to each viewer (for the benchmark)
        self._rate: deque[tuple[float, int]] = deque()  # (time, step) over the last RATE_SECONDS
        self.steps_per_sec: float | None = None

    def start(self) -> None:
        self.server.start()

    # -- commands from clients (their reader threads) --------------------------------------------------------------
    def handle(self, command: Any, connection: Any) -> Any:
        controller = self.driver.controller
        if isinstance(command, EndRun):
            if self.end_request is None:
                self.end_request = (one_line(str(command.reason))[:REASON_CHARS], Future())
            return self.end_request[1]
        if isinstance(command, Note):
            if self.driver.keeper is not None:
                self.driver.keeper.note(str(command.text)[:NOTE_CHARS])
            return None
        if controller is None:
            raise NktuiError("the run is still starting")
        if isinstance(command, SaveNow):
            if self.driver.keeper is None or not self.driver.keeper.created:
                raise NktuiError("this run writes no run directory")
            return self.driver.save_fault_state() if controller.state is RunState.FAILED else self.driver.save()
        if isinstance(command, (Stop, Finish)):
            raise NktuiError(f"{type(command).__name__} is the run process's own: send EndRun")
        if isinstance(command, CONTROL_COMMANDS + TRAINING_COMMANDS):
            return controller.submit(command)
        raise NktuiError(f"not a command: {type(command).__name__}")

    # -- what clients are sent -------------------------------------------------------------------------------------
    def welcome(self) -> dict[str, Any]:
        keeper = self.driver.keeper
        return {"kind": "welcome", "version": VERSION, "nktui": __version__, "pid": os.getpid(),
                "run_dir": str(self.driver.run_dir), "config": to_wire(self.driver.config), "mode": self.mode,
                "started": self.started, "checkpoint": str(keeper.checkpoint) if keeper is not None else None,
                "log": str(keeper.log_path) if keeper is not None else None, "status": self.status(full=True)}

    def status(self, *, full: bool = False) -> dict[str, Any]:
        controller, keeper = self.driver.controller, self.driver.keeper
        if controller is None:
            return {"state": RunState.STARTING.value, "step_count": 0, "clients": len(self.server.viewers)}
        info = controller.info
        error = controller.error
        status = {
            "state": controller.state.value,
            "step_count": controller.step_count,
            "pause_requested": controller.pause_requested,
            "gpu": to_wire(controller.gpu),
            "saved_step": keeper.saved_step if keeper is not None else None,
            "checkpoint_error": self.driver.checkpoint_error,
            "error": error_to_wire(error) if error is not None else None,
            "failure_log": self.failure_log,
            "progress": [to_wire(p) for p in controller.all_progress()],
            "clients": len(self.server.viewers),
            "lr": self.mirror.recent[-1].lr if self.mirror.recent else self.driver.config.lr,
            "steps_per_sec": self.steps_per_sec,
        }
        if info is not None and (full or info is not self._info_sent):
            sent = self._info_sent
            if not full and sent is not None and dataclasses.replace(sent, rewinds=info.rewinds) == info:
                status["rewinds"] = to_wire(info.rewinds)  # (what changes every 64 steps: the rest stays)
            else:
                status["info"] = to_wire(info)
        if error is not None and full:
            status["traceback"] = controller.error_traceback
        return status

    def snapshot_frame(self) -> bytes:
        return self.snapshot_frames()[0]

    def snapshot_frames(self) -> list[bytes]:
        """A new viewer's first frames: the mirror, then the older part of the scrub buffer (if any)."""
        fields, blob, backlog = self.mirror.snapshot()
        frames = [pack({"kind": "snapshot", **fields, "status": self.status(full=True)}, blob, deflate=True)]
        if backlog:
            frames.append(pack({"kind": "backlog", "observed": [to_wire(r) for r in backlog]}))
        return frames

    def tick(self, records: list[Any]) -> None:
        """After each drain: the mirror takes the records; every viewer gets them with the status (one frame), a
        viewer that is new or fell behind gets the whole mirror instead."""
        self.mirror.add(records)
        viewers = self.server.viewers
        controller = self.driver.controller
        now = time.monotonic()
        self._measure_rate(now, controller)
        if (viewers and controller is not None and controller.state is RunState.RUNNING
                and now - self._last_observe >= OBSERVE_SECONDS):
            self._last_observe = now
            controller.request_observation()  # the next step carries per-layer statistics: the panes show it
        if not viewers:
            self.warnings.clear()
            return
        fresh = [v for v in viewers if v.needs_snapshot and not v.queue]  # (one that has not read the last: later)
        if fresh:
            frames = self.snapshot_frames()
            for viewer in fresh:
                viewer.needs_snapshot = False
                for frame in frames:
                    viewer.send(frame)
        segments, blob = records_to_wire(records)
        status = self.status()
        info = controller.info if controller is not None else None
        if info is not None:
            self._info_sent = info
        if self.warnings:
            status["warnings"], self.warnings = self.warnings, []
        frame = pack({"kind": "news", "records": segments, "status": status, "sent_at": time.time()}, blob,
                     deflate=True)
        self.news_bytes += len(frame)
        self.server.broadcast(frame, skip=fresh)  # (the snapshot just sent holds these records already)

    def _measure_rate(self, now: float, controller: Any) -> None:
        if controller is None or controller.state is not RunState.RUNNING:
            self._rate.clear()
            self.steps_per_sec = None
            return
        self._rate.append((now, controller.step_count))
        while len(self._rate) > 2 and now - self._rate[1][0] >= RATE_SECONDS:
            self._rate.popleft()
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        self.steps_per_sec = (s1 - s0) / (t1 - t0) if t1 - t0 >= 0.5 else None

    def close(self, line: str | None) -> None:
        """The run is over: every client gets the exit line, an EndRun waiting gets it too, the socket goes."""
        controller = self.driver.controller
        step = controller.step_count if controller is not None else 0
        if self.end_request is not None and not self.end_request[1].done():
            self.end_request[1].set_result(line)
        try:
            last = pack({"kind": "ended", "line": line, "step": step,
                         "status": self.status(full=True) if controller is not None else {}})
        except WireError:  # (a traceback too big for a frame, say: the line alone)
            last = pack({"kind": "ended", "line": (line or "")[:10_000], "step": step, "status": {}})
        self.server.close(last)
