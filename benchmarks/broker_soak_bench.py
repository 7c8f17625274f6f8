"""Broker-death soak: `oddsflow live` on the local three-broker cluster while its nodes die.

    oddsflow kafka up --brokers 3
    .venv/bin/python -m benchmarks.broker_soak_bench [--minutes 4] [--rate 2000] [--kill-every-s 30]

Fresh topics on the cluster (3 replicas, `min.insync.replicas=2`), `oddsflow live
--event-time-only` started as a subprocess, then a simulated feed (bets, deposits,
faults) published at `--rate` lines per second of wall time for `--minutes`, as
`benchmarks/live_latency_bench.py` does. Every `--kill-every-s`, the node leading the
input partition that holds the most messages is SIGKILLed and started again at once; the
next kill waits until every partition is back in sync (two nodes dead would stop
`acks=all` writes, and the quorum). The flow is never restarted.

Printed: the longest time with no output message; the latency of goal-possible lines
(produced -> their `markets` suspension received) for lines produced during a kill (from
the kill until the cluster is back in sync) and outside; per kill, when the partitions
had new leaders, the node was back and everything in sync; messages lost (expected
messages missing from the output topics) and duplicates (the same key and version
twice); whether the output topics and DuckDB equal an uninterrupted replay of the same
lines (`oddsflow replay --merge` of the input partitions, as `tests/test_live_flow.py`
builds it). Not part of CI: minutes long, and it kills the cluster's nodes.

A live flow applies lines as they arrive: a partition whose leader is dead looks caught up
(its lines wait in the producer), so lines of the other input topic pass it, which the
replay, reading the topics afterwards, does not do. `--kill-every-s 0` is the control: the
same run without kills.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from benchmarks.live_latency_bench import (
    WARM_UP,
    Key,
    _publish,
    feed_lines,
    percentile,
    reader,
)
from connectors.kafka.admin import drop_topics, ensure_topics
from connectors.kafka.settings import ALL_TOPICS, ENV_PREFIX, MARKETS, OUTPUT_TOPICS, KafkaSettings
from tooling import kafka_cluster

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Kill:
    node: int
    partition: str  # "topic/partition" whose leader it was
    at: float  # wall clock
    moved_s: float = float("nan")  # until that partition had another leader
    back_s: float = float("nan")  # until the node answered again
    in_sync_s: float = float("nan")  # until no partition was under-replicated


# --- the watcher: a process reading every output topic ------------------------------------


def watch(settings: KafkaSettings, stop: Any, results: Any, count: Any, last_at: Any) -> None:
    """Read the output topics; when `stop` is set, send back the receive time of every
    batch of messages and of each goal-possible suspension (first one per key)."""
    consumer = reader(settings, "soak", OUTPUT_TOPICS)
    markets = settings.topic(MARKETS)
    batches: list[float] = []
    suspended: dict[Key, float] = {}
    while not stop.is_set():
        first = consumer.poll(0.05)
        now = time.time()
        batch = [first, *consumer.consume(1000, 0)] if first is not None else []
        got = 0
        for msg in batch:
            if msg.error() is not None:
                continue
            got += 1
            value = msg.value() or b""
            if msg.topic() == markets and b'"goal_possible"' in value:
                body = json.loads(value)
                if body["reason"] == "goal_possible" and body["status"] == "SUSPENDED":
                    suspended.setdefault((body["match_id"], body["ts"]), now)
        if got:
            batches.append(now)
            count.value += got
            last_at.value = now
    consumer.close()
    results.put((batches, suspended))


# --- the killer: a thread ---------------------------------------------------------------


def kill_loop(
    settings: KafkaSettings, every_s: float, done: threading.Event, kills: list[Kill]
) -> None:
    """Every `every_s` (and once the cluster is back in sync), SIGKILL the leader of the
    busiest input partition and start it again; each kill, timed, goes to `kills`."""
    while not done.wait(every_s):
        topic, part = kafka_cluster.busiest_input_partition(settings)
        node = kafka_cluster.leader_of(settings, topic, part)
        kill = Kill(node, f"{topic}/{part}", time.time())
        kafka_cluster.kill(node)
        kills.append(kill)
        started = time.monotonic()
        while kafka_cluster.leader_of(settings, topic, part) in (node, -1):
            time.sleep(0.1)
        kill.moved_s = time.monotonic() - started
        kafka_cluster.start_node(node, timeout_s=600)  # minutes on a loaded 2-core machine
        kill.back_s = time.monotonic() - started
        kafka_cluster.wait_in_sync(settings, timeout=300)
        kill.in_sync_s = time.monotonic() - started
        print(
            f"  kill {len(kills)}: node {node} (leader of {kill.partition}); new leader after "
            f"{kill.moved_s:.1f} s, node back after {kill.back_s:.1f} s, in sync after "
            f"{kill.in_sync_s:.1f} s",
            flush=True,
        )


# --- the run -----------------------------------------------------------------------------


def soak(settings: KafkaSettings, lines: list[bytes], rate: int, every_s: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    db = workdir / "live.duckdb"
    env = {**os.environ, ENV_PREFIX: settings.topic_prefix}
    command = [sys.executable, "-m", "flows", "live", "--kafka", settings.bootstrap]
    command += ["--db", str(db), "--event-time-only"]
    ctx = mp.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    count, last_at = ctx.Value("q", 0), ctx.Value("d", 0.0)
    watcher = ctx.Process(target=watch, args=(settings, stop, results, count, last_at))
    watcher.start()
    with (workdir / "live.err").open("wb") as err, (workdir / "live.out").open("wb") as out:
        flow = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err)
    producer = Producer(settings.producer_config())
    producer.produce(settings.topic("feed"), WARM_UP, b"bench-warmup")
    producer.flush(30)
    while count.value == 0:  # the flow runs and the watcher reads
        if flow.poll() is not None:
            raise RuntimeError(f"oddsflow live exited: see {workdir}/live.err")
        time.sleep(0.1)
    done = threading.Event()
    kills: list[Kill] = []
    killer = threading.Thread(target=kill_loop, args=(settings, every_s, done, kills))
    if every_s > 0:
        killer.start()
    produced, started, finished = _publish(producer, settings, lines, rate, positions=True)
    done.set()
    if every_s > 0:
        killer.join()
    while time.time() - last_at.value < 5.0:  # drained: nothing for 5 s
        time.sleep(0.5)
    still_running = flow.poll() is None
    flow.send_signal(signal.SIGINT)
    status = flow.wait(120)
    stop.set()
    batches, suspended = results.get(timeout=60)
    watcher.join()
    return {
        "workdir": workdir,
        "db": db,
        "produced": produced,
        "started": started,
        "finished": finished,
        "kills": kills,
        "batches": batches,
        "suspended": suspended,
        "status": status,
        "ran_through": still_running,
        "read": lines_read((workdir / "live.out").read_text()),
    }


def lines_read(stdout: str) -> int:
    """The `lines read` count `oddsflow live` prints when it stops."""
    found = re.findall(r"^lines read\s+([\d,]+)", stdout, re.M)
    return sum(int(n.replace(",", "")) for n in found)


def compare(settings: KafkaSettings, run: dict[str, Any]) -> dict[str, Any]:
    """What reached the output topics against what the flow wrote to DuckDB (lost: in
    DuckDB, not on Kafka; duplicates: the same key and version twice), and the flow's
    outputs and DuckDB against a replay of its input partitions (the helpers of
    tests/test_live_flow.py, not copies)."""
    from tests.test_live_flow import (
        IDENTITY,
        assert_outputs_equal_tables,
        read_outputs,
        replay_of_partitions,
        tables_without_sources,
    )

    replayed = replay_of_partitions(settings, run["workdir"] / "partitions")
    sent = read_outputs(settings)
    unique, duplicates, collisions = split_duplicates(sent, IDENTITY)
    lost = {t: len(ids) for t, ids in missing(run["db"], unique, IDENTITY).items()}

    def equal(db: Path) -> bool:
        try:
            assert_outputs_equal_tables(unique, db)
        except AssertionError:
            return False
        return True

    return {
        "lost": lost,
        "duplicates": duplicates,
        "collisions": collisions,
        "outputs_own": equal(run["db"]),
        "outputs_replay": equal(replayed),
        "db_replay": tables_without_sources(run["db"]) == tables_without_sources(replayed),
    }


def split_duplicates(
    sent: dict[str, list[dict[str, Any]]], identity: dict[str, tuple[str, ...]]
) -> tuple[dict[str, list[dict[str, Any]]], int, dict[str, int]]:
    """One message per key and version (the last one, in partition order), how many
    repeats were dropped (the same message again), and per topic how many messages shared
    a key and version with a different one (two lines of a match at one `ts` give two
    `matches` messages of one version: the flow's doing, not Kafka's)."""
    unique: dict[str, list[dict[str, Any]]] = {}
    repeats, collisions = 0, {}
    for topic, values in sent.items():
        seen: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for value in values:
            same_id = seen.setdefault(tuple(value[f] for f in identity[topic]), [])
            if value in same_id:
                repeats += 1
            else:
                same_id.append(value)
        unique[topic] = [group[-1] for group in seen.values()]
        collisions[topic] = sum(len(group) - 1 for group in seen.values())
    return unique, repeats, {t: n for t, n in collisions.items() if n}


def missing(
    db: Path, unique: dict[str, list[dict[str, Any]]], identity: dict[str, tuple[str, ...]]
) -> dict[str, set[tuple[Any, ...]]]:
    """Per topic, the ids (key and version) the DuckDB file `db` says were sent and the
    output topics lack: every market history row, price row, wallet movement, and the
    final version of every bet."""
    from tests.conftest import table

    expected = {
        "markets": "SELECT match_id, market, version FROM market_history",
        "prices": "SELECT match_id, market, version, selection FROM prices",
        "wallets": "SELECT user_id, version FROM wallet_ledger",
        "bets": "SELECT bet_id, version FROM bets",
    }
    out = {}
    for topic, sql in expected.items():
        got = {tuple(m[f] for f in identity[topic]) for m in unique[topic]}
        out[topic] = {tuple(r) for r in table(db, sql)} - got
    return out


def summarise(run: dict[str, Any], checks: dict[str, Any], rate: int, lines: int) -> str:
    kills: list[Kill] = run["kills"]
    windows = [(k.at, k.at + k.in_sync_s) for k in kills]
    during, outside = [], []
    for key, sent_at in run["produced"].items():
        if key in run["suspended"]:
            ms = (run["suspended"][key] - sent_at) * 1000
            hit = any(a <= sent_at <= b for a, b in windows)
            (during if hit else outside).append(ms)
    times = [t for t in run["batches"] if run["started"] <= t]
    gaps = [(b - a, a) for a, b in itertools.pairwise(times)]
    gap, gap_at = max(gaps, default=(0.0, 0.0))
    after = [gap_at - k.at for k in kills if k.at <= gap_at]
    where = f", {min(after):.1f} s after a kill" if after else ""
    minutes = (run["finished"] - run["started"]) / 60

    def yes(flag: bool) -> str:
        return "yes" if flag else "NO"

    def lat(values: list[float]) -> str:
        if not values:
            return "n/a"
        return (
            f"p50 {percentile(values, 0.5):7.1f}  p99 {percentile(values, 0.99):8.1f}  "
            f"max {max(values):8.1f} ms  ({len(values)} lines)"
        )

    return "\n".join(
        [
            f"soak: {rate:,} lines/s for {minutes:.1f} min = {lines:,} lines, {len(kills)} "
            f"kills (nodes {', '.join(str(k.node) for k in kills)})",
            f"  longest time with no output   {gap:.1f} s{where}",
            f"  latency during kills          {lat(during)}",
            f"  latency outside kills         {lat(outside)}",
            f"  lines published / read        {lines + 1:,} / {run['read']:,} (with the warm-up)",
            f"  messages lost                 {sum(checks['lost'].values())} {checks['lost']}",
            f"  duplicates (key, version)     {checks['duplicates']}",
            f"  same key and version, another message  {checks['collisions'] or 'none'}",
            f"  output topics = own DuckDB    {yes(checks['outputs_own'])}",
            f"  output topics = replay        {yes(checks['outputs_replay'])}",
            f"  DuckDB = replay               {yes(checks['db_replay'])}",
            f"  flow ran through, no restart  {'yes' if run['ran_through'] else 'NO'} "
            f"(exit status {run['status']})",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--rate", type=int, default=2_000)
    parser.add_argument(
        "--kill-every-s", type=float, default=30.0, help="0: no kills (the control run)"
    )
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    if not kafka_cluster.status().up:
        print("the local cluster is not up: oddsflow kafka up --brokers 3", file=sys.stderr)
        return 1
    settings = dataclasses.replace(
        kafka_cluster.settings(), topic_prefix=f"soak-{uuid.uuid4().hex[:8]}."
    )
    ensure_topics(settings, ALL_TOPICS)
    lines = feed_lines(int(args.rate * args.minutes * 60), args.seed)
    print(f"simulated feed: {len(lines):,} lines; {os.cpu_count()} CPUs", flush=True)
    try:
        run = soak(settings, lines, args.rate, args.kill_every_s)
        checks = compare(settings, run)
        print(summarise(run, checks, args.rate, len(lines)), flush=True)
        print(f"  (flow log: {run['workdir']}/live.err)")
    finally:
        drop_topics(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
