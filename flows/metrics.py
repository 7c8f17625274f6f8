"""`--metrics-port`: this process's counts as Prometheus text on `/metrics`.

Nothing is counted for Prometheus in the flow's path: one collector reads, at each scrape,
the counts the flow keeps anyway (`flows.sources.Progress`, `sinks.duckdb_sink.STATS`,
`connectors.kafka.DELIVERY`, and in `live` the input partitions' offsets and order
time). Every metric has the label `process` (this process's index in its cluster, 0
alone). docs/production.md lists them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TypeVar

from prometheus_client import start_http_server
from prometheus_client.core import (
    REGISTRY,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from connectors.kafka.sink import DELIVERY
from flows.sources import Progress
from sinks.duckdb_sink import STATS
from sinks.stats import Seconds

PREFIX = "oddsflow"
_K = TypeVar("_K")


class MetricsPortError(RuntimeError):
    """The port could not be listened on (in use, or not allowed)."""


class FlowCollector(Collector):
    """The flow's counts at scrape time. `source`: "replay" or "live" (the label of
    lines read); `lags` and `newest_ts` (live only): the consumer lag per input
    partition and the newest line time (epoch ms) routed."""

    def __init__(
        self,
        source: str,
        process: int = 0,
        lags: Callable[[], dict[str, int]] | None = None,
        newest_ts: Callable[[], int | None] | None = None,
    ) -> None:
        self.source = source
        self.process = str(process)
        self.lags = lags
        self.newest_ts = newest_ts

    def collect(self) -> Iterator[Metric]:
        lines = Progress.lines
        rejected = sum(STATS.rejects.values())
        yield self._counter("lines_read", "Lines read", ["source"], [([self.source], lines)])
        yield self._counter(
            "accepted_lines",
            "Lines read less rejects written",
            [],
            [([], max(lines - rejected, 0))],
        )
        yield self._counter(
            "rejects",
            "Rejects written, by reason",
            ["reason"],
            [([r], n) for r, n in _copy(STATS.rejects)],
        )
        yield self._counter(
            "rows_written",
            "Rows committed, by table",
            ["table"],
            [([t], n) for t, n in _copy(STATS.rows)],
        )
        yield self._counter(
            "feed_events",
            "Feed events committed, by type",
            ["type"],
            [([t], n) for t, n in _copy(STATS.events)],
        )
        statuses = Counter(list(STATS.markets.values()))
        yield self._gauge(
            "markets",
            "Markets by their latest status",
            ["status"],
            [([s], n) for s, n in statuses.items()],
        )
        yield self._counter(
            "suspensions",
            "Markets suspended, by reason",
            ["reason"],
            [([r], n) for r, n in _copy(STATS.suspensions)],
        )
        yield self._counter(
            "bet_verdicts",
            "Bets decided, by status and reason",
            ["status", "reason"],
            [([s, r], n) for (s, r), n in _copy(STATS.verdicts)],
        )
        yield self._counter(
            "settlements",
            "Bets settled, by status",
            ["status"],
            [([s], n) for s, n in _copy(STATS.settlements)],
        )
        yield self._histogram("duckdb_commit_seconds", "DuckDB commit time", STATS.commits)
        yield self._counter(
            "kafka_delivery_errors",
            "Kafka messages not delivered, by error",
            ["error"],
            [([e], n) for e, n in _copy(DELIVERY.errors)],
        )
        yield self._histogram(
            "kafka_delivery_seconds", "Kafka produce-to-acknowledgement time", DELIVERY.latency
        )
        if self.lags is not None:
            yield self._gauge(
                "consumer_lag",
                "Input messages not handed to the flow yet, per topic partition",
                ["partition"],
                [([n], lag) for n, lag in self.lags().items()],
            )
        if self.newest_ts is not None:
            newest = self.newest_ts()
            if newest is not None:
                lag = time.time() - newest / 1000
                yield self._gauge(
                    "event_time_lag_seconds",
                    "Wall clock less the newest line time read",
                    [],
                    [([], lag)],
                )

    def _labels(self, names: list[str]) -> list[str]:
        return ["process", *names]

    def _counter(
        self, name: str, doc: str, labels: list[str], samples: list[tuple[list[str], float]]
    ) -> Metric:
        return self._family(CounterMetricFamily, name, doc, labels, samples)

    def _gauge(
        self, name: str, doc: str, labels: list[str], samples: list[tuple[list[str], float]]
    ) -> Metric:
        return self._family(GaugeMetricFamily, name, doc, labels, samples)

    def _family(
        self,
        kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
        name: str,
        doc: str,
        labels: list[str],
        samples: list[tuple[list[str], float]],
    ) -> Metric:
        family = kind(f"{PREFIX}_{name}", doc, labels=self._labels(labels))
        for values, value in samples:
            family.add_metric([self.process, *values], value)
        return family

    def _histogram(self, name: str, doc: str, seconds: Seconds) -> Metric:
        family = HistogramMetricFamily(f"{PREFIX}_{name}", doc, labels=["process"])
        family.add_metric([self.process], seconds.cumulative(), seconds.total)
        return family


def _copy(counts: dict[_K, int]) -> list[tuple[_K, int]]:
    """`counts`' items, copied in one C call: a writer thread may add to it meanwhile."""
    return list(dict(counts).items())


def serve_metrics(port: int, collector: FlowCollector) -> None:
    """Serve `collector` on `http://0.0.0.0:port/metrics` from a daemon thread; raises
    `MetricsPortError` when the port cannot be listened on."""
    REGISTRY.register(collector)
    try:
        start_http_server(port)
    except OSError as exc:
        REGISTRY.unregister(collector)
        raise MetricsPortError(f"--metrics-port {port}: {exc.strerror or exc}") from exc
