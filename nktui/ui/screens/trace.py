"""TraceScreen: walk one real step phase by phase (forward, softmax and loss, backward, update).

`t` (while paused) takes one step with the tracer attached (`Trainer.trace_step`, on the training thread) and
shows its first phase; each further `t` or Enter shows the next one; after the last phase `t` traces the next
step. The numbers are those of the step that was committed, not a re-computation.
"""

from __future__ import annotations

import math

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from nktui.render import charset
from nktui.render.format import index_text, number, number_at_scale, ratio_text, shape_text
from nktui.render.heatmap import grayscale, render, tile
from nktui.protocol import StepTrace
from nktui.ui.future_poll import when_done

PHASES = ("1 forward", "2 softmax and loss", "3 backward", "4 update")


class TraceScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("t,enter", "next", "Next phase", id="next"),
        Binding("escape,q", "close", "Close", id="close"),
    ]

    def __init__(self, session) -> None:
        super().__init__()
        self.session = session
        self.trace: StepTrace | None = None
        self.phase = 0

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="trace"):
            yield Static("[dim]taking one step with the tracer attached…[/dim]", id="trace-body")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.start()

    def start(self) -> None:
        self.trace, self.phase = None, 0
        when_done(self, self.session.trace_step(), self.traced, self.failed)

    def traced(self, trace: StepTrace) -> None:
        self.trace = trace
        self.show()

    def failed(self, error: BaseException) -> None:
        self.query_one("#trace-body", Static).update(f"[red]cannot trace: {error}[/red]")

    def action_next(self) -> None:
        if self.trace is None:
            return
        if self.phase < len(PHASES) - 1:
            self.phase += 1
            self.show()
        else:
            self.start()
            self.query_one("#trace-body", Static).update("[dim]tracing the next step…[/dim]")

    def action_close(self) -> None:
        self.dismiss(None)

    def show(self) -> None:
        trace = self.trace
        container = self.query_one("#trace", VerticalScroll)
        container.border_title = f"Trace of step {trace.step} · {PHASES[self.phase]}"
        container.border_subtitle = "  ".join(
            f"[b]{p}[/b]" if i == self.phase else f"[dim]{p}[/dim]" for i, p in enumerate(PHASES)
        )
        body = (forward_view, loss_view, backward_view, update_view)[self.phase](trace, self.size.width - 6)
        hint = Text("t / Enter: next phase" if self.phase < 3 else "t: trace the next step", style="dim")
        self.query_one("#trace-body", Static).update(Group(body, Text(""), hint))
        container.scroll_home(animate=False)


def forward_view(trace: StepTrace, width: int) -> Group:
    channels = trace.sample_image
    low = min(min(min(row) for row in ch) for ch in channels)
    high = max(max(max(row) for row in ch) for ch in channels)
    picture = render(_mean_channels(channels), grayscale(low, high))
    label = trace.classes[trace.label] if trace.label < len(trace.classes) else str(trace.label)
    table = Table(box=None, padding=(0, 2), header_style="bold")
    for column in ("layer", "kind", "output", "mean", "std", "dead"):
        table.add_column(column)
    for layer in trace.forward:
        dead = "" if layer.dead_fraction is None else f"{layer.dead_fraction:.0%}"
        mean = number_at_scale(layer.mean, math.hypot(layer.mean, layer.std))  # against the RMS: 0 after a norm layer
        table.add_row(layer.name, layer.kind, shape_text(layer.shape), mean, number(layer.std), dead)
    return Group(
        Text(f"The batch: {trace.batch_size} images, in one forward pass through every layer.", style="bold"),
        Text(f"Sample {trace.sample_index} of the batch (label {label}), as the model sees it:"),
        tile([picture], [label], width),
        Text("Each layer's output over the batch, in forward order:", style="bold"),
        table,
    )


def loss_view(trace: StepTrace, width: int) -> Group:
    table = Table(box=None, padding=(0, 2), header_style="bold")
    for column in ("class", "logit", "softmax p", "", "one-hot"):
        table.add_column(column)
    for i, (logit, p) in enumerate(zip(trace.logits, trace.probabilities)):
        name = trace.classes[i] if i < len(trace.classes) else str(i)
        bar = Text(bar_text(p, 1.0), style="green" if i == trace.label else "cyan")
        table.add_row(name, number(logit), probability(p), bar, "1" if i == trace.label else "0")
    predicted = trace.classes[trace.predicted] if trace.predicted < len(trace.classes) else str(trace.predicted)
    return Group(
        Text("Logits (the last layer's linear sums) → softmax probabilities, against the one-hot label", style="bold"),
        table,
        Text(f"predicted {predicted} with p = {probability(trace.probabilities[trace.predicted])}"),
        Text(f"cross-entropy of this sample = -log p[label] = -log {probability(trace.probabilities[trace.label])} "
             f"= {number(trace.sample_loss, 4)}  (from log-softmax, exact where p rounds to 0)"),
        Text(f"batch loss = the mean over the {trace.batch_size} samples = {number(trace.batch_loss, 4)}   "
             f"(batch accuracy {trace.batch_accuracy:.3f})", style="bold"),
    )


def backward_view(trace: StepTrace, width: int) -> Group:
    flow = Table(box=None, padding=(0, 2), header_style="bold")
    for column in ("layer", "kind", "‖dL/d output‖", "", ""):
        flow.add_column(column)
    finite = [b.grad_norm for b in trace.backward if math.isfinite(b.grad_norm)]
    top = max(finite, default=0.0)
    first_bad = next((b.name for b in trace.backward if magnitude_note(b.grad_norm)), None)
    for layer in trace.backward:
        note = magnitude_note(layer.grad_norm)
        mark = Text(f"← {note} from here on" if layer.name == first_bad else note, style="bold red" if note else "")
        flow.add_row(layer.name, layer.kind, number(layer.grad_norm), Text(bar_text(layer.grad_norm, top), style="magenta"),
                     mark)
    params = Table(box=None, padding=(0, 2), header_style="bold")
    for column in ("parameter", "shape", "‖dL/dW‖", ""):
        params.add_column(column)
    for u in trace.updates:
        params.add_row(u.name, shape_text(u.shape), number(u.grad_norm), Text(magnitude_note(u.grad_norm), style="bold red"))
    where = (f"The gradient first became {magnitude_note(next(b.grad_norm for b in trace.backward if b.name == first_bad))}"
             f" at {first_bad}'s output." if first_bad else "")
    return Group(
        Text("Backprop: the gradient arriving at each layer's output, output layer first", style="bold"),
        Text("(bars shrinking towards the input mean vanishing gradients; growing, exploding ones)", style="dim"),
        flow,
        Text(where, style="bold red"),
        Text("…and the gradient of the loss with respect to each parameter:", style="bold"),
        params,
    )


def update_view(trace: StepTrace, width: int) -> Group:
    table = Table(box=None, padding=(0, 2), header_style="bold")
    for column in ("parameter", "‖update‖", "‖lr·grad‖", "‖W‖ before → after", "update/‖W‖"):
        table.add_column(column)
    for u in trace.updates:
        table.add_row(u.name, number(u.update_norm), number(u.lr_grad_norm),
                      f"{number(u.weight_norm_before, 4)} → {number(u.weight_norm_after, 4)}", ratio_text(u.update_ratio))
    examples = Table(box=None, padding=(0, 2), header_style="bold")
    for column in ("weight", "before", "grad", f"-lr·grad (lr {number(trace.lr)})", "after"):
        examples.add_column(column)
    for u in trace.updates[:2]:
        for index, before, after, grad in u.examples:
            examples.add_row(f"{u.name}[{index_text(index, u.shape)}]", number(before, 5), number(grad, 4), number(-trace.lr * grad, 4),
                             number(after, 5))
    return Group(
        Text(f"The update: w ← w - lr·dL/dw with lr = {number(trace.lr)} ({trace.optimizer})", style="bold"),
        table,
        Text(trace.update_rule),
        Text(""),
        Text("The weights with the largest gradients, one by one:", style="bold"),
        examples,
    )


BAR_WIDTH = 30
HUGE = 1e10  # a gradient or activation norm this large has blown up (float32 norms overflow near 1e19)


def bar_text(value: float, top: float) -> str:
    """A bar of up to BAR_WIDTH blocks for value / top; full for inf, none for nan or a top of 0."""
    if math.isnan(value) or top <= 0 and not math.isinf(value):
        return ""
    if math.isinf(value) or value >= top:
        return charset.text("█") * BAR_WIDTH
    return charset.text("█") * max(1, round(value / top * BAR_WIDTH)) if value > 0 else ""


def magnitude_note(value: float) -> str:
    """'nan', 'inf' or 'huge' for a norm that has blown up; '' for an ordinary one."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf"
    return "huge" if abs(value) >= HUGE else ""


def probability(p: float) -> str:
    """A probability in 6 characters: 0.123, and the tiny ones as 1e-30 rather than 0.000."""
    if p != 0 and p < 1e-3:
        return f"{p:.0e}"
    return f"{p:.3f}"


def _mean_channels(channels):
    if len(channels) == 1:
        return channels[0]
    return tuple(
        tuple(sum(ch[r][c] for ch in channels) / len(channels) for c in range(len(channels[0][0])))
        for r in range(len(channels[0]))
    )
