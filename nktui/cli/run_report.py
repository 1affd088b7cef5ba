"""What `nktui train` says while and after a run: warnings, the summary, the last line, and nktui.log's exit line.

`Reporter` holds where the words go: stdout and stderr (`nktui.streams.StreamOutput`: closed, full or gone streams
drop them) and the run's nktui.log, which gets what the streams could not take that matters (warnings, errors,
the summary's results) and, on every exit, one line:

    nktui train: finished 60 steps; runs/X/last.pt holds step 60. Train further: nktui train --resume runs/X/last.pt --steps 120
    nktui train: stopped by SIGTERM at step 48; runs/X/last.pt holds step 48. Resume: nktui train --resume runs/X/last.pt
    nktui train: finished 60 steps; the final state was not saved (cannot write runs/X/last.pt: No space left on device); runs/X/last.pt still holds step 40. Resume: ...

The last line printed on stdout is how to go on (`train further: ...`, `resume: ...`), none when no last.pt exists.
Imports no Textual and runs no tensor code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..messages import EXIT_FAILED
from ..run.driver import Final
from ..streams import StreamOutput
from ..run.files import RunKeeper, holds_step, resume_command


@dataclass
class Outcome:
    code: int
    final: Final | None = None  # set when the run ended at a step boundary and was evaluated
    wall: float = 0.0
    interrupted: bool = False
    errors: tuple[str, ...] = ()  # printed to stderr once the progress bar is gone
    stopped_by: str | None = None  # the watchpoint that ended the run
    traceback: str | None = None  # a failure's: printed to stderr (nktui.log has it already)


class Reporter:
    """stdout, stderr and nktui.log for one run (see the module's docstring)."""

    def __init__(self, out: StreamOutput, err: StreamOutput, keeper: RunKeeper) -> None:
        self.out, self.err, self.keeper = out, err, keeper
        self.progress: Any = None  # the progress bar, which prints a warning above itself

    def note_streams(self) -> None:
        """Once per stream, in nktui.log: that stdout or stderr is closed, full or gone."""
        for stream in (self.out, self.err):
            if stream.problem and not stream.noted and self.keeper.created:
                stream.noted = True
                self.keeper.note(f"nktui train: {stream.name} is {stream.problem}: what it could not print is "
                                 "written here")

    def warn(self, line: str) -> None:
        """A warning while the run trains: on stderr (above the progress bar), else in nktui.log."""
        shown = self.progress.warn(line, self.err) if self.progress is not None else self.err.say(line)
        if not shown:
            self.note_streams()
            self.keeper.note(line)

    def tell(self, stream: StreamOutput, text: str, *, log: str | None = None) -> None:
        """Print `text` on `stream`; when it does not get through, `log` (default: the text) goes to nktui.log."""
        if not stream.say(text):
            self.note_streams()
            self.keeper.note(text if log is None else log)
        self.note_streams()

    def say(self, text: str) -> None:
        """stdout only (progress, the header, the last line: nktui.log has its own exit line)."""
        self.out.say(text)
        self.note_streams()


def held(final: Final) -> str:
    return holds_step(final.saved_step)


def summary(report: Reporter, trainer: Any, outcome: Outcome, run_dir: Path, files: tuple[str, ...]) -> None:
    final, wall, interrupted = outcome.final, outcome.wall, outcome.interrupted
    steps = final.step
    rate = steps * trainer.config.batch_size / wall if wall > 0 else 0.0
    if outcome.stopped_by:
        hit = trainer.watch_hit
        where = f"just before step {hit.step}" if hit is not None and hit.stopped_before else f"at step {steps}"
        head = (f"stopped by the {outcome.stopped_by} watchpoint {where} of {trainer.step_limit} "
                f"(epoch {final.epoch}) after {wall:.1f} s; {held(final)}")
    elif interrupted:
        head = (
            f"interrupted at step {steps} of {trainer.step_limit} (epoch {final.epoch}): stopped at a step "
            f"boundary after {wall:.1f} s; {held(final)}"
        )
    else:
        head = f"finished {steps} steps (epoch {final.epoch}) in {wall:.1f} s, {rate:,.0f} samples/s"
    lines = [head]
    for label, ev in (("train", final.train), ("validation", final.val)):
        correct = sum(ev.confusion[i][i] for i in range(len(ev.confusion)))
        lines.append(f"{label:<10}  loss {ev.loss:.4f}  accuracy {ev.accuracy:.4f}  ({correct}/{ev.size})")
    written = ()
    if final.saved_step is not None:
        written = ("last.pt",) if final.saved_step == steps or outcome.stopped_by else (f"last.pt (step {final.saved_step})",)
    lines.append(f"run directory: {run_dir}  ({', '.join(('config.toml', *files, *written))})")
    # (nktui.log's exit line says what the head says: the log gets the results and the files)
    results = "; ".join(" ".join(line.split()) for line in lines[1:])
    report.tell(report.out, "\n".join(lines), log=f"nktui train: {results}")


def last_line(report: Reporter, trainer: Any, outcome: Outcome, stopped: str | None) -> str:
    """How to go on from last.pt: the last line printed; and nktui.log's one line for this exit, which it returns
    (for the attached clients). `stopped`: what stopped the run early, with `{step}` for where (`stopped by SIGTERM
    at step {step}`), None otherwise."""
    keeper, final = report.keeper, outcome.final
    command = keeper.resume_command()
    hit = trainer.watch_hit
    line = None
    if keeper.saved_step is not None:
        if outcome.stopped_by and hit is not None:  # (the app, paused there, is where to look at it)
            line = (f"reproduce: {resume_command(keeper.checkpoint, headless=False)} --paused, then t traces step "
                    f"{hit.step}")
        elif final is not None and not final.unsaved and final.step >= trainer.step_limit:
            line = f"train further: {command} --steps {2 * trainer.step_limit}"
        else:
            line = f"resume: {command}"
    step = final.step if final is not None else trainer.step_count
    if final is None:
        what = f"failed after step {step}" if outcome.code == EXIT_FAILED else f"ended at step {step}"
    elif outcome.stopped_by:
        what = f"stopped by the {outcome.stopped_by} watchpoint at step {step}"
    elif stopped is not None:
        what = stopped.format(step=step)
    elif outcome.interrupted:
        what = f"interrupted at step {step}"
    else:
        what = f"finished {step} steps"
    saved = keeper.saved_step
    holds = holds_step(saved, where=keeper.checkpoint)
    if final is not None and final.unsaved:
        still = holds_step(saved, where=keeper.checkpoint, still=True)
        holds = f"the final state was not saved ({final.save_error}); {still}"
    elif final is None and saved is not None and outcome.code == EXIT_FAILED:
        holds += ", from before the fault"
    logged = f"nktui train: {what}; {holds}" + (f". {line[0].upper()}{line[1:]}" if line else "")
    keeper.note(logged)
    if line is not None:
        report.out.say(line)  # (the terminal or the pipe may be gone: nktui.log has it)
    return logged
