"""The live source: partition i of every input topic, merged in arrival order, routed.

The source has one partition per partition index of the input topics: partition i of
`feed` and partition i of `bets_in` (feed lines and bets keyed by `match_id`, so a match's
lines and its bets share an index; deposits keyed by `user_id`), read by a consumer of its
own on whichever worker holds it, as a file is in a replay. Each merges its two topic
partitions in arrival order: by the messages' Kafka timestamps, then by their position in
the file `oddsflow publish` sent (`oddsflow-pos` header), then by the lines' event time, a
line going only once the other topic partition is caught up or holds a later line (Kafka
keeps order within a partition only; without the merge a bet could meet its market as it
is after the rest of the match was read). It then routes its lines where they are read
(`operators.ordering.Router`): lines to their match's worker, wallet lines with their
place in event-time order. A partition index with nothing to read tells the wallet shards
so (an END mark); its next line takes its place in the order again.

A topic partition that has more to read but sends nothing for `ALIGN_WAIT_S` raises
`InputStalledError`, which stops the flow (restart to resume) rather than let lines pass
it out of order. Consumer errors that belong to a partition become rejects; connection
trouble is retried by librdkafka and logged.

Positions come from the start offset (or a recovery store), never from committed consumer
offsets (committed after each snapshot all the same, for Kafka's tools to show the lag).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from connectors.kafka.admin import partition_counts
from connectors.kafka.serde import Order, to_raw_line
from connectors.kafka.settings import INPUT_TOPICS, KafkaSettings, silent_logger
from flows.bytewax_compat import FlowFailure
from flows.sources import Progress
from operators.ordering import Group, Router
from operators.parse import RawLine
from operators.rows import Reject

log = logging.getLogger("oddsflow.live")

DEFAULT_GROUP = "oddsflow-live"
BATCH_SIZE = 1000  # messages taken from the consumer per call
# When the last call had nothing to give, Bytewax asks again this much later (its worker
# sleeps meanwhile, whatever partitions it reads; a blocking poll per partition would add
# up): a line waits at most this long to be taken, for some CPU while idle
# (docs/performance.md).
IDLE_WAIT_S = 0.002
# How long the merge waits for a partition that is neither caught up nor delivering (at
# start, or while the broker is away) before the flow stops: going on without it would
# take lines out of arrival order. Longer than a broker restart; the Kafka sink gives up
# after delivery.timeout.ms (30 s by default) too. Meanwhile the markets of matches in
# play suspend for provider silence (wall-clock timers).
ALIGN_WAIT_S = 30.0
ERROR_LOG_EVERY_S = 10.0

# librdkafka's own log lines (connection refused, every retry) go nowhere; the consumer's
# `error_cb` reports the same trouble once in a while instead.
_librdkafka_log = silent_logger("oddsflow.live.librdkafka")


class InputStalledError(RuntimeError):
    """A partition with more to read sent nothing for `ALIGN_WAIT_S`."""


@dataclass(eq=False)
class _Lane:
    """One topic partition: lines read but not yet emitted, in partition order."""

    name: str  # "topic/partition"
    partition: TopicPartition
    queue: deque[tuple[Order, RawLine, int]] = field(default_factory=deque)
    caught_up: bool = False  # at the partition's end, nothing in flight
    at_end: bool = False  # the consumer reported the partition's end since its last line
    heard: float = field(default_factory=time.monotonic)
    next_offset: int | None = None  # after the last emitted line
    taken: int = -1  # offset of the last line read
    high: int = -1  # the partition's end offset at the last fetch (-1: not known yet)


State = dict[str, Any]  # {"offsets": {lane name: next offset}, "order": Router.position()}


def messages_before(state: State) -> int:
    """The messages before the offsets a partition's snapshot `state` holds: those a resume
    does not read again (all read before, when the run began at the topics' start)."""
    return sum(state.get("offsets", {}).values())


class _MergedPartition(StatefulSourcePartition[Group | Reject, State]):
    """Partition `index` of every input topic (the feed's and the bets' of the same
    matches), merged in arrival order, and routed (`Router`)."""

    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str,
        start: int,
        resume: State,
        align_wait_s: float,
        batch_size: int,
        stop: threading.Event,
        failure: FlowFailure,
        index: int,
        parts: int,
    ) -> None:
        self.stop = stop
        self.failure = failure
        offsets: dict[str, int] = resume.get("offsets", {})
        n, ts = resume.get("order", (0, 0))
        self.router = Router(index, parts, (n, ts))
        self.announced_idle = False  # the shards were told this partition has nothing now
        self.errors: list[Reject] = []
        self.logged: dict[str, float] = {}
        self.last_error = ""
        config = settings.consumer_config(group_id)
        config.update(
            {
                "enable.auto.commit": False,
                "enable.partition.eof": True,  # tells the merge a partition is caught up
                "logger": _librdkafka_log,
                "error_cb": self._on_error,
            }
        )
        self.consumer = Consumer(config)
        topics = [settings.topic(t) for t in INPUT_TOPICS]
        metadata = self.consumer.list_topics(timeout=30)
        self.lanes: dict[tuple[str, int], _Lane] = {}
        assignment = []
        for topic in topics:
            if index in metadata.topics[topic].partitions:
                lane = _Lane(f"{topic}/{index}", TopicPartition(topic, index))
                self.lanes[(topic, index)] = lane
                lane.next_offset = offsets.get(lane.name)
                offset = start if lane.next_offset is None else lane.next_offset
                assignment.append(TopicPartition(topic, index, offset))
        self.consumer.assign(assignment)
        self.align_wait_s = align_wait_s
        self.batch_size = batch_size
        self.idle = False  # the last call gave nothing
        _OPEN.add(self)

    def next_batch(self) -> list[Group | Reject]:
        """Called by Bytewax whenever it wants more input: the lines that can go now,
        routed. Raises `StopIteration` (the end of the input) once `stop` is set.

        A partition with nothing to read now tells every wallet shard it is idle (the
        `Router.end` marks), so the shards do not wait for it; its next line takes its place
        in the order again (a line stamped before lines the shards already applied is
        applied late: at arrival, as on any idle stream)."""
        if self.stop.is_set():
            raise StopIteration
        fed: set[_Lane] = set()
        messages = self.consumer.consume(self.batch_size, 0)
        arrived = time.time()  # one stamp per batch: its lines left the consumer together
        for msg in messages:
            self._take(msg, fed, arrived)
        for lane in fed:
            self._check_caught_up(lane)
        out: list[Group | Reject] = [*self.errors]
        self.errors.clear()
        lines = list(self._merge())
        Progress.lines += len(lines)
        if lines:
            out.extend(self.router.route(lines))
            self.announced_idle = False
        elif not self.announced_idle and self._drained():
            out.extend(self.router.end())
            self.announced_idle = True
        self.idle = not out
        return out

    def next_awake(self) -> datetime | None:
        """Called by Bytewax to know when to ask again: soon while idle (the worker sleeps
        meanwhile, whatever other partitions it reads), at once otherwise."""
        if not self.idle:
            return None
        return datetime.now(UTC) + timedelta(seconds=IDLE_WAIT_S)

    def _drained(self) -> bool:
        """Every line read went out, and the consumer reported each partition's end since
        (not the cached end offsets `_check_caught_up` reads: they may be stale, and a
        partition said idle too soon lets wallets go past lines it still holds)."""
        return all(lane.at_end and not lane.queue for lane in self.lanes.values())

    def _take(self, msg: Message, fed: set[_Lane], arrived: float) -> None:
        err = msg.error()
        lane = self.lanes.get((msg.topic() or "", msg.partition() or 0))
        now = time.monotonic()
        if err is not None:
            if lane is None:
                self._on_error(err)
            elif err.code() == KafkaError._PARTITION_EOF:
                lane.caught_up = lane.at_end = True
                lane.heard = now
            else:
                self.errors.append(_consumer_reject(lane.name, err))
            return
        assert lane is not None
        order, raw = to_raw_line(msg, lane.name, arrived)
        offset = msg.offset() or 0
        lane.queue.append((order, raw, offset))
        lane.at_end = False
        lane.taken = offset
        lane.heard = now
        fed.add(lane)

    def _check_caught_up(self, lane: _Lane) -> None:
        """Whether `lane` holds everything its partition had at the last fetch: the end
        offset that fetch reported (no request). Partition EOF events would say the same,
        but only with the next fetch, which the broker holds for fetch.wait.max.ms when
        nothing new came: every line of another partition meanwhile would wait for it."""
        try:
            _, high = self.consumer.get_watermark_offsets(lane.partition, cached=True)
        except KafkaException:
            high = -1
        lane.high = high
        lane.caught_up = high >= 0 and lane.taken + 1 >= high

    def _merge(self) -> Iterator[RawLine]:
        """Lines in arrival order across partitions, while no partition can still deliver
        an earlier one."""
        lanes = list(self.lanes.values())
        now = time.monotonic()
        while True:
            first: _Lane | None = None
            for lane in lanes:
                if lane.queue:
                    if first is None or lane.queue[0][0] < first.queue[0][0]:
                        first = lane
                elif not lane.caught_up:
                    if now - lane.heard < self.align_wait_s:
                        return  # this partition may still bring an earlier line
                    self.failure.failed()  # so the sinks skip their final flush
                    raise self._stalled(lane, now)
            if first is None:
                return
            _, line, offset = first.queue.popleft()
            first.next_offset = offset + 1
            yield line

    def _stalled(self, lane: _Lane, now: float) -> InputStalledError:
        last = f"; last consumer error: {self.last_error}" if self.last_error else ""
        return InputStalledError(
            f"nothing from {lane.name} for {now - lane.heard:.0f} s while it has more to "
            f"read{last}; stopped rather than take lines out of arrival order (restart to "
            "resume)"
        )

    def _on_error(self, err: KafkaError) -> None:
        """librdkafka's client-level errors (broker down, ...): it retries by itself."""
        text = err.str()
        self.last_error = text
        now = time.monotonic()
        if now - self.logged.get(text, float("-inf")) >= ERROR_LOG_EVERY_S:
            self.logged[text] = now
            log.warning("Kafka consumer: %s (retrying)", text)

    def snapshot(self) -> State:
        """Per topic partition, the offset after the last line emitted (lines still held by
        the merge are read again after a resume), and the router's position. Called by
        Bytewax at the end of every epoch; the offsets also go to the consumer group,
        asynchronously, so Kafka's own tools show the flow's lag (`kafka-consumer-groups
        --describe --group oddsflow-live`). A resume never reads them: it resumes from the
        recovery store, or from the start."""
        offsets = {
            lane.name: lane.next_offset
            for lane in self.lanes.values()
            if lane.next_offset is not None
        }
        marks = [
            TopicPartition(lane.partition.topic, lane.partition.partition, offsets[lane.name])
            for lane in self.lanes.values()
            if lane.name in offsets
        ]
        if marks:
            with contextlib.suppress(KafkaException):  # e.g. the broker is away: next time
                self.consumer.commit(offsets=marks, asynchronous=True)
        return {"offsets": offsets, "order": list(self.router.position())}

    def close(self) -> None:
        self.consumer.close()


# This process's partitions, for the metrics (`input_lags`, `newest_ts`), read at scrape
# time from the metrics server's thread: plain attribute reads.
_OPEN: weakref.WeakSet[_MergedPartition] = weakref.WeakSet()


def input_lags() -> dict[str, int]:
    """Per input topic partition this process reads ("topic/partition"): the messages
    after the last line handed to the flow, by the end offset of the consumer's last fetch
    (no request); partitions whose end is not known yet are left out."""
    lags = {}
    for part in list(_OPEN):
        for lane in list(part.lanes.values()):
            if lane.high >= 0:
                read = lane.next_offset if lane.next_offset is not None else lane.taken + 1
                lags[lane.name] = max(lane.high - read, 0)
    return lags


def newest_ts() -> int | None:
    """The order time (the newest `ts`, epoch ms) of the lines this process has routed,
    None before the first."""
    times = [part.router.ts for part in list(_OPEN) if part.router.n]
    return max(times, default=None)


def _consumer_reject(where: str, err: KafkaError) -> Reject:
    return Reject(
        source=f"{where}@{time.time_ns() // 1_000_000}",
        reason=f"kafka_error:{err.name()}",
        detail=err.str(),
        raw="",
        ts=None,
        provider=None,
        match_id=None,
    )


class LiveSource(FixedPartitionedSource[Group | Reject, State]):
    """The feed and bets_in topics, one source partition per partition index: partition
    i of each topic (a match's feed lines and its bets, keyed alike), merged in arrival
    order by a consumer of its own, and routed by its worker (`operators.ordering.Router`).

    Out: `(key, [item, ...])` groups (lines are `RawLine("<topic>/<partition>/<offset>",
    value)`), and a `Reject` for a consumer error of one topic partition. Its resume state
    is the next offset per topic partition and the router's position. `stop` set: the
    input ends. `failure`: the flow's, marked before the source raises
    `InputStalledError`, so the flow's sinks do not wait for deliveries while it unwinds.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str = DEFAULT_GROUP,
        from_beginning: bool = True,
        align_wait_s: float = ALIGN_WAIT_S,
        batch_size: int = BATCH_SIZE,
        stop: threading.Event | None = None,
        failure: FlowFailure | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.failure = failure or FlowFailure()
        self.group_id = group_id
        self.start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        self.align_wait_s = align_wait_s
        self.batch_size = batch_size
        self.parts: int | None = None  # partition indexes, once asked

    def list_parts(self) -> list[str]:
        """One part per partition index of the input topics (as many as the topic with the
        most partitions has)."""
        if self.parts is None:
            self.parts = max(partition_counts(self.settings).values())
        return [str(i) for i in range(self.parts)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: State | None
    ) -> _MergedPartition:
        return _MergedPartition(
            self.settings,
            self.group_id,
            self.start,
            resume_state or {},
            self.align_wait_s,
            self.batch_size,
            self.stop,
            self.failure,
            int(for_part),
            len(self.list_parts()),
        )
