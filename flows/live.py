"""The live flow: the feed and bets topics -> market sync -> DuckDB and the output topics.

Run it with `oddsflow live --kafka BOOTSTRAP --db PATH`; it runs until interrupted.
It differs from the replay flow only in its source and its Kafka sink.

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

So a live run gives what a replay of its partitions gives, read as one stream in event
time (`oddsflow replay --merge` of one file per partition index, each in arrival order),
at any scale, once the lines are in the topics before it reads them; lines that arrive
while it runs are applied as they come. A topic partition that has more to read but sends
nothing for `ALIGN_WAIT_S` stops the flow (restart to resume) rather than let lines pass it
out of order; meanwhile matches in play suspend for provider silence. Consumer errors that
belong to a partition become rejects; connection trouble is retried by librdkafka and
logged.

Positions come from `from_beginning` (or a recovery store), never from committed consumer
offsets (committed after each snapshot all the same, for Kafka's tools to show the lag):
the match and wallet state is rebuilt from the lines, so a run without its state must read
every line again. Everything written is idempotent (DuckDB upserts by key and version;
Kafka messages carry key and version), so reading again is harmless.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TypeGuard, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import KeyedStream
from bytewax.recovery import RecoveryConfig
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from flows import config
from flows.runtime import tune_interpreter
from flows.sources import Progress
from operators.dataflow import market_sync
from operators.latency import LatencyRecorder
from operators.ordering import Group, Router, line_ts
from operators.parse import REJECTS_KEY, Limits, RawLine, use_limits
from operators.rows import LatencyRow, Reject, Row
from operators.settings import Rules
from operators.signing import MessageHeaders, header_signature, header_value
from sinks.duckdb_sink import DuckDBSink
from sinks.kafka_config import (
    ALL_TOPICS,
    INPUT_TOPICS,
    POSITION_HEADER,
    KafkaSettings,
    KafkaUnreachableError,
    TopicSetupError,
    ensure_topics,
    fetch_metadata,
)
from sinks.kafka_rows import FLOW_FAILED, kafka_output
from sinks.kafka_sink import KafkaDeliveryError
from sinks.workers import learn_worker_index, this_worker

log = logging.getLogger("oddsflow.live")

DEFAULT_GROUP = "oddsflow-live"
CHECK_TIMEOUT_S = 5.0  # an unreachable broker fails `oddsflow live` within this
BATCH_SIZE = 1000  # messages taken from the consumer per call
# When the last call had nothing to give, Bytewax asks again this much later (its worker
# sleeps meanwhile, whatever partitions it reads; a blocking poll per partition would add
# up): a line waits at most this long to be taken. The price: an idle `oddsflow live` over
# 4-partition topics used ~5 % of a core (0.48 s of CPU in 10 s), against ~1 % for the
# earlier one-partition source, which could block in one poll.
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
_librdkafka_log = logging.getLogger("oddsflow.live.librdkafka")
_librdkafka_log.addHandler(logging.NullHandler())
_librdkafka_log.propagate = False


def get_flow(
    settings: KafkaSettings | str,
    db: str | Path,
    rules: Rules | None = None,
    group_id: str = DEFAULT_GROUP,
    from_beginning: bool = True,
    publish_every_s: float | None = None,
    wall_clock: bool = True,
    recoverable: bool = True,
    stop: threading.Event | None = None,
    limits: Limits | None = None,
) -> Dataflow:
    """The live flow; the topics must exist (`prepare_topics`). It runs until `stop` is
    set: the input then ends, and the flow ends once everything read is written.

    `settings` may be a bootstrap string, for `python -m bytewax.run "flows.live:get_flow(
    '127.0.0.1:9092', 'out/live.duckdb')"`: the other Kafka settings are then read as
    `oddsflow live` reads them (the config file, `ODDSFLOW_KAFKA_*`), and missing topics are
    created. `rules`, `publish_every_s` and `limits` (this process's input limits from now
    on) not given: the config file's and the environment's. Under `bytewax.run`
    nothing sets `stop`: Ctrl-C interrupts the flow where it is (the recovery store, `-r`,
    resumes it).

    `recoverable`: the flow runs with a recovery store, so at each snapshot the Kafka sink
    waits until everything it sent is acknowledged (tens of milliseconds at times, which
    a flow without a store has no reason to spend).

    `wall_clock`: provider silence and due reopenings fire on the wall clock when no line
    comes (see `operators.dataflow`); without it they wait for the match's next line, as
    in replay, and the output depends only on the lines and their order.
    """
    if isinstance(settings, str) or rules is None or publish_every_s is None or limits is None:
        loaded = config.load()
        rules = loaded.rules if rules is None else rules
        publish_every_s = loaded.live.publish_s if publish_every_s is None else publish_every_s
        limits = loaded.limits if limits is None else limits
        if isinstance(settings, str):
            settings = replace(loaded.kafka, bootstrap=settings).client_settings()
            prepare_topics(settings)
    use_limits(limits)
    tune_interpreter(live=True)
    flow = Dataflow("oddsflow_live")
    learn_worker_index(flow)  # for the per-worker sinks
    source = LiveSource(settings, group_id, from_beginning, stop=stop)
    inputs = op.input("read", flow, source)
    # shape: (key, [line]) per key and batch, or Reject
    split = op.branch("split", inputs, is_group)
    clock = wall_clock_now if wall_clock else None
    # The input ends only when the flow is stopped: bets awaiting a verdict stay pending.
    keyed = cast(KeyedStream[list], split.trues)
    # The match step adds each worker's `LatencyRow`s to its rows once a minute.
    rows = market_sync("sync", keyed, rules, clock, finite=False, latency=WorkerLatency())
    errors = op.map("errors", split.falses, as_reject_rows)  # shape: ("", [Reject])
    out = op.merge("out", rows, errors)
    # Rows go to the writer process in chunks of 0.1 s (converting a second's worth at once
    # held the interpreter lock long enough to stall the worker by 10-30 ms each second),
    # committed once a second (a commit has a fixed cost per table, 70-100 ms here, that
    # smaller commits would pay over and over).
    sink = DuckDBSink(
        Path(db), publish_every_s=publish_every_s, flush_every_s=0.1, commit_every_s=1.0
    )
    op.output("duckdb", out, sink)
    kafka_output("kafka", out, settings, recoverable)
    return flow


def wall_clock_now() -> datetime:
    return datetime.now(UTC)


class WorkerLatency:
    """The live flow's `LatencyProbe`: the wall clock, and a `LatencyRecorder` per worker
    (each used by its own worker's thread only)."""

    def __init__(self) -> None:
        self.recorders: dict[int, LatencyRecorder] = {}

    def handed_over(self, arrivals: Iterable[float]) -> list[LatencyRow]:
        return self._recorder().record(arrivals, time.time())

    def end(self) -> list[LatencyRow]:
        return self._recorder().flush()

    def _recorder(self) -> LatencyRecorder:
        worker = this_worker()[0]
        recorder = self.recorders.get(worker)
        if recorder is None:
            recorder = self.recorders[worker] = LatencyRecorder(worker)
        return recorder


def is_group(item: Group | Reject) -> TypeGuard[Group]:
    return not isinstance(item, Reject)


def as_reject_rows(item: Group | Reject) -> tuple[str, list[Row]]:
    return REJECTS_KEY, [item] if isinstance(item, Reject) else []


def prepare_topics(settings: KafkaSettings, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Check that the broker answers within `timeout`, then create missing topics.

    Raises `KafkaUnreachableError` or `TopicSetupError` with a one-line cause.
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


# --- the source --------------------------------------------------------------------------


class InputStalledError(RuntimeError):
    """A partition with more to read sent nothing for `ALIGN_WAIT_S`."""


Order = tuple[int, int, int]  # Kafka timestamp (ms), oddsflow-pos header, event time


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
        index: int,
        parts: int,
    ) -> None:
        self.stop = stop
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
        offset = msg.offset() or 0
        kind, created = msg.timestamp()
        data = msg.value() or b""
        headers = msg.headers()
        order = (
            created if kind != TIMESTAMP_NOT_AVAILABLE else 0,
            header_position(headers),
            line_ts(data) or 0,
        )
        source = f"{lane.name}/{offset}"
        raw = RawLine(source, data, signature=header_signature(headers), arrived=arrived)
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
                    FLOW_FAILED.set()
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


def header_position(headers: MessageHeaders) -> int:
    """The `oddsflow-pos` header of an input message; 0 when it has none."""
    try:
        return int(header_value(headers, POSITION_HEADER) or 0)
    except ValueError:
        return 0


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
    is the next offset per topic partition and the router's position.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str = DEFAULT_GROUP,
        from_beginning: bool = True,
        align_wait_s: float = ALIGN_WAIT_S,
        batch_size: int = BATCH_SIZE,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
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
            int(for_part),
            len(self.list_parts()),
        )


# --- running it --------------------------------------------------------------------------


def serve(
    settings: KafkaSettings,
    db: Path,
    *,
    workers: int = 1,
    from_beginning: bool = True,
    epoch_s: float = 1.0,
    group_id: str = DEFAULT_GROUP,
    wall_clock: bool = True,
    recovery: RecoveryConfig | None = None,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    rules: Rules | None = None,
    publish_every_s: float | None = None,
    limits: Limits | None = None,
) -> int:
    """`oddsflow live`: run until SIGINT or SIGTERM; the exit status. `process_id` and
    `addresses`: this process as a member of a cluster (`--process-id`, `--addresses`).

    With `recovery`, a run resumes from the last snapshot of the match and wallet state
    and the input offsets: outputs since then are sent again (same keys and versions).

    The first signal ends the input; the flow then finishes what it read and closes
    every sink: the DuckDB sink writes and publishes what it holds, the Kafka sink waits
    for its deliveries. A second signal interrupts at once.

    One worker runs in this thread (Bytewax's `run_main`). Bytewax's `cluster_main`,
    needed for several, keeps this thread taking the interpreter lock every millisecond
    to look for signals: the worker thread then hands the lock over 1000 times a second,
    which at 2 000 lines/s cost ~15 % of a core and stalled the worker whenever this
    thread waited for a CPU.
    """
    from bytewax.testing import cluster_main, run_main

    from flows.progress import ProgressBar, member_summary
    from flows.runtime import await_earlier_members, freeze_startup_heap

    try:
        prepare_topics(settings)
    except (KafkaUnreachableError, TopicSetupError) as exc:
        return _fail(str(exc))
    stop = threading.Event()
    flow = get_flow(
        settings,
        db,
        rules=rules,
        group_id=group_id,
        from_beginning=from_beginning,
        wall_clock=wall_clock,
        recoverable=recovery is not None,
        stop=stop,
        publish_every_s=publish_every_s,
        limits=limits,
    )
    freeze_startup_heap()
    started = time.monotonic()
    print(
        f"oddsflow live: reading {', '.join(settings.topic(t) for t in INPUT_TOPICS)} "
        f"from {settings.bootstrap}; Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    epoch = timedelta(seconds=epoch_s)
    with ProgressBar(), _signals_stop(stop) as stopped:
        try:
            if workers == 1 and addresses is None:
                run_main(flow, epoch_interval=epoch, recovery_config=recovery)
            else:
                if addresses:
                    await_earlier_members(addresses, process_id or 0)
                cluster_main(
                    flow,
                    addresses,
                    process_id or 0,
                    epoch_interval=epoch,
                    worker_count_per_proc=workers,
                    recovery_config=recovery,
                )
        except KeyboardInterrupt:
            pass  # a second signal
        except Exception as exc:
            if len(stopped) < 2:
                return _fail(_cause(exc))
    report = member_summary(time.monotonic() - started, process_id, len(addresses or ()))
    print(f"{report}\npublished  {db}")
    return 0


@contextmanager
def _signals_stop(stop: threading.Event) -> Iterator[list[int]]:
    """SIGINT and SIGTERM set `stop`, a second one raises `KeyboardInterrupt`; yields
    the signals received so far."""
    received: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt
        print("\noddsflow live: stopping…", file=sys.stderr, flush=True)
        stop.set()

    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cause(exc: BaseException) -> str:
    """The one line that says why the flow stopped: the innermost Python error."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for err in chain:
        if isinstance(err, KafkaDeliveryError):
            return f"{err} (restart to send again)"
        if isinstance(err, InputStalledError):
            return str(err)
    inner = chain[-1]
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[-1] if text else ''}"


def _fail(message: str) -> int:
    print(f"oddsflow live: {message}", file=sys.stderr)
    return 1
