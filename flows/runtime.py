"""Process-level settings shared by the flows' commands."""

from __future__ import annotations

import gc

# A flow allocates rows by the million, nearly all short-lived and none in cycles: with
# CPython's default (a young collection every 700 allocations) a 400-match replay spent
# ~15% of its CPU in ~2000 collections; every 50 000 allocations, in ~25.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """This process collects cycles less often (see `GC_THRESHOLDS`)."""
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_startup_heap() -> None:
    """Keep the objects that exist before the flow runs (imported modules: polars, duckdb,
    pyarrow, bytewax; the dataflow) out of the cyclic garbage collector's way. Otherwise
    every full collection walks them again, stalling the worker for tens of milliseconds,
    which a live flow's latency feels. They live for the whole run anyway."""
    gc.collect()
    gc.freeze()
