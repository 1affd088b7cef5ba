"""LrDialog: type a new learning rate (`0.01`, `1e-3`); bad input is explained and the old LR stays."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from nktui.render.format import lr_text
from nktui.protocol import ConfigError, parse_lr
from nktui.ui.widgets.typed_input import TypedInput


class LrDialog(ModalScreen[float | None]):
    """Dismisses with the new LR, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel")]

    def __init__(self, current: float) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Learning rate (now {lr_text(self.current)}): a positive number such as 0.01 or 1e-3")
            yield TypedInput(lr_text(self.current), id="lr-input", select_on_focus=True)
            yield Label("", id="lr-error")
            yield Label("[dim]Enter applies it from the next step · Esc cancels[/dim]")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            value = parse_lr(event.value)
        except ConfigError as exc:
            self.query_one("#lr-error", Label).update(f"[b red]{exc}[/b red] (the LR stays {lr_text(self.current)})")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
