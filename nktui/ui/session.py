"""Session: the app's side of one training run, in plain Python (no Textual, no tensor work).

It starts the run (a `nktui.run.client.RunClient`, which launches the trainer on its own thread through the one
run driver, `nktui.run.driver`), pulls what the run published at the UI's pace (`poll()`), keeps the plot history
and the newest records, and sends named commands (`nktui.protocol.commands`) through the client. It never reads
the trainer nor its controller, and imports nothing of the engine: what it knows of the run is what the client
gives (`RunInfo`, the step counter, the records, the GPU reading). The app owns one Session at a
time; restarting means stopping this one and starting another. Tests can drive a Session without a screen.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path

from nktui.protocol.config import app_threads
from nktui.protocol import ConfigError, EvalResult, NktuiError, Rewound, RunConfig, RunState, StepRecord, WatchHit
from nktui.protocol.commands import Evaluate, JobProgress, LrWhatIf, RewindTo, TraceStep, UpdateLive
from nktui.protocol.run_info import RunInfo
from nktui.host.mirror import RECENT_DEPTH, SCRUB_DEPTH, ScrubBacklog, Snapshot
from nktui.run.client import RunClient
from nktui.run.files import RunKeeper
from nktui.run.history import RunHistory
from nktui.ui.abilities import Abilities
from nktui.ui.changes import Changes
from nktui.ui.session_files import SessionFiles

RATE_WINDOW = 2.0  # seconds of step counts behind the status bar's samples/s


class Session(Abilities, SessionFiles):
    def __init__(self, config: RunConfig, *, paused: bool = False, keeper: RunKeeper | None = None,
                 client: RunClient | None = None, **trainer_kwargs) -> None:
        """`keeper`: the run directory to write (config.toml, metrics.jsonl, last.pt, nktui.log); None: no files.
        `client`: the run to show, made elsewhere (tests: a fake fed with recorded records); None: a new run of
        `config`."""
        if not config.threads:
            config = config.replace(threads=app_threads())
        self.config = config
        # The folder is made and locked before the trainer could write last.pt into it; one that another nktui
        # took first, or that cannot be made, leaves the run without files (claim_error says why).
        self.run = client if client is not None else RunClient(config, keeper=keeper, paused=paused, **trainer_kwargs)
        keeper, claim_error = self.run.keeper, self.run.claim_error
        self.history = RunHistory()
        resume = getattr(keeper, "resume", None)
        if resume is not None:  # the plot goes on from the run's own history, at metrics.jsonl's resolution
            from nktui.run.files import METRICS_FILE, earlier_records

            self.history.extend(earlier_records(resume.path.parent / METRICS_FILE, resume.step))
        self.latest_step: StepRecord | None = None
        self.latest_observed: StepRecord | None = None
        self.latest_eval: EvalResult | None = None
        self.lr = config.lr
        self.observed: deque[StepRecord] = deque(maxlen=SCRUB_DEPTH)  # per-layer records, for scrubbing
        self.recent: deque[StepRecord] = deque(maxlen=RECENT_DEPTH)  # the newest step records, for a rewind
        self.scrub_index: int | None = None  # position in `observed` while scrubbing; None: follow the newest
        self.watch_hit: WatchHit | None = None  # the newest watchpoint hit, until the run goes on
        self._rate_samples: deque[tuple[float, int]] = deque()
        self.samples_per_sec: float | None = None  # measured from the step counter: see _measure_rate
        self._state = RunState.STARTING  # (not the run's: a run that failed at once must still be reported)
        self._configured = False
        self.export_dir = None  # a run directory to write the records into (see open_exports)
        self.exports = None  # its writers: metrics.jsonl, --csv, --tensorboard (the run driver's)
        self.export_error: str | None = claim_error  # why they could not be opened
        self.keeper = keeper
        self.saves: list[Future] = []  # last.pt writes asked for and not reported yet
        self.failure_log: Path | None = None  # nktui.log, once a failure's traceback is in it
        self.closed = False
        self.unsaved = False  # close() could not write the final state into last.pt
        self.warned: set[str] = set()  # the write problems the app was told of (once each)
        if keeper is not None:
            self.export_dir = keeper.run_dir  # claimed; config.toml is written once the trainer is built: see poll

    # -- reading ---------------------------------------------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self.run.state

    @property
    def info(self) -> RunInfo | None:
        """The run as the training thread described it; None until the trainer is built."""
        return self.run.info

    @property
    def step_count(self) -> int:
        """Updates made so far, as the training thread last published it."""
        return self.run.step_count

    @property
    def step_limit(self) -> int | None:
        info = self.info
        return info.step_limit if info is not None else None

    @property
    def finished(self) -> bool:
        info = self.info
        return info is not None and self.step_count >= info.step_limit

    @property
    def gpu(self):  # -> GpuReading | None: the newest reading the run side took (CUDA only)
        return self.run.gpu

    def poll(self, *, want_snapshot: bool = True) -> Changes:
        """Take everything published since the last poll. Cheap: no tensor work, no waiting for the trainer."""
        changes = Changes()
        info = self.info
        if info is not None:
            if not self._configured:
                self._configured = True
                self.run.built()  # torch, Textual and the model: out of the cyclic collector's walks
                self._create_run_dir()
                self._open_exports(info)
            if want_snapshot and self.state is RunState.RUNNING:
                self.run.request_observation()  # the next step carries per-layer statistics
            records = self.run.drain()  # (written to the exports here, on the app's thread: they cost the loop nothing)
            self._write_warnings(changes)  # a full disk: a notice, once; the run goes on
            for record in records:
                if isinstance(record, Snapshot):  # a run in another process: all it kept, on attaching
                    self._load(record, changes)
                    continue
                if isinstance(record, ScrubBacklog):  # ... and the older observed steps, a moment later
                    self._prepend_observed(record.observed)
                    continue
                self.history.add(record)
                if isinstance(record, StepRecord):
                    self.latest_step = record
                    self.recent.append(record)
                    self.lr = record.lr
                    changes.steps = True
                    if record.observed:
                        self.latest_observed = record
                        self.observed.append(record)
                        changes.observed = True
                elif isinstance(record, EvalResult):
                    self.latest_eval = record
                    changes.evaluation = True
                elif isinstance(record, Rewound):
                    self._forget_after(record.step)
                    changes.rewound = record
                    changes.observed = True
                elif isinstance(record, WatchHit):
                    self.watch_hit = record
                    if changes.watch is None or changes.watch.step != record.step:
                        changes.watch, changes.watches = record, ()
                    changes.watches += (record,)
        self._measure_rate(info)
        state = self.run.state
        if state is not self._state:
            self._state = state
            changes.state = True
            self._on_state(state)
        self._report_saves(changes)
        return changes

    @property
    def remote(self) -> bool:
        """The run lives in another process (nktui.host): its files are its own, and it can be left running."""
        return getattr(self.run, "remote", False)

    def _load(self, snapshot: Snapshot, changes: Changes) -> None:
        """Everything a run in another process kept, as if this view had been there from the start."""
        self.history = snapshot.history
        self.recent = deque(snapshot.recent, maxlen=RECENT_DEPTH)
        self.observed = deque(snapshot.observed, maxlen=SCRUB_DEPTH)
        self.latest_step = self.recent[-1] if self.recent else None
        self.latest_observed = self.observed[-1] if self.observed else None
        self.latest_eval = snapshot.latest_eval
        self.watch_hit = snapshot.watch_hits[-1] if snapshot.watch_hits else None
        self.scrub_index = None
        if self.latest_step is not None:
            self.lr = self.latest_step.lr
        changes.steps = changes.observed = True
        changes.evaluation = snapshot.latest_eval is not None
        if snapshot.watch_hits:  # the notice, as a viewer that was there saw it
            changes.watch, changes.watches = snapshot.watch_hits[0], snapshot.watch_hits

    def _prepend_observed(self, older) -> None:
        kept = list(older) + list(self.observed)
        dropped = max(0, len(kept) - SCRUB_DEPTH)
        self.observed = deque(kept[dropped:], maxlen=SCRUB_DEPTH)
        if self.scrub_index is not None:  # (the step shown stays the step shown)
            self.scrub_index = max(0, self.scrub_index + len(older) - dropped)

    def _measure_rate(self, info: RunInfo | None) -> None:
        """samples/s over the last RATE_WINDOW seconds, from the step counter (a paused stretch restarts it)."""
        if info is None or self.state is not RunState.RUNNING:
            self._rate_samples.clear()
            self.samples_per_sec = None
            return
        now = time.monotonic()
        self._rate_samples.append((now, self.step_count))
        while len(self._rate_samples) > 2 and now - self._rate_samples[1][0] >= RATE_WINDOW:
            self._rate_samples.popleft()
        (t0, s0), (t1, s1) = self._rate_samples[0], self._rate_samples[-1]
        self.samples_per_sec = (s1 - s0) * self.config.batch_size / (t1 - t0) if t1 - t0 >= 0.5 else None

    def _forget_after(self, step: int) -> None:
        """A rewind undid the steps after `step`: drop their records."""
        for records in (self.observed, self.recent):
            while records and records[-1].step > step:
                records.pop()
        self.latest_step = self.recent[-1] if self.recent else None
        self.latest_observed = self.observed[-1] if self.observed else None
        if self.latest_step is not None:
            self.lr = self.latest_step.lr
        self.scrub_index = None
        self.watch_hit = None

    # -- scrubbing through the observed steps ----------------------------------------------------------------------
    @property
    def shown_record(self) -> StepRecord | None:
        """The observed step the gradient pane shows: the scrubbed one, or the newest."""
        if self.scrub_index is not None and self.observed:
            return self.observed[self.scrub_index]
        return self.latest_observed

    @property
    def can_scrub(self) -> bool:
        return self.state in (RunState.PAUSED, RunState.FINISHED) and len(self.observed) > 1

    def scrub(self, delta: int) -> StepRecord | None:
        """Move the shown step `delta` observed steps back (-) or forward (+); past the newest: follow it again."""
        if not self.observed:
            return None
        index = (len(self.observed) - 1 if self.scrub_index is None else self.scrub_index) + delta
        index = max(0, index)
        self.scrub_index = None if index >= len(self.observed) - 1 else index
        return self.shown_record

    @property
    def error_text(self) -> str | None:
        error = self.run.error
        if error is None:
            return None
        if isinstance(error, NktuiError):
            return str(error)
        return f"{type(error).__name__}: {error}"

    # -- commands ----------------------------------------------------------------------------------------------------
    def toggle_pause(self) -> None:
        self.watch_hit = None
        self.scrub_index = None
        if self.can_pause:
            self.run.pause_measured()  # the last step before the pause is measured: every pane shows it
        elif self.can_resume:
            self.run.resume()

    def step(self) -> bool:
        return self.run.step()

    def set_lr(self, value: object) -> float:
        """Validate and send a new LR (ConfigError with the reason otherwise; the old LR stays)."""
        lr = self.run.set_lr(value)
        self.lr = lr
        return lr

    def update_live(self, **changes) -> None:
        """Change settings that apply to the running trainer (the watchpoints): validated here (ConfigError), then
        handed to the trainer at its next step boundary. A restart keeps them."""
        steps = changes.get("steps")
        if steps is not None and self.info is not None and steps < self.step_count:
            raise ConfigError(f"the run is at step {self.step_count} already: steps must be at least that")
        self.config = self.config.replace(**changes)
        self.submit(UpdateLive.of(changes))

    def evaluate(self, *, detailed: bool = False) -> Future:
        """A Future of the EvalResult (or with `detailed`, the Evaluation) of the weights as they are now."""
        return self.submit(Evaluate(detailed=detailed))

    def submit(self, command) -> Future:
        """Send a named command (`nktui.protocol.commands`) to the run; a Future of its result."""
        return self.run.submit(command)

    def job_progress(self, job: int) -> JobProgress | None:
        """How far a job (a loss surface) has come, as the training thread last reported it."""
        return self.run.job_progress(job)

    def cancel(self, job: int) -> bool:
        return self.run.cancel(job)

    # -- the debugger: trace, rewind, LR what-if (each runs on the training thread) -----------------------------------
    def trace_step(self):
        """A Future of the StepTrace of one step taken now (while paused)."""
        return self.submit(TraceStep())

    def lr_whatif(self):
        return self.submit(LrWhatIf())

    def rewind_to(self, step: int):
        return self.submit(RewindTo(step))

    def detach(self) -> None:
        """Leave a run in another process running; this view ends."""
        self.closed = True
        self.run.detach()

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop at the next step boundary and wait for the thread; True if it ended in time."""
        ended = self.run.stop(timeout)
        if self.export_dir is not None and self.info is not None:
            self.poll(want_snapshot=False)  # the last records into the files (and a run no poll saw yet: all)
        if self.exports is not None:
            self.run.close_exports()  # (a write error here is no exception: the files say what they hold)
            self.exports = None
        return ended

    def close(self, reason: str = "quit", *, save: bool = True, timeout: float = 2.0) -> str | None:
        """End the run for good: write last.pt (unless the run failed or never started), stop the trainer, write
        the last records. Blocks for at most about `timeout` seconds. Returns the line to print afterwards (what
        last.pt holds and how to resume), None without a run directory."""
        if self.closed:
            return None
        self.closed = True
        if self.remote:  # the run process saves, stops and says how to resume
            return self.run.end(reason, timeout=max(timeout, 10.0))
        problem = None
        if self.info is not None:
            self.poll(want_snapshot=False)  # (a run that ends before any tick saw it: the folder, the files)
        if save and self.keeper is not None and self.info is not None and not self.state.is_over:
            problem = self.run.save_and_wait(timeout)  # paused first: no step after the one saved
            self.unsaved = problem is not None
        step = self.step_count
        ended = self.stop(min(timeout, 1.0))
        finished = self.finished
        if self.keeper is None:
            return None
        what = f"{reason} at step {step}" + (f" ({problem})" if problem else "")
        line = self.run.exit_line(what, finished=finished)  # (into nktui.log too)
        # the folder is free for another process (a resume) while the app stays up; a trainer that did not stop
        # may still write last.pt: then it stays locked until the app's process ends
        self.run.release(ended)
        return line
