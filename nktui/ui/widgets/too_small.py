"""TooSmall: what the app shows instead of its panes when the terminal is smaller than MIN_WIDTH x MIN_HEIGHT.

Below that size the panes would be squeezed to nothing. The app calls `fits(width, height)` on every resize and
sets the class `-too-small` on itself when the terminal does not fit: this widget's CSS then hides the panes and
shows a line that says how much room nktui needs. Training goes on meanwhile, and the keys still work; making
the terminal bigger brings the panes back.
"""

from __future__ import annotations

from textual.widgets import Static

MIN_WIDTH = 60
MIN_HEIGHT = 16


def fits(width: int, height: int) -> bool:
    return width >= MIN_WIDTH and height >= MIN_HEIGHT


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
        self.update(
            f"nktui needs a terminal of at least {MIN_WIDTH}x{MIN_HEIGHT}; this one is {width}x{height}. "
            "Make it bigger (training goes on; q quits)."
        )
