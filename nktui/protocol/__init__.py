"""nktui's protocol: what crosses between the training side and its front ends, in plain Python (no torch, no
Textual): named commands (`commands`), the run's description (`run_info`)."""
