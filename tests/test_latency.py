"""The live flow's latency aggregation (`operators/latency.py`): plain function calls."""

from __future__ import annotations

import pickle
from collections import Counter

from operators.latency import MINUTE_MS, LatencyRecorder, latency_row
from operators.parse import RawLine, route
from operators.rows import LatencyRow

MINUTE_S = MINUTE_MS / 1000
T0 = 1_700_000_040.0  # the start of a minute, epoch s


def test_a_minute_becomes_one_row_once_the_next_one_starts() -> None:
    recorder = LatencyRecorder(worker=3)
    now = T0 + 10
    assert recorder.record([now - 0.002, now - 0.004], now) == []
    assert recorder.record([now + 5 - 0.010], now + 5) == []

    rows = recorder.record([T0 + MINUTE_S + 1 - 0.001], T0 + MINUTE_S + 1)

    assert rows == [LatencyRow(int(T0 * 1000), 3, 3, 4.0, 10.0, 10.0, 10.0)]
    assert recorder.flush() == [LatencyRow(int((T0 + MINUTE_S) * 1000), 3, 1, 1.0, 1.0, 1.0, 1.0)]
    assert recorder.flush() == []  # nothing since


def test_percentiles_are_nearest_rank_over_the_minute() -> None:
    counts = Counter({ms * 10: 1 for ms in range(1, 101)})  # 1 .. 100 ms, one line each

    row = latency_row(0, 0, counts)

    assert (row.lines, row.p50_ms, row.p95_ms, row.p99_ms, row.max_ms) == (100, 50, 95, 99, 100)


def test_one_line_is_every_percentile() -> None:
    assert latency_row(0, 1, Counter({7: 1})) == LatencyRow(0, 1, 1, 0.7, 0.7, 0.7, 0.7)


def test_unstamped_lines_are_not_counted_and_a_clock_stepping_back_counts_no_wait() -> None:
    recorder = LatencyRecorder(worker=0)
    recorder.record([0.0, 0.0], T0 + 1)  # replayed lines: no arrival
    recorder.record([T0 + 2], T0 + 1)
    assert recorder.flush() == [LatencyRow(int(T0 * 1000), 0, 1, 0.0, 0.0, 0.0, 0.0)]


def test_a_line_keeps_its_arrival_through_routing_and_pickling() -> None:
    line = RawLine("feed/0/7", b'{"type":"deposit","user_id":"u1","amount":"5","ts":1}', arrived=T0)
    (_, routed), *_ = route(line)
    assert routed.arrived == T0
    assert pickle.loads(pickle.dumps(routed)).arrived == T0
    replayed = RawLine("f:1", line.data)
    assert len(replayed.__reduce__()[1]) == 4  # a replayed line sends no arrival
    assert pickle.loads(pickle.dumps(replayed)) == replayed
