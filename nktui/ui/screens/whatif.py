"""WhatIfScreen: the loss the next step would give at a dozen learning rates; pick one to apply.

Computed on the training thread by `nktui.engine.debugger.whatif.lr_whatif` (a few forward passes along the real update
direction; the run does not move). The curve is drawn against a log LR axis with the current LR marked, and the
table below lists the points: Enter applies the selected LR from the next step on.
"""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from nktui.render.format import lr_text, number
from nktui.protocol import WhatIf
from nktui.ui.future_poll import when_done


class WhatIfScreen(ModalScreen[float | None]):
    """Dismisses with the chosen LR (Enter) or None (Esc)."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="close")]

    def __init__(self, session) -> None:
        super().__init__()
        self.session = session
        self.result: WhatIf | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="whatif"):
            yield Static("[dim]trying the next step at 13 learning rates…[/dim]", id="whatif-title")
            yield PlotextPlot(id="whatif-plot")
            yield DataTable(cursor_type="row", id="whatif-table")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#whatif").border_title = "LR what-if: the next step's batch, after the update, at 13 lrs"
        when_done(self, self.session.lr_whatif(), self.show, self.failed)

    def failed(self, error: BaseException) -> None:
        self.query_one("#whatif-title", Static).update(f"[red]cannot compute: {error}[/red]")

    def show(self, result: WhatIf) -> None:
        self.result = w = result
        self.query_one("#whatif-title", Static).update(
            f"step {w.step}'s batch: loss {number(w.loss_now, 4)} before the update (what the status bar shows once "
            f"it is taken), and after it at each lr below · now lr {lr_text(w.current_lr)} (yellow) · lowest at lr "
            f"{w.best_lr:.3g} · Enter applies the selected lr"
        )
        plot = self.query_one("#whatif-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        xs = [math.log10(lr) for lr in w.lrs]
        finite = [(x, y) for x, y in zip(xs, w.losses) if math.isfinite(y)]
        if finite:
            plt.plot([x for x, _ in finite], [y for _, y in finite], marker="braille", color="cyan")
            plt.scatter([x for x, _ in finite], [y for _, y in finite], marker="dot", color="cyan")
        plt.vline(math.log10(w.current_lr), color="yellow")
        plt.hline(w.loss_now, color="gray")
        plt.xlabel("log10 lr")
        plot.refresh()
        table = self.query_one("#whatif-table", DataTable)
        table.clear(columns=True)
        table.add_columns("lr", "loss after the update", "change")
        for i, (lr, loss) in enumerate(zip(w.lrs, w.losses)):
            mark = " ◀ now" if lr == w.current_lr else (" ◀ lowest" if lr == w.best_lr else "")
            change = loss - w.loss_now if math.isfinite(loss) else math.nan
            table.add_row(f"{lr:.3g}{mark}", number(loss, 4), ("+" if change > 0 else "") + number(change, 3), key=str(i))
        table.move_cursor(row=w.lrs.index(w.current_lr))
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if self.result is not None:
            self.dismiss(self.result.lrs[int(event.row_key.value)])

    def action_close(self) -> None:
        self.dismiss(None)
