"""Live against replay while the feed arrives in real time: rows that differ.

    oddsflow kafka up
    .venv/bin/python -m benchmarks.live_arrival_bench [--matches 20] [--speed 600] [--rounds 2]

Each round: fresh topics, `oddsflow live --event-time-only` started as a subprocess, then a
simulated feed (bets, deposits, faults) sent by `oddsflow publish --speed` while it runs
(at 600 times real time, 20 matches come at about 1,100 lines a second). Once the outputs
stop growing, the flow is stopped and its DuckDB tables are compared, row by row, with the
replay of what the input topics hold (`oddsflow replay --merge` of the input partitions in
arrival order, as `tests/test_live_flow.py` builds it). Printed per round: the lines per
second sent, and per table the rows only the replay has and only the live run has.

A row differs when the live merge took a feed line and a bet of the same match in another
order than their Kafka timestamps say: the bet judged against another market, a wallet
reserving before a deposit. Not part of CI: a real-time run, and its figure varies.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from connectors.kafka.admin import drop_topics, ensure_topics
from connectors.kafka.settings import ALL_TOPICS, ENV_PREFIX, KafkaSettings
from tests.test_live_flow import (
    LiveProcess,
    output_counts,
    replay_of_partitions,
    tables_without_sources,
)
from tooling.simulator import write_feed

QUIET_S = 4  # the outputs stopped growing this long: the flow is done


def one_round(bootstrap: str, feed: Path, speed: float, workdir: Path) -> str:
    settings = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"arrival-{uuid.uuid4().hex[:8]}.")
    ensure_topics(settings, ALL_TOPICS)
    try:
        live = LiveProcess(settings, workdir / "live.duckdb", "--event-time-only")
        deadline = time.monotonic() + 60
        while "Ctrl-C stops" not in live.stderr():
            if not live.running() or time.monotonic() > deadline:
                raise RuntimeError(f"oddsflow live did not start:\n{live.stderr()}")
            time.sleep(0.2)
        time.sleep(2)  # its consumers assigned
        started = time.monotonic()
        command = [sys.executable, "-m", "flows", "publish", str(feed), "--speed", str(speed)]
        env = {**os.environ, ENV_PREFIX: settings.topic_prefix}
        sent = subprocess.run(
            [*command, "--kafka", bootstrap], env=env, capture_output=True, text=True, check=True
        )
        took = time.monotonic() - started
        last, still = None, 0
        while still < QUIET_S:
            counts = output_counts(settings)
            still, last = (still + 1 if counts == last else 0), counts
            time.sleep(1)
        live.stop()
        replayed = replay_of_partitions(settings, workdir / "partitions")
        lines = int(sent.stdout.split("published ")[1].split()[0].replace(",", ""))
        out = [f"  sent {lines:,} lines in {took:.1f} s: {lines / took:,.0f} lines/s"]
        want, got = tables_without_sources(replayed), tables_without_sources(live.db)
        for name, rows in want.items():
            a, b = set(map(repr, rows)), set(map(repr, got[name]))
            out.append(
                f"  {name:15} {len(rows):7,} rows  only in the replay {len(a - b):5,}  "
                f"only live {len(b - a):5,}"
            )
        return "\n".join(out)
    finally:
        drop_topics(settings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matches", type=int, default=20)
    parser.add_argument("--speed", type=float, default=600.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="arrival-") as tmp:
        feed = Path(tmp) / "feed.jsonl.gz"
        write_feed(feed, matches=args.matches, seed=args.seed)
        for n in range(args.rounds):
            workdir = Path(tmp) / f"round-{n}"
            workdir.mkdir()
            print(f"round {n + 1}:\n{one_round(args.kafka, feed, args.speed, workdir)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
