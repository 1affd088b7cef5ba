"""nktui: a terminal debugger for gradient descent. The script API is `nktui.training`; the app is `nktui.ui`."""

__version__ = "0.1.0"
