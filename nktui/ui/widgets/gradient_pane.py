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

from nktui.render import charset
from nktui.render.format import number, ratio_text, shape_text, sparkline
from nktui.protocol import StepRecord
from nktui.ui.pacing import RedrawPace

SPARK_WIDTH = 10
# (label, key, width): fixed widths that fit the 54 columns of an 80x24 terminal, so that updating a cell never
# needs a relayout. The detail screen (Enter) shows names and shapes in full; here a long name keeps its end
# (`…layer1.conv.weight` and `…layer1.bn.weight` stay apart) and a long shape its start (`32x16x…`, a conv kernel).
MAX_LAYER_WIDTH = 32
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
        self._add_columns(COLUMNS[0][2])

    def _add_columns(self, layer_width: int) -> None:
        self.layer_width = layer_width
        for label, key, width in COLUMNS:
            self.add_column(charset.text(label), key=key, width=layer_width if key == "layer" else width)

    def _fit_layer_column(self, names) -> None:
        """The layer column as wide as the longest name, as far as the pane's width allows (then names are cut
        in the middle): set up again only when that width changes (new layers, a resize)."""
        others = sum(width + 2 for _, key, width in COLUMNS if key != "layer") + 2  # (cell padding, scrollbar)
        room = (self.size.width or 80) - others - 2
        want = max(COLUMNS[0][2], min(max((len(n) for n in names), default=0), MAX_LAYER_WIDTH, room))
        if want != self.layer_width:
            self.clear(columns=True)
            self._add_columns(want)

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
        self._fit_layer_column(record.layers)
        self.shown_step = record.step
        self.border_title = (charset.text(f"Gradients · step {record.step}")
                             + (" [b reverse] history [/]" if scrubbing else "")
                             + (f" [b reverse] {note} [/]" if note else ""))
        for name, layer in record.layers.items():
            cells = {
                "layer": fit_middle(name, self.layer_width),
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

    def clear_layers(self, note: str = "") -> None:
        self.clear()
        self.shown_step = None
        self.border_title = "Gradients" + (f" · {note}" if note else "")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(self.LayerChosen(str(event.row_key.value)))


def fit_middle(text: str, width: int) -> str:
    """`text` if it fits `width`, else its start and its end with `…` between: `features…0.weight`."""
    if len(text) <= width:
        return text
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + charset.text("…") + text[len(text) - tail:]


def fit(text: str, width: int, *, keep_end: bool) -> str:
    """`text` if it fits `width`, else cut to it with `…` where the cut is: at the start (keep_end) or the end."""
    if len(text) <= width:
        return text
    cut = charset.text("…")
    return cut + text[len(text) - width + 1:] if keep_end else text[: width - 1] + cut
