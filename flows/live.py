"""The live flow: the feed and bets topics -> market sync -> DuckDB and the output topics.

Run it with `oddsflow live --kafka BOOTSTRAP --db PATH`; it runs until interrupted.
It differs from the replay flow only in its source (`connectors.kafka.LiveSource`: each
partition index of the input topics merged in arrival order) and its Kafka sink.

So a live run gives what a replay of its partitions gives, read as one stream in event
time (`oddsflow replay --merge` of one file per partition index, each in arrival order),
at any scale, once the lines are in the topics before it reads them; lines that arrive
while it runs are applied as they come. Meanwhile matches in play suspend for provider
silence (wall-clock timers).

The match and wallet state is rebuilt from the lines, so a run without its state (no
recovery store) reads every line again; everything written is idempotent (DuckDB upserts
by key and version; Kafka messages carry key and version), so reading again is harmless.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TypeGuard, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import KeyedStream
from bytewax.recovery import RecoveryConfig

from connectors.kafka import (
    INPUT_TOPICS,
    InputStalledError,
    KafkaDeliveryError,
    KafkaSettings,
    KafkaUnreachableError,
    LiveSource,
    TopicSetupError,
    kafka_output,
    prepare_topics,
)
from connectors.kafka.source import DEFAULT_GROUP, State, messages_before
from flows import config
from flows.bytewax_compat import (
    FlowFailure,
    learn_worker_index,
    resume_point,
    run_flow,
    this_worker,
)
from flows.market_sync import market_sync
from flows.runtime import tune_interpreter
from operators.latency import LatencyRecorder
from operators.ordering import Group
from operators.parse import REJECTS_KEY, Limits, use_limits
from operators.rows import LatencyRow, Reject, Row
from operators.settings import Rules
from sinks.duckdb_sink import DuckDBSink

__all__ = ["get_flow", "resumes_after", "serve"]

FLOW_ID = "oddsflow_live"
READ = "read"  # the source's step


def resumes_after(store: Path) -> tuple[int, int] | None:
    """A run on the recovery store `store`: the epoch it resumes from and the input messages
    it does not read again; None when not known (`resume_point`)."""
    point = resume_point(store, f"{FLOW_ID}.{READ}")
    if point is None:
        return None
    epoch, states = point
    return epoch, sum(messages_before(cast(State, state)) for state in states.values())


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
    comes (see `flows.market_sync`); without it they wait for the match's next line, as
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
    flow = Dataflow(FLOW_ID)
    learn_worker_index(flow)  # for the per-worker sinks
    failure = FlowFailure()  # the source's stall fails the flow: the sinks then skip a flush
    source = LiveSource(settings, group_id, from_beginning, stop=stop, failure=failure)
    inputs = op.input(READ, flow, source)
    # shape: (key, [line]) per key and batch, or Reject
    split = op.branch("split", inputs, is_group)
    clock = wall_clock_now if wall_clock else None
    # The input ends only when the flow is stopped: bets awaiting a verdict stay pending.
    keyed = cast(KeyedStream[list], split.trues)
    # The match step adds each worker's `LatencyRow`s to its rows once a minute.
    rows = market_sync("sync", keyed, rules, clock, finite=False, latency=WorkerLatency())
    errors = op.map("errors", split.falses, as_reject_rows)  # shape: ("", [Reject])
    out = op.merge("out", rows, errors)
    # Rows go to the writer process in chunks of 0.1 s (converting more at once holds the
    # interpreter lock long enough to stall the worker), committed once a second (a commit
    # has a fixed cost per table that smaller commits would pay over and over); figures in
    # docs/performance.md.
    sink = DuckDBSink(
        Path(db), publish_every_s=publish_every_s, flush_every_s=0.1, commit_every_s=1.0
    )
    op.output("duckdb", out, sink)
    kafka_output("kafka", out, settings, recoverable, failure)
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

    `run_flow` runs it: the signals are this function's (`_signals_stop`), not Bytewax's.
    """
    from flows.progress import ProgressBar, member_summary
    from flows.runtime import freeze_startup_heap

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
    with ProgressBar(), _signals_stop(stop) as stopped:
        try:
            run_flow(
                flow,
                workers=workers,
                process_id=process_id,
                addresses=addresses,
                epoch=timedelta(seconds=epoch_s),
                recovery=recovery,
                bytewax_signals=False,
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
