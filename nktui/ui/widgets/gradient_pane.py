"""GradientPane: a row per parameter tensor with the newest observed step's numbers.

Columns: name, shape, gradient norm, update:weight ratio (coloured against the usual 1e-4 to 1e-2 band) and a
sparkline of the gradient's histogram. Enter on a row opens that layer's detail.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.binding import Binding
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widgets import DataTable

from nktui.training import StepRecord
from nktui.ui import charset
from nktui.ui.format import number, ratio_text, shape_text, sparkline
from nktui.ui.pacing import RedrawPace

SPARK_WIDTH = 10
# (label, key, width): fixed widths that fit the 54 columns of an 80x24 terminal, so that updating a cell never
# needs a relayout. The detail screen (Enter) shows names and shapes in full; here a long name keeps its end
# (`…layer1.conv.weight` and `…layer1.bn.weight` stay apart) and a long shape its start (`32x16x…`, a conv kernel).
COLUMNS = (
    ("layer", "layer", 12),
    ("shape", "shape", 7),
    ("‖grad‖", "grad", 7),
    ("upd/w", "ratio", 7),
    ("histogram", "hist", SPARK_WIDTH),
)


class GradientPane(DataTable):
    BINDINGS = [
        Binding("left", "scrub(-1)", "Older", show=False),
        Binding("right", "scrub(1)", "Newer", show=False),
        Binding("home", "scrub(-1000000)", "Oldest", show=False),
        Binding("end", "scrub(1000000)", "Newest", show=False),
    ]

    class Scrubbed(Message):
        """The user asked to move `delta` observed steps back (-) or forward (+)."""

        def __init__(self, delta: int) -> None:
            super().__init__()
            self.delta = delta

    class LayerChosen(Message):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, pace: RedrawPace | None = None, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.pace = pace  # told what each render costs
        self.border_title = "Gradients"
        self.shown_step: int | None = None

    def on_mount(self) -> None:
        for label, key, width in COLUMNS:
            self.add_column(charset.text(label), key=key, width=width)

    def render_lines(self, crop: Region) -> list[Strip]:
        start = time.perf_counter()
        try:
            return super().render_lines(crop)
        finally:
            if self.pace is not None:
                self.pace.rendered(time.perf_counter() - start)

    def action_scrub(self, delta: int) -> None:
        self.post_message(self.Scrubbed(delta))

    def show(self, record: StepRecord, *, scrubbing: bool = False, note: str = "") -> None:
        """Fill the rows from one observed step (rows are created on the first call, then updated in place).
        `note`: a word on what this step is (the step a watchpoint stopped the run before)."""
        self.shown_step = record.step
        self.border_title = (charset.text(f"Gradients · step {record.step}")
                             + (" [b reverse] history [/]" if scrubbing else "")
                             + (f" [b reverse] {note} [/]" if note else ""))
        for name, layer in record.layers.items():
            cells = {
                "layer": fit(name, COLUMNS[0][2], keep_end=True),
                "shape": fit(shape_text(layer.shape), COLUMNS[1][2], keep_end=False),
                "grad": Text(number(layer.grad_norm, 2), style="bold red" if layer.nonfinite else ""),
                "ratio": ratio_text(layer.update_ratio),
                "hist": Text(sparkline(layer.histogram.counts, SPARK_WIDTH) if layer.histogram else "", style="cyan"),
            }
            if name in self.rows:
                for key, value in cells.items():
                    self.update_cell(name, key, value)
            else:
                self.add_row(*cells.values(), key=name)

    def clear_layers(self) -> None:
        self.clear()
        self.shown_step = None
        self.border_title = "Gradients"

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(self.LayerChosen(str(event.row_key.value)))


def fit(text: str, width: int, *, keep_end: bool) -> str:
    """`text` if it fits `width`, else cut to it with `…` where the cut is: at the start (keep_end) or the end."""
    if len(text) <= width:
        return text
    cut = charset.text("…")
    return cut + text[len(text) - width + 1:] if keep_end else text[: width - 1] + cut
