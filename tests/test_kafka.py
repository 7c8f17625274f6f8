"""oddsflow against a real Apache Kafka broker: broker commands, topics, the sink inside
a bytewax flow, delivery failures, publish and tail."""

from __future__ import annotations

import dataclasses
import gzip
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main, run_main
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient

from connectors.kafka.admin import ensure_topics
from connectors.kafka.serde import SinkItem
from connectors.kafka.settings import BETS_IN, FEED, KafkaSettings, read_properties
from connectors.kafka.sink import KafkaDeliveryError, KafkaSink
from tooling import kafka_broker
from tooling.kafka_tools import publish, publish_main, route, tail_main

if TYPE_CHECKING:
    from tests.kafka_fixtures import ReadTopics

pytestmark = pytest.mark.kafka
pytest_plugins = ("tests.kafka_fixtures",)  # kafka_bootstrap, kafka_settings, read_topics
REPO = Path(__file__).resolve().parents[1]


# --- settings (no broker needed) -----------------------------------------------------


def test_settings_come_from_file_then_env_then_args(tmp_path: Path) -> None:
    config = tmp_path / "client.properties"
    config.write_text(
        "# SASL over TLS\n"
        "bootstrap.servers=kafka.example:9093\n"
        "security.protocol = SASL_SSL\n"
        "sasl.mechanism: SCRAM-SHA-512\n"
        "sasl.username oddsflow\n"
        "sasl.password=s3cr=t\n"
        "producer.linger.ms=20\n"
        "delivery.timeout.ms=120000\n"
        "socket.keepalive.enable=true\n"
    )
    from_file = KafkaSettings.from_env_and_args(None, config, environ={})
    from_env = KafkaSettings.from_env_and_args(
        None, config, environ={"ODDSFLOW_KAFKA": "env:9092", "ODDSFLOW_KAFKA_PREFIX": "x."}
    )
    from_args = KafkaSettings.from_env_and_args("arg:9092", config, environ={"ODDSFLOW_KAFKA": "e"})

    assert from_file.bootstrap == "kafka.example:9093"
    assert from_file.topic("prices") == "oddsflow.prices"
    assert from_file.security == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "oddsflow",
        "sasl.password": "s3cr=t",
    }
    assert (from_env.bootstrap, from_env.topic("feed")) == ("env:9092", "x.feed")
    assert from_args.bootstrap == "arg:9092"
    assert from_file.delivery_timeout_ms == 120_000
    assert from_file.producer_config()["delivery.timeout.ms"] == 120_000
    assert KafkaSettings.from_env_and_args(None, None, environ={}).bootstrap == "127.0.0.1:9092"


def test_client_configs_carry_security_and_role_overrides() -> None:
    settings = KafkaSettings(
        security={"security.protocol": "SASL_SSL", "sasl.password": "pw"},
        client_overrides={"producer.linger.ms": "20", "socket.keepalive.enable": "true"},
        delivery_timeout_ms=5000,
    )
    producer = settings.producer_config()
    consumer = settings.consumer_config("g")

    assert producer["enable.idempotence"] is True
    assert producer["acks"] == "all"
    assert producer["delivery.timeout.ms"] == 5000
    assert producer["linger.ms"] == "20"
    assert "linger.ms" not in consumer
    assert consumer["group.id"] == "g"
    for config in (producer, consumer, settings.admin_config()):
        assert config["sasl.password"] == "pw"
        assert config["socket.keepalive.enable"] == "true"


def test_repr_hides_secrets() -> None:
    settings = KafkaSettings(
        security={
            "sasl.password": "hunter2",
            "ssl.key.password": "hunter3",
            "sasl.oauthbearer.client.secret": "hunter4",
            "sasl.username": "bob",
        },
        client_overrides={"ssl.keystore.password": "hunter5"},
    )
    text = repr(settings)

    assert "hunter" not in text and "hunter" not in str(settings)
    assert "'sasl.username': 'bob'" in text
    assert text.count("***") == 4


def test_settings_are_frozen_and_own_their_dicts() -> None:
    security = {"security.protocol": "SSL"}
    settings = KafkaSettings(security=security)
    security["security.protocol"] = "PLAINTEXT"

    assert settings.security == {"security.protocol": "SSL"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.bootstrap = "elsewhere:9092"  # type: ignore[misc]


def test_read_properties_handles_comments_and_continuations(tmp_path: Path) -> None:
    path = tmp_path / "c.properties"
    path.write_text("! comment\n\n  a = 1\nb:2\nc 3\nlong=x,\\\n   y\nempty=\n")

    assert read_properties(path) == {"a": "1", "b": "2", "c": "3", "long": "x,y", "empty": ""}


def test_publish_keys_feed_lines_and_bets_by_match_and_deposits_by_user() -> None:
    goal = b'{"v":1,"provider":"sim","match_id":"m1","seq":4,"ts":9,"type":"goal"}'
    bet = b'{"v":1,"ts":10,"type":"bet","bet_id":"b","user_id":"u7","match_id":"m1"}'

    assert route(goal) == ((FEED, "m1", goal), 9, True)
    assert route(bet) == ((BETS_IN, "m1", bet), 10, True)  # its match's partition index
    assert route(b'{"v":1,"type":"deposit","user_id":"u8"}').item[:2] == (BETS_IN, "u8")
    assert route(b"not json") == ((FEED, "", b"not json"), None, False)
    assert route(b"[1, 2]") == ((FEED, "", b"[1, 2]"), None, False)


# --- the broker ----------------------------------------------------------------------


def test_up_and_status_are_idempotent(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = kafka_broker.status()
    again = kafka_broker.up()
    after = kafka_broker.status()

    assert before.up and again.up and after.up
    assert again.pid == before.pid == after.pid
    assert after.bootstrap == kafka_bootstrap == "127.0.0.1:9092"
    assert isinstance(after.topics, int)
    assert "already up" in capsys.readouterr().out
    assert kafka_broker.main(["status"]) == 0
    assert capsys.readouterr().out.startswith("kafka: up")
    assert kafka_broker.main(["up"]) == 0


def test_ensure_topics_creates_missing_topics_once(kafka_settings: KafkaSettings) -> None:
    created = ensure_topics(kafka_settings, [FEED, BETS_IN, "prices"])
    again = ensure_topics(kafka_settings, [FEED, "prices", "markets"])

    assert created == [kafka_settings.topic(n) for n in (FEED, BETS_IN, "prices")]
    assert again == [kafka_settings.topic("markets")]
    topics = AdminClient(kafka_settings.admin_config()).list_topics(timeout=10).topics
    for name in (FEED, BETS_IN, "prices", "markets"):
        assert len(topics[kafka_settings.topic(name)].partitions) == 4


# --- the sink ------------------------------------------------------------------------


def _items(count: int) -> list[SinkItem]:
    topics = ("prices", "markets", "bets")
    return [
        (topics[i % 3], f"m{i % 7}", json.dumps({"n": i, "key": f"m{i % 7}"}).encode())
        for i in range(count)
    ]


def _flow(items: list[SinkItem], sink: KafkaSink, spread: bool = False) -> Dataflow:
    flow = Dataflow("kafka_sink_test")
    stream = op.input("inp", flow, TestingSource(items, batch_size=50))
    if spread:
        stream = op.redistribute("spread", stream)
    op.output("out", stream, sink)
    return flow


def test_sink_delivers_every_item_in_key_order(
    kafka_settings: KafkaSettings, read_topics: ReadTopics
) -> None:
    ensure_topics(kafka_settings, ["prices", "markets", "bets"])
    items = _items(3000)

    run_main(_flow(items, KafkaSink(kafka_settings)))
    received = read_topics(kafka_settings, ["prices", "markets", "bets"], len(items))

    assert Counter((r.topic, r.key, r.value) for r in received) == Counter(
        (kafka_settings.topic(t), k, v) for t, k, v in items
    )
    per_key: dict[tuple[str, str], list[int]] = {}
    for r in received:
        per_key.setdefault((r.topic, r.key), []).append(json.loads(r.value)["n"])
    assert all(ns == sorted(ns) for ns in per_key.values())
    partitions: dict[tuple[str, str], set[int]] = {}
    for r in received:
        partitions.setdefault((r.topic, r.key), set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions.values())  # a key stays on one partition


def test_sink_delivers_from_every_worker(
    kafka_settings: KafkaSettings, read_topics: ReadTopics
) -> None:
    ensure_topics(kafka_settings, ["prices", "markets", "bets"])
    items = _items(2000)

    cluster_main(
        _flow(items, KafkaSink(kafka_settings, flush_every_batch=True), spread=True),
        [],
        0,
        worker_count_per_proc=2,
    )
    received = read_topics(kafka_settings, ["prices", "markets", "bets"], len(items))

    assert sorted((r.topic, r.key, r.value) for r in received) == sorted(
        (kafka_settings.topic(t), k, v) for t, k, v in items
    )


def test_delivery_to_a_missing_topic_fails_the_flow(kafka_settings: KafkaSettings) -> None:
    settings = dataclasses.replace(kafka_settings, delivery_timeout_ms=2000)
    items: list[SinkItem] = [("no_such_topic", "m1", b"{}")]

    started = time.monotonic()
    with pytest.raises(Exception) as failure:  # bytewax wraps the sink's exception
        run_main(_flow(items, KafkaSink(settings)))

    error = _find_in_chain(failure.value, KafkaDeliveryError)
    assert error.topic == settings.topic("no_such_topic")
    assert error.key == "m1"
    assert time.monotonic() - started < 20
    topics = AdminClient(settings.admin_config()).list_topics(timeout=10).topics
    assert error.topic not in topics  # the broker does not create topics on demand


def test_a_message_the_broker_rejects_is_raised_by_the_next_write(
    kafka_settings: KafkaSettings,
) -> None:
    ensure_topics(kafka_settings, ["tiny"], config={"max.message.bytes": "1024"})
    sink = KafkaSink(kafka_settings).build("out", 0, 1)
    sink.write_batch([("tiny", "m1", b"x" * 4000)])

    deadline = time.monotonic() + 10
    with pytest.raises(KafkaDeliveryError) as failure:
        while time.monotonic() < deadline:  # the report arrives a few ms later
            sink.write_batch([("tiny", "m2", b"small")])
            time.sleep(0.05)

    error = failure.value
    assert (error.topic, error.key) == (kafka_settings.topic("tiny"), "m1")
    assert isinstance(error.error, KafkaError)
    assert error.error.code() == KafkaError.MSG_SIZE_TOO_LARGE
    with pytest.raises(KafkaDeliveryError):  # and it stays failed
        sink.close()


def test_a_message_librdkafka_refuses_is_raised_at_once(kafka_settings: KafkaSettings) -> None:
    settings = dataclasses.replace(
        kafka_settings, client_overrides={"producer.message.max.bytes": "1000"}
    )
    sink = KafkaSink(settings).build("out", 0, 1)

    with pytest.raises(KafkaDeliveryError) as failure:
        sink.write_batch([("prices", "m1", b"x" * 5000)])

    assert (failure.value.topic, failure.value.key) == (settings.topic("prices"), "m1")
    assert isinstance(failure.value.error, KafkaError)
    assert failure.value.error.code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_close_raises_when_messages_cannot_be_delivered(kafka_settings: KafkaSettings) -> None:
    settings = dataclasses.replace(kafka_settings, delivery_timeout_ms=1500)
    sink = KafkaSink(settings).build("out", 0, 1)
    sink.write_batch([("absent", f"k{i}", b"v") for i in range(3)])

    with pytest.raises(KafkaDeliveryError, match=r"and 2 more failed"):
        sink.close()


def _find_in_chain(exc: BaseException, kind: type[KafkaDeliveryError]) -> KafkaDeliveryError:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    raise AssertionError(f"no {kind.__name__} in {exc!r}")


# --- publish and tail ----------------------------------------------------------------

FEED_LINES = [
    {"v": 1, "provider": "sim", "match_id": "m1", "seq": 1, "ts": 1_000, "type": "fixture",
     "home": "A", "away": "B", "kickoff": 5_000, "home_rate": 1.4, "away_rate": 1.1},
    {"v": 1, "provider": "sim", "match_id": "m2", "seq": 1, "ts": 1_100, "type": "fixture",
     "home": "C", "away": "D", "kickoff": 5_000, "home_rate": 1.2, "away_rate": 1.3},
    {"v": 1, "ts": 1_200, "type": "deposit", "user_id": "u1", "amount": "100.00"},
    {"v": 1, "ts": 1_300, "type": "bet", "bet_id": "b1", "user_id": "u1", "match_id": "m1",
     "market": "1x2", "selection": "home", "stake": "10.00", "price": "2.50"},
    {"v": 1, "provider": "sim", "match_id": "m1", "seq": 2, "ts": 1_400, "type": "period_start",
     "period": 1},
]  # fmt: skip


def _write_feed(path: Path) -> list[bytes]:
    """A small recorded file: feed and bet lines, a line that is not JSON, a blank line."""
    lines = [json.dumps(obj, separators=(",", ":")).encode() for obj in FEED_LINES]
    lines.insert(2, b"{not json")
    body = b"\n".join(lines[:3]) + b"\n\n" + b"\n".join(lines[3:]) + b"\n"
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)
    return lines


@pytest.mark.parametrize("name", ["feed.jsonl", "feed.jsonl.gz"])
def test_publish_sends_each_line_keyed_to_its_topic(
    kafka_settings: KafkaSettings,
    read_topics: ReadTopics,
    tmp_path: Path,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = _write_feed(tmp_path / name)
    monkeypatch.setenv("ODDSFLOW_KAFKA_PREFIX", kafka_settings.topic_prefix)

    assert publish_main([str(tmp_path / name), "--kafka", kafka_settings.bootstrap]) == 0
    received = read_topics(kafka_settings, [FEED, BETS_IN], len(lines))

    feed, bets = kafka_settings.topic(FEED), kafka_settings.topic(BETS_IN)
    assert sorted((r.topic, r.key, r.value) for r in received) == sorted(
        [
            (feed, "m1", lines[0]),
            (feed, "m2", lines[1]),
            (feed, "", b"{not json"),
            (bets, "u1", lines[3]),  # a deposit: keyed by its user
            (bets, "m1", lines[4]),  # a bet: keyed by its match, as the match's lines
            (feed, "m1", lines[5]),
        ]
    )
    summary = capsys.readouterr().out
    assert "published 6 lines" in summary and "1 not JSON" in summary


def test_publish_paces_by_event_time(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    _write_feed(path)  # ts from 1.0 s to 1.4 s
    ensure_topics(kafka_settings, [FEED, BETS_IN])

    fast = publish(kafka_settings, path, speed=0)
    paced = publish(kafka_settings, path, speed=2)  # 0.4 s of event time in 0.2 s

    assert fast.lines == paced.lines == 6
    assert paced.seconds >= 0.19
    assert paced.per_topic == {FEED: 4, BETS_IN: 2}


def test_tail_prints_keys_and_values(
    kafka_settings: KafkaSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = _write_feed(tmp_path / "feed.jsonl")
    ensure_topics(kafka_settings, [FEED, BETS_IN])
    publish(kafka_settings, tmp_path / "feed.jsonl")
    monkeypatch.setenv("ODDSFLOW_KAFKA_PREFIX", kafka_settings.topic_prefix)

    for topic in (BETS_IN, kafka_settings.topic(BETS_IN)):  # with or without the prefix
        args = [topic, "--kafka", kafka_settings.bootstrap, "--from-beginning", "--max", "2"]
        assert tail_main([*args, "--timeout", "10"]) == 0
        assert sorted(capsys.readouterr().out.splitlines()) == [  # two partitions: any order
            f"m1\t{lines[4].decode()}",  # a bet, keyed by its match
            f"u1\t{lines[3].decode()}",  # a deposit, by its user
        ]
    assert tail_main(["nope", "--kafka", kafka_settings.bootstrap]) == 1


@pytest.mark.parametrize("command", ["publish", "tail"])
def test_unreachable_broker_fails_fast_with_one_line(command: str, tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    _write_feed(path)
    target = str(path) if command == "publish" else "prices"
    code = (
        "import sys; from tooling.kafka_tools import publish_main, tail_main; "
        f"sys.exit({command}_main(sys.argv[1:]))"
    )

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code, target, "--kafka", "127.0.0.1:1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert time.monotonic() - started < 15
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "cannot reach Kafka at 127.0.0.1:1" in result.stderr
