"""Fixtures for tests against the real local Kafka broker (`oddsflow kafka up`).

A test module loads them with `pytest_plugins = ("tests.kafka_fixtures",)`. The session
fixture starts the broker if it is not running, and stops it at the end if it started
it. If the broker cannot start, the tests are skipped, or fail when `CI=true`. Every
test gets its own topic prefix, so tests never see each other's messages; the
session's topics are deleted at the end.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connectors.kafka.admin import drop_topics
from connectors.kafka.settings import KafkaSettings
from tooling import kafka_broker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The running local broker's bootstrap address, starting it if needed."""
    started = False
    if not kafka_broker.status().up:
        try:
            kafka_broker.up()
            started = True
        except kafka_broker.BrokerError as exc:
            reason = f"the local Kafka broker does not start: {exc}"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
    yield kafka_broker.BOOTSTRAP
    if started:
        kafka_broker.down()


@pytest.fixture(scope="session")
def kafka_session_prefix(kafka_bootstrap: str) -> Iterator[str]:
    prefix = f"test-{uuid.uuid4().hex[:8]}."
    yield prefix
    drop_topics(KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=prefix))


@pytest.fixture
def kafka_settings(
    kafka_bootstrap: str, kafka_session_prefix: str, request: pytest.FixtureRequest
) -> KafkaSettings:
    """Settings for the local broker with a topic prefix of this test's own."""
    test_name = re.sub(r"[^a-zA-Z0-9_-]+", "-", request.node.name)[:80]
    return KafkaSettings(
        bootstrap=kafka_bootstrap, topic_prefix=f"{kafka_session_prefix}{test_name}."
    )


@dataclass(frozen=True)
class Received:
    topic: str
    key: str
    value: bytes
    partition: int


ReadTopics = Callable[[KafkaSettings, Iterable[str], int], list[Received]]


@pytest.fixture
def read_topics() -> ReadTopics:
    """`read_topics(settings, names, expected)`: the messages of those topics."""
    return _read_topics


def _read_topics(
    settings: KafkaSettings, names: Iterable[str], expected: int, timeout: float = 20.0
) -> list[Received]:
    """Read the prefixed topics for `names` from the beginning until `expected` messages
    arrived, or `timeout` seconds passed (then return what came)."""
    topics = [settings.topic(n) for n in names]
    consumer = Consumer(
        {**settings.consumer_config(f"test-reader-{uuid.uuid4().hex}"), "enable.auto.commit": False}
    )
    metadata = consumer.list_topics(timeout=10)
    consumer.assign(
        [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in topics
            for p in metadata.topics[t].partitions
        ]
    )
    received: list[Received] = []
    deadline = time.monotonic() + timeout
    try:
        while len(received) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            key = msg.key() or b""
            assert isinstance(key, bytes)
            value = msg.value()
            assert isinstance(value, bytes)
            received.append(Received(msg.topic() or "", key.decode(), value, msg.partition() or 0))
    finally:
        consumer.close()
    return received
