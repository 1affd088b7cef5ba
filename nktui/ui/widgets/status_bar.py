"""StatusBar: one line with the run's state and its newest numbers.

`state  step N/LIMIT  epoch E  lr X  loss L  acc A  val V  S samples/s  device` (on CUDA: the card's name, memory
used/total and utilisation). The words `step`, `lr` and the state are written literally so that people and scripts
(tmux capture-pane) can read them.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from nktui.render.format import lr_text, number, rate
from nktui.protocol import RunState

STATE_STYLES = {
    RunState.STARTING: "bold cyan",
    RunState.RUNNING: "bold green",
    RunState.PAUSED: "bold yellow",
    RunState.FINISHED: "bold blue",
    RunState.FAILED: "bold white on red",
    RunState.STOPPED: "bold",
}


class StatusBar(Widget):
    """One line, always: it repaints itself without asking the screen for a new layout (`Static.update` would,
    a few times a second, and a layout pass re-renders every widget)."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
    }
    """
    text = ""  # the plain text shown now (tests and scripts read it)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._content = Text()

    def render(self) -> Text:
        return self._content

    def show(self, session, record=None) -> None:
        """Update from the session and the step record to show (default: the newest); repaints only when the text
        changed (fewer bytes over SSH)."""
        text = Text(no_wrap=True, overflow="crop")
        for part, style in fit(parts(session, record), self.size.width or 200):
            text.append(part, style=style)
            text.append(" ")
        if text.plain != self.text:
            self.text = text.plain
            self._content = text
            self.refresh()


def parts(session, record=None) -> list[tuple[str, str, int]]:
    """(text, style, priority) pieces of the status line; lower priorities are dropped first when narrow."""
    state = session.state
    out = [(f" {state.value} ", STATE_STYLES[state], 9)]
    info = session.info
    step = record if record is not None else session.latest_step  # one source for the step and its numbers
    count = step.step if step is not None else session.step_count
    limit = session.step_limit
    out.append((f"step {count}" + (f"/{limit}" if limit else ""), "", 9))
    if step is not None:
        out.append((f"epoch {step.epoch}", "", 4))
    out.append((f"lr {lr_text(session.lr)}", "cyan", 9))
    if step is not None:
        out.append((f"loss {number(step.loss, 4)}", "", 8))
        out.append((f"acc {number(step.accuracy, 3)}", "", 5))
    if session.latest_eval is not None:
        out.append((f"val {number(session.latest_eval.accuracy, 3)}", "", 6))
    if session.state is RunState.RUNNING and session.samples_per_sec:
        out.append((f"{rate(session.samples_per_sec)} samples/s", "", 3))
    if info is not None:
        out.append((device_text(info.device, session.gpu if info.device_type == "cuda" else None), "dim", 2))
    return out


def fit(items: list[tuple[str, str, int]], width: int) -> list[tuple[str, str]]:
    """Drop the lowest-priority items until the line (items joined by spaces) fits the width."""
    kept = list(items)
    while kept and sum(len(t) + 1 for t, _, _ in kept) > width:
        kept.remove(min(kept, key=lambda item: item[2]))
    return [(t, s) for t, s, _ in kept]


def device_text(device: str, reading=None) -> str:
    """`cpu`, or on CUDA `cuda:0 H100 80GB HBM3 12.3/79.6 GiB 87%`: the card's name, its memory in use and in all,
    and its utilisation (with nvidia-ml-py), from the newest `GpuReading` the run side took (once a second, on a
    thread of its own); the device alone without one."""
    from nktui.run.client import gpu_text  # (plain Python: no torch)

    text = gpu_text(reading)
    return f"{device} {text}" if text else str(device)
