"""GotoDialog: type the step to rewind to (`g`); it must lie within the rewind reach, which the dialog states."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from nktui.ui.widgets.typed_input import TypedInput


def parse_step(text: str, oldest: int, newest: int) -> int:
    """The step typed, as a whole number within [oldest, newest]; ValueError with the reason otherwise."""
    text = text.strip().replace(",", "").replace("_", "")
    try:
        step = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a step number" if text else "type a step number") from None
    if not oldest <= step <= newest:
        raise ValueError(f"step {step} is out of reach: steps {oldest} to {newest} can be reached")
    return step


class GotoDialog(ModalScreen[int | None]):
    """Dismisses with the step to rewind to, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel")]

    def __init__(self, suggested: int, oldest: int, newest: int) -> None:
        super().__init__()
        self.suggested, self.oldest, self.newest = suggested, oldest, newest

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Rewind to the state after step N: any step from {self.oldest} to {self.newest}")
            yield TypedInput(str(self.suggested), id="goto-input", select_on_focus=True)
            yield Label("", id="goto-error")
            yield Label("[dim]Enter rewinds (replaying from the nearest kept state) · Esc cancels[/dim]")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            step = parse_step(event.value, self.oldest, self.newest)
        except ValueError as exc:
            self.query_one("#goto-error", Label).update(f"[b red]{exc}[/b red]")
            return
        self.dismiss(step)

    def action_cancel(self) -> None:
        self.dismiss(None)
