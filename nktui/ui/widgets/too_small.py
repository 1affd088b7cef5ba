"""TooSmall: what the app shows instead of its panes when the terminal is smaller than MIN_WIDTH x MIN_HEIGHT.

Below that size the panes would be squeezed to nothing. The app calls `fits(width, height)` on every resize and
sets the class `-too-small` on itself when the terminal does not fit: this widget's CSS then hides the panes and
shows a line that says how much room nktui needs (`room_message`: the longest wording that fits the terminal,
wrapped here, down to 20x5). Training goes on meanwhile, and the keys still work; making the terminal bigger brings
the panes back.
"""

from __future__ import annotations

import textwrap

from textual.widgets import Static

MIN_WIDTH = 60
MIN_HEIGHT = 16


def fits(width: int, height: int) -> bool:
    return width >= MIN_WIDTH and height >= MIN_HEIGHT


def room_message(width: int, height: int) -> str:
    """What the notice says, as lines of at most `width` characters and at most `height` lines: the first wording
    (longest first) that fits whole, so that nothing is cut at any size down to 20x5."""
    need, now = f"{MIN_WIDTH}x{MIN_HEIGHT}", f"{width}x{height}"
    wordings = (
        f"nktui needs a terminal of at least {need}; this one is {now}. "
        "Make it bigger (training goes on; q quits).",
        f"nktui needs at least {need}; this one is {now}. Make it bigger (training goes on; q quits).",
        f"nktui needs {need}, this is {now}. Make it bigger (q quits).",
        f"nktui needs {need}, has {now}. q quits.",
        f"need {need}, have {now}",
        f"need {need}",
    )
    for wording in wordings:
        lines = textwrap.wrap(wording, max(width, 1), break_on_hyphens=False)
        if len(lines) <= height and all(len(line) <= width for line in lines):
            return "\n".join(lines)
    return "\n".join(textwrap.wrap(wordings[-1], max(width, 1))[: max(height, 1)])


class TooSmall(Static):
    SCOPED_CSS = False  # the rules hide the app's other widgets too
    DEFAULT_CSS = """
    TooSmall {
        display: none;
        width: 1fr;
        height: 1fr;
        content-align: center middle;
        text-align: center;
        color: $warning;
    }
    .-too-small TooSmall {
        display: block;
    }
    .-too-small #main, .-too-small #error, .-too-small StatusBar, .-too-small KeyBar {
        display: none;
    }
    """

    def follow_size(self, app, width: int, height: int) -> None:
        """On every resize: the class `-too-small` on the app while the terminal does not fit, and the message."""
        app.set_class(not fits(width, height), "-too-small")
        if not fits(width, height):
            self.show_size(width, height)

    def show_size(self, width: int, height: int) -> None:
        self.update(room_message(width, height))
