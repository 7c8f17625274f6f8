"""Kafka output: a Bytewax sink that never loses a message silently, and `kafka_output`,
the Kafka output step of the flows.

In: `(topic_suffix, key, value)` tuples, e.g. `("prices", "m-17", b'{"match_id": ...}')`;
the sink adds the configured prefix (`oddsflow.prices`).

Each worker owns one idempotent confluent-kafka producer (acks=all, 1 ms of linger
so messages travel in batches). Every message gets a delivery report; a message
librdkafka could not deliver within `delivery.timeout.ms` (it retries until then) is
kept and raised as `KafkaDeliveryError` from the next `write_batch` or from `close`,
which fails the dataflow: a restart from the recovery store sends it again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.outputs import DynamicSink, StatefulSinkPartition, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors.kafka.serde import SinkItem, to_messages
from connectors.kafka.settings import KafkaSettings
from flows.bytewax_compat import FlowFailure, PerWorkerSink, this_worker
from sinks.stats import Seconds

Headers = list[tuple[str, str | bytes | None]]

# How long `write_batch` waits for room when librdkafka's local queue is full, per try.
_QUEUE_FULL_WAIT_S = 0.1
# `close` waits this much longer than delivery.timeout.ms: by then every message has a report.
_FLUSH_MARGIN_S = 10.0


class KafkaDeliveryError(RuntimeError):
    """A message could not be delivered to Kafka (after librdkafka's retries)."""

    def __init__(
        self, topic: str | None, key: str | None, error: KafkaError | str, more: int = 0
    ) -> None:
        self.topic = topic
        self.key = key
        self.error = error
        self.more = more
        reason = error.str() if isinstance(error, KafkaError) else error
        where = f"topic {topic!r} key {key!r}" if topic is not None else "the producer"
        also = f" (and {more} more failed message(s))" if more else ""
        super().__init__(f"Kafka delivery failed for {where}: {reason}{also}")


@dataclass
class _Failure:
    topic: str | None
    key: str | None
    error: KafkaError | str


@dataclass
class DeliveryStats:
    """This process's producers' deliveries: failures by librdkafka error name, and the
    time from `produce` to the broker's acknowledgement of each delivered message."""

    errors: Counter[str] = field(default_factory=Counter)
    latency: Seconds = field(default_factory=Seconds)


DELIVERY = DeliveryStats()


class KafkaSinkPartition(StatelessSinkPartition[SinkItem]):
    """One worker's producer. Usable on its own too (`oddsflow publish` does)."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        client_id: str = "oddsflow-sink",
        flush_every_batch: bool = False,
    ) -> None:
        config = settings.producer_config()
        config.update(
            {"client.id": client_id, "on_delivery": self._on_delivery, "error_cb": self._on_error}
        )
        self._producer = Producer(config)
        self._prefix = settings.topic_prefix
        self._topics: dict[str, str] = {}
        self._flush_every_batch = flush_every_batch
        retry_for_s = int(config["delivery.timeout.ms"]) / 1000
        self._flush_timeout_s = retry_for_s + _FLUSH_MARGIN_S
        self._first_failure: _Failure | None = None
        self._failures = 0
        self.delivered = 0

    def write_batch(self, items: list[SinkItem]) -> None:
        """Called by bytewax with each batch of items that reached the output step.

        Queues every item with librdkafka and serves delivery reports without waiting
        for them. Raises `KafkaDeliveryError` for a delivery that failed since the last
        call, or for an item librdkafka refuses outright (e.g. larger than
        `message.max.bytes`).
        """
        self._raise_if_failed()
        topics, produce = self._topics, self._producer.produce
        for suffix, key, value in items:
            topic = topics.get(suffix) or topics.setdefault(suffix, self._prefix + suffix)
            try:
                produce(topic, value, key)  # the usual case, without a call of ours per message
            except (BufferError, KafkaException):
                self._produce(topic, key, value)  # tries again, waiting for room; or raises
        if self._flush_every_batch:
            self._flush()
        else:
            self._producer.poll(0)
        self._raise_if_failed()

    def _produce(self, topic: str, key: str, value: bytes, headers: Headers | None = None) -> None:
        """Queue one message, waiting for room while librdkafka's local queue is full;
        raises like `write_batch`."""
        while True:
            try:
                # `headers=None` is not free: it makes produce() measurably slower.
                if headers is None:
                    self._producer.produce(topic, value, key)
                else:
                    self._producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:  # local queue full: wait for deliveries to make room
                self._producer.poll(_QUEUE_FULL_WAIT_S)
                self._raise_if_failed()
            except KafkaException as exc:
                raise KafkaDeliveryError(topic, key, exc.args[0]) from exc

    def poll(self, timeout_s: float) -> None:
        """Serve delivery reports for up to `timeout_s` (for callers pacing their writes)."""
        self._producer.poll(timeout_s)
        self._raise_if_failed()

    def flush(self) -> None:
        """Wait until every queued message has its delivery report; raise
        `KafkaDeliveryError` as `close` does."""
        self._flush()
        self._raise_if_failed()

    def close(self) -> None:
        """Called by bytewax when the dataflow completes on finite input (not on abort).

        Waits until every queued message has its delivery report, then raises
        `KafkaDeliveryError` if any failed or if messages are still queued after
        `delivery.timeout.ms` plus a margin.
        """
        self.flush()

    def _flush(self) -> None:
        remaining = self._producer.flush(self._flush_timeout_s)
        if remaining:
            self._raise_if_failed()
            raise KafkaDeliveryError(
                None, None, f"{remaining} message(s) still queued after {self._flush_timeout_s:g} s"
            )

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        """librdkafka's report for one message, run inside `poll` / `flush`."""
        if err is None:
            self.delivered += 1
            latency = msg.latency()
            if latency is not None:
                DELIVERY.latency.observe(latency)
            return
        DELIVERY.errors[err.name()] += 1
        if self._first_failure is None:
            raw_key = msg.key()
            key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else raw_key
            self._first_failure = _Failure(msg.topic(), key, err)
        self._failures += 1

    def _on_error(self, err: KafkaError) -> None:
        """Client-level errors. Only fatal ones (e.g. idempotence broken) stop the sink;
        the others (broker briefly unreachable) are retried by librdkafka."""
        if err.fatal() and self._first_failure is None:
            self._first_failure = _Failure(None, None, err)
            self._failures += 1

    def _raise_if_failed(self) -> None:
        failure = self._first_failure
        if failure is not None:
            raise KafkaDeliveryError(failure.topic, failure.key, failure.error, self._failures - 1)


class KafkaSink(DynamicSink[SinkItem]):
    """Write `(topic_suffix, key, value)` items to prefixed Kafka topics, from every worker.

    Any failed delivery fails the flow; what a restart from the recovery store resends
    depends on `flush_every_batch`:

    - `False` (default, fastest): `write_batch` returns once the items are queued. A
      failure surfaces one or more batches later (up to `delivery.timeout.ms`), possibly
      after bytewax snapshotted the epoch that held the message, and a hard crash
      (kill -9) drops what was still queued. Fine for replays that are simply rerun.
    - `True`: `write_batch` returns only once the broker acknowledged the whole batch,
      so no epoch is snapshotted before its messages are in Kafka: with recovery on,
      a restart resends everything that was not delivered (at-least-once), at a cost
      in throughput (benchmarks/kafka_sink_bench.py).
    """

    def __init__(self, settings: KafkaSettings, *, flush_every_batch: bool = False) -> None:
        self._settings = settings
        self._flush_every_batch = flush_every_batch

    def build(self, step_id: str, worker_index: int, worker_count: int) -> KafkaSinkPartition:
        """Called by bytewax once per worker when the dataflow starts."""
        return KafkaSinkPartition(
            self._settings,
            client_id=f"oddsflow-{step_id}-{worker_index}",
            flush_every_batch=self._flush_every_batch,
        )


# --- the output step of a flow -------------------------------------------------------------


@operator
def kafka_output(
    step_id: str,
    rows: Stream[tuple[str, Sequence[object]]],
    settings: KafkaSettings,
    recoverable: bool = True,
    failure: FlowFailure | None = None,
) -> None:
    """The Kafka sink of a flow. In: `(key, [row, ...])` from `market_sync`; writes each
    row with a topic to its prefixed topic (the topics must exist: `prepare_topics`).

    `recoverable`: wait for every delivery at each snapshot (see `_Partition`); a flow run
    without a recovery store may pass False and never wait there. `failure`: the flow's,
    when another step (the live source) may fail it; the sink's own failures mark it too.
    """
    messages = op.map("to_messages", rows, _messages)  # shape: ("kafka", [(topic, key, json)])
    sink = _SnapshotFlushedSink(settings, recoverable, failure or FlowFailure())
    op.output("send", messages, sink)


def _messages(item: tuple[str, Sequence[object]]) -> tuple[str, list[SinkItem]]:
    return _PART, to_messages(item)


_PART = "kafka"


class _Partition(StatefulSinkPartition[list[SinkItem], None]):
    """A `KafkaSinkPartition` that waits for its deliveries at every snapshot, and whose
    `close` does nothing once the flow failed.

    Bytewax snapshots the flow at the end of each epoch; a resumed run emits again only
    what came after. Waiting there for every message of the epoch to be acknowledged is
    what makes a restart lose nothing (a kill -9 drops librdkafka's queue). On a normal end
    `close` waits for every delivery and raises `KafkaDeliveryError` if one failed; once a
    step failed (this sink, another worker's, or the flow's source: `FlowFailure`), the
    messages still queued are left undelivered (a restart sends them again) rather than
    waited for and raised while Bytewax unwinds.
    """

    def __init__(self, inner: KafkaSinkPartition, recoverable: bool, failure: FlowFailure) -> None:
        self.inner = inner
        self.recoverable = recoverable
        self.failure = failure

    def write_batch(self, values: list[list[SinkItem]]) -> None:
        try:
            for items in values:
                self.inner.write_batch(items)
        except BaseException:
            self.failure.failed()
            raise

    def snapshot(self) -> None:
        if not self.recoverable:
            return  # nothing resumes from this snapshot: no reason to wait
        try:
            self.inner.flush()
        except BaseException:
            self.failure.failed()
            raise

    def close(self) -> None:
        if not self.failure.has_failed:
            self.inner.close()


class _Idle(StatefulSinkPartition[list[SinkItem], None]):
    """The partition of a worker a resumed run lost: it held no state, and gets no items."""

    def write_batch(self, values: list[list[SinkItem]]) -> None:
        raise AssertionError("items go to each worker's own partition")

    def snapshot(self) -> None:
        return None


class _SnapshotFlushedSink(PerWorkerSink[list[SinkItem], None]):
    """One partition per worker, each with its own producer: messages never change worker
    to be sent (`PerWorkerSink`)."""

    def __init__(self, settings: KafkaSettings, recoverable: bool, failure: FlowFailure) -> None:
        self.sink = KafkaSink(settings)
        self.recoverable = recoverable
        self.failure = failure

    def build_worker_part(
        self, index: int, resume_state: None
    ) -> StatefulSinkPartition[list[SinkItem], None]:
        worker, count = this_worker()
        if index != worker:
            return _Idle()
        return _Partition(self.sink.build("send", worker, count), self.recoverable, self.failure)
