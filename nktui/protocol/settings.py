"""`Setting`: what the front ends know of one RunConfig field, and `setting()`, which declares a field with it.

`nktui.protocol.config` declares every RunConfig field through `setting()` and derives `SETTINGS`, `LIVE`,
`LIVE_UPDATES`, `RESUMABLE` and `watch_off_flags()` from them. Plain Python.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    """What the front ends know of one RunConfig field, said once, here: the flag and its help, whether it applies
    while the run goes on, whether it may differ from the checkpoint's on --resume, the watchpoint it switches, and
    its row in the app's config pane. `SETTINGS` has them all; `nktui.cli.args` makes the flags from them, the
    config pane its rows, `Trainer.update_live` and `nktui.cli.resume` their sets (`LIVE_UPDATES`, `RESUMABLE`)."""

    help: str  # the flag's help (`nktui --help`; "(default: ...)" is added from the field's default)
    metavar: str = ""  # the flag's value placeholder ("" for on/off flags; N or X by type when not given)
    live: bool = False  # may change while the run goes on: config pane Enter, `Trainer.update_live` (the LR: SetLr)
    resume: bool = False  # may differ from the checkpoint's on --resume (the others shape the model, data, optimizer)
    watch: str = ""  # the watchpoint (WatchHit.watchpoint) that `off` switches off
    off: Any = None  # the value that switches `watch` off
    pane: str = ""  # its label in the app's config pane ("": not there)
    tip: str = ""  # its tooltip there
    choices: tuple[str, ...] = ()  # the pane offers these (a Select); on/off fields get ("on", "off")
    models: tuple[str, ...] = ()  # the models it means anything for (empty: all); the pane hides it for others
    optimizers: tuple[str, ...] = ()  # the same for optimizers
    name: str = ""  # the field's name (filled in by `settings()`)
    type: str = ""  # the field's annotation as written: "int", "int | None", "bool", ...

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def flag_for(self, value: Any) -> str:
        """The command line that sets this field to `value`: `--watch-grad-jump 0`, `--no-watch`."""
        if isinstance(value, bool):
            return self.flag if value else "--no-" + self.flag[2:]
        return f"{self.flag} {value}"


def setting(default: Any, help: str, **meta: Any) -> Any:
    """A RunConfig field with its `Setting` (see there) as metadata."""
    return dataclasses.field(default=default, metadata={"setting": Setting(help, **meta)})
