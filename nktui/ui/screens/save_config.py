"""SaveConfigDialog (`ctrl+s`, or "Save config" in the command palette): the config pane's settings to a TOML file.

What is saved is what the config pane shows: the running config with the current learning rate, the watchpoint
thresholds as set now, and any edits not yet applied by a restart. `run_dir` is left out, so that
`nktui --config FILE` (or `nktui train --config FILE`) starts the same run in a fresh run directory. The path is
asked for, with a default: the session's run directory when it has one, else `nktui-config.toml` here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from nktui.protocol import ConfigError, RunConfig
from nktui.ui.widgets.typed_input import TypedInput

DEFAULT_FILE = "nktui-config.toml"
RUN_DIR_FILE = "saved-config.toml"  # in a run directory: config.toml is the config the run started with


def default_path(session) -> Path:
    """`<run dir>/saved-config.toml` when the session has a run directory, else `./nktui-config.toml`."""
    keeper = getattr(session, "keeper", None)  # (nktui.run.checkpoint_keeper.RunKeeper: the app's run directory)
    run_dir = getattr(keeper, "run_dir", None) or getattr(session, "run_dir", None)
    return Path(run_dir) / RUN_DIR_FILE if run_dir else Path(DEFAULT_FILE)


def save_config(config: RunConfig, path: str | Path) -> Path:
    """Write `config` (without its run_dir) as TOML; ConfigError with the reason when it cannot be written."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / DEFAULT_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        dataclasses.replace(config, run_dir=None).save(path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


class SaveConfigDialog(ModalScreen[Path | None]):
    """Asks for a path and writes the config there; dismisses with the path written, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel")]

    def __init__(self, config: RunConfig, path: Path) -> None:
        super().__init__()
        self.config = config
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Save the config pane's settings as TOML to:")
            yield TypedInput(str(self.path), id="save-path", select_on_focus=False)
            yield Label("", id="save-error")
            yield Label("[dim]Enter saves (an existing file is replaced) · Esc cancels · "
                        "nktui --config FILE starts the same run[/dim]")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            self.query_one("#save-error", Label).update("[b red]give a file name, such as nktui-config.toml[/b red]")
            return
        try:
            path = save_config(self.config, text)
        except ConfigError as exc:
            self.query_one("#save-error", Label).update(Text(str(exc), style="bold red"))
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)


def ask_and_save(app) -> None:
    """ctrl+s: the config pane's settings, as given (the session's may hold settings fitted to this machine, such
    as threads), to a TOML file the dialog asks for."""
    from nktui.protocol import ConfigError

    try:
        config = app.config_pane.build_config(app.config)
    except ConfigError as exc:
        app.notify(str(exc), title="Config not valid", severity="error")
        return

    def saved(path) -> None:
        if path is not None:
            app.notify(f"nktui --config {path} starts this run again", title=f"Saved {path}", timeout=6,
                       markup=False)

    app.push_screen(SaveConfigDialog(config, default_path(app.session)), saved)
