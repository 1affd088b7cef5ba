"""The Textual app: panes, screens and dialogs that drive a run through `nktui.run` (its `RunClient`)."""
