"""`--metrics-port`: the collector over the flow's counts, and a paced replay scraped while
it runs (flows/metrics.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import flows.metrics
import sinks.duckdb_sink
from flows.metrics import FlowCollector
from flows.sources import Progress
from operators.rows import BetRow, MarketStatusRow, Reject
from sinks.duckdb_sink import SinkStats
from tests.conftest import table

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample.jsonl.gz"

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def parse(text: str) -> Samples:
    """Every sample of a scrape: name -> {sorted labels: value}."""
    out: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name][tuple(sorted(s.labels.items()))] = s.value
    return out


def replay(db: Path, *options: str) -> list[str]:
    """`python -m flows replay` of the bundled sample into `db`, with `options`."""
    return [sys.executable, "-m", "flows", "replay", str(SAMPLE), "--db", str(db), *options]


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def scrape(port: int) -> Samples | None:
    """The samples served on `port` now; None when nothing answers (yet, or any more)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return parse(r.read().decode())
    except OSError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bet(status: str, reason: str, version: int) -> BetRow:
    zero = Decimal(0)
    return BetRow("b", "u", "m", "1x2", "home", zero, zero, status, reason, zero, 0, version)


def test_collector_reads_the_sinks_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = SinkStats()
    monkeypatch.setattr(sinks.duckdb_sink, "STATS", stats)
    monkeypatch.setattr(flows.metrics, "STATS", stats)
    monkeypatch.setattr(Progress, "lines", 10)
    chunk = {
        Reject: [Reject("f:1", "invalid_field:seq", "", "", None, None, None)],
        MarketStatusRow: [
            MarketStatusRow("m", "1x2", "OPEN", 1, "", 0, None),
            MarketStatusRow("m", "1x2", "SUSPENDED", 2, "goal", 1, None),
            MarketStatusRow("m", "1x2", "SUSPENDED", 3, "goal", 2, None),  # no new suspension
            MarketStatusRow("m", "ou", "OPEN", 1, "", 0, None),
        ],
        BetRow: [bet("accepted", "", 1), bet("rejected", "stale_price", 1), bet("won", "", 2)],
    }
    sinks.duckdb_sink._count(chunk, {"rejects": 1})  # type: ignore[arg-type]
    stats.commits.observe(0.02)
    registry = CollectorRegistry()
    registry.register(FlowCollector("live", 3, lambda: {"oddsflow.feed/0": 7}, lambda: 1_000))
    got = parse(generate_latest(registry).decode())
    p = ("process", "3")
    assert got["oddsflow_lines_read_total"] == {(p, ("source", "live")): 10}
    assert got["oddsflow_accepted_lines_total"] == {(p,): 9}
    assert got["oddsflow_rejects_total"] == {(p, ("reason", "invalid_field")): 1}
    assert got["oddsflow_markets"] == {(p, ("status", "OPEN")): 1, (p, ("status", "SUSPENDED")): 1}
    assert got["oddsflow_suspensions_total"] == {(p, ("reason", "goal")): 1}
    assert got["oddsflow_bet_verdicts_total"] == {
        (p, ("reason", ""), ("status", "accepted")): 1,
        (p, ("reason", "stale_price"), ("status", "rejected")): 1,
    }
    assert got["oddsflow_settlements_total"] == {(p, ("status", "won")): 1}
    assert got["oddsflow_duckdb_commit_seconds_count"] == {(p,): 1}
    assert got["oddsflow_duckdb_commit_seconds_bucket"][(("le", "0.025"), p)] == 1
    assert got["oddsflow_duckdb_commit_seconds_bucket"][(("le", "0.01"), p)] == 0
    assert got["oddsflow_consumer_lag"] == {(("partition", "oddsflow.feed/0"), p): 7}
    assert got["oddsflow_event_time_lag_seconds"][(p,)] > 1e9  # since 1970, in seconds


def test_paced_replay_serves_its_metrics_while_it_runs(tmp_path: Path) -> None:
    port, db = free_port(), tmp_path / "out.duckdb"
    # The sample spans ~3.6 h of event time: ~8 s at 1500x.
    flow = subprocess.Popen(
        replay(db, "--metrics-port", str(port), "--speed", "1500"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    scrapes: list[Samples] = []
    try:
        while flow.poll() is None:
            got = scrape(port)
            if got is not None:
                scrapes.append(got)
            time.sleep(0.3)
    finally:
        flow.kill()
        _, err = flow.communicate()
    assert flow.returncode == 0, err
    lines = [sum(s["oddsflow_lines_read_total"].values()) for s in scrapes]
    assert len(scrapes) >= 5, lines
    assert lines == sorted(lines) and 0 < lines[-1] <= 8740 and lines[0] < lines[-1]
    last = scrapes[-1]
    assert sum(last["oddsflow_markets"].values()) > 0
    scraped = {dict(k)["reason"] for s in scrapes for k in s["oddsflow_rejects_total"]}
    stored = {r.split(":", 1)[0] for (r,) in table(db, "SELECT DISTINCT reason FROM rejects")}
    assert scraped and scraped <= stored


def test_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            replay(tmp_path / "x.duckdb", "--metrics-port", str(port)),
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"oddsflow replay: --metrics-port {port}: Address already in use"
    ]


def two_free_ports() -> int:
    """A port free with the next one."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port + 1))
            except OSError:
                continue
        return port


def test_each_member_of_a_local_cluster_serves_its_own_labelled_metrics(tmp_path: Path) -> None:
    port = two_free_ports()
    options = ("--processes", "2", "--metrics-port", str(port), "--speed", "1500")
    flow = subprocess.Popen(
        replay(tmp_path / "c.duckdb", *options),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    seen: dict[int, set[str]] = {port: set(), port + 1: set()}
    try:
        while flow.poll() is None and not all(seen.values()):
            for p in seen:
                got = scrape(p)
                if got is not None:
                    seen[p] = {dict(k)["process"] for k in got["oddsflow_lines_read_total"]}
            time.sleep(0.3)
    finally:
        flow.terminate()  # the command stops its members
        flow.communicate(timeout=60)
    assert seen == {port: {"0"}, port + 1: {"1"}}
