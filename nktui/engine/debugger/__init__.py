"""The debugger's engine side, run on the training thread between steps: rewind and bitwise replay (`rewind.py`),
the fault finder that stops a running trainer just before the step that tripped a watchpoint (`fault.py`), traced
steps (`step_trace.py`), the LR what-if (`whatif.py`), the loss surface (`landscape.py`, `landscape_directions.py`)
and layer snapshots (`layer_snapshot.py`). Each returns a `nktui.protocol.results` value.
"""
