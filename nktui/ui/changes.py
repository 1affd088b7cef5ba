"""Changes: what one poll of the session brought, so that the app redraws only what changed."""

from __future__ import annotations

from dataclasses import dataclass

from nktui.protocol import Rewound, WatchHit


@dataclass
class Changes:
    """What one poll brought: the widgets redraw only what changed."""

    steps: bool = False
    observed: bool = False
    evaluation: bool = False
    state: bool = False
    rewound: Rewound | None = None
    watch: WatchHit | None = None  # the first of the hits this poll brought (`watches`: all of them)
    watches: tuple[WatchHit, ...] = ()
    saved_step: int | None = None  # a last.pt asked for (`s`, the end of the run) was written, holding this step
    save_error: str | None = None  # ... or could not be written, and why
    write_warnings: tuple[str, ...] = ()  # files that could not be written (a full disk), each said once

    def __bool__(self) -> bool:
        return bool(self.steps or self.observed or self.evaluation or self.state or self.rewound or self.watch
                    or self.saved_step is not None or self.save_error or self.write_warnings)
