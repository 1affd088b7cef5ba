"""TypedInput: an Input whose own editing keys run in the order they were typed.

Textual's Input inserts a printable key at once, in its `_on_key`, but runs a bound key (backspace, the arrows,
Enter) only after the key event has bubbled up to the app (Textual issue #6605). Keys that arrive together, as
they do over a slow SSH link or from tmux's `send-keys`, then apply out of order: `0.5⌫2` became `0.`, the `2`
typed before the backspace ran. Here the widget's own bindings run inline, in order, as Textual's proposed fix
(pull request #6631) does.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class TypedInput(Input):
    async def _on_key(self, event: events.Key) -> None:
        for key in event.aliases:
            for binding in self._bindings.key_to_bindings.get(key, ()):
                if binding.priority:
                    continue  # the app already had its chance at priority bindings
                event.stop()
                event.prevent_default()
                self._restart_blink()
                await self.run_action(binding.action)
                return
        await super()._on_key(event)
