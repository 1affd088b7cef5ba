"""KeyBar: every key of the current screen, like Textual's Footer, but wrapping onto a second line when narrow.

At 80 columns the app has more keys than one line holds; the Footer would cut the last ones off. The KeyBar
shows them all: `key Description` pairs, keys that do nothing in the current state greyed out (their action's
`check_action` returned None), one line when they fit and two when they do not. While a field of the config pane
is being edited (it takes the letter keys), the keys that work there.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Input, Static

from nktui.render import charset


EDITING = (("enter", "apply lr, steps or a watchpoint now"), ("tab", "next field"),
           ("esc", "back to the panes (then r restarts with the marked changes)"))


MAX_LINES = 2
ESSENTIAL = ("quit", "help", "toggle_pause", "step")  # the keys a narrow terminal still shows


def _lines(items: list[Text], width: int) -> list[list[Text]]:
    """The items laid out in lines of at most `width` cells, one space apart."""
    lines: list[list[Text]] = [[]]
    used = 0
    for item in items:
        if lines[-1] and used + 1 + len(item) > width:
            lines.append([])
            used = 0
        used += len(item) + (1 if lines[-1] else 0)
        lines[-1].append(item)
    return lines if lines[-1] else lines[:-1]


class KeyBar(Static):
    COMPONENT_CLASSES = {"keybar--key", "keybar--disabled"}
    DEFAULT_CSS = """
    KeyBar {
        height: auto;
        max-height: 2;
        background: $footer-background;
        color: $footer-foreground;
    }
    KeyBar > .keybar--key {
        color: $footer-key-foreground;
        text-style: bold;
    }
    KeyBar > .keybar--disabled {
        color: $text-disabled;
    }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, lambda _screen: self.refresh_keys())
        self.call_after_refresh(self.refresh_keys)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def on_resize(self) -> None:
        self.refresh_keys()

    def refresh_keys(self) -> None:
        seen: set[str] = set()
        width = self.size.width or 80
        key_style = self.get_component_rich_style("keybar--key", partial=True)
        disabled_style = self.get_component_rich_style("keybar--disabled", partial=True)
        items: list[tuple[Text, bool]] = []  # (the item, whether it must stay however narrow)
        for _node, binding, enabled, _tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            key = charset.text(binding.key_display or self.app.get_key_display(binding))
            description = charset.text(binding.description)
            item = Text()
            if enabled:
                item.append(key, style=key_style)
                item.append(f" {description}")
            else:
                item.append(f"{key} {description}", style=disabled_style)
            items.append((item, binding.action in ESSENTIAL))
        while len(_lines([i for i, _ in items], width)) > MAX_LINES:  # too narrow: drop from the end, never q
            droppable = [n for n, (_, essential) in enumerate(items) if not essential]
            if not droppable:
                break
            del items[droppable[-1]]
        text = Text(no_wrap=False, overflow="fold")
        for n, line in enumerate(_lines([i for i, _ in items], width)):
            if n:
                text.append("\n")
            text.append_text(Text(" ").join(line))
        if not text.plain and isinstance(self.app.focused, Input):  # a field being edited takes the letter keys
            for key, description in EDITING:
                text.append(charset.text(key), style=key_style)
                text.append(f" {charset.text(description)}  ")
        self.update(text)
