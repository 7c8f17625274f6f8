"""Query results shared by every viewer of the dashboard, per publication of the file.

Every viewer's page asks the same questions of the same published file at each refresh. The
flow replaces that file atomically and never changes it in place, so a result is keyed by
the file's identity (device, inode, mtime, size) and the question: the first viewer's query
runs, and the others, even those asking while it runs, get its answer. `SHARED` is this
process's cache, `TIMINGS` its time in DuckDB. `ODDSFLOW_QUERY_LOG=FILE` logs every call as a
JSON line (for benchmarks/dashboard_bench.py); `ODDSFLOW_QUERY_CACHE=0` turns sharing off.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_ENV = "ODDSFLOW_QUERY_LOG"
CACHE_ENV = "ODDSFLOW_QUERY_CACHE"
MAX_ENTRIES = 256  # results of a few publications of every page's questions

FileIdentity = tuple[int, int, int, int]  # device, inode, mtime (ns), size


def identity(path: Path) -> FileIdentity | None:
    """Which publication of the file this is; None when there is no file."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def sharing_enabled() -> bool:
    return os.environ.get(CACHE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    failed: bool = False


class SharedResults:
    """Results by key, computed once however many threads ask at the same time; the least
    recently used go beyond `max_entries`. A failed computation is not kept."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, _Pending] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """(the result for `key`, whether it was shared rather than computed here)."""
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = self._entries[key] = _Pending()
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
        if not owner:
            entry.done.wait()
            if not entry.failed:
                return entry.value, True
            return compute(), False  # the first try failed: try again, unshared
        try:
            entry.value = compute()
        except BaseException:
            entry.failed = True
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            raise
        finally:
            entry.done.set()
        return entry.value, False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class Timings:
    """Seconds spent in DuckDB by this process, and how many calls and shared answers."""

    seconds: float = 0.0
    calls: int = 0
    shared: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def duckdb(self, what: str) -> Iterator[None]:
        """Time one DuckDB call (`what`: "connect", or the SQL of a query and its fetch)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._record(time.perf_counter() - started, what, hit=False)

    def shared_answer(self, what: str) -> None:
        self._record(0.0, what, hit=True)

    def _record(self, seconds: float, what: str, *, hit: bool) -> None:
        log = os.environ.get(LOG_ENV)
        with self._lock:
            if hit:
                self.shared += 1
            else:
                self.seconds += seconds
                self.calls += 1
            if log:
                q = " ".join(what.split())[:60]
                line = json.dumps({"t": time.time(), "s": round(seconds, 6), "hit": hit, "q": q})
                with open(log, "a", encoding="utf-8") as f:
                    f.write(line + "\n")


SHARED = SharedResults()
TIMINGS = Timings()
