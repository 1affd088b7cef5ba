"""The app session's files: its run directory, its exports, the last.pt it asks for, and what could not be written.

A mixin of `nktui.ui.session.Session` (which owns the run; this is the part that touches the disk, from the app's
thread). A write that fails never stops the run or the app: an export that cannot be opened or written (a full
disk, EIO, a read-only folder), a periodic last.pt that does not fit, a config.toml that cannot be written, each
becomes one warning in `Changes.write_warnings` (the app shows it as a notice) and the run trains on. No Textual,
no tensor work.
"""

from __future__ import annotations

from nktui.protocol import NktuiError, RunState
from nktui.run.files import holds_step
from nktui.run.client import save_problem
from nktui.ui.changes import Changes


class SessionFiles:
    """What `Session` does with files (its attributes: keeper, config, exports, export_dir, saves ...)."""

    # -- exports ------------------------------------------------------------------------------------------------------
    def open_exports(self, run_dir) -> None:
        """Write this run's records into `run_dir` (metrics.jsonl, and metrics.csv and TensorBoard event files when
        the config asks for them), from `poll()`. Call it before the first poll, or at any time: the writers open
        once the trainer is built (they need its layer names) and get every record from then on."""
        self.export_dir = run_dir
        if self._configured and self.exports is None:
            self._open_exports(self.info)

    def _open_exports(self, info) -> None:
        run_dir = self.export_dir
        if run_dir is None or self.exports is not None:
            return
        try:  # (the run was launched with TensorBoard's gradient histograms when the config asks for them)
            self.exports = self.run.open_exports(run_dir)
        except (OSError, NktuiError) as exc:  # no tensorboard, a folder we cannot write: train on, and say so
            self.export_error = f"no exports to {run_dir}: {exc}"
            self.export_dir = None

    # -- the run directory and last.pt ------------------------------------------------------------------------------
    def _create_run_dir(self) -> None:
        keeper = self.keeper
        if keeper is None or keeper.created:
            return
        try:
            self.run.create_run_dir()
        except NktuiError as exc:  # a folder we cannot write: train on without files, and say so
            self.export_error = str(exc)
            self.export_dir = None

    def _on_state(self, state: RunState) -> None:
        if self.keeper is None or self.closed:
            return
        if state is RunState.FINISHED and not self.remote:  # (a run process saves its own end)
            self.save()  # the end of the run
        elif state is RunState.FAILED:
            self.failure_log = self.run.log_failure()

    def save(self) -> bool:
        """Ask for last.pt now (the `s` key); a later poll reports it. A failed run writes the state kept from just
        before the failing step. False when there is no run directory or no trainer that could save."""
        if self.keeper is None or not self.keeper.created or self.info is None:
            return False
        if self.state is RunState.FAILED:
            self.saves.append(self.run.save_fault_state())
            return True
        if self.state.is_over:
            return False
        self.saves.append(self.run.save())
        return True

    def _write_warnings(self, changes: Changes) -> None:
        """What could not be written since the last poll, once each: the exports, config.toml, a periodic last.pt."""
        lines = self.run.writer_warnings()
        for problem in (self.export_error, self.checkpoint_error):
            if problem and problem not in self.warned:
                self.warned.add(problem)
                step = self.keeper.saved_step if self.keeper is not None else None
                if problem == self.checkpoint_error:
                    problem += "; " + holds_step(step, still=True, none="no last.pt yet")
                lines.append(problem + ("" if "run goes on" in problem else "; the run goes on"))
        changes.write_warnings += tuple(lines)

    def _report_saves(self, changes: Changes) -> None:
        while self.saves and self.saves[0].done():
            future = self.saves.pop(0)
            error = future.exception()
            if error is None:
                changes.saved_step = future.result()
            else:
                changes.save_error = save_problem(error, self.keeper)

    @property
    def checkpoint_error(self) -> str | None:
        """Why the newest periodic last.pt could not be written (a full disk, nan weights), if it could not."""
        return self.run.checkpoint_error
