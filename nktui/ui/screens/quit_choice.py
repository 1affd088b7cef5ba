"""QuitChoice: `q` (and ctrl+c) on a run that lives in its own process: stop it, or leave it running.

`s` or Enter stops the run: last.pt is saved, the run process ends, the app prints how to resume. `d` detaches:
the app exits and the run trains on (`nktui attach` comes back to it). `Esc` or `n`: neither.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

STOP, DETACH = "stop", "detach"


class QuitChoice(ModalScreen[str | None]):
    BINDINGS = [
        Binding("s,enter", "answer('stop')", "Stop the run", id="quit-stop"),
        Binding("d", "answer('detach')", "Detach", id="quit-detach"),
        Binding("escape,n", "answer(None)", "Cancel", id="quit-cancel"),
        Binding("ctrl+c", "answer(None)", "Cancel", show=False, priority=True),
    ]

    def __init__(self, run_dir: object) -> None:
        super().__init__()
        self.run_dir = run_dir

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Quit: stop the run, or leave it training?")
            yield Label("[b]s[/b] / Enter: stop it: last.pt is saved and the run process ends")
            yield Label(Text.assemble(("d", "bold"), ": detach: it trains on; ",
                                      (f"nktui attach {self.run_dir}", "bold"), " comes back"))
            yield Label("[b]Esc[/b]: back to the run")

    def action_answer(self, choice: str | None) -> None:
        self.dismiss(choice)
