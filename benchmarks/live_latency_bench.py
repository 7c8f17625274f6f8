"""Live flow latency: a `goal possible` line produced -> its suspension consumed.

    oddsflow kafka up
    .venv/bin/python benchmarks/live_latency_bench.py [--rates 2000 10000] [--seconds 60]

For each rate: fresh topics, `oddsflow live` started as a subprocess (one worker unless
`--workers`, one process unless `--processes`) and warmed up with one fixture line, then
a simulated feed (with bets and faults) published into the input topics at that many
lines per second of wall time for `--seconds`, with the project's producer settings
(idempotent, acks=all, linger 1 ms), the way `oddsflow publish` sends lines.

Latency: from the moment the benchmark hands a `goal possible` line to its producer to
the moment a consumer in another process receives a `markets` message with reason
`goal_possible` for that match at that line's `ts` ("first": the first market suspended;
"all": the last market of the match suspended). Both times come from this machine's
clock. Before each flow run, the same lines go at the same rate through Kafka alone, no
flow: read back from the input topics (1 hop), and copied by a plain consume -> produce
relay into another topic and read back from there (2 hops, the path the flow's lines
take). The latency of the goal-possible lines there is the floor under the flow's,
measured in the same invocation.
Throughput: lines published / (last output message received - first line produced), i.e.
including the time the flow needed to drain what it was behind; "drain"
is that lag after the last line was produced. CPU: the flow process's user+system time
per 1000 lines (its Bytewax worker, its DuckDB writer process and librdkafka's threads).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from connectors.kafka.admin import drop_topics, ensure_topics, fetch_metadata
from connectors.kafka.settings import (
    ALL_TOPICS,
    ENV_PREFIX,
    INPUT_TOPICS,
    MARKETS,
    OUTPUT_TOPICS,
    POSITION_HEADER,
    KafkaSettings,
)
from connectors.kafka.source import IDLE_WAIT_S
from tooling.kafka_tools import route
from tooling.simulator import write_feed

REPO = Path(__file__).resolve().parents[1]
LINES_PER_MATCH = 1_400  # about what the simulator writes per match
RELAY = "relay"  # the topic `relay` copies the input lines into
WARM_UP = b'{"v":1,"provider":"bench","match_id":"bench-warmup","seq":1,"ts":1767225600000,'
WARM_UP += b'"type":"fixture","home":"A","away":"B","kickoff":1767229200000,'
WARM_UP += b'"home_rate":1.4,"away_rate":1.1}'
Key = tuple[str, int]  # (match_id, ts) of a goal-possible line


@dataclasses.dataclass
class Result:
    rate: int
    lines: int
    published_s: float
    latencies_first: list[float]
    latencies_all: list[float]
    in_flow: list[float]  # line produced -> the flow produced the first suspension
    unmatched: int
    throughput: float
    drain_s: float
    cpu_ms_per_1000: float
    outputs: int


# --- the consumer, in a process of its own -------------------------------------------------


def reader(settings: KafkaSettings, group: str, names: Sequence[str]) -> Consumer:
    """A consumer of its own group (`group` plus a random suffix) reading every partition of
    the topics `names` from the beginning, fetching with at most 10 ms of wait."""
    consumer = Consumer(
        {
            **settings.consumer_config(f"{group}-{uuid.uuid4().hex}"),
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    topics = [settings.topic(t) for t in names]
    metadata = consumer.list_topics(timeout=10)
    consumer.assign(
        [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in topics
            for p in metadata.topics[t].partitions
        ]
    )
    return consumer


def consume(
    settings: KafkaSettings,
    stop: Any,
    total: Synchronized[int],
    last_at: Synchronized[float],
    results: Any,
    bare: Sequence[str] = (),
) -> None:
    """Read every output topic; receive times of goal-possible suspensions, sent back on
    `results` when `stop` is set. `bare`: read these topics instead, and time the
    goal-possible lines themselves (Kafka alone, no flow)."""
    consumer = reader(settings, "bench", bare or OUTPUT_TOPICS)
    markets = settings.topic(MARKETS)
    seen: dict[Key, list[float]] = {}
    created: dict[Key, float] = {}  # when the flow produced the first suspension message
    count = 0
    while not stop.is_set():
        first = consumer.poll(0.05)  # returns at the first message (consume waits for 1000)
        now = time.time()
        batch = [first, *consumer.consume(1000, 0)] if first is not None else []
        for msg in batch:
            if msg.error() is not None:
                continue
            count += 1
            value = msg.value() or b""
            if bare:
                goal = goal_possible(value)
                if goal is not None:
                    seen.setdefault(goal, []).append(now)
                    created.setdefault(goal, msg.timestamp()[1] / 1000)
            elif msg.topic() == markets and b"goal_possible" in value:
                body = json.loads(value)
                if body["reason"] == "goal_possible" and body["status"] == "SUSPENDED":
                    key = (body["match_id"], body["ts"])
                    seen.setdefault(key, []).append(now)
                    created.setdefault(key, msg.timestamp()[1] / 1000)
        if batch:
            total.value = count
            last_at.value = now
    consumer.close()
    results.put({key: (min(t), max(t), created[key]) for key, t in seen.items()})


def relay(settings: KafkaSettings, stop: Any) -> None:
    """Consume-produce with no processing: every input line straight into the `relay`
    topic, with the live flow's consumer and producer settings and its idle wait. The
    floor under any flow that reads Kafka and writes Kafka: two hops, nothing between."""
    consumer = Consumer(
        {**settings.consumer_config(f"relay-{uuid.uuid4().hex}"), "enable.auto.commit": False}
    )
    consumer.subscribe([settings.topic(t) for t in INPUT_TOPICS])
    producer = Producer(settings.producer_config())
    out = settings.topic(RELAY)
    while not stop.is_set():
        first = consumer.poll(IDLE_WAIT_S)
        batch = [first, *consumer.consume(999, 0)] if first is not None else []
        for msg in batch:
            if msg.error() is None:
                producer.produce(out, msg.value(), msg.key())
        producer.poll(0)
    producer.flush(30)
    consumer.close()


# --- one run -------------------------------------------------------------------------------


def goal_possible(line: bytes) -> Key | None:
    if b'"possible"' not in line:
        return None
    try:
        body = json.loads(line)
    except ValueError:
        return None
    if body.get("type") == "goal" and body.get("state") == "possible":
        return body.get("match_id"), body.get("ts")
    return None


@dataclasses.dataclass
class _Reader:
    """What the consumer process of one run shares with the benchmark."""

    total: Synchronized[int]  # messages read so far
    last_at: Synchronized[float]  # when the last one came
    # per goal-possible key: (first, last, created) times, once the reader stopped
    received: dict[Key, tuple[float, float, float]] = dataclasses.field(default_factory=dict)


@contextmanager
def _reading(settings: KafkaSettings, bare: Sequence[str] = ()) -> Iterator[_Reader]:
    """`consume` in a process of its own for the duration (see its `bare`)."""
    ctx = mp.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    reader = _Reader(ctx.Value("q", 0), ctx.Value("d", 0.0))
    args = (settings, stop, reader.total, reader.last_at, results, bare)
    process = ctx.Process(target=consume, args=args)
    process.start()
    try:
        yield reader
    finally:
        stop.set()
        reader.received.update(results.get(timeout=60))
        process.join()


@contextmanager
def _fresh_topics(base: KafkaSettings, name: str, topics: Sequence[str]) -> Iterator[KafkaSettings]:
    """Topics of this run's own, deleted after it: a run leaves nothing on the broker
    (thousands of stale partitions slow a small broker down, and later runs with it)."""
    settings = dataclasses.replace(base, topic_prefix=f"bench-{name}-{uuid.uuid4().hex[:8]}.")
    ensure_topics(settings, topics)
    try:
        yield settings
    finally:
        drop_topics(settings)


def run_once(base: KafkaSettings, lines: list[bytes], rate: int, flow_options: list[str]) -> Result:
    with _fresh_topics(base, "live", ALL_TOPICS) as settings:
        return _run_flow(settings, lines, rate, flow_options)


def _run_flow(
    settings: KafkaSettings, lines: list[bytes], rate: int, flow_options: list[str]
) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="live-bench-"))
    env = {**os.environ, ENV_PREFIX: settings.topic_prefix}
    command = [sys.executable, "-m", "flows", "live", "--kafka", settings.bootstrap]
    command += ["--db", str(workdir / "live.duckdb"), *flow_options]
    with _reading(settings) as reader:
        with (workdir / "live.err").open("wb") as err:
            flow = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err
            )
        producer = Producer(settings.producer_config())
        try:
            _warm_up(producer, settings, reader.total)
            produced, started, finished = _publish(producer, settings, lines, rate)
            _wait_until_drained(reader.total, reader.last_at)
        finally:
            flow.send_signal(signal.SIGINT)
            _, status, usage = os.wait4(flow.pid, 0)
            flow.returncode = os.waitstatus_to_exitcode(status)
    received = reader.received
    if flow.returncode != 0:
        raise RuntimeError(f"oddsflow live exited {flow.returncode}: see {workdir}/live.err")
    first = [received[k][0] - t for k, t in produced.items() if k in received]
    every = [received[k][1] - t for k, t in produced.items() if k in received]
    in_flow = [received[k][2] - t for k, t in produced.items() if k in received]
    done_at = reader.last_at.value
    return Result(
        rate=rate,
        lines=len(lines),
        published_s=finished - started,
        latencies_first=[x * 1000 for x in first],
        latencies_all=[x * 1000 for x in every],
        in_flow=[x * 1000 for x in in_flow],
        unmatched=len(produced) - len(first),
        throughput=len(lines) / (done_at - started),
        drain_s=done_at - finished,
        cpu_ms_per_1000=(usage.ru_utime + usage.ru_stime) * 1000 / (len(lines) / 1000),
        outputs=reader.total.value,
    )


def run_bare(base: KafkaSettings, lines: list[bytes], rate: int, hops: int = 1) -> list[float]:
    """The same lines at the same rate through Kafka alone, no flow: each goal-possible
    line's produce -> consume latency in ms. One hop: read from the input topics. Two
    hops: `relay` copies them into another topic, which is read (what the flow's path
    crosses). The floor under the flow's latency."""
    with _fresh_topics(base, f"bare{hops}", [*INPUT_TOPICS, RELAY]) as settings:
        return _run_bare(settings, lines, rate, hops)


def _run_bare(settings: KafkaSettings, lines: list[bytes], rate: int, hops: int) -> list[float]:
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    relaying = ctx.Process(target=relay, args=(settings, stop)) if hops == 2 else None
    if relaying is not None:
        relaying.start()
    try:
        with _reading(settings, bare=[RELAY] if hops == 2 else INPUT_TOPICS) as reader:
            producer = Producer(settings.producer_config())
            _warm_up(producer, settings, reader.total)
            produced, _, _ = _publish(producer, settings, lines, rate)
            _wait_until_drained(reader.total, reader.last_at, quiet_s=2.0)
    finally:
        stop.set()
        if relaying is not None:
            relaying.join(60)
    received = reader.received
    return [(received[k][0] - t) * 1000 for k, t in produced.items() if k in received]


def _warm_up(producer: Producer, settings: KafkaSettings, total: Synchronized[int]) -> None:
    """One fixture line through the flow (if any): it runs and the consumer reads, off the
    clock."""
    producer.produce(settings.topic("feed"), WARM_UP, b"bench-warmup")
    producer.flush(30)
    deadline = time.monotonic() + 120
    while total.value == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the live flow produced nothing within 120 s")
        time.sleep(0.05)
    time.sleep(1.0)


def _publish(
    producer: Producer,
    settings: KafkaSettings,
    lines: list[bytes],
    rate: int,
    positions: bool = False,
) -> tuple[dict[Key, float], float, float]:
    """Produce `lines` at `rate` per second of wall time, in bursts of what is due each
    millisecond; the produce time of each goal-possible line. `positions`: with each
    line's index as its `oddsflow-pos` header, as `oddsflow publish` sends them (lines
    stamped with one millisecond then keep their order in a replay of the topics)."""
    topics = {name: settings.topic(name) for name in ALL_TOPICS}
    produced: dict[Key, float] = {}
    started = time.time()
    for i, line in enumerate(lines):
        due = started + i / rate
        wait = due - time.time()
        if wait > 0.001:
            producer.poll(0)
            time.sleep(wait)
        suffix, key, value = route(line).item
        goal = goal_possible(line)
        if goal is not None:
            produced.setdefault(goal, time.time())
        while True:
            try:
                if positions:
                    headers = [(POSITION_HEADER, str(i).encode())]
                    producer.produce(topics[suffix], value, key, headers=headers)
                else:
                    producer.produce(topics[suffix], value, key)
                break
            except BufferError:
                producer.poll(0.01)
    finished = time.time()
    producer.flush(60)
    return produced, started, finished


def _wait_until_drained(
    total: Synchronized[int], last_at: Synchronized[float], quiet_s: float = 5.0
) -> None:
    """Until no output message came for `quiet_s` (at most 10 minutes)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if last_at.value and time.time() - last_at.value > quiet_s:
            return


# --- main ----------------------------------------------------------------------------------


def feed_lines(count: int, seed: int) -> list[bytes]:
    """At least `count` lines of simulated feeds (bets, deposits and faults included)."""
    out: list[bytes] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "feed.jsonl"
        write_feed(path, matches=count // LINES_PER_MATCH + 2, seed=seed)
        with path.open("rb") as f:
            out = [line.rstrip(b"\n") for line in f if line.strip()]
    return out[:count]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stats(values: list[float]) -> str:
    if not values:
        return "n/a"
    p50, p99 = statistics.median(values), percentile(values, 0.99)
    return f"p50 {p50:7.1f}  p99 {p99:8.1f}  max {max(values):8.1f} ms"


def describe(result: Result, bare: list[float], relayed: list[float]) -> str:
    return (
        f"{result.rate:>6,} lines/s x {result.published_s:4.0f} s = {result.lines:,} lines; "
        f"{len(result.latencies_first)} goal-possible suspensions "
        f"({result.unmatched} lines without one)\n"
        f"    latency first market  {stats(result.latencies_first)}\n"
        f"    latency all markets   {stats(result.latencies_all)}\n"
        f"    of which in the flow  {stats(result.in_flow)} (to its producer, ms clock)\n"
        f"    Kafka alone, 1 hop    {stats(bare)} (same lines and rate, no flow)\n"
        f"    Kafka alone, 2 hops   {stats(relayed)} (consume -> produce -> consume)\n"
        f"    sustained {result.throughput:,.0f} lines/s (drain {result.drain_s:.1f} s after "
        f"the last line), {result.outputs:,} output messages, "
        f"flow CPU {result.cpu_ms_per_1000:.0f} ms per 1000 lines"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[2_000, 10_000])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--processes", type=int, default=1, help="the flow's --processes (a local cluster)"
    )
    parser.add_argument("--epoch-s", type=float, default=1.0, help="the flow's --epoch-s")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    args = parser.parse_args(argv)
    base = KafkaSettings(bootstrap=args.kafka)
    fetch_metadata(base)
    lines = feed_lines(int(max(args.rates) * args.seconds), args.seed)
    print(f"simulated feed: {len(lines):,} lines; {os.cpu_count()} CPUs", flush=True)
    for rate in args.rates:
        options = ["--workers", str(args.workers), "--epoch-s", str(args.epoch_s)]
        options += ["--processes", str(args.processes)]
        sent = lines[: int(rate * args.seconds)]
        bare = run_bare(base, sent, rate)
        relayed = run_bare(base, sent, rate, hops=2)
        result = run_once(base, sent, rate, options)
        print(describe(result, bare, relayed), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
