"""Which keys do something now, mixed into the app: `check_action` greys out the others in the key bar (None), and
a greyed key that is pressed anyway reaches `on_key` unhandled, which says in one line why it does nothing
(`Abilities.disabled_reason`).
"""

from __future__ import annotations

from nktui.ui import keys


class KeyStates:
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        session = self.session
        if action == "detach":
            return bool(getattr(self, "attached", False))  # (hidden for a run inside the app: it ends with it)
        if session is None:
            return True
        enabled = {
            "toggle_pause": session.can_pause or session.can_resume,
            "step": session.can_step,
            "trace": session.can_step,
            "rewind": session.can_step and session.rewind_target() is not None,
            "goto": session.can_step and session.rewind_reach is not None,
            "whatif": session.can_step,
            "set_lr": session.can_steer,
            "scale_lr": session.can_steer,
            "evaluate": session.can_steer,
            "surface": session.can_steer,
        }.get(action, True)
        return True if enabled else None  # None: shown greyed out in the footer

    def on_key(self, event) -> None:
        """A key whose binding is greyed out reaches here unhandled: say why it does nothing now."""
        binding = keys.BY_KEY.get(event.key)
        if binding is None or self.session is None or self.screen is not self.screen_stack[0]:
            return
        action = binding.action.partition("(")[0]
        if self.check_action(action, ()) is None:
            self.notify(self.session.disabled_reason(action), title=binding.description, timeout=3)
