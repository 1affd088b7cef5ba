"""The debugger's keys, mixed into the app: trace (`t`), rewind (`b`), rewind to a step (`g`), the LR what-if (`w`).

Each sends a named command to the session (which runs it on the training thread) and opens the screen that shows
its result; which of them are enabled when is the app's `check_action`.
"""

from __future__ import annotations


class DebuggerKeys:
    def action_trace(self) -> None:
        from nktui.ui.screens.trace import TraceScreen

        self.push_screen(TraceScreen(self.session))

    def action_rewind(self) -> None:
        target = self.session.rewind_target()
        if target is not None:
            self.rewind_to(target)

    def rewind_to(self, target: int) -> None:
        future = self.session.rewind_to(target)

        def done(result) -> None:
            if result.exception() is not None:  # (called on the training thread: only hand over a message)
                self.call_from_thread(self.notify, str(result.exception()), title="Cannot rewind", severity="error")

        future.add_done_callback(done)
        self.set_timer(0.05, self.tick)

    def action_goto(self) -> None:
        """`g`: rewind to a step typed, suggested from the scrub cursor (just before the step shown) or one back."""
        from nktui.ui.screens.goto_dialog import GotoDialog

        reach = self.session.rewind_reach
        if reach is None:
            return
        target = self.session.rewind_target()
        suggested = min(max(target if target is not None else reach[1], reach[0]), reach[1])

        def chosen(step: int | None) -> None:
            if step is not None:
                self.rewind_to(step)

        self.push_screen(GotoDialog(suggested, *reach), chosen)

    def action_whatif(self) -> None:
        from nktui.ui.screens.whatif import WhatIfScreen

        def apply(value: float | None) -> None:
            if value is not None:
                self.apply_lr(value)

        self.push_screen(WhatIfScreen(self.session), apply)
