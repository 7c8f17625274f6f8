"""The replay flow: recorded feed files -> market sync -> DuckDB (and Kafka when configured).

Run it with `oddsflow replay FILE... --db PATH`, or straight with Bytewax:
`python -m bytewax.run "flows.replay:get_flow(['data/sample.jsonl.gz'], 'out/sample.duckdb')"`
(the settings then from `./oddsflow.toml` and the `ODDSFLOW_*` variables, flows/config.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from connectors.kafka import KafkaSettings, kafka_output
from flows import config
from flows.bytewax_compat import learn_worker_index, resume_point
from flows.market_sync import market_sync
from flows.runtime import tune_interpreter
from flows.sources import Position, ReplaySource, lines_before
from operators.parse import Limits, use_limits
from operators.settings import Rules
from sinks.duckdb_sink import DuckDBSink

REPLAY_BATCH_ROWS = 150_000  # rows per DuckDB commit at most (a few tens of MB)
FLOW_ID = "oddsflow_replay"
READ = "read"  # the source's step


def resumes_after(store: Path) -> tuple[int, int] | None:
    """A run on the recovery store `store`: the epoch it resumes from and the lines it does
    not read again; None when not known (`resume_point`)."""
    point = resume_point(store, f"{FLOW_ID}.{READ}")
    if point is None:
        return None
    epoch, states = point
    return epoch, sum(lines_before(cast(Position, state)) for state in states.values())


def get_flow(
    files: list[str | Path],
    db: str | Path,
    speed: float = 0.0,
    rules: Rules | None = None,
    publish_every_s: float | None = None,
    fmt: str = "auto",
    merge: bool = False,
    kafka: KafkaSettings | None = None,
    limits: Limits | None = None,
) -> Dataflow:
    """The replay flow. `rules`, `publish_every_s` and `limits` (this process's input
    limits from now on) not given: the config file's and the environment's, as `oddsflow
    replay` reads them without options."""
    if rules is None or publish_every_s is None or limits is None:
        settings = config.load()
        rules = settings.rules if rules is None else rules
        publish_every_s = settings.replay.publish_s if publish_every_s is None else publish_every_s
        limits = settings.limits if limits is None else limits
    use_limits(limits)
    tune_interpreter()
    flow = Dataflow(FLOW_ID)
    learn_worker_index(flow)  # for the per-worker sinks
    source = ReplaySource([Path(f) for f in files], speed, fmt=fmt, merge=merge)
    keyed = op.input(READ, flow, source)  # shape: (key, [line]) per key and batch
    rows = market_sync("sync", keyed, rules)  # shape: (key, [Row])
    # Readers see only published copies: committing more often than publishing buys them
    # nothing, and each commit has a fixed cost per table (several ms for upserts).
    sink = DuckDBSink(
        Path(db),
        publish_every_s=publish_every_s,
        flush_every_s=publish_every_s,
        batch_rows=REPLAY_BATCH_ROWS,
    )
    op.output("duckdb", rows, sink)
    if kafka is not None:
        kafka_output("kafka", rows, kafka)  # topics must exist: prepare_topics
    return flow
