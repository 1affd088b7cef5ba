"""ConfigPane: the run's settings as a compact form, keyboard first.

The learning rate, the step limit and the watchpoint thresholds apply live (Enter in their field). Every other field
changes the model or its data, so edits are collected and applied by restarting the run (`r`, after a confirmation);
changed fields are marked until then. Which settings have a row, its label, tooltip and choices, and which apply
live: each RunConfig field's `Setting` (nktui.protocol.config).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select

from nktui.render import charset
from nktui.render.format import lr_text
from nktui.protocol import ConfigError, RunConfig
from nktui.protocol.config import DEFAULT_STEPS, SETTINGS, parse_hidden
from nktui.protocol.settings import Setting
from nktui.ui.widgets.typed_input import TypedInput


@dataclass(frozen=True)
class Field:
    name: str  # RunConfig field
    label: str
    kind: str  # "text", "int", "float", "choice", "hidden", "optional-int"
    choices: tuple[str, ...] = ()
    tooltip: str = ""
    live: bool = False  # applies to the running trainer on Enter, no restart


_KINDS = {"int": "int", "int | None": "optional-int", "float": "float", "tuple[int, ...]": "hidden", "str": "text"}


def _row(setting: Setting) -> Field:
    """A setting's row in the pane: its Setting says the label, the tooltip, the choices and whether it is live."""
    if setting.type == "bool":
        kind, choices = "choice", ("on", "off")
    elif setting.choices:
        kind, choices = "choice", setting.choices
    else:
        kind, choices = _KINDS[setting.type], ()
    return Field(setting.name, setting.pane, kind, choices, setting.tip, setting.live)


# The settings with a pane label, in RunConfig's field order (the watchpoints come last, under their own heading).
FIELDS = tuple(_row(setting) for setting in SETTINGS.values() if setting.pane)
LIVE_FIELDS = tuple(f.name for f in FIELDS if f.live)


def applies(name: str, model: str, optimizer: str) -> bool:
    """Whether a field means anything for this model and optimizer (the pane hides the others)."""
    setting = SETTINGS[name]
    return (not setting.models or model in setting.models) and (
        not setting.optimizers or optimizer in setting.optimizers
    )


def field_text(config: RunConfig, field: Field) -> str:
    value = getattr(config, field.name)
    if isinstance(value, bool):
        return "on" if value else "off"
    if field.kind == "hidden":
        return ",".join(map(str, value))
    if field.name == "lr":
        return lr_text(value)
    if value is None:
        return ""
    return str(value)


class ConfigPane(VerticalScroll, can_focus=False):
    """The config form. Posts `LiveSubmitted` on Enter in a live field (the LR, the watchpoints)."""

    class LiveSubmitted(Message):
        """Enter in a field that applies without a restart (the LR, the watchpoints)."""

        def __init__(self, name: str, text: str) -> None:
            super().__init__()
            self.name = name
            self.text = text

    def __init__(self, config: RunConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.border_title = "Config"

    def compose(self) -> ComposeResult:
        for field in FIELDS:
            if field.name == "watch":
                yield Label(charset.text("watchpoints · 0: off"), classes="section")
            with Horizontal(classes="field", id=f"row-{field.name}"):
                yield Label(charset.text(field.label), classes="field-label")
                value = field_text(self.config, field)
                if field.kind == "choice":
                    yield Select([(c, c) for c in field.choices], value=value, allow_blank=False, id=f"f-{field.name}",
                                 compact=True)
                else:
                    widget = TypedInput(value, placeholder=placeholder(self.config, field), id=f"f-{field.name}",
                                   compact=True)
                    widget.tooltip = field.tooltip or None
                    yield widget

    def on_mount(self) -> None:
        if charset.ascii_mode():  # the Selects' own arrows (Textual draws them as ▼ and ▲)
            for arrow, ascii_arrow in ((".down-arrow", "v"), (".up-arrow", "^")):
                for static in self.query(arrow):
                    static.update(ascii_arrow)

    # -- reading the form -------------------------------------------------------------------------------------
    def raw_values(self) -> dict[str, str]:
        values = {}
        for field in FIELDS:
            widget = self.query_one(f"#f-{field.name}")
            values[field.name] = str(widget.value) if widget.value is not None else ""
        return values

    def build_config(self, base: RunConfig) -> RunConfig:
        """The form's values on top of `base`, validated; ConfigError names the field that is wrong."""
        changes = {}
        for field in FIELDS:
            text = self.raw_values()[field.name].strip()
            try:
                changes[field.name] = _parse(field, text)
            except ConfigError:
                raise  # (it says why: `hidden has an empty layer size in '128,,64'`)
            except ValueError:
                raise ConfigError(f"{field.name} must be {_expected(field)}, not {text!r}") from None
        if changes.get("steps") is not None:
            changes["epochs"] = None  # a step limit typed here wins over --epochs
        return base.replace(**changes)

    def changed_fields(self, current: RunConfig) -> list[str]:
        """Fields whose text differs from the running config (the LR applies live, so it never counts)."""
        return [
            f.name for f in FIELDS
            if not f.live and self.raw_values()[f.name].strip() != field_text(current, f)
        ]

    # -- keeping it in step with the run -----------------------------------------------------------------------
    def show_config(self, config: RunConfig) -> None:
        self.config = config
        for field in FIELDS:
            widget = self.query_one(f"#f-{field.name}")
            widget.value = field_text(config, field)
        self.refresh_marks()

    def show_lr(self, lr: float) -> None:
        for widget in self.query("#f-lr").results(Input):  # (none while the app tears its screen down)
            if not widget.has_focus:
                widget.value = lr_text(lr)

    def refresh_marks(self) -> None:
        changed = set(self.changed_fields(self.config))
        values = self.raw_values()
        for field in FIELDS:
            row = self.query_one(f"#row-{field.name}")
            row.set_class(field.name in changed, "changed")
            row.display = applies(field.name, values["model"].strip(), values["optimizer"])
        # In the border: the pane scrolls at 80x24, and the hint must stay in sight.
        self.border_subtitle = "r applies the marks" if changed else "Enter applies"

    def on_input_changed(self, event: Input.Changed) -> None:
        self.refresh_marks()

    def on_select_changed(self, event: Select.Changed) -> None:
        name = (event.select.id or "").removeprefix("f-")
        if name in LIVE_FIELDS and str(event.value) != field_text(self.config, _field(name)):
            self.post_message(self.LiveSubmitted(name, str(event.value)))
        self.refresh_marks()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = (event.input.id or "").removeprefix("f-")
        if name in LIVE_FIELDS:
            event.stop()
            self.post_message(self.LiveSubmitted(name, event.value))


def _field(name: str) -> Field:
    return next(f for f in FIELDS if f.name == name)


def parse_field(name: str, text: str):
    """The value typed into field `name`, as RunConfig wants it; ValueError with what was expected."""
    field = _field(name)
    try:
        return _parse(field, text.strip())
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(f"{name} must be {_expected(field)}, not {text.strip()!r}") from None


def _parse(field: Field, text: str):
    if field.kind == "choice" and field.choices == ("on", "off"):
        return text == "on"
    if field.kind == "int":
        return int(text)
    if field.kind == "optional-int":
        return int(text) if text else None
    if field.kind == "float":
        return float(text)
    if field.kind == "hidden":
        return parse_hidden(text)
    return text


def _expected(field: Field) -> str:
    return {
        "int": "a whole number",
        "optional-int": "a whole number or empty",
        "float": "a number",
        "hidden": "comma-separated layer sizes such as 128,64",
    }.get(field.kind, "text")


def placeholder(config: RunConfig, field: Field) -> str:
    """What an empty field means, shown dimmed in it: the step limit when --steps is not given."""
    if field.name == "steps":
        return f"{config.epochs} epochs" if config.epochs else str(DEFAULT_STEPS)  # dimmed: a default
    return ""
