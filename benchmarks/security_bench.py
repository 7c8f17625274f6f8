"""What security costs, each against its baseline in the same invocation.

    python -m benchmarks.security_bench [--matches 100] [--rounds 3] [--messages 200000]

1. Replay throughput of the real flow (DuckDB sink included) over the same simulated feed:
   unsigned lines with no keyring, against every line signed and checked (HMAC-SHA256 per
   feed line, the signature split off each recorded line). Each run is a fresh child
   process; rounds alternate, and the summary gives the median of each (the machine is
   shared: single rounds swing by a factor of two). Then the cost per line of the
   check alone, in process: `route` over the same lines with and without the keyring.
2. Kafka throughput over SASL_SSL (SCRAM-SHA-512, TLS 1.3; `feed` produces, `flow`
   consumes) against PLAINTEXT: the same feed lines produced with oddsflow's producer
   settings (idempotent, acks=all) until all are acknowledged, then consumed to the end.
   Needs both local brokers; starts the secure one if it is down (and stops it after).
3. The live flow's throughput over SASL_SSL against PLAINTEXT: a simulated feed published
   into the input topics first (by `feed` on the secure broker), then `oddsflow live`
   (`flow`'s client file on the secure broker, `--event-time-only`) reads it all and
   writes every output topic and its DuckDB file. Throughput: lines / the time from the
   first output message to the last (the end offsets of the output topics, polled every
   100 ms), so the flow's start-up is left out. Rounds alternate; medians compared.
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bytewax.testing import run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from connectors.kafka.admin import drop_topics, ensure_topics
from connectors.kafka.settings import (
    ALL_TOPICS,
    ENV_BOOTSTRAP,
    ENV_PREFIX,
    FEED,
    OUTPUT_TOPICS,
    KafkaSettings,
)
from flows.replay import get_flow
from flows.sources import read_lines
from operators import signing
from operators.parse import route
from tooling import kafka_broker, kafka_secure
from tooling.kafka_tools import publish

REPO = Path(__file__).resolve().parents[1]

SECRET = "a benchmark secret, long enough"


# --- 1. replay ---------------------------------------------------------------------------------


def signed_copy(feed: Path, out: Path) -> int:
    """Every `sim` line of `feed` signed, into `out`; the number of lines."""
    secret = SECRET.encode()
    count = 0
    with gzip.open(feed, "rb") as src, out.open("wb") as dst:
        for raw in src:
            line = raw.rstrip(b"\n")
            if b'"provider":"sim"' in line:
                line = signing.signed_line(line, signing.sign(line, secret))
            dst.write(line + b"\n")
            count += 1
    return count


def _child(feed: Path, db: Path, keyring: bool, conn: mp.connection.Connection) -> None:
    if keyring:
        os.environ["ODDSFLOW_SECRET_SIM"] = SECRET
    signing.reload_keyring()
    started = time.perf_counter()
    run_main(get_flow([feed], db))
    conn.send(time.perf_counter() - started)


def replay_seconds(feed: Path, db: Path, keyring: bool) -> float:
    for stale in db.parent.glob(f"{db.stem}*"):
        stale.unlink()
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_child, args=(feed, db, keyring, child))
    proc.start()
    seconds: float = parent.recv()
    proc.join()
    return seconds


def bench_replay(work: Path, matches: int, rounds: int) -> None:
    from tooling.simulator import write_feed

    plain = work / "sim.jsonl.gz"
    write_feed(plain, matches=matches, seed=3)
    signed = work / "signed.jsonl"
    lines = signed_copy(plain, signed)
    (work / "out").mkdir()
    runs = {"unsigned, no keyring": (plain, False), "signed and checked": (signed, True)}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    print(f"replay: {lines:,} lines ({matches} simulated matches)")
    for r in range(rounds):
        for name, (feed, keyring) in runs.items():
            seconds = replay_seconds(feed, work / "out" / "bench.duckdb", keyring)
            samples[name].append(seconds)
            print(f"  round {r + 1} {name:22s} {lines / seconds:>10,.0f} lines/s {seconds:6.2f} s")
    base, checked = (lines / statistics.median(samples[name]) for name in runs)
    print(
        f"replay median: unsigned {base:,.0f} lines/s, signed+checked {checked:,.0f} lines/s "
        f"({checked / base:.0%} of unsigned)"
    )
    bench_route(signed, rounds)


def bench_route(signed: Path, rounds: int) -> None:
    """µs per line of `route` (limits, keys, and with a keyring the signature check)."""
    raws = list(read_lines(signed))
    best: dict[bool, float] = {}
    for _ in range(rounds):
        for keyring in (False, True):
            if keyring:
                os.environ["ODDSFLOW_SECRET_SIM"] = SECRET
            else:
                os.environ.pop("ODDSFLOW_SECRET_SIM", None)
            signing.reload_keyring()
            started = time.perf_counter()
            for raw in raws:
                route(raw)
            best[keyring] = min(best.get(keyring, 1e9), time.perf_counter() - started)
    os.environ.pop("ODDSFLOW_SECRET_SIM", None)
    signing.reload_keyring()
    off, on = (best[k] / len(raws) * 1e6 for k in (False, True))
    print(f"route per line: {off:.2f} µs without a keyring, {on:.2f} µs checking signatures "
          f"(+{on - off:.2f} µs)")  # fmt: skip


# --- 2. Kafka ----------------------------------------------------------------------------------


def feed_values(feed: Path, count: int) -> list[bytes]:
    values: list[bytes] = []
    with gzip.open(feed, "rb") as src:
        while len(values) < count:
            for raw in src:
                values.append(raw.rstrip(b"\n"))
                if len(values) == count:
                    break
            src.seek(0)
    return values


def produce_all(settings: KafkaSettings, values: list[bytes]) -> float:
    producer = Producer(settings.producer_config())
    topic = settings.topic(FEED)
    started = time.perf_counter()
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value, str(i % 64))
                break
            except BufferError:
                producer.poll(0.05)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} messages not delivered")
    return time.perf_counter() - started


def consume_all(settings: KafkaSettings, expected: int) -> float:
    consumer = Consumer(
        {
            **settings.consumer_config(f"oddsflow-live-bench-{uuid.uuid4().hex[:6]}"),
            "enable.auto.commit": False,
        }
    )
    topic = settings.topic(FEED)
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    seen = 0
    started = time.perf_counter()
    try:
        while seen < expected:
            for msg in consumer.consume(10_000, 1.0):
                err = msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(err.str())
                seen += err is None
    finally:
        consumer.close()
    return time.perf_counter() - started


@contextmanager
def both_brokers() -> Iterator[kafka_secure.SecureFiles | None]:
    """The secure broker's files while both brokers run (the secure one started and
    stopped again if it was down); None when the plain broker is down."""
    if not kafka_broker.status().up:
        print("kafka: the plain broker is down (oddsflow kafka up); skipping the Kafka part")
        yield None
        return
    started_secure = not kafka_broker.status(secure=True).up
    if started_secure:
        kafka_broker.up(secure=True)
    try:
        yield kafka_broker.StatePaths.from_env(secure=True).files
    finally:
        if started_secure:
            kafka_broker.down(secure=True)


@contextmanager
def bench_topics(files: kafka_secure.SecureFiles) -> Iterator[tuple[str, KafkaSettings]]:
    """A fresh topic prefix with every topic on both brokers (granted on the secure one);
    the topics dropped after. Yields the prefix and the plain broker's settings."""
    prefix = f"bench-{uuid.uuid4().hex[:6]}."
    internal = kafka_secure.internal_settings(files, prefix)
    kafka_secure.grant(internal, prefix)
    ensure_topics(internal, ALL_TOPICS)
    plain = KafkaSettings(bootstrap=kafka_broker.BOOTSTRAP, topic_prefix=prefix)
    ensure_topics(plain, ALL_TOPICS)
    try:
        yield prefix, plain
    finally:
        drop_topics(plain, ALL_TOPICS)
        drop_topics(internal, ALL_TOPICS)
        kafka_secure.revoke(internal, prefix)


def bench_kafka(files: kafka_secure.SecureFiles, work: Path, messages: int, rounds: int) -> None:
    values = feed_values(work / "sim.jsonl.gz", messages)
    size = sum(map(len, values)) / len(values)
    print(f"kafka: {messages:,} feed lines of {size:.0f} bytes on average, 4 partitions")
    samples: dict[str, list[tuple[float, float]]] = {"PLAINTEXT": [], "SASL_SSL": []}
    for r in range(rounds):
        with bench_topics(files) as (prefix, plain):
            setups = {
                "PLAINTEXT": (plain, plain),
                "SASL_SSL": (
                    kafka_secure.client_settings(files, "feed", prefix),
                    kafka_secure.client_settings(files, "flow", prefix),
                ),
            }
            for name, (producer, consumer) in setups.items():
                put = produce_all(producer, values)
                get = consume_all(consumer, messages)
                print(
                    f"  round {r + 1} {name:9s} produce {messages / put:>9,.0f} msg/s   "
                    f"consume {messages / get:>9,.0f} msg/s"
                )
                samples[name].append((put, get))
    (pp, pc), (sp, sc) = (
        tuple(statistics.median(s[i] for s in samples[name]) for i in (0, 1))
        for name in ("PLAINTEXT", "SASL_SSL")
    )
    print(
        f"kafka median: produce SASL_SSL {messages / sp:,.0f} vs PLAINTEXT {messages / pp:,.0f} "
        f"msg/s ({pp / sp:.0%}); consume {messages / sc:,.0f} vs {messages / pc:,.0f} msg/s "
        f"({pc / sc:.0%})"
    )


# --- 3. the live flow -----------------------------------------------------------------------


def output_end(settings: KafkaSettings) -> int:
    """Messages in the output topics so far (the sum of their partitions' end offsets)."""
    consumer = Consumer(settings.consumer_config(f"oddsflow-bench-{uuid.uuid4().hex[:6]}"))
    try:
        total = 0
        for name in OUTPUT_TOPICS:
            topic = settings.topic(name)
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                total += consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return total
    finally:
        consumer.close()


def live_seconds(
    feed_settings: KafkaSettings, flow_args: list[str], watch: KafkaSettings, feed: Path, db: Path
) -> tuple[int, float, int]:
    """Publish `feed`, then run `oddsflow live` over it until its outputs stop growing for
    5 s; (lines, seconds from its first output message to its last, output messages)."""
    lines = publish(feed_settings, feed).lines
    env = {k: v for k, v in os.environ.items() if k != ENV_BOOTSTRAP}
    env[ENV_PREFIX] = feed_settings.topic_prefix
    command = [sys.executable, "-m", "flows", "live", "--event-time-only", "--db", str(db)]
    err = db.with_suffix(".err")
    with err.open("wb") as stderr:
        flow = subprocess.Popen(
            [*command, *flow_args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    first = last = 0.0
    count = 0
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and flow.poll() is None:
            time.sleep(0.1)
            now, seen = time.monotonic(), output_end(watch)
            if seen > count:
                first, last, count = first or now, now, seen
            elif count and now - last > 5.0:
                break
    finally:
        flow.send_signal(signal.SIGINT)
        code = flow.wait(60)
    if code != 0 or not count:
        raise RuntimeError(f"oddsflow live exited {code} with {count} outputs: see {err}")
    return lines, last - first, count


def bench_live(files: kafka_secure.SecureFiles, work: Path, matches: int, rounds: int) -> None:
    from tooling.simulator import write_feed

    feed = work / "live.jsonl.gz"
    write_feed(feed, matches=matches, seed=5)
    print(f"live flow: {matches} simulated matches, published first, then read by the flow")
    samples: dict[str, list[float]] = {"PLAINTEXT": [], "SASL_SSL": []}
    outputs: dict[str, int] = {}
    for r in range(rounds):
        with bench_topics(files) as (prefix, plain):
            flow_file = str(files.client_file("flow"))
            secure = kafka_secure.client_settings(files, "flow", prefix)
            setups = {
                "PLAINTEXT": (plain, ["--kafka", plain.bootstrap], plain),
                "SASL_SSL": (
                    kafka_secure.client_settings(files, "feed", prefix),
                    ["--kafka-config", flow_file],
                    secure,
                ),
            }
            for name, (feed_settings, flow_args, watch) in setups.items():
                db = work / f"live-{r}-{name}.duckdb"
                lines, seconds, outputs[name] = live_seconds(
                    feed_settings, flow_args, watch, feed, db
                )
                samples[name].append(lines / seconds)
                print(
                    f"  round {r + 1} {name:9s} {lines / seconds:>9,.0f} lines/s "
                    f"({lines:,} lines, {outputs[name]:,} output messages in {seconds:.1f} s)"
                )
    plain_rate, secure_rate = (statistics.median(samples[n]) for n in ("PLAINTEXT", "SASL_SSL"))
    print(
        f"live flow median: SASL_SSL {secure_rate:,.0f} vs PLAINTEXT {plain_rate:,.0f} lines/s "
        f"({secure_rate / plain_rate:.0%}); output messages {outputs}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--matches", type=int, default=100, help="simulated matches (~145k lines)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument(
        "--live-matches", type=int, default=30, help="simulated matches for the live flow part"
    )
    parser.add_argument("--skip-kafka", action="store_true", help="the replay part only")
    parser.add_argument(
        "--skip-replay", action="store_true", help="the live flow part only (no parts 1, 2)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="oddsflow-security-bench-"))
    if not args.skip_replay:
        bench_replay(work, args.matches, args.rounds)
    if args.skip_kafka:
        return
    with both_brokers() as files:
        if files is None:
            return
        if not args.skip_replay:
            bench_kafka(files, work, args.messages, args.rounds)
        bench_live(files, work, args.live_matches, args.rounds)


if __name__ == "__main__":
    main()
