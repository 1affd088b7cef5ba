"""The per-step instrumentation: what a training loop hosts to be debuggable (nktui's own loop, `nktui.engine`,
today; a user's own loop later). It imports no engine: the loop hands it the model, the config's values and the
tensors of each step.

`instruments.py` every step's gradient norms and, on observed steps, per-layer statistics; `health.py` the squared
norms written in place into one block; `pending.py` the steps whose numbers are still on the device and the one
transfer that makes them records; `watch.py`, `watch_screen.py` the watchpoints over every record; `trajectory.py`
the weights at observed steps (the loss surface's descent path); `leaf_modules.py` the modules the hooks see.
"""
