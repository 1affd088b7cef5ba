"""The Textual app: panes, screens and dialogs that drive the engine in `nktui.training`."""
