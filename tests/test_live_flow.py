"""`oddsflow live` against the real broker: a simulated feed published into the input
topics gives the same markets, prices, bets and wallets on the output topics (and in
DuckDB) as `oddsflow replay` of the same file; an unreachable broker fails fast; a broker
restart mid-run loses no output message.

Each test runs `python -m flows live` as a subprocess with a topic prefix of its own and
stops it with SIGINT, as an operator would. The broker-restart test stops the shared
broker for a few seconds, so it comes last.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka import Message as KafkaMessage

from connectors.kafka.admin import ensure_topics
from connectors.kafka.settings import (
    ALL_TOPICS,
    BETS,
    ENV_PREFIX,
    INPUT_TOPICS,
    MARKETS,
    MATCHES,
    OUTPUT_TOPICS,
    POSITION_HEADER,
    PRICES,
    REJECTS,
    WALLETS,
    KafkaSettings,
)
from connectors.kafka.sink import DELIVERY
from dashboard import queries
from flows.live import resumes_after
from flows.sources import open_feed
from operators.parse import RawLine, is_wallet_key
from operators.providers import route_line
from operators.signing import header_value
from tests.conftest import replay, table
from tests.test_cluster import cluster_members
from tests.test_recovery import said_resumed
from tooling import kafka_broker
from tooling.kafka_tools import publish, route
from tooling.simulator import write_feed

pytestmark = pytest.mark.kafka
T = TypeVar("T")
pytest_plugins = ("tests.kafka_fixtures",)  # kafka_bootstrap, kafka_settings
REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample.jsonl.gz"  # the bundled sample, with injected faults
Message = dict[str, Any]


# --- feeds and their replays ---------------------------------------------------------------


@pytest.fixture(scope="module")
def feed10(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("live") / "sim10.jsonl"
    write_feed(path, matches=10, seed=5)
    return path


def publish_as_arrived(settings: KafkaSettings, path: Path) -> int:
    """Send every line of `path` as `oddsflow publish` does (same topics, keys, bytes),
    each stamped one millisecond after the line before it and without `oddsflow publish`'s
    position header, as lines of a real feed arrive from a provider."""
    producer = Producer(settings.producer_config())
    first_ms = int(time.time() * 1000) - 10_000_000  # older than any line a test sends later
    count = 0
    with open_feed(path) as lines:
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            suffix, key, value = route(line).item
            while True:
                try:
                    producer.produce(settings.topic(suffix), value, key, timestamp=first_ms + count)
                    break
                except BufferError:
                    producer.poll(0.1)
            count += 1
    assert producer.flush(30) == 0
    return count


def replay_of_partitions(settings: KafkaSettings, directory: Path) -> Path:
    """What `live` must give for the lines in its input topics: partition i of the feed and
    bets_in topics (a match's lines and bets, keyed alike) read back as file i, in arrival
    order (Kafka timestamp, then `oddsflow-pos`), and the files replayed as one stream in
    event-time order (`--merge`). For a feed published from one file this is not always
    the file's own replay: lines that share an order time go by partition, not by file."""
    lines: dict[int, list[tuple[int, int, bytes]]] = {}
    for msg in read_to_end(settings, INPUT_TOPICS):
        _, stamp = msg.timestamp()
        position = int(header_value(msg.headers(), POSITION_HEADER) or 0)
        lines.setdefault(msg.partition() or 0, []).append((stamp, position, msg.value() or b""))
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for index in sorted(lines):
        path = directory / f"partition-{index}.jsonl"
        path.write_bytes(b"".join(value + b"\n" for _, _, value in sorted(lines[index])))
        files.append(path)
    return replay(files, directory / "replay.duckdb", merge=True)


# --- the live process ----------------------------------------------------------------------


class LiveProcess:
    """`python -m flows live` on this test's topics, its output in files."""

    def __init__(self, settings: KafkaSettings, db: Path, *options: str) -> None:
        self.db = db
        run = f"{db.stem}-{uuid.uuid4().hex[:6]}"
        self.out_path = db.with_name(f"{run}.out")
        self.err_path = db.with_name(f"{run}.err")
        env = {**os.environ, ENV_PREFIX: settings.topic_prefix}
        command = [sys.executable, "-m", "flows", "live", "--kafka", settings.bootstrap]
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [*command, "--db", str(db), *options], cwd=REPO, env=env, stdout=out, stderr=err
            )

    def running(self) -> bool:
        return self.proc.poll() is None

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGINT, as Ctrl-C; the exit status once it stopped."""
        if self.running():
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


# --- reading the output topics -------------------------------------------------------------


def _consumer(settings: KafkaSettings) -> Consumer:
    config = settings.consumer_config(f"test-live-{uuid.uuid4().hex}")
    return Consumer({**config, "enable.auto.commit": False, "enable.partition.eof": True})


# What a client may hear for a while from a broker that is busy, restarting or handing a
# partition's leadership over: asking again later gets the answer.
TRANSIENT = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.OFFSET_NOT_AVAILABLE,  # a new leader's high watermark not caught up yet
    }
)


def asking_again(ask: Callable[[], T], seconds: float = 30) -> T:
    """`ask()`, asked again every half second while it fails with a `TRANSIENT` error, for
    up to `seconds`; any other error, or the last one, is raised."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return ask()
        except KafkaException as exc:
            if exc.args[0].code() not in TRANSIENT or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def output_counts(settings: KafkaSettings) -> dict[str, int]:
    """Messages per output topic so far (the sum of the partitions' end offsets)."""
    return asking_again(lambda: _output_counts(settings))


def _output_counts(settings: KafkaSettings) -> dict[str, int]:
    consumer = _consumer(settings)
    try:
        metadata = consumer.list_topics(timeout=5)
        return {
            name: sum(
                consumer.get_watermark_offsets(TopicPartition(settings.topic(name), p), timeout=5)[
                    1
                ]
                for p in metadata.topics[settings.topic(name)].partitions
            )
            for name in OUTPUT_TOPICS
        }
    finally:
        consumer.close()


def consumer_lag(settings: KafkaSettings, group: str) -> int:
    """Messages of the input topics past the offsets `group` committed, as
    `kafka-consumer-groups --describe` counts them (a partition with none: all of it)."""
    consumer = Consumer({**settings.consumer_config(group), "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=10)
        parts = [
            TopicPartition(settings.topic(t), p)
            for t in INPUT_TOPICS
            for p in metadata.topics[settings.topic(t)].partitions
        ]
        lag = 0
        for tp in consumer.committed(parts, timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag
    finally:
        consumer.close()


def expected_counts(db: Path) -> dict[str, int]:
    """The fewest messages per topic a run that produced `db` sends (one per history row,
    price row, wallet movement and reject; at least one per bet and match)."""
    count = {
        name: table(db, f"SELECT count(*) FROM {name}")[0][0]
        for name in ("market_history", "prices", "wallet_ledger", "rejects", "bets", "matches")
    }
    return {
        MARKETS: count["market_history"],
        PRICES: count["prices"],
        WALLETS: count["wallet_ledger"],
        REJECTS: count["rejects"],
        BETS: count["bets"],
        MATCHES: count["matches"],
    }


def wait_for_outputs(
    settings: KafkaSettings,
    expected: dict[str, int],
    live: LiveProcess,
    timeout: float = 180.0,
    quiet_s: float = 3.0,
) -> dict[str, int]:
    """Wait until every output topic holds at least the `expected` number of messages and
    no more came for `quiet_s`, or the process exited; the last counts seen."""
    deadline = time.monotonic() + timeout
    last: dict[str, int] = {}
    still_since = time.monotonic()
    while time.monotonic() < deadline and live.running():
        time.sleep(0.5)
        try:
            counts = output_counts(settings)
        except Exception:  # the broker is restarting
            continue
        if counts != last:
            last, still_since = counts, time.monotonic()
        enough = all(counts[t] >= n for t, n in expected.items())
        if enough and time.monotonic() - still_since >= quiet_s:
            break
    return last


def read_to_end(settings: KafkaSettings, names: Iterable[str]) -> Iterator[KafkaMessage]:
    """Every message of every partition of the topics `names`, up to the end offsets
    (high watermarks) the broker reports when this starts.

    The end is the broker's count, taken once, not a partition-EOF event: a reader that
    stops at the first EOF trusts the consumer's view of the end, and a shortfall would
    look the same as a message never sent. Here a missing message can only be one the
    broker does not hold, and the error names each partition's offsets."""
    consumer = _consumer(settings)
    topics = [settings.topic(t) for t in names]
    metadata = consumer.list_topics(timeout=10)
    ends: dict[tuple[str, int], int] = {}
    for t in topics:
        for p in metadata.topics[t].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
            if high > 0:
                ends[t, p] = high
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
    next_offset = dict.fromkeys(ends, 0)
    deadline = time.monotonic() + 120
    try:
        while any(next_offset[tp] < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, (
                f"not read to the end offsets: {_short(next_offset, ends)}"
            )
            for msg in consumer.consume(10_000, 0.5):
                err = msg.error()
                if err is not None:
                    assert err.code() == KafkaError._PARTITION_EOF, err
                    continue
                tp = (msg.topic() or "", msg.partition() or 0)
                offset = msg.offset() or 0
                if offset < ends[tp]:
                    next_offset[tp] = offset + 1
                    yield msg
    finally:
        consumer.close()


def _short(read: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]) -> str:
    return ", ".join(
        f"{t}/{p} at {read[t, p]} of {end}" for (t, p), end in ends.items() if read[t, p] < end
    )


def read_outputs(settings: KafkaSettings) -> dict[str, list[Message]]:
    """Every message of the output topics, decoded, in partition order."""
    out: dict[str, list[Message]] = {t: [] for t in OUTPUT_TOPICS}
    prefix = len(settings.topic_prefix)
    for msg in read_to_end(settings, OUTPUT_TOPICS):
        value = json.loads(msg.value() or b"null")
        assert value["key"] == (msg.key() or b"").decode()  # the key is in the value
        out[(msg.topic() or "")[prefix:]].append(value)
    return out


# What identifies a message of each topic: the same id twice is a duplicate.
IDENTITY = {
    MARKETS: ("match_id", "market", "version"),
    PRICES: ("match_id", "market", "version", "selection"),
    BETS: ("bet_id", "version"),
    WALLETS: ("user_id", "version"),
    MATCHES: ("match_id", "version"),
    REJECTS: ("source", "reason"),
}


def without_duplicates(messages: dict[str, list[Message]]) -> dict[str, list[Message]]:
    """Drop messages whose id came before; a duplicate must be the same message."""
    out: dict[str, list[Message]] = {}
    for topic, values in messages.items():
        seen: dict[tuple[Any, ...], Message] = {}
        for value in values:
            ident = tuple(value[f] for f in IDENTITY[topic])
            first = seen.setdefault(ident, value)
            assert first == value, f"{topic} {ident}: two different messages\n{first}\n{value}"
        out[topic] = list(seen.values())
    return out


def latest(values: Iterable[Message], *key: str) -> dict[tuple[Any, ...], Message]:
    """The message with the highest version per key."""
    out: dict[tuple[Any, ...], Message] = {}
    for value in values:
        ident = tuple(value[k] for k in key)
        if ident not in out or value["version"] >= out[ident]["version"]:
            out[ident] = value
    return out


def rows(values: Iterable[Message], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Messages as table rows: decimals (JSON strings) as Decimal, sorted."""
    decimal_fields = {"price", "stake", "payout", "balance"}
    return sorted(
        (tuple(Decimal(v[c]) if c in decimal_fields else v[c] for c in columns) for v in values),
        key=repr,
    )


def db_rows(db: Path, name: str, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return sorted(table(db, f"SELECT {', '.join(columns)} FROM {name}"), key=repr)


MATCH_COLUMNS = (
    "match_id", "home", "away", "kickoff", "period", "minute", "home_score", "away_score",
    "home_red", "away_red", "status", "ts",
)  # fmt: skip
BET_COLUMNS = (
    "bet_id", "user_id", "match_id", "market", "selection", "stake", "price", "status",
    "reason", "payout", "ts", "version",
)  # fmt: skip


def assert_outputs_equal_tables(outputs: dict[str, list[Message]], db: Path) -> None:
    """The output topics, duplicates dropped, hold what the DuckDB file `db` holds."""
    unique = without_duplicates(outputs)
    history = ("match_id", "market", "version", "status", "reason", "ts")
    assert rows(unique[MARKETS], history) == db_rows(db, "market_history", history)
    status = ("match_id", "market", "status", "version", "reason", "ts", "winner")
    final = latest(unique[MARKETS], "match_id", "market").values()
    assert rows(final, status) == db_rows(db, "market_status", status)
    prices = ("match_id", "market", "version", "selection", "probability", "price", "ts")
    assert rows(unique[PRICES], prices) == db_rows(db, "prices", prices)
    bets = latest(unique[BETS], "bet_id").values()
    assert rows(bets, BET_COLUMNS) == db_rows(db, "bets", BET_COLUMNS)
    wallets = ("user_id", "balance", "version", "ts")
    final_wallets = latest(unique[WALLETS], "user_id").values()
    assert rows(final_wallets, wallets) == db_rows(db, "wallets", wallets)
    movements = ("user_id", "version", "ts", "balance")
    assert rows(unique[WALLETS], movements) == db_rows(db, "wallet_ledger", movements)
    last_state = {m["match_id"]: m for m in unique[MATCHES]}.values()  # partition order
    assert rows(last_state, MATCH_COLUMNS) == db_rows(db, "matches", MATCH_COLUMNS)
    rejected = ("reason", "raw", "ts", "match_id")
    assert rows(unique[REJECTS], rejected) == db_rows(db, "rejects", rejected)


def tables_without_sources(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The tables a run of the same lines must reproduce, minus where lines came from
    (`file:line` in a replay, `topic/partition/offset` live)."""
    out = {}
    for name in ("matches", "market_status", "market_history", "prices", "bets", "wallets",
                 "feed_gaps"):  # fmt: skip
        out[name] = sorted(table(db, f"SELECT * FROM {name}"), key=repr)
    movements = ("user_id", "version", "ts", "kind", "amount", "balance")  # not `ref`
    out["wallet_ledger"] = db_rows(db, "wallet_ledger", movements)
    out["feed_events"] = db_rows(db, "feed_events", ("provider", "match_id", "seq", "type"))
    out["rejects"] = db_rows(db, "rejects", ("reason", "raw", "ts", "match_id"))
    return out


def run_live_until_done(
    settings: KafkaSettings, db: Path, expected: dict[str, int], *options: str
) -> LiveProcess:
    live = LiveProcess(settings, db, *options)
    try:
        wait_for_outputs(settings, expected, live)
    finally:
        status = live.stop()
    assert status == 0, live.stderr()
    return live


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scale",
    [
        ("--workers", "1"),
        ("--workers", "2"),
        ("--processes", "2"),
        ("--processes", "2", "--workers", "2"),
    ],
    ids=["1 worker", "2 workers", "2 processes", "2x2"],
)
def test_live_gives_the_replay_of_its_partitions_at_any_scale(
    kafka_settings: KafkaSettings, feed10: Path, tmp_path: Path, scale: tuple[str, ...]
) -> None:
    """Every partition index of the input topics is a source partition of its own (4 here,
    read by 1, 2 or 4 workers): the outputs, on Kafka and in DuckDB, are those of the
    partitions replayed as one stream in event-time order, whatever the scale. One worker
    runs in the main thread, several under Bytewax's cluster_main: all stop on SIGINT once
    everything read is written."""
    ensure_topics(kafka_settings, ALL_TOPICS)
    lines = publish_as_arrived(kafka_settings, feed10)
    reference = replay_of_partitions(kafka_settings, tmp_path / "partitions")
    live_db = tmp_path / "live.duckdb"

    live = run_live_until_done(kafka_settings, live_db, expected_counts(reference), *scale)

    outputs = read_outputs(kafka_settings)
    assert_outputs_equal_tables(outputs, reference)  # Kafka: the replay's markets, bets, ...
    assert tables_without_sources(live_db) == tables_without_sources(reference)  # DuckDB too
    ended = table(live_db, "SELECT count(*) FROM matches WHERE status = 'ended'")
    assert ended == [(10,)]
    assert consumer_lag(kafka_settings, "oddsflow-live") == 0  # Kafka's tools see it done
    read = re.findall(r"^lines read\s+([\d,]+)", live.stdout(), re.M)  # one per process
    assert sum(int(n.replace(",", "")) for n in read) == lines


def test_the_latency_panel_reads_what_the_live_flow_measured(
    kafka_settings: KafkaSettings, feed10: Path, tmp_path: Path
) -> None:
    """Two workers each write a row per wall-clock minute of the lines their matches
    processed; the dashboard's query over the published file counts every line that went
    to a match (all but deposits, which only wallets read) once."""
    ensure_topics(kafka_settings, ALL_TOPICS)
    lines = publish_as_arrived(kafka_settings, feed10)
    reference = replay_of_partitions(kafka_settings, tmp_path / "partitions")
    to_matches = lines_to_matches(feed10)
    assert 0 < to_matches < lines  # the feed has deposits
    live_db = tmp_path / "live.duckdb"
    started_ms = int(time.time() * 1000)

    run_live_until_done(kafka_settings, live_db, expected_counts(reference), "--workers", "2")

    with queries.snapshot(live_db) as db:
        per_minute = queries.latency(db)
    assert isinstance(per_minute, pl.DataFrame)
    assert per_minute["lines"].sum() == to_matches
    minutes = per_minute["ts"].to_list()
    assert minutes == sorted(minutes)
    assert started_ms // 60_000 * 60_000 <= minutes[0] and minutes[-1] <= time.time() * 1000
    for row in per_minute.iter_rows(named=True):
        assert 0 <= row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= row["max_ms"], row
        assert row["max_ms"] < 60_000, row  # the whole run takes seconds
        assert 1 <= row["workers"] <= 2
    keys = table(live_db, "SELECT minute, worker, count(*) FROM latency GROUP BY ALL")
    assert {worker for _, worker, _ in keys} == {0, 1}  # both hold matches and wrote rows
    assert all(n == 1 for _, _, n in keys)  # one row per minute and worker


def lines_to_matches(path: Path) -> int:
    """The lines of a feed that routing sends to a match (or to the rejects)."""
    with open_feed(path) as f:
        lines = [RawLine("", raw.rstrip(b"\r\n")) for raw in f if raw.strip()]
    return sum(any(not is_wallet_key(key) for key, _ in route_line(raw)) for raw in lines)


def test_the_live_flow_runs_under_bytewax_run_with_its_options(
    kafka_settings: KafkaSettings, feed10: Path, tmp_path: Path
) -> None:
    """Bytewax's own runner, two workers (`-w 2`) and a recovery store (`-r`, `-s`): the
    live flow from a bootstrap string gives the outputs of the replay of its partitions on
    Kafka. Ctrl-C interrupts it where it is, as any Bytewax flow."""
    ensure_topics(kafka_settings, ALL_TOPICS)
    publish_as_arrived(kafka_settings, feed10)
    reference = replay_of_partitions(kafka_settings, tmp_path / "partitions")
    store = tmp_path / "store"
    store.mkdir()
    subprocess.run(
        [sys.executable, "-m", "bytewax.recovery", str(store), "2"], cwd=REPO, check=True
    )
    getter = f"flows.live:get_flow({kafka_settings.bootstrap!r}, {str(tmp_path / 'x.duckdb')!r})"
    command = [sys.executable, "-m", "bytewax.run", getter, "-w", "2", "-r", str(store)]
    env = {**os.environ, ENV_PREFIX: kafka_settings.topic_prefix}
    flow = subprocess.Popen(
        [*command, "-s", "1", "-b", "0"], cwd=REPO, env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        expected = expected_counts(reference)
        while not all(n >= expected[t] for t, n in output_counts(kafka_settings).items()):
            assert flow.poll() is None, flow.communicate()[1].decode(errors="replace")
            assert time.monotonic() < deadline, output_counts(kafka_settings)
            time.sleep(0.2)
    finally:
        flow.send_signal(signal.SIGINT)
        flow.communicate(timeout=60)
    assert_outputs_equal_tables(read_outputs(kafka_settings), reference)


def test_a_file_published_at_full_speed_gives_the_replay_outputs(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """`oddsflow publish` at full speed stamps hundreds of lines with one millisecond; the
    merge keeps the file's order among them by their `oddsflow-pos` headers. The bundled
    sample's faults include a feed line stamped far in the future: ordered by event time
    it let a bet from the bets topic go ahead of the match lines before it in the file,
    and the live markets differed from the replay's (5 more suspensions)."""
    ensure_topics(kafka_settings, ALL_TOPICS)
    publish(kafka_settings, SAMPLE)
    replayed = replay_of_partitions(kafka_settings, tmp_path / "partitions")
    live_db = tmp_path / "live.duckdb"

    run_live_until_done(kafka_settings, live_db, expected_counts(replayed))

    assert_outputs_equal_tables(read_outputs(kafka_settings), live_db)
    assert tables_without_sources(live_db) == tables_without_sources(replayed)


def test_replay_with_kafka_sends_what_it_writes_to_duckdb(
    kafka_settings: KafkaSettings, feed10: Path, tmp_path: Path
) -> None:
    """`oddsflow replay ... --kafka`: the same sink as live; the flow ends, every message is
    delivered before it returns. Should the topics and the tables ever differ, the count
    says where: the broker holds exactly what the producer had acknowledged (a shortfall
    there is the broker's or the reader's), and those messages are the tables' rows (a
    shortfall there is the flow's)."""
    ensure_topics(kafka_settings, ALL_TOPICS)
    acknowledged = sum(DELIVERY.latency.counts)
    db = replay([feed10], tmp_path / "replay.duckdb", kafka=kafka_settings)
    acknowledged = sum(DELIVERY.latency.counts) - acknowledged
    outputs = read_outputs(kafka_settings)
    assert sum(len(messages) for messages in outputs.values()) == acknowledged
    assert_outputs_equal_tables(outputs, db)


def test_unreachable_broker_fails_fast_with_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "flows", "live", "--kafka", "127.0.0.1:1"]
    started = time.monotonic()
    result = subprocess.run(
        [*command, "--db", str(tmp_path / "live.duckdb")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    took = time.monotonic() - started
    assert result.returncode != 0
    assert took < 15, took
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("oddsflow live: cannot reach Kafka at 127.0.0.1:1"), lines[0]


# Where the live run of the 100-match feed is killed: when the markets topic holds this
# share of the messages an uninterrupted run sends (duplicates of earlier runs count too),
# and the run has sent for at least `SENDING_S`, so it has committed a snapshot at
# `SNAPSHOT_S`. A run killed before its first commit leaves the next to resume from the
# same snapshot as it did: three in a row left the last run to read everything. A run
# sends the whole feed in 2-3 s, a fifth of it within `SENDING_S`: the last kill still
# comes before the end (at --snapshot-s 0.5 and 1.5 s, one run in 8 sent everything).
KILL_AT = (0.15, 0.35, 0.55)
SNAPSHOT_S = "0.2"
SENDING_S = 0.6


@pytest.fixture(scope="module")
def feed100(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated 100-match feed with bets, deposits and injected faults."""
    path = tmp_path_factory.mktemp("live") / "sim100.jsonl.gz"
    write_feed(path, matches=100, seed=41)
    return path


def kill_when(
    settings: KafkaSettings, live: LiveProcess, topic: str, count: int, sending_s: float
) -> int:
    """SIGKILL `live` as soon as `topic` holds `count` messages and `live` has sent to it
    for `sending_s`; the count seen then."""
    deadline = time.monotonic() + 180
    before = output_counts(settings)[topic]
    first_sent: float | None = None
    while True:
        seen = output_counts(settings)[topic]
        now = time.monotonic()
        if first_sent is None and seen > before:
            first_sent = now
        if seen >= count and first_sent is not None and now - first_sent >= sending_s:
            break
        assert live.running(), f"the run ended before {count:,} messages:\n{live.stderr()}"
        assert now < deadline, f"{count:,} messages not sent in 180 s"
        time.sleep(0.05)
    live.proc.kill()
    assert live.proc.wait(30) == -signal.SIGKILL
    return seen


@dataclass(frozen=True)
class RecoverableRun:
    """A feed published into the test's topics, its replay (what an uninterrupted run
    gives), and where and how a live run with a recovery store writes."""

    replayed: Path
    expected: dict[str, int]  # the fewest messages per topic (`expected_counts`)
    lines: int
    db: Path
    options: tuple[str, ...]

    @property
    def store(self) -> Path:
        return Path(self.options[self.options.index("--recovery-dir") + 1])


def recoverable_run(settings: KafkaSettings, feed: Path, tmp_path: Path) -> RecoverableRun:
    ensure_topics(settings, ALL_TOPICS)
    lines = publish_as_arrived(settings, feed)
    replayed = replay_of_partitions(settings, tmp_path / "partitions")
    store = tmp_path / "recovery"
    options = ("--event-time-only", "--recovery-dir", str(store), "--snapshot-s", SNAPSHOT_S)
    return RecoverableRun(
        replayed, expected_counts(replayed), lines, tmp_path / "live.duckdb", options
    )


def past_a_third(
    settings: KafkaSettings, expected: dict[str, int], live: LiveProcess, store: Path
) -> list[int]:
    """Wait until the markets topic holds a third of an uninterrupted run's messages and a
    resume from `store` would skip lines already read (its epoch trails the outputs by
    seconds on a backlog: `resume_point`); the members of `live`'s cluster then."""
    deadline = time.monotonic() + 120
    while output_counts(settings)[MARKETS] < expected[MARKETS] // 3:
        assert live.running(), live.stderr()
        assert time.monotonic() < deadline, "the cluster sent too little"
        time.sleep(0.05)
    while (resumed := resumes_after(store)) is None or resumed[1] == 0:
        assert live.running(), live.stderr()
        assert time.monotonic() < deadline, "no snapshot past the start in 120 s"
        time.sleep(0.1)
    return cluster_members(live.proc.pid)


def test_live_run_killed_three_times_and_resumed_loses_nothing(
    kafka_settings: KafkaSettings, feed100: Path, tmp_path: Path
) -> None:
    """`oddsflow live --recovery-dir` killed with SIGKILL at a fifth, under half and over
    two thirds of its output, restarted each time with the same command: the output
    topics, duplicates (by key and version) dropped, and the DuckDB file equal the
    uninterrupted run's (a replay of the same file, which `test_live_flow_gives_the_replay_
    outputs` shows equal to a live run), and the last run read only what was left."""
    run = recoverable_run(kafka_settings, feed100, tmp_path)
    replayed, expected, lines, live_db, options = (
        run.replayed,
        run.expected,
        run.lines,
        run.db,
        run.options,
    )

    seen = [0]
    for fraction in KILL_AT:
        live = LiveProcess(kafka_settings, live_db, *options)
        target = max(int(expected[MARKETS] * fraction), seen[-1] + 1)
        seen.append(kill_when(kafka_settings, live, MARKETS, target, SENDING_S))
    sent = len(without_duplicates(read_outputs(kafka_settings))[MARKETS])  # duplicates aside
    assert sent < expected[MARKETS], f"the last kill came after the end: {seen}"

    live = run_live_until_done(kafka_settings, live_db, expected, *options)
    read = int(re.findall(r"^lines read\s+([\d,]+)", live.stdout(), re.M)[0].replace(",", ""))
    # Resumed from a snapshot (of the first run at least: a run killed before its first
    # commit leaves the next to resume where it did), not from the start.
    assert 0 < read < lines, f"the last run read {read:,} of {lines:,} lines; {seen}"
    outputs = read_outputs(kafka_settings)
    assert_outputs_equal_tables(outputs, replayed)
    assert tables_without_sources(live_db) == tables_without_sources(replayed)
    resent = sum(len(v) for v in outputs.values()) - sum(
        len(v) for v in without_duplicates(outputs).values()
    )
    print(f"kills at {seen[1:]} markets messages; {resent:,} messages sent twice")


def test_a_two_process_live_cluster_heals_itself_when_a_member_is_killed(
    kafka_settings: KafkaSettings, feed100: Path, tmp_path: Path
) -> None:
    """`oddsflow live --processes 2 --recovery-dir`: one member SIGKILLed mid-run; the
    command restarts the cluster from the last snapshot by itself, and its outputs,
    duplicates dropped, and DuckDB equal an uninterrupted run's (the replay's)."""
    run = recoverable_run(kafka_settings, feed100, tmp_path)
    live = LiveProcess(kafka_settings, run.db, *run.options, "--processes", "2")
    try:
        os.kill(max(past_a_third(kafka_settings, run.expected, live, run.store)), signal.SIGKILL)
        wait_for_outputs(kafka_settings, run.expected, live)
    finally:
        status = live.stop()
    assert status == 0, live.stderr()
    assert re.search(r"oddsflow-\d was killed \(signal 9\); restarting", live.stderr())
    took = re.search(r"rows committed again ([\d.]+) s after the member died", live.stderr())
    assert took is not None, live.stderr()
    assert float(took[1]) < 10  # --snapshot-s 1 or less: the first output within 10 s
    assert_outputs_equal_tables(read_outputs(kafka_settings), run.replayed)
    assert tables_without_sources(run.db) == tables_without_sources(run.replayed)


def test_a_killed_two_process_live_cluster_resumed_as_one_process_loses_nothing(
    kafka_settings: KafkaSettings, feed100: Path, tmp_path: Path
) -> None:
    """A resume at another scale: `live --processes 2` killed whole (the command and its
    members) mid-run, then `live` as one process with the same store: the outputs,
    duplicates dropped, and DuckDB equal the replay's, the second run read only the rest,
    and the killed members' DuckDB writers ended without a traceback."""
    run = recoverable_run(kafka_settings, feed100, tmp_path)
    cluster = LiveProcess(kafka_settings, run.db, *run.options, "--processes", "2")
    members: list[int] = []
    try:
        members = past_a_third(kafka_settings, run.expected, cluster, run.store)
    finally:  # members left alone end with their parent too, within half a second
        cluster.proc.kill()
        for member in members:
            os.kill(member, signal.SIGKILL)
        cluster.proc.wait()
    live = run_live_until_done(kafka_settings, run.db, run.expected, *run.options)
    # The members' DuckDB writers outlive them, find the pipe broken and end quietly.
    assert "Traceback" not in cluster.stderr(), cluster.stderr()
    read = int(re.findall(r"^lines read\s+([\d,]+)", live.stdout(), re.M)[0].replace(",", ""))
    assert 0 < read < run.lines, f"the resumed run read {read:,} of {run.lines:,} lines"
    skipped = said_resumed(live.stderr(), "live", "input messages")
    assert skipped == run.lines - read  # it said what it skipped
    assert_outputs_equal_tables(read_outputs(kafka_settings), run.replayed)
    assert tables_without_sources(run.db) == tables_without_sources(run.replayed)


# --- keep last: stops the shared broker for a few seconds ----------------------------------


@pytest.fixture(scope="module")
def feed60(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("live") / "sim60.jsonl"
    write_feed(path, matches=60, seed=7)
    return path


def test_broker_restart_mid_run_loses_no_output(
    kafka_settings: KafkaSettings, feed60: Path, tmp_path: Path
) -> None:
    """The broker stops while the flow is writing its outputs and comes back a few seconds
    later: the flow rides it out (or stops with a one-line cause and, restarted,
    completes), and the output topics, duplicates dropped, equal the replay's.

    `--event-time-only`: with the wall-clock timers on, the feed's silence during the
    outage would suspend the markets, which a replay cannot know."""
    if kafka_broker.status().pid is None:
        pytest.skip("the broker on 127.0.0.1:9092 was not started from this checkout")
    ensure_topics(kafka_settings, ALL_TOPICS)
    publish_as_arrived(kafka_settings, feed60)
    replayed = replay_of_partitions(kafka_settings, tmp_path / "partitions")
    expected = expected_counts(replayed)
    live_db = tmp_path / "live.duckdb"
    live = LiveProcess(kafka_settings, live_db, "--event-time-only")
    try:
        wait_for_outputs(
            kafka_settings, {MARKETS: expected[MARKETS] // 5}, live, timeout=60, quiet_s=0
        )
        assert live.running(), live.stderr()
        kafka_broker.down()
        time.sleep(3)
        kafka_broker.up()
        counts = wait_for_outputs(kafka_settings, expected, live)
        if not live.running():  # it gave up while the broker was away: it said why
            assert live.proc.returncode != 0
            said = [
                line
                for line in live.stderr().splitlines()
                if line.startswith("oddsflow live: ") and not line.startswith("oddsflow live: read")
            ]
            assert said, live.stderr()  # e.g. "oddsflow live: Kafka delivery failed for ..."
            live = LiveProcess(kafka_settings, live_db, "--event-time-only")
            counts = wait_for_outputs(kafka_settings, expected, live)
    finally:
        if kafka_broker.status().up is False:
            kafka_broker.up()
        status = live.stop()
    assert status == 0, live.stderr()
    assert all(counts[t] >= n for t, n in expected.items()), (counts, expected)

    outputs = read_outputs(kafka_settings)
    assert_outputs_equal_tables(outputs, replayed)
    assert tables_without_sources(live_db) == tables_without_sources(replayed)
    resent = Counter(t for t, values in outputs.items() for _ in values)
    unique = Counter(t for t, values in without_duplicates(outputs).items() for _ in values)
    print(f"messages {dict(resent)}, without duplicates {dict(unique)}")


def test_live_metrics_show_the_consumer_lag_and_deliveries(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """`--metrics-port` in `live`: once every published line is read, each input partition
    shows no lag, the event-time lag is the age of the newest line, and the output
    messages' deliveries are counted."""
    from tests.test_metrics import free_port, parse

    ensure_topics(kafka_settings, ALL_TOPICS)
    lines = publish_as_arrived(kafka_settings, SAMPLE)
    port = free_port()
    live = LiveProcess(kafka_settings, tmp_path / "live.duckdb", "--metrics-port", str(port))
    got: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and live.running():
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    got = parse(r.read().decode())
            except OSError:
                continue
            lags = got.get("oddsflow_consumer_lag", {})
            read = sum(got["oddsflow_lines_read_total"].values())
            delivered = sum(got["oddsflow_kafka_delivery_seconds_count"].values())
            if read == lines and lags and not any(lags.values()) and delivered:
                break
    finally:
        status = live.stop()
    assert status == 0, live.stderr()
    assert sum(got["oddsflow_lines_read_total"].values()) == lines
    partitions = {dict(k)["partition"] for k in got["oddsflow_consumer_lag"]}
    assert partitions and all(p.startswith(kafka_settings.topic_prefix) for p in partitions)
    assert not any(got["oddsflow_consumer_lag"].values())
    assert sum(got["oddsflow_kafka_delivery_seconds_count"].values()) > 0
    assert not got.get("oddsflow_kafka_delivery_errors_total")
    # The sample's lines are stamped in 2026-01-01: their age, in seconds.
    (age,) = got["oddsflow_event_time_lag_seconds"].values()
    assert age > 0
