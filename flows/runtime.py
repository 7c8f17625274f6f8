"""Process-level settings shared by the flows' commands."""

from __future__ import annotations

import gc

# A flow allocates rows by the million, nearly all short-lived and none in cycles: with
# CPython's default (a young collection every 700 allocations) a 400-match replay spent
# ~15% of its CPU in ~2000 collections; every 50 000 allocations, in ~25.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_interpreter() -> None:
    """This process collects cycles less often (see `GC_THRESHOLDS`).

    Tried and left out: a 1 ms GIL switch interval instead of 5. The DuckDB writer's
    commits (then a thread of the flow, now a process of its own) took 4.6 s instead of
    6.2 s of its thread's time on a 400-match replay, but the replay's wall time moved
    ~2% (within noise) and two worker threads ran ~5% slower.
    """
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_startup_heap() -> None:
    """Keep the objects that exist before the flow runs (imported modules: polars, duckdb,
    pyarrow, bytewax; the dataflow) out of the cyclic garbage collector's way. Otherwise
    every full collection walks them again, stalling the worker for tens of milliseconds,
    which a live flow's latency feels. They live for the whole run anyway."""
    gc.collect()
    gc.freeze()
