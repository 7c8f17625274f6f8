"""`oddsflow live` on the local three-broker cluster (`oddsflow kafka up --brokers 3`)
rides through a broker's death: the node leading the busiest input partition (and some
output partitions) is SIGKILLed mid-run and started again, the flow goes on without a
restart, and its outputs and DuckDB file equal an uninterrupted run's, with no message
sent twice; the cluster ends with every partition fully in sync.

The cluster starts once for the module (unless it runs already) and stops at the end if
this module started it. It uses its own ports and state, beside the shared single broker.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.kafka.admin import drop_topics, ensure_topics
from connectors.kafka.settings import ALL_TOPICS, MARKETS, OUTPUT_TOPICS, KafkaSettings
from tests.test_live_flow import (
    LiveProcess,
    asking_again,
    assert_outputs_equal_tables,
    expected_counts,
    publish_as_arrived,
    read_outputs,
    replay_of_partitions,
    tables_without_sources,
    wait_for_outputs,
    without_duplicates,
)
from tooling import kafka_cluster
from tooling.kafka_broker import BrokerError
from tooling.simulator import write_feed

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """The local cluster's bootstrap list, starting it if it does not run."""
    started = False
    if not kafka_cluster.status().up:
        try:
            kafka_cluster.up()
            started = True
        except BrokerError as exc:
            reason = f"the local Kafka cluster does not start: {exc}"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
    try:
        yield kafka_cluster.BOOTSTRAP
    finally:
        if started:
            kafka_cluster.down()


@pytest.fixture
def cluster_settings(cluster: str) -> Iterator[KafkaSettings]:
    """Settings for the cluster with a topic prefix of this test's own."""
    settings = KafkaSettings(bootstrap=cluster, topic_prefix=f"test-{uuid.uuid4().hex[:8]}.")
    yield settings
    drop_topics(settings)


@pytest.fixture(scope="module")
def feed100(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "sim100.jsonl.gz"
    write_feed(path, matches=100, seed=41)
    return path


def test_topics_get_three_replicas_and_two_in_sync(cluster_settings: KafkaSettings) -> None:
    """Topics oddsflow creates without a replication factor (as `live` and `publish` do)
    get the cluster's: 3 replicas on 3 different nodes, all in sync."""
    ensure_topics(cluster_settings, ALL_TOPICS)
    names = [cluster_settings.topic(t) for t in ALL_TOPICS]
    deadline = time.monotonic() + 30
    while True:  # the node answering may not have the new topics in its metadata yet
        parts = kafka_cluster.describe_partitions(cluster_settings, names)
        if len(parts) == 4 * len(ALL_TOPICS) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(parts) == 4 * len(ALL_TOPICS)
    for (topic, p), (leader, replicas, isr) in parts.items():
        assert sorted(replicas) == [1, 2, 3], (topic, p, replicas)
        assert sorted(isr) == [1, 2, 3] and leader in replicas, (topic, p, isr)
    leaders = {leader for leader, _, _ in parts.values()}
    assert leaders == {1, 2, 3}  # leadership is spread: any node's death moves some


def test_live_rides_through_the_death_of_a_partition_leader(
    cluster_settings: KafkaSettings, feed100: Path, tmp_path: Path
) -> None:
    """A 100-match feed with bets in the input topics; `live` runs; at a fifth of its
    output the node leading the busiest input partition, and some output partitions, is
    SIGKILLed, and started again once the flow delivered to those partitions' new leaders.
    The flow never stops: its outputs (no message sent twice) and DuckDB equal the replay
    of its partitions (what an uninterrupted run gives), and every partition ends fully
    in sync."""
    settings = cluster_settings
    ensure_topics(settings, ALL_TOPICS)
    publish_as_arrived(settings, feed100)
    replayed = replay_of_partitions(settings, tmp_path / "partitions")
    expected = expected_counts(replayed)
    busiest = kafka_cluster.busiest_input_partition(settings)
    outputs = [settings.topic(t) for t in OUTPUT_TOPICS]

    live = LiveProcess(settings, tmp_path / "live.duckdb", "--event-time-only")
    try:
        wait_for_outputs(settings, {MARKETS: expected[MARKETS] // 5}, live, 120, quiet_s=0)
        assert live.running(), live.stderr()
        parts = kafka_cluster.describe_partitions(settings, [busiest[0], *outputs])
        victim = parts[busiest][0]
        led = sorted(tp for tp, (leader, _, _) in parts.items() if leader == victim)
        assert any(topic in outputs for topic, _ in led), led  # an output partition too
        led_outputs = [tp for tp in led if tp[0] in outputs]
        before = end_offsets(settings, led_outputs)
        kafka_cluster.kill(victim)
        killed_at = time.monotonic()

        moved = wait_for_new_leaders(settings, led, victim)
        print(f"node {victim} killed: {len(led)} partitions led elsewhere after {moved:.1f} s")
        while end_offsets(settings, led_outputs) <= before:  # delivered to the new leaders
            assert live.running(), live.stderr()
            assert time.monotonic() - killed_at < 60, "no output to the moved partitions"
            time.sleep(0.2)
        print(f"output to them again {time.monotonic() - killed_at:.1f} s after the kill")
        assert live.running(), live.stderr()
        kafka_cluster.start_node(victim, timeout_s=180)  # slow on a loaded machine
        print(f"node {victim} back {time.monotonic() - killed_at:.1f} s after the kill")

        counts = wait_for_outputs(settings, expected, live)
        assert live.running(), live.stderr()  # the flow rode through: it never stopped
    finally:
        if not kafka_cluster.status().up:
            kafka_cluster.up()
        status = live.stop()
    assert status == 0, live.stderr()
    assert all(counts[t] >= n for t, n in expected.items()), (counts, expected)

    kafka_cluster.wait_in_sync(settings)
    assert kafka_cluster.under_replicated(settings) == []
    sent = read_outputs(settings)
    unique = without_duplicates(sent)
    assert {t: len(v) for t, v in sent.items()} == {t: len(v) for t, v in unique.items()}
    assert_outputs_equal_tables(sent, replayed)
    assert tables_without_sources(tmp_path / "live.duckdb") == tables_without_sources(replayed)


def wait_for_new_leaders(
    settings: KafkaSettings, partitions: list[tuple[str, int]], dead: int, timeout: float = 60
) -> float:
    """Seconds until none of `partitions` is led by node `dead` (nor leaderless)."""
    started = time.monotonic()
    names = sorted({topic for topic, _ in partitions})
    while time.monotonic() - started < timeout:
        parts = kafka_cluster.describe_partitions(settings, names)
        if all(parts[tp][0] not in (dead, -1) for tp in partitions):
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"partitions still led by node {dead} after {timeout:.0f} s")


def end_offsets(settings: KafkaSettings, partitions: list[tuple[str, int]]) -> int:
    """The sum of the end offsets of `partitions` (full topic names). Right after a leader
    change a client may still ask the old leader, or the new one before its high watermark
    caught up: `asking_again` asks again for up to 30 s."""

    def ask() -> int:
        consumer = Consumer(settings.consumer_config(f"test-ends-{uuid.uuid4().hex}"))
        try:
            return sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for topic, p in partitions
            )
        finally:
            consumer.close()

    return asking_again(ask)


def test_status_shows_each_node_the_controller_and_no_under_replicated(cluster: str) -> None:
    """`oddsflow kafka status --brokers 3` on the running cluster: exit 0, every node up
    on its own port, the active controller one of them, no under-replicated partition."""
    result = subprocess.run(
        [sys.executable, "-m", "flows", "kafka", "status", "--brokers", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"kafka cluster: 3 of 3 nodes up, bootstrap {cluster}")
    for node, port in ((1, 19092), (2, 19093), (3, 19094)):
        assert any(
            re.match(rf"  node {node}: up \(pid \d+\) 127\.0\.0\.1:{port}$", x) for x in lines
        )
    assert re.search(r"^  active controller: node [123]$", result.stdout, re.M), result.stdout
    assert "  under-replicated partitions: none" in lines
