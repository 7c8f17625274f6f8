"""Process-level settings shared by the flows' commands."""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

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


LOOPBACK = ("127.0.0.1", "localhost")
LISTEN = "0A"  # the state of a listening socket in /proc/net/tcp


def await_earlier_members(addresses: list[str], process_id: int, timeout_s: float = 30.0) -> None:
    """Before a member of a cluster on this machine joins it: wait until every member before
    it listens on its address.

    Bytewax's cluster start (timely's) has process i connect to each process before it, and
    a refused connection sleeps a whole second before it tries again. Members started
    together reach that point at different times (their imports and flow building), so
    without this wait a cluster of several processes often paid a second or two for nothing.
    A listening socket shows in /proc/net/tcp without a connection to it (a connection
    would be taken for a member's). Members on other hosts, or no /proc: no wait."""
    earlier = [a.rsplit(":", 1) for a in addresses[:process_id]]
    if not earlier or any(host not in LOOPBACK for host, _ in earlier):
        return
    ports = {int(port) for _, port in earlier}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ports <= _listening_ports():
                return
        except OSError:
            return
        time.sleep(0.005)


def _listening_ports() -> set[int]:
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == LISTEN:
                out.add(int(fields[1].rsplit(":", 1)[1], 16))
    return out
