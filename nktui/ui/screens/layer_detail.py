"""LayerDetailScreen: everything about one parameter tensor at the newest step.

Its statistics (from the newest observed step), the histogram of its gradient values, and heat maps of the weight,
its gradient, and the weight before and after the last update. For a layer whose rows each see the whole image
(the linear model, an MLP's first layer) every row is drawn as a picture of the input's shape, so the user sees
each class's template and how this step's gradient pushes it. A convolution (a 4-D weight: out x in x kh x kw) gets
one small tile per output filter: its kernel averaged over the input channels, before and after the step, and its
gradient. `n` takes a step (while paused) and redraws. With NO_COLOR=1 the heat maps are drawn with glyphs
(`nktui.render.heatmap`): grey alone cannot tell a negative weight from a positive one.

The snapshot is taken on the training thread between steps (a `SnapshotLayer` command), so the screen never touches
a tensor itself.
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

from nktui.protocol.commands import SnapshotLayer
from nktui.render import charset
from nktui.render.format import number, number_at_scale, ratio_text, shape_text
from nktui.render.heatmap import (
    abs_max,
    diverging,
    few_colours,
    few_colours_legend,
    render,
    scale_legend,
    shade_legend,
    shade_lines,
    tile,
)
from nktui.protocol.records import LayerStats
from nktui.ui.future_poll import when_done


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
        width = max(self.size.width - 6, 20)
        self._pending = self.session.submit(SnapshotLayer(self.layer_name, max_rows=32, max_cols=width))
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
        snapshot = self._snapshot
        if self._pending is None and snapshot is not None and self.session.step_count != snapshot.step:
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
        stats.update(stats_table(layer, record.step, record.lr))
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
            parts.append(Text("Weights per row, as the input image (each class's template)", style="bold"))
            parts.append(self.legend(scale))
            if before is not None:
                pictures = [self.picture(g, scale, 2) for g in before]
                parts += [Text("before the last step"), tile(pictures, classes, width)]
            pictures = [self.picture(g, scale, 2) for g in after]
            parts += [Text("after the last step (now)"), tile(pictures, classes, width)]
            if snap.row_grad_images:
                gscale = abs_max(*snap.row_grad_images)
                parts += [
                    Text("Gradient dL/dW per row: the step moves each template by -lr × this", style="bold"),
                    self.legend(gscale),
                    tile([self.picture(g, gscale, 2) for g in snap.row_grad_images], classes, width),
                ]
        if snap.kernels:
            parts += self.kernel_maps(snap, width)
        if not snap.row_images:
            before = None
            if snap.update is not None:
                before = tuple(tuple(w - u for w, u in zip(wr, ur)) for wr, ur in zip(snap.weight, snap.update))
            scale = abs_max(snap.weight, before)
            title = "Weight"
            if snap.kernels:
                title = "Weight as a matrix: a row per output filter, its in x kh x kw weights along it"
            parts += [Text(title, style="bold"), self.legend(scale)]
            if before is not None:
                parts += [Text("before the last step"), Text("\n").join(self.picture(before, scale))]
            parts += [Text("after the last step (now)"), Text("\n").join(self.picture(snap.weight, scale))]
            if snap.grad is not None:
                gscale = abs_max(snap.grad)
                parts += [Text("Gradient dL/dW", style="bold"), self.legend(gscale),
                          Text("\n").join(self.picture(snap.grad, gscale))]
        if snap.update is None:
            parts.append(Text("before/after: shown for observed steps; pause and press n to take one", style="dim"))
        self.query_one("#detail-maps", Static).update(Group(*parts))

    # -- heat maps: colour, or glyphs under NO_COLOR ----------------------------------------------------------
    @property
    def few_colours(self) -> bool:
        """A 16-colour terminal (TERM=xterm): five exact ANSI colours instead of a smooth map."""
        return self.app.console.color_system == "standard"

    def colours(self, scale: float):
        return few_colours(scale) if self.few_colours else diverging(scale)

    def picture(self, grid, scale: float, repeat: int = 1) -> list[Text]:
        """Lines of a signed grid: half blocks in colour, or (NO_COLOR) a glyph per value, `repeat` wide."""
        if self.app.no_color:
            return shade_lines(grid, scale, repeat)
        return render(grid, self.colours(scale))

    def legend(self, scale: float) -> Text:
        if self.app.no_color:
            return shade_legend(scale)
        return few_colours_legend(scale) if self.few_colours else scale_legend(scale)

    def kernel_maps(self, snap, width: int) -> list:
        """A tile per output filter: its kh x kw kernel, averaged over the input channels."""
        kernels = snap.kernels
        labels = [f"#{i}" for i in range(len(kernels))]
        kw = len(kernels[0][0]) if kernels and kernels[0] else 1
        zoom = max(1, 6 // kw)  # a 3x3 kernel becomes 6x6 pixels: 6 columns, 3 lines

        def tiles(grids, scale) -> Text:
            if self.app.no_color:  # a glyph per value, two wide: a 3x3 kernel is 6 columns, 3 lines too
                return tile([shade_lines(g, scale, 2) for g in grids], labels, width)
            return tile([render(_enlarge(g, zoom), self.colours(scale)) for g in grids], labels, width)

        shown = f"the first {len(kernels)} of {snap.kernel_filters}" if snap.kernel_filters > len(kernels) else "each"
        parts: list = [Text(f"Kernels: {shown} output filter's kernel, mean over its input channels", style="bold")]
        before = None
        if snap.kernel_updates:
            before = [tuple(tuple(w - u for w, u in zip(wr, ur)) for wr, ur in zip(k, d))
                      for k, d in zip(kernels, snap.kernel_updates)]
        scale = abs_max(*kernels, *(before or ()))
        parts.append(self.legend(scale))
        if before is not None:
            parts += [Text("before the last step"), tiles(before, scale)]
        parts += [Text("after the last step (now)"), tiles(kernels, scale)]
        if snap.kernel_grads:
            gscale = abs_max(*snap.kernel_grads)
            parts += [Text("Gradient dL/dW per kernel", style="bold"), self.legend(gscale),
                      tiles(snap.kernel_grads, gscale)]
        return parts


def _enlarge(grid, zoom: int):
    """Each value as a zoom x zoom block (small kernels read better larger)."""
    if zoom <= 1:
        return grid
    return [[v for v in row for _ in range(zoom)] for row in grid for _ in range(zoom)]


def stats_table(layer: LayerStats, step: int, lr: float) -> Table:
    """The layer's numbers at one step. The gradient's mean is shown against its abs max (`number_at_scale`): a
    mean that is 0 up to rounding (a softmax layer's, whose terms cancel) reads 0 on every CPU."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    table.add_column(style="dim")
    table.add_column()
    per_lr_grad = layer.update_norm / (lr * layer.grad_norm) if layer.grad_norm else None
    table.add_row("shape", shape_text(layer.shape), "step", str(step))
    table.add_row("‖grad‖", number(layer.grad_norm, 4), "‖W‖ before", number(layer.weight_norm, 4))
    table.add_row("grad mean", number_at_scale(layer.grad_mean, layer.grad_absmax), "‖update‖",
                  number(layer.update_norm, 4))
    table.add_row("grad std", number(layer.grad_std, 3), "update/‖W‖", ratio_text(layer.update_ratio))
    table.add_row("grad |max|", number(layer.grad_absmax, 3), "non-finite", str(layer.nonfinite))
    table.add_row("lr", number(lr), "update/(lr‖grad‖)", number(per_lr_grad, 3))
    return table


def histogram_text(layer: LayerStats) -> Text:
    text = Text("Gradient values\n", style="bold")
    hist = layer.histogram
    if hist is None:
        text.append("(no histogram for this step)" if not layer.nonfinite else "(the gradient holds nan/inf)", style="dim")
        return text
    top = max(hist.counts) or 1
    edges = hist.edges()
    for i, count in enumerate(hist.counts):
        bar = charset.text("█") * round(count / top * 30)
        text.append(f"{_edge(edges[i], layer.grad_absmax):>10} .. {_edge(edges[i + 1], layer.grad_absmax):<10} ",
                    style="dim")
        text.append(bar, style="cyan")
        text.append(f" {count}\n")
    return text


def _edge(value: float, scale: float) -> str:
    """A bin edge in 3 digits; one within rounding of 0 (lo + i x width, landing on 0) is 0."""
    return "0" if number_at_scale(value, scale) == "0" else f"{value:.3g}"


def _row_labels(session, rows: int, count: int) -> list[str]:
    """Class names when the layer has one row per class (the output layer), else row numbers."""
    classes = session.info.classes if session.info is not None else ()
    if rows == len(classes):
        return [str(c) for c in classes[:count]]
    return [f"#{i}" for i in range(count)]
