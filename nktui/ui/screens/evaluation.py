"""EvaluationScreen: the model evaluated on the validation split now, in detail.

Validation loss and accuracy, the confusion matrix coloured by count, per-class precision, recall and accuracy,
and the validation samples the model got wrong while most sure of itself, drawn as pictures (half blocks; RGB for
3-channel images) with their true and predicted class and the probability given to the prediction.

The evaluation (`nktui.engine.evaluation.evaluate_in_detail`) runs on the training thread between steps (an
`Evaluate(detailed=True)` command); it is the same `Trainer.evaluate` as the periodic validation, so its result also lands on the
loss plot. `r` evaluates again (after more steps), `v` opens the loss surface.
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
from textual.widgets import Static

from nktui.render import eval_tables
from nktui.ui.widgets.key_bar import KeyBar


class EvaluationScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    #evaluation {
        width: 100%;
        height: 1fr;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    """
    BINDINGS = [
        Binding("escape,q", "close", "Close", id="close"),
        Binding("r,e", "evaluate", "Evaluate again", id="evaluate-again"),
        Binding("v", "surface", "Loss surface", id="surface"),
    ]

    def __init__(self, session) -> None:
        super().__init__()
        self.session = session
        self.evaluation = None  # nktui.protocol.Evaluation, once it is there
        self._pending: Future | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="evaluation"):
            yield Static("[dim]evaluating the validation set…[/dim]", id="eval-summary")
            yield Static(id="eval-tables")
            yield Static(id="eval-wrong")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#evaluation").border_title = "Evaluation"
        self.action_evaluate()
        self.set_interval(0.1, self.check)

    # -- data -------------------------------------------------------------------------------------------------
    def action_evaluate(self) -> None:
        if self._pending is not None:
            return
        self._pending = self.session.evaluate(detailed=True)
        if self.evaluation is not None:
            self.query_one("#evaluation").border_subtitle = "evaluating again…"

    def check(self) -> None:
        future = self._pending
        if future is None or not future.done():
            return
        self._pending = None
        self.query_one("#evaluation").border_subtitle = ""
        if future.cancelled() or future.exception() is not None:
            reason = "cancelled" if future.cancelled() else future.exception()
            self.query_one("#eval-summary", Static).update(Text(f"no evaluation: {reason}", style="red"))
            return
        self.evaluation = future.result()
        self.show()

    # -- drawing ----------------------------------------------------------------------------------------------
    def show(self) -> None:
        ev = self.evaluation
        if ev is None:
            return
        width = max(self.size.width - 6, 20)
        self.query_one("#evaluation").border_title = f"Evaluation · step {ev.result.step}"
        self.query_one("#eval-summary", Static).update(eval_tables.summary(ev))
        confusion, classes = eval_tables.confusion_table(ev.result), eval_tables.class_table(ev)
        console = self.app.console
        if console.measure(confusion).maximum + 4 + console.measure(classes).maximum <= width:
            grid = Table.grid(padding=(0, 4))
            grid.add_row(confusion, classes)
            tables = Group(Text(""), grid, Text(""))
        else:
            tables = Group(Text(""), confusion, Text(""), classes, Text(""))
        self.query_one("#eval-tables", Static).update(tables)
        self.query_one("#eval-wrong", Static).update(eval_tables.wrong_examples(ev, width))

    def on_resize(self) -> None:
        self.show()

    def action_surface(self) -> None:
        from nktui.ui.screens.landscape import LandscapeScreen

        self.app.push_screen(LandscapeScreen(self.session))

    def action_close(self) -> None:
        self.dismiss(None)
