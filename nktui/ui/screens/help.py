"""HelpScreen: every key of the app and of its screens, with what it does."""

from __future__ import annotations

from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from nktui.render import charset

# Two paragraphs without hard line breaks: the help box is narrower than 110 columns, and the text wraps to it.
ABOUT = (
    "[b]nktui[/b]: a debugger for gradient descent. Pause, take one backprop step at a time, look at every layer's "
    "gradient and update, change the learning rate, go on. The plot shows the training loss per step (grey: raw, "
    "cyan: smoothed), the validation loss (red) and accuracy (green, right axis) at each evaluation.\n"
    "The gradient pane's [b]upd/w[/b] is ‖W_after − W_before‖ / ‖W_before‖ for the last observed step: "
    "[blue]blue[/blue] below 1e-4 (barely learning), [green]green[/green] in 1e-4..1e-2, "
    "[yellow]yellow[/yellow]/[red]red[/red] above (too big a step).\n"
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        # Keys right-aligned in a column of their own; a long description wraps within its column (80x24 too).
        keys = Table.grid(padding=(0, 2))
        keys.add_column(justify="right", style="bold", no_wrap=True)
        keys.add_column()
        for key, description in self.keys:
            keys.add_row(Text(charset.text(key)), Text(charset.text(description)))  # Text, not markup: `[` is a key here
        with VerticalScroll(id="help"):
            yield Static(charset.text(ABOUT))
            yield Static("[b]Keys[/b]")
            yield Static(Padding(keys, (0, 0, 0, 2)))
            yield Static("\n[dim]Esc, ? or q closes this help[/dim]")

    def action_close(self) -> None:
        self.dismiss(None)
