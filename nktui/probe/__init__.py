"""The per-step instrumentation: what a training loop hosts to be debuggable (nktui's own loop, `nktui.engine`,
today; a user's own loop later). It imports no engine: the loop hands it the model, the config's values and the
tensors of each step.

`health.py` every step's gradient norms, written in place into one block; `instruments.py` the observed steps'
per-layer statistics (float64), activations and histograms; `flush_check.py` a flush's watchpoint check; `pending.py` the steps whose numbers are still on the device and the one
transfer that makes them records; `watch.py`, `watch_screen.py` the watchpoints over every record; `trajectory.py`
the weights at observed steps (the loss surface's descent path); `leaf_modules.py` the modules the hooks see.
"""
