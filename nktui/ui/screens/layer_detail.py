"""LayerDetailScreen: everything about one parameter tensor at the newest step.

Its statistics (from the newest observed step), the histogram of its gradient values, and heat maps of the weight,
its gradient, and the weight before and after the last update. For a layer whose rows each see the whole image
(the linear model, an MLP's first layer) every row is drawn as a picture of the input's shape, so the user sees
each class's template and how this step's gradient pushes it. `n` takes a step (while paused) and redraws.

The snapshot is taken on the training thread between steps (`Controller.call`), so the screen never touches a
tensor itself.
"""

from __future__ import annotations

from concurrent.futures import Future

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from nktui.training.records import LayerStats
from nktui.ui.calls import when_done
from nktui.ui.format import number, ratio_text, shape_text
from nktui.ui.heatmap import abs_max, diverging, render, render_text, scale_legend, tile


class LayerDetailScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q", "close", "Close", id="close"),
        Binding("n", "step", "Step", id="step"),
    ]

    def __init__(self, session, name: str) -> None:
        super().__init__()
        self.session = session
        self.layer_name = name
        self._pending: Future | None = None
        self._snapshot = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            yield Static(id="detail-stats")
            yield Static(id="detail-histogram")
            yield Static("[dim]taking a snapshot of the weights…[/dim]", id="detail-maps")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#detail").border_title = f"{self.layer_name}"
        self.fetch()
        self.set_interval(0.2, self.check)

    # -- data -------------------------------------------------------------------------------------------------
    def fetch(self) -> None:
        from nktui.training.inspect import layer_snapshot  # (the call runs on the training thread)

        name = self.layer_name
        width = max(self.size.width - 6, 20)
        self._pending = self.session.controller.call(lambda trainer: layer_snapshot(trainer, name, 32, width))
        when_done(self, self._pending, self.snapshot_taken, self.snapshot_failed)

    def snapshot_taken(self, snapshot) -> None:
        self._pending = None
        self._snapshot = snapshot
        self.show_maps()

    def snapshot_failed(self, error: BaseException) -> None:
        self._pending = None
        self.query_one("#detail-maps", Static).update(f"[red]no snapshot: {error}[/red]")

    def check(self) -> None:
        """Follow single steps (a new snapshot when the step count moved while not running); refresh the stats."""
        trainer = self.session.trainer
        snapshot = self._snapshot
        if self._pending is None and snapshot is not None and trainer is not None and trainer.step_count != snapshot.step:
            if self.session.state.value != "running":  # follow single steps; a running view stays still
                self.fetch()
        self.show_stats()

    def action_step(self) -> None:
        self.session.step()

    def action_close(self) -> None:
        self.dismiss(None)

    # -- drawing ----------------------------------------------------------------------------------------------
    def show_stats(self) -> None:
        record = self.session.latest_observed
        layer: LayerStats | None = record.layers.get(self.layer_name) if record is not None else None
        stats = self.query_one("#detail-stats", Static)
        if layer is None:
            stats.update("[dim]no observed step yet[/dim]")
            return
        table = Table.grid(padding=(0, 2))
        table.add_column(style="dim")
        table.add_column()
        table.add_column(style="dim")
        table.add_column()
        table.add_row("shape", shape_text(layer.shape), "step", str(record.step))
        table.add_row("‖grad‖", number(layer.grad_norm, 4), "‖W‖ before", number(layer.weight_norm, 4))
        table.add_row("grad mean", number(layer.grad_mean, 3), "‖update‖", number(layer.update_norm, 4))
        table.add_row("grad std", number(layer.grad_std, 3), "update/‖W‖", ratio_text(layer.update_ratio))
        table.add_row("grad |max|", number(layer.grad_absmax, 3), "non-finite", str(layer.nonfinite))
        table.add_row("lr", number(record.lr), "update/(lr‖grad‖)", number(layer.update_norm / (record.lr * layer.grad_norm) if layer.grad_norm else None, 3))
        stats.update(table)
        self.query_one("#detail-histogram", Static).update(histogram_text(layer))

    def show_maps(self) -> None:
        snap = self._snapshot
        width = max(self.size.width - 6, 20)
        parts: list = [Text(f"snapshot after step {snap.step}" + (" (cells are averages: the layer is large)" if snap.pooled else ""), style="dim")]
        if snap.row_images:
            classes = _row_labels(self.session, snap.shape[0], len(snap.row_images))
            after = snap.row_images
            before = None
            if snap.row_update_images:
                before = tuple(
                    tuple(tuple(w - u for w, u in zip(wr, ur)) for wr, ur in zip(wi, ui))
                    for wi, ui in zip(after, snap.row_update_images)
                )
            scale = abs_max(*after, *(before or ()))
            colour = diverging(scale)
            parts.append(Text("Weights per row, as the input image (each class's template)", style="bold"))
            parts.append(scale_legend(scale))
            if before is not None:
                parts += [Text("before the last step"), tile([render(g, colour) for g in before], classes, width)]
            parts += [Text("after the last step (now)"), tile([render(g, colour) for g in after], classes, width)]
            if snap.row_grad_images:
                gscale = abs_max(*snap.row_grad_images)
                parts += [
                    Text("Gradient dL/dW per row: the step moves each template by -lr × this", style="bold"),
                    scale_legend(gscale),
                    tile([render(g, diverging(gscale)) for g in snap.row_grad_images], classes, width),
                ]
        else:
            before = None
            if snap.update is not None:
                before = tuple(tuple(w - u for w, u in zip(wr, ur)) for wr, ur in zip(snap.weight, snap.update))
            scale = abs_max(snap.weight, before)
            parts += [Text("Weight", style="bold"), scale_legend(scale)]
            if before is not None:
                parts += [Text("before the last step"), render_text(before, diverging(scale))]
            parts += [Text("after the last step (now)"), render_text(snap.weight, diverging(scale))]
            if snap.grad is not None:
                gscale = abs_max(snap.grad)
                parts += [Text("Gradient dL/dW", style="bold"), scale_legend(gscale), render_text(snap.grad, diverging(gscale))]
        if snap.update is None:
            parts.append(Text("before/after: shown for observed steps; pause and press n to take one", style="dim"))
        self.query_one("#detail-maps", Static).update(Group(*parts))


def histogram_text(layer: LayerStats) -> Text:
    text = Text("Gradient values\n", style="bold")
    hist = layer.histogram
    if hist is None:
        text.append("(no histogram for this step)" if not layer.nonfinite else "(the gradient holds nan/inf)", style="dim")
        return text
    top = max(hist.counts) or 1
    edges = hist.edges()
    for i, count in enumerate(hist.counts):
        bar = "█" * round(count / top * 30)
        text.append(f"{edges[i]:>10.3g} .. {edges[i + 1]:<10.3g} ", style="dim")
        text.append(bar, style="cyan")
        text.append(f" {count}\n")
    return text


def _row_labels(session, rows: int, count: int) -> list[str]:
    """Class names when the layer has one row per class (the output layer), else row numbers."""
    classes = tuple(getattr(getattr(session.trainer, "data", None), "classes", ()))
    if rows == len(classes):
        return [str(c) for c in classes[:count]]
    return [f"#{i}" for i in range(count)]
