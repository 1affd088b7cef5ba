"""The engine's error types: one base class whose message is written for the user.

Anything the user can get wrong (a flag, a file, a model factory) raises a subclass of `NktuiError` with a
message that says what is wrong and how to fix it. The CLI prints that message on one line and exits with code 2;
the app shows it as a notice. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class NktuiError(Exception):
    """An error caused by the user's input, with a message meant for the user."""


class ConfigError(NktuiError, ValueError):
    """A configuration value is invalid (unknown name, out-of-range number, conflicting options)."""


class DataError(NktuiError):
    """A data set cannot be found or read."""


class ModelError(NktuiError):
    """A model cannot be built (unknown name, a custom factory that does not import or raises)."""


class RunDirInUse(NktuiError):
    """Another live nktui process holds the run directory's lock (its `.lock` names the process)."""


class CheckpointError(NktuiError):
    """A checkpoint cannot be read or does not fit the current run."""
