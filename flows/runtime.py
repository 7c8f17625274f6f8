"""Process-level settings shared by the flows' commands."""

from __future__ import annotations

import gc
import sys

# A flow allocates rows by the million, nearly all short-lived and none in cycles: with
# CPython's default (a young collection every 700 allocations) a 400-match replay spent
# ~15% of its CPU in ~2000 collections; every 50 000 allocations, in ~25.
GC_THRESHOLDS = (50_000, 20, 100)
# A live flow's GIL switch interval (CPython's default is 5 ms): how long the worker can
# wait for the interpreter lock while the DuckDB sink's thread converts a chunk of rows.
LIVE_SWITCH_INTERVAL_S = 0.001


def tune_interpreter(live: bool = False) -> None:
    """This process collects cycles less often (see `GC_THRESHOLDS`); a live flow's also
    hands the interpreter lock over every 1 ms instead of 5.

    With 5 ms, each time the worker gave the lock up (polling Kafka) while the sink's
    thread converted rows, it waited up to 5 ms to get it back: at 2 000 lines/s that
    made 239 worker stalls over 10 ms a minute, against 24 with 1 ms (0.1-s chunks in
    both runs, one run each, `benchmarks/live_latency_bench.py`). A replay has no latency
    to keep: there a 1 ms interval moved wall time ~2% (within noise) and two worker
    threads ran ~5% slower.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    if live:
        sys.setswitchinterval(LIVE_SWITCH_INTERVAL_S)


def freeze_startup_heap() -> None:
    """Keep the objects that exist before the flow runs (imported modules: polars, duckdb,
    pyarrow, bytewax; the dataflow) out of the cyclic garbage collector's way. Otherwise
    every full collection walks them again, stalling the worker for tens of milliseconds,
    which a live flow's latency feels. They live for the whole run anyway."""
    gc.collect()
    gc.freeze()
