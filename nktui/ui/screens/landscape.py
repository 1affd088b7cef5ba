"""LandscapeScreen: the loss surface around the current weights with the descent path on it, and the loss along
the last step.

The surface (`nktui.engine.debugger.landscape.compute_surface`) is computed on the training thread as one
`ComputeSurface` command: training waits until it is done (the screen says so), and every weight is put back bit for
bit afterwards. A progress bar follows the grid rows through the `JobProgress` the training thread reports; Esc
sends `Cancel(job)`, which stops it at the next row. The map
is a contour map (colour bands, darker level lines), `◆` the weights now, `•` each recorded step joined by `·`.
Beside it, the loss along the last update from -2x to +3x of it (1x: where the step went).

Keys: `d` cycles the plane (two weights / Li et al. random directions / the path's principal directions), `w`
types the two weights, `+`/`-` zoom, `0` fits the path, `n` steps (paused) and redraws, `r` computes again.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import replace

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import ProgressBar, Static
from textual_plotext import PlotextPlot

from nktui.protocol.commands import ComputeSurface, JobProgress
from nktui.protocol.results import DEFAULT_RESOLUTION, MODES, SurfaceCancelled, SurfaceRequest
from nktui.render import contour
from nktui.render.format import number
from nktui.ui.widgets.key_bar import KeyBar

MODE_TEXT = {
    "weights": "two weights, every other weight held where it is",
    "random": "two random directions, filter-normalised (Li et al. 2018)",
    "path": "the plane the recorded steps moved in most (their principal directions)",
}
LEGEND_WIDTH = 13
SLICE_MIN_WIDTH = 24


class LandscapeScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    #landscape { width: 100%; height: 1fr; border: thick $accent; background: $surface; padding: 0 1; }
    #ls-info { height: auto; }
    #ls-progress { height: 1; }
    #ls-body { height: 1fr; }
    #ls-map { width: auto; }
    #ls-legend { width: 13; margin: 0 1; }
    #ls-side { width: 1fr; }
    #ls-slice-note { height: auto; color: $text-muted; }
    #ls-slice { height: 1fr; min-width: 20; }
    """
    BINDINGS = [
        Binding("escape", "cancel_or_close", "Cancel/Close", id="close"),
        Binding("q", "close", "Close", show=False),
        Binding("r,v", "compute", "Recompute", id="recompute"),
        Binding("d", "next_mode", "Plane", id="mode"),
        Binding("w", "choose_weights", "Weights", id="weights"),
        Binding("plus,equals_sign", "zoom(0.5)", "Zoom in", id="zoom-in", key_display="+"),
        Binding("minus", "zoom(2.0)", "Zoom out", id="zoom-out", key_display="-"),
        Binding("0", "fit", "Fit", id="fit", show=False),
        Binding("n", "step", "Step", id="step"),
    ]

    def __init__(self, session, layer: str | None = None, mode: str = "weights", resolution: int | None = None) -> None:
        """`layer`: whose two largest-|gradient| weights span the plane (default: the first weight matrix)."""
        super().__init__()
        self.session = session
        self.request = SurfaceRequest(mode=mode, layer=layer, resolution=resolution or DEFAULT_RESOLUTION)
        self.surface = None  # nktui.protocol.Surface, once computed
        self.progress: JobProgress | None = None  # how far the computation in flight has come
        self._job: int | None = None  # its job number
        self.error: str | None = None
        self.cancelled = False
        self._pending: Future | None = None
        self._again = False  # the request changed while computing: compute again when the old one has stopped
        self._follow_step: int | None = None  # after `n`: recompute once the trainer is past this step

    def compose(self) -> ComposeResult:
        with Vertical(id="landscape"):
            yield Static(id="ls-info")
            yield ProgressBar(id="ls-progress", show_eta=False)
            with Horizontal(id="ls-body"):
                yield Static(id="ls-map")
                yield Static(id="ls-legend")
                with Vertical(id="ls-side"):
                    yield Static(id="ls-slice-note")
                    yield PlotextPlot(id="ls-slice")
        yield KeyBar()

    def on_mount(self) -> None:
        self.action_compute()
        self.set_interval(0.1, self.check)

    # -- computing on the training thread -------------------------------------------------------------------
    @property
    def computing(self) -> bool:
        return self._pending is not None

    def action_compute(self) -> None:
        if self._pending is not None:  # a key changed the request: stop this computation, then start the new one
            self._again = True
            self.cancel()
            self.show_info()
            return
        command = ComputeSurface(self.request)
        self._job = command.job
        self.progress = JobProgress(command.job)
        self.cancelled, self.error = False, None
        self._pending = self.session.submit(command)
        self.show_info()

    def action_cancel_or_close(self) -> None:
        if self._pending is not None:
            self._again = False
            self.cancel()
        else:
            self.action_close()

    def cancel(self) -> None:
        """Stop the computation in flight (the weights are put back); Esc."""
        if self._pending is None or self._job is None:
            return
        self.session.cancel(self._job)  # stops at the next grid row, or before it starts

    def check(self) -> None:
        future = self._pending
        if future is not None and future.done():
            self._pending = None
            self.finish(future)
        elif future is not None:
            self.progress = self.session.job_progress(self._job) or self.progress
            bar = self.query_one("#ls-progress", ProgressBar)
            bar.update(total=max(self.progress.total, 1), progress=self.progress.done)
            self.query_one("#landscape").border_subtitle = f"{self.progress.phase} · training waits · esc cancels"
        follow = self._follow_step
        if follow is not None and future is None and self.session.step_count > follow:
            self._follow_step = None
            self.action_compute()

    def finish(self, future: Future) -> None:
        self.query_one("#landscape").border_subtitle = ""
        error = None if future.cancelled() else future.exception()
        if self._again:
            self._again = False
            self.action_compute()
            return
        if future.cancelled() or isinstance(error, SurfaceCancelled):
            self.cancelled = True
        elif error is not None:
            self.error = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        else:
            self.surface = future.result()
            if self.surface.w1 is not None:  # keep the plane: the next computation follows the same two weights
                self.request = replace(self.request, w1=self.surface.w1, w2=self.surface.w2)
            self.draw()
        self.show_info()

    # -- keys -------------------------------------------------------------------------------------------------
    def action_next_mode(self) -> None:
        mode = MODES[(MODES.index(self.request.mode) + 1) % len(MODES)]
        self.request = replace(self.request, mode=mode, span=None)
        self.action_compute()

    def action_zoom(self, factor: float) -> None:
        span = self.request.span if self.request.span is not None else (self.surface.span if self.surface else None)
        if span is None:
            return
        self.request = replace(self.request, span=span * factor)
        self.action_compute()

    def action_fit(self) -> None:
        self.request = replace(self.request, span=None)
        self.action_compute()

    def action_step(self) -> None:
        count = self.session.step_count  # (before the step: it may be taken before step() returns)
        if self.session.info is not None and self._pending is None and self.session.step():
            self._follow_step = count

    def action_choose_weights(self) -> None:
        from nktui.ui.screens.weights_dialog import WeightsDialog

        info = self.session.info
        if info is None:
            return
        shapes = info.weight_shapes
        current = self.surface.w1 if self.surface and self.surface.w1 else None
        w1 = str(current) if current else ""
        w2 = str(self.surface.w2) if current else ""

        def chosen(refs) -> None:
            if refs:
                self.request = replace(self.request, mode="weights", w1=refs[0], w2=refs[1], span=None)
                self.action_compute()

        self.app.push_screen(WeightsDialog(shapes, w1, w2), chosen)

    def action_close(self) -> None:
        self.cancel()
        self.dismiss(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "step":
            return True if self.session.can_step else None
        return True

    # -- drawing ----------------------------------------------------------------------------------------------
    def show_info(self) -> None:
        request, surface = self.request, self.surface
        shown = surface.mode if surface is not None else request.mode
        title = f"Loss surface · {shown}" + (f" · step {surface.step}" if surface else "")
        self.query_one("#landscape").border_title = title
        lines = [Text(f"Plane: {MODE_TEXT[shown]}. ", style="bold")]
        samples = surface.samples if surface is not None else request.samples
        size = len(surface.xs) if surface is not None else request.resolution
        lines[0].append(f"Loss on the first {samples} validation samples, {size}×{size} points.", style="not bold")
        bar = self.query_one("#ls-progress", ProgressBar)
        bar.display = self._pending is not None
        if self._pending is not None:
            lines.append(Text(f"Computing the {request.mode} surface on the training thread: training waits until it "
                              "is done. Esc cancels.", style="yellow"))
        elif self.cancelled:
            lines.append(Text("Cancelled; the weights are as they were and training goes on. r computes again, Esc closes.", style="yellow"))
        elif self.error:
            lines.append(Text(self.error, style="bold red"))
        elif surface is not None:
            lines.append(self.summary_text(surface))
        self.query_one("#ls-info", Static).update(Group(*lines))

    def summary_text(self, surface) -> Text:
        flat = [(v, i, j) for j, row in enumerate(surface.losses) for i, v in enumerate(row)]
        low, i, j = min(flat)
        text = Text(f"Took {surface.seconds:.2f} s (training waited). ")
        text.append("◆", style="bold magenta")
        text.append(f" now: loss {number(surface.centre_loss, 4)}; lowest {number(low, 4)} at "
                    f"({number(surface.xs[i], 2)}, {number(surface.ys[j], 2)}).")
        if len(surface.path) > 1:
            text.append(" • the last ")
            text.append(f"{len(surface.path) - 1} observed steps")
            if surface.path_share is not None:
                text.append(f"; {surface.path_share:.0%} of their movement lies in this plane")
            text.append(".")
        for note in surface.notes:
            text.append(f" {note}.", style="dim")
        return text

    def draw(self) -> None:
        surface = self.surface
        if surface is None:
            return
        width, height = self.query_one("#ls-body").size
        if width == 0 or height == 0:
            width, height = self.size.width - 4, self.size.height - 8
        map_width = max(width - LEGEND_WIDTH - 2 - SLICE_MIN_WIDTH, 8)
        side = contour.side_for(map_width, height - 3, len(surface.xs))
        edges = contour.levels([v for row in surface.losses for v in row])
        path = [(p.x, p.y) for p in surface.path]
        span = surface.span
        lines = contour.draw_surface(surface.losses, span, path, side, edges)
        top = Text(f"↑ {surface.y_label}", style="dim")
        top.truncate(side)
        self.query_one("#ls-map", Static).update(Text("\n").join([top, *lines, *axis_caption(surface, side)]))
        legend = [Text("loss", style="bold"), *contour.legend(edges), Text("")]
        legend.append(Text("◆", style="bold magenta") + Text(f" step {surface.step}"))
        if len(path) > 1:
            legend.append(Text("• ", style="bold") + Text(f"from {surface.path[0].step}"))
        hidden = contour.outside(path, span)
        if hidden:
            legend.append(Text(f"{hidden} off the map: - zooms out", style="yellow"))
        legend.append(Text(f"x, y ±{number(span, 2)}", style="dim"))
        self.query_one("#ls-legend", Static).update(Text("\n").join(legend))
        self.draw_slice()

    def draw_slice(self) -> None:
        surface = self.surface
        line = surface.line
        plot = self.query_one("#ls-slice", PlotextPlot)
        note = self.query_one("#ls-slice-note", Static)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        if line is None:
            note.update(Text("Loss along the last step: " + next((n for n in surface.notes if "step" in n), "none"), style="dim"))
            plot.display = False
            return
        plot.display = True
        how = "the recorded weights" if line.source == "trajectory" else "the update"
        note.update(Text(f"Loss along the last step (step {line.from_step} → {line.to_step}, from {how}): "
                         f"0 = before it, 1 = where it went (now)"))
        plt.plot(list(line.ts), list(line.losses), marker="braille", color="cyan")
        at = {t: v for t, v in zip(line.ts, line.losses)}
        plt.scatter([1.0], [at.get(1.0, surface.centre_loss)], marker="●", color="magenta")
        plt.scatter([0.0], [at.get(0.0, line.losses[0])], marker="●", color="white")
        plt.vline(1.0, color="magenta")
        plt.xticks([-2, -1, 0, 1, 2, 3], ["-2x", "-1x", "0", "1x", "2x", "3x"])
        plt.xlabel("multiples of the last step")
        plot.refresh()

    def on_resize(self) -> None:
        self.call_after_refresh(self.draw)  # after the layout: #ls-body has its new size then


def axis_caption(surface, side: int) -> list[Text]:
    """Two lines under the map: the x offsets at both ends, then what x is."""
    low, high = number(-surface.span, 2), number(surface.span, 2)
    ends = Text(low + " " * max(side - len(low) - len(high), 1) + high, style="dim")
    label = Text(f"→ {surface.x_label}", style="dim")
    label.truncate(side)
    return [ends, label]
