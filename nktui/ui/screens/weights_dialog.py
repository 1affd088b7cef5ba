"""WeightsDialog: type the two weights of the loss surface's plane, W1 and W2, as `name[i,j]`."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from nktui.protocol.results import parse_weight_ref
from nktui.ui.widgets.typed_input import TypedInput


class WeightsDialog(ModalScreen[tuple[object, object] | None]):
    """Dismisses with (W1, W2) as WeightRefs, or None when cancelled. `shapes`: parameter name -> shape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel")]

    def __init__(self, shapes: dict[str, tuple[int, ...]], w1: str, w2: str) -> None:
        super().__init__()
        self.shapes = shapes
        self.initial = (w1, w2)

    def compose(self) -> ComposeResult:
        names = ", ".join(f"{name} {'x'.join(map(str, shape)) or 'scalar'}" for name, shape in self.shapes.items())
        with Vertical(id="dialog"):
            yield Label("The two weights of the surface's plane, as name[i,j] (or a flat index, name[k])", markup=False)
            yield Label(Text(names, style="dim"))
            yield TypedInput(self.initial[0], id="w1-input", placeholder="W1, e.g. fc.weight[3,17]", select_on_focus=True)
            yield TypedInput(self.initial[1], id="w2-input", placeholder="W2", select_on_focus=True)
            yield Label("", id="weights-error")
            yield Label("[dim]Enter on W1 moves to W2, Enter on W2 computes the surface · Esc cancels[/dim]")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "w1-input":
            self.query_one("#w2-input", Input).focus()
            return
        try:
            refs = tuple(parse_weight_ref(self.query_one(f"#{key}-input", Input).value, self.shapes) for key in ("w1", "w2"))
        except ValueError as exc:
            self.query_one("#weights-error", Label).update(Text(str(exc), style="bold red"))
            return
        if refs[0] == refs[1]:
            self.query_one("#weights-error", Label).update("[b red]W1 and W2 are the same weight: choose two[/b red]")
            return
        self.dismiss(refs)

    def action_cancel(self) -> None:
        self.dismiss(None)
