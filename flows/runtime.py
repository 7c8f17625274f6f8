"""Process-level settings shared by the flows' commands."""

from __future__ import annotations

import gc
import sys

# A flow allocates rows by the million, nearly all short-lived and none in cycles: with
# CPython's default (a young collection every 700 allocations) a 400-match replay spent
# ~15% of its CPU in ~2000 collections; every 50 000 allocations, in ~25.
GC_THRESHOLDS = (50_000, 20, 100)


# The DuckDB writer thread needs the GIL for a moment between its DuckDB calls, several
# times per statement; with CPython's default interval it waits up to 5 ms for the flow's
# thread each time: a 1 000-row upsert took ~40 ms instead of ~2. At 1 ms the commits of
# a 400-match replay took 4.6 s of the writer's time instead of 6.2 s (the replay's wall
# time moved ~2%, within noise: the writer waits on the flow, rarely the other way round).
SWITCH_INTERVAL_S = 0.001


def tune_interpreter() -> None:
    """This process collects cycles less often (see `GC_THRESHOLDS`) and lets a waiting
    thread have the GIL sooner (see `SWITCH_INTERVAL_S`)."""
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def freeze_startup_heap() -> None:
    """Keep the objects that exist before the flow runs (imported modules: polars, duckdb,
    pyarrow, bytewax; the dataflow) out of the cyclic garbage collector's way. Otherwise
    every full collection walks them again, stalling the worker for tens of milliseconds,
    which a live flow's latency feels. They live for the whole run anyway."""
    gc.collect()
    gc.freeze()
