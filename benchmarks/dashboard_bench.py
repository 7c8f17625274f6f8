"""What the dashboard asks of DuckDB per refresh interval, with 1 and with 10 viewers.

    python -m benchmarks.dashboard_bench [--matches 40] [--seconds 30] [--publish-s 2]

A simulated feed is replayed into a real published DuckDB file. Then, for each case, the
real dashboard (`oddsflow dashboard`, a server process) serves it while headless Chromium
pages watch the overview, each refreshing by itself every 2 s, and the file is published
anew every `--publish-s` seconds (atomically replaced by a copy, as the flow publishes:
each copy is a new publication to the dashboard). The server logs every DuckDB call it
makes (`ODDSFLOW_QUERY_LOG`, dashboard/shared_results.py), and the bench sums, over a
measured window after a warm-up, per 2-s refresh interval: milliseconds spent in DuckDB
(summed over the server's threads), DuckDB calls (connections and queries), answers shared
from another viewer's call, and page refreshes each viewer got (1.0: all it asked for).

Cases: 1 viewer, 10 viewers, and 10 viewers with sharing off (`ODDSFLOW_QUERY_CACHE=0`:
what ten viewers cost before it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dashboard.queries import TABLES_SQL
from dashboard.shared_results import CACHE_ENV, LOG_ENV
from tests.test_dashboard_browser import _free_port, _stop, _wait_healthy
from tooling.simulator import write_feed

ROOT = Path(__file__).resolve().parents[1]
REFRESH_S = 2.0  # dashboard/app.py's REFRESH_S
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
METRIC = "[data-testid='stMetric']"


@dataclass(frozen=True)
class Case:
    name: str
    viewers: int
    sharing: bool


CASES = (Case("1 viewer", 1, True), Case("10 viewers", 10, True))
UNSHARED = Case("10 viewers, sharing off", 10, False)


@dataclass(frozen=True)
class Result:
    case: Case
    window_s: float
    duckdb_s: float
    calls: int
    shared: int
    snapshots: int  # batches of questions: two per page refresh (the probe, the page)

    @property
    def intervals(self) -> float:
        return self.window_s / REFRESH_S

    def row(self) -> str:
        per = self.intervals
        return (
            f"{self.case.name:<26} {self.duckdb_s / per * 1000:>9.1f} ms "
            f"{self.calls / per:>9.1f} {self.shared / per:>9.1f} "
            f"{self.snapshots / 2 / per / self.case.viewers:>9.2f}"
        )


def build_db(tmp: Path, matches: int) -> Path:
    """A published file of a simulated `matches`-match feed, made by the real replay."""
    feed = tmp / "feed.jsonl.gz"
    write_feed(feed, matches=matches, seed=7)
    db = tmp / "source" / "bench.duckdb"
    db.parent.mkdir()
    command = [sys.executable, "-m", "flows", "replay", str(feed), "--db", str(db)]
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
    return db


@contextmanager
def publishing(source: Path, target: Path, every_s: float) -> Iterator[None]:
    """Publish `source` at `target` now and again every `every_s` seconds, atomically."""
    stop = threading.Event()

    def publish() -> None:
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)

    def loop() -> None:
        while not stop.wait(every_s):
            publish()

    publish()
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def dashboard(db: Path, log: Path, sharing: bool) -> Iterator[str]:
    """`oddsflow dashboard` over `db`, logging its DuckDB calls to `log`; its URL."""
    port = _free_port()
    env = {**os.environ, LOG_ENV: str(log), CACHE_ENV: "1" if sharing else "0"}
    options = ["--server.port", str(port), "--server.headless", "true"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows", "dashboard", "--db", str(db), *options],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        _stop(proc)


def measure(case: Case, source: Path, tmp: Path, seconds: float, publish_s: float) -> Result:
    from playwright.sync_api import sync_playwright

    published = tmp / f"{case.viewers}-{int(case.sharing)}.duckdb"
    log = tmp / f"{published.stem}.log"
    with (
        publishing(source, published, publish_s),
        dashboard(published, log, case.sharing) as url,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            pages = [browser.new_context().new_page() for _ in range(case.viewers)]
            for page in pages:
                page.goto(url, wait_until="commit", timeout=120_000)
            for page in pages:
                page.locator(METRIC).first.wait_for(timeout=120_000)
            time.sleep(2 * REFRESH_S)  # warm-up: every viewer refreshing
            started = time.time()
            time.sleep(seconds)
            ended = time.time()
        finally:
            browser.close()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    window = [r for r in records if started <= r["t"] < ended]
    return Result(
        case,
        ended - started,
        duckdb_s=sum(r["s"] for r in window if not r["hit"]),
        calls=sum(1 for r in window if not r["hit"]),
        shared=sum(1 for r in window if r["hit"]),
        snapshots=sum(1 for r in window if r["q"] == " ".join(TABLES_SQL.split())[:60]),
    )


def _lines(db: Path) -> int:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return int(con.sql("SELECT count(*) FROM feed_events").fetchall()[0][0])
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_bench")
    parser.add_argument("--matches", type=int, default=40, help="matches in the feed")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per case")
    parser.add_argument("--publish-s", type=float, default=2.0, help="a new publication every")
    parser.add_argument("--skip-unshared", action="store_true", help="no sharing-off case")
    args = parser.parse_args(argv)
    cases = CASES if args.skip_unshared else (*CASES, UNSHARED)
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as name:
        tmp = Path(name)
        source = build_db(tmp, args.matches)
        print(
            f"{args.matches} matches, {_lines(source):,} feed lines, "
            f"republished every {args.publish_s:g} s; {args.seconds:g} s measured per case; "
            f"figures per {REFRESH_S:g}-s refresh interval"
        )
        print(f"{'case':<26} {'in DuckDB':>12} {'calls':>9} {'shared':>9} {'refreshes':>9}")
        for case in cases:
            print(measure(case, source, tmp, args.seconds, args.publish_s).row(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
