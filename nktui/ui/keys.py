"""The app's keys: one table that the footer's key bar, the help screen and the command palette all read, and the
words that tell which keys to press when a watchpoint has stopped the run.

Each binding has an id (so users can remap it in a keymap), a short description for the key bar and a tooltip, the
line the help screen and the command palette show. `PALETTE` names the bindings the command palette offers, in the
order it lists them, with the title it shows; a palette entry runs exactly what the key runs.
"""

from __future__ import annotations

from textual.binding import Binding

BINDINGS = [  # the description is the key bar's label, the tooltip the help screen's and the palette's line
    Binding("space", "toggle_pause", "Pause/Run", id="pause", tooltip="pause, or let it run"),
    Binding("n", "step", "Step", id="step", tooltip="while paused: exactly one forward, backward and update"),
    Binding("t", "trace", "Trace", id="trace",
            tooltip="while paused: one step, phase by phase (forward, softmax and loss, backward, update)"),
    Binding("b", "rewind", "Rewind", id="rewind",
            tooltip="while paused: one step back, or to just before the step shown while scrubbing"),
    Binding("g", "goto", "Go to", id="goto",
            tooltip="while paused: rewind to a step you type (any step in reach; the scrub cursor's by default)"),
    Binding("w", "whatif", "LR what-if", id="whatif",
            tooltip="while paused: the next step's loss at 13 learning rates; Enter applies one"),
    Binding("l", "set_lr", "LR", id="lr", tooltip="type a new learning rate (0.01, 1e-3)"),
    Binding("right_square_bracket", "scale_lr(2.0)", "LR×2", id="lr-double", key_display="]",
            tooltip="double the learning rate"),
    Binding("left_square_bracket", "scale_lr(0.5)", "LR÷2", id="lr-halve", key_display="[",
            tooltip="halve the learning rate"),
    Binding("e", "evaluate", "Eval", id="evaluate",
            tooltip="evaluate on the validation split now: confusion matrix, per-class numbers, worst mistakes"),
    Binding("v", "surface", "Surface", id="surface", tooltip="the loss surface around the weights, with the path"),
    Binding("y", "toggle_log_scale", "Log", id="log-scale", tooltip="log scale on the loss plot"),
    Binding("r", "restart", "Restart", id="restart", tooltip="restart with the config pane's settings (asks)"),
    Binding("s", "save_checkpoint", "Save", id="save", tooltip="save last.pt now: the full training state"),
    Binding("c", "focus_config", "Config", id="config", show=False,
            tooltip="edit the config pane (tab between fields)"),
    Binding("escape", "focus_gradients", "Back", id="back", show=False, tooltip="back to the gradient pane"),
    Binding("question_mark", "help", "Help", id="help", key_display="?", tooltip="this help"),
    Binding("d", "detach", "Detach", id="detach",
            tooltip="leave the run training in its own process and close the app (nktui attach comes back)"),
    Binding("q", "quit", "Quit", id="quit",
            tooltip="save last.pt, stop at a step boundary and quit (a run in its own process: asks, stop or detach)"),
    Binding("ctrl+c", "quit", "Quit", id="ctrl-c-quit", show=False, priority=True, tooltip="the same as q"),
    Binding("ctrl+s", "save_config", "Save config", id="save-config", show=False,
            tooltip="save the config pane's settings as TOML"),
]

PALETTE = [  # (title in the command palette, binding id)
    ("Pause / resume", "pause"),
    ("Step", "step"),
    ("Trace a step", "trace"),
    ("Rewind", "rewind"),
    ("Rewind to a step", "goto"),
    ("LR what-if", "whatif"),
    ("Set learning rate", "lr"),
    ("Double LR", "lr-double"),
    ("Halve LR", "lr-halve"),
    ("Evaluate", "evaluate"),
    ("Loss surface", "surface"),
    ("Log scale", "log-scale"),
    ("Restart", "restart"),
    ("Save checkpoint", "save"),
    ("Save config", "save-config"),
    ("Detach (the run goes on)", "detach"),
    ("Help", "help"),
]

BY_ID = {binding.id: binding for binding in BINDINGS}
BY_KEY = {key: binding for binding in BINDINGS for key in binding.key.split(",")}

HELP_EXTRA = [  # keys of the panes, for the help screen
    ("enter", "open the selected layer's detail"), ("← →", "while paused: older / newer measured steps"),
    ("home end", "the oldest / newest measured step"), ("tab", "move between panes and fields"),
    ("ctrl+p", "command palette: every action by name"),
]


def watch_notice(hits, step_count: int) -> tuple[str, str]:
    """The error line and the toast for watchpoint hits of one step: what fired, and the keys that go from there."""
    hit = hits[0]
    others = "".join(f"; also {h.watchpoint}" + (f" on {h.layer}" if h.layer else "") for h in hits[1:])
    if hit.stopped_before:
        where = (f" Paused just before step {hit.step}: t traces it, g rewinds further, space goes on "
                 f"(step {hit.step} is then taken again).")
    else:
        where = f" Paused at step {step_count}: b rewinds to step {hit.step - 1}, then t traces step {hit.step}."
    return f" Watchpoint {hit.watchpoint}: {hit.message}{others}.\n{where}", f"{hit.message}{others}"
