"""Garbage collection in nktui's own processes (the app, `nktui train`); a script that imports the engine keeps its own.

Python's cyclic collector walks every tracked object on each full collection. Once PyTorch (and Textual) are
imported and the model is built, that is hundreds of thousands of objects that will live as long as the process,
and the app's drawing allocates enough to trigger collections often, all of them holding the GIL the training
loop needs. `gc.freeze()` moves the objects alive now out of the collector's sight (reference counting still
frees them), which cuts the time spent collecting about tenfold (figures: benchmarks/RESULTS.md).
"""

from __future__ import annotations

import gc


def freeze_what_is_built() -> None:
    """Collect once, then freeze every object alive now. Call when a trainer has been built.

    Called again (a restart builds a new trainer), it first unfreezes, so that what died since, the old run's
    objects among them, is collected rather than kept for good.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
