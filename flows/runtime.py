"""Interpreter settings for the flows' processes: fewer garbage collections, a shorter GIL
switch interval for live. Why and what they bought: docs/performance.md."""

from __future__ import annotations

import gc
import sys

# A flow allocates rows by the million, nearly all short-lived and none in cycles: young
# collections this much rarer than CPython's default (700) cost far less CPU.
GC_THRESHOLDS = (50_000, 20, 100)
# A live flow's GIL switch interval (CPython's default is 5 ms): how long the worker can
# wait for the interpreter lock while the DuckDB sink's thread converts a chunk of rows.
LIVE_SWITCH_INTERVAL_S = 0.001


def tune_interpreter(live: bool = False) -> None:
    """This process collects cycles less often (see `GC_THRESHOLDS`); a live flow's also
    hands the interpreter lock over every 1 ms instead of 5, so the worker waits less for
    it while the sink's thread converts rows. A replay has no latency to keep, and keeps
    CPython's interval."""
    gc.set_threshold(*GC_THRESHOLDS)
    if live:
        sys.setswitchinterval(LIVE_SWITCH_INTERVAL_S)


def freeze_startup_heap() -> None:
    """Keep the objects that exist before the flow runs (imported modules: polars, duckdb,
    pyarrow, bytewax; the dataflow) out of the cyclic garbage collector's way: otherwise
    every full collection walks them again, stalling a live flow's worker. They live for
    the whole run anyway."""
    gc.collect()
    gc.freeze()
