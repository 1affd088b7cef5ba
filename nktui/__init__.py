"""nktui: a terminal debugger for gradient descent. The engine is `nktui.training`; the app is `nktui.ui`."""

__version__ = "0.1.0"
