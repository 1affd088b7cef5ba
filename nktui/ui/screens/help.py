"""HelpScreen: every key of the app and of its screens, with what it does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

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
        lines = [ABOUT, "[b]Keys[/b]"]
        # A key such as `[` must not open a markup tag: escape every bracket in the keys and descriptions.
        lines += [f"  [b]{_plain(f'{key:>9}')}[/b]  {_plain(description)}" for key, description in self.keys]
        lines.append("\n[dim]Esc, ? or q closes this help[/dim]")
        with VerticalScroll(id="help"):
            yield Static("\n".join(lines))

    def action_close(self) -> None:
        self.dismiss(None)


def _plain(text: str) -> str:
    """Text shown as is inside markup (every `[` escaped)."""
    return text.replace("[", "\\[")
