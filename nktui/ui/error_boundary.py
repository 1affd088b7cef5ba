"""The app's one boundary for errors: an exception while building or drawing a screen, widget or dialog closes that
screen with a notice, its traceback goes to the run's nktui.log, and the app and the run stay up.

Only errors of the interface are caught here: the run's own faults arrive as its `failed` state. An error on the
main screen (nothing to close) is reported once per distinct message, so a widget that fails every frame does not
flood the notices. `NKTUI_RAISE=1` (the test suite sets it) lets every error through, as Textual does by default.
"""

from __future__ import annotations

import os
import traceback
from typing import Any


def handle(app: Any, error: BaseException) -> bool:
    """Deal with an unhandled exception in `app`; False to let Textual end the app (as it would by default)."""
    if os.environ.get("NKTUI_RAISE") or getattr(app, "closing", True) or not isinstance(error, Exception):
        return False
    try:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        where = _log(app, text)
        summary = f"{type(error).__name__}: {' '.join(str(error).split())[:160]}"
        seen: set[str] = app.__dict__.setdefault("_errors_seen", set())
        closed = ""
        if len(app.screen_stack) > 1:
            closed = f"the {type(app.screen).__name__} was closed; "
            app.pop_screen()
        elif summary in seen:
            return True
        seen.add(summary)
        app.notify(f"{summary} ({closed}the run goes on; {where})", title="Something in the display failed",
                   severity="error", timeout=10, markup=False)
        return True
    except Exception:  # the boundary itself failed: let Textual report the original error
        return False


def _log(app: Any, text: str) -> str:
    keeper = getattr(getattr(app, "session", None), "keeper", None)
    if keeper is None or not keeper.created:
        return "no run directory for the traceback"
    keeper.note(text.rstrip())
    return f"traceback in {keeper.log_path}"
