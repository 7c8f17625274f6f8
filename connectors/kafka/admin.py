"""Kafka admin calls: is the broker there, create or drop topics, count partitions.

The broker runs with `auto.create.topics.enable=false`, so every flow and tool creates its
topics through `ensure_topics` (or `prepare_topics`) before it produces to them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from connectors.kafka.settings import (
    ALL_TOPICS,
    DEFAULT_PARTITIONS,
    INPUT_TOPICS,
    ClientConfig,
    KafkaSettings,
    KafkaUnreachableError,
    TopicSetupError,
    silent_logger,
)

log = logging.getLogger("oddsflow.kafka")
CHECK_TIMEOUT_S = 5.0  # an unreachable broker fails `oddsflow live` within this

_quiet = silent_logger("oddsflow.kafka.admin")


def fetch_metadata(settings: KafkaSettings, timeout: float = 5.0) -> ClusterMetadata:
    """Cluster metadata, or `KafkaUnreachableError` with a one-line cause after `timeout`.

    librdkafka's own connection complaints go to a silent logger; the most recent
    one is folded into the error message instead.
    """
    errors: list[str] = []
    client = settings.admin_config()
    client.update(logger=_quiet, error_cb=lambda err: errors.append(err.str()))
    admin = AdminClient(client)
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)  # serve the queued error_cb calls: they name the real cause
        cause = errors[-1] if errors else _kafka_error_text(exc)
        raise KafkaUnreachableError(
            f"cannot reach Kafka at {settings.bootstrap} within {timeout:g} s: {cause}"
        ) from exc


def ensure_topics(
    settings: KafkaSettings,
    names: Iterable[str],
    partitions: int = DEFAULT_PARTITIONS,
    replication: int = -1,
    *,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Create the prefixed topics for `names` that do not exist yet; return those created.

    `replication` -1 leaves the replication factor (and `min.insync.replicas`) to the
    brokers' defaults: 1 on the local broker, 3 (and 2) on the local cluster, whatever a
    real cluster's operators chose there.

    Idempotent: existing topics are left as they are (their partition count too), and
    a topic created concurrently by someone else counts as existing. Returns once every
    topic is visible in the cluster metadata with a leader for each partition, because
    the broker runs with `auto.create.topics.enable=false` and a producer racing ahead
    of topic creation would see "unknown topic".
    """
    wanted = [settings.topic(n) for n in names]
    admin = quiet_admin(settings)
    existing = admin.list_topics(timeout=timeout).topics
    missing = [t for t in dict.fromkeys(wanted) if t not in existing]
    if missing:
        new = [NewTopic(t, partitions, replication, config=dict(config or {})) for t in missing]
        for topic, future in admin.create_topics(new, request_timeout=timeout).items():
            try:
                future.result(timeout=timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise TopicSetupError(f"cannot create topic {topic!r}: {exc}") from exc
    _wait_for_leaders(admin, wanted, time.monotonic() + timeout)
    return missing


def drop_topics(
    settings: KafkaSettings, names: Iterable[str] | None = None, timeout: float = 30.0
) -> list[str]:
    """Delete the prefixed topics for `names` (None: every topic under the settings'
    prefix) that exist; return those deleted. For tests and benchmarks, which make topics
    of their own under a fresh prefix and should not leave them on the broker."""
    admin = quiet_admin(settings)
    existing = admin.list_topics(timeout=timeout).topics
    if names is None:
        ours = [t for t in existing if t.startswith(settings.topic_prefix)]
    else:
        ours = [t for t in dict.fromkeys(settings.topic(n) for n in names) if t in existing]
    if ours:
        for future in admin.delete_topics(ours, operation_timeout=timeout).values():
            future.result(timeout=timeout)
    return ours


def quiet_admin(settings: KafkaSettings) -> AdminClient:
    """An admin client whose librdkafka log lines (a broker is down: expected) go nowhere."""
    client: ClientConfig = {**settings.admin_config(), "logger": _quiet}
    return AdminClient(client)


def _wait_for_leaders(admin: AdminClient, topics: list[str], deadline: float) -> None:
    while True:
        md = admin.list_topics(timeout=max(deadline - time.monotonic(), 1.0))
        ready = [
            t
            for t in topics
            if t in md.topics
            and md.topics[t].error is None
            and all(p.leader >= 0 for p in md.topics[t].partitions.values())
        ]
        if len(ready) == len(topics):
            return
        if time.monotonic() > deadline:
            waiting = sorted(set(topics) - set(ready))
            raise TopicSetupError(f"topics not ready in time: {', '.join(waiting)}")
        time.sleep(0.1)


def _kafka_error_text(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)


def prepare_topics(settings: KafkaSettings, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Check that the broker answers within `timeout`, then create missing topics.

    Raises `KafkaUnreachableError` or `TopicSetupError` with a one-line cause; warns when
    the input topics differ in partition count (a match's bets would be read apart from
    its lines).
    """
    fetch_metadata(settings, timeout=timeout)
    ensure_topics(settings, ALL_TOPICS)
    counts = partition_counts(settings)
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{topic} {n}" for topic, n in counts.items())
        log.warning(
            "input topics with different partition counts (%s): a match's bets may be read "
            "apart from its lines, and be judged against its markets as they are on arrival",
            listed,
        )


def partition_counts(settings: KafkaSettings) -> dict[str, int]:
    """Partitions per input topic (full names)."""
    metadata = fetch_metadata(settings, timeout=30)
    topics = [settings.topic(t) for t in INPUT_TOPICS]
    return {t: len(metadata.topics[t].partitions) for t in topics}
