"""The Textual side of ASCII mode (`nktui.render.charset` decides it): the app's `-ascii` class, the scrollbars, and
a driver that writes nothing but ASCII.

nktui's own drawing switches itself (the plot, sparklines, heat maps, labels); app.tcss's `.-ascii` rules give
every border the `ascii` type. What is left is Textual's own glyphs (a Select's arrow, an Input's tall border in a
dialog, a toast's edge, the command palette) and the labels of the screens that are not drawn in ASCII themselves:
`AsciiDriver` passes every frame through `charset.to_ascii`, which maps box drawing, blocks and braille by shape,
arrows and norms to their ASCII look and anything else to `?`, cell for cell, so the layout stays where it was.
"""

from __future__ import annotations

from textual.scrollbar import ScrollBar, ScrollBarRender

from nktui.render import charset


class AsciiScrollBarRender(ScrollBarRender):
    """The thumb in its colour alone: no eighth blocks at its ends."""

    VERTICAL_BARS = [" "] * 8
    HORIZONTAL_BARS = [" "] * 8


def apply(app) -> None:
    """At start-up, after `charset.decide()`: the class that switches the borders, and the scrollbars."""
    on = charset.ascii_mode()
    app.set_class(on, "-ascii")
    ScrollBar.renderer = AsciiScrollBarRender if on else ScrollBarRender


def driver_class(default: type) -> type:
    """The driver to run the app with: the ASCII one in ASCII mode on a Linux/macOS terminal, else `default`."""
    if not charset.ascii_mode():
        return default
    try:
        from textual.drivers.linux_driver import LinuxDriver
    except ImportError:  # (Windows)
        return default
    if not issubclass(default, LinuxDriver):
        return default

    class AsciiDriver(default):  # type: ignore[misc, valid-type]
        """Writes every frame in ASCII (`charset.to_ascii`: a no-op for text that is ASCII already)."""

        def write(self, data: str) -> None:
            super().write(charset.to_ascii(data))

    return AsciiDriver
