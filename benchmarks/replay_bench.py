"""Replay-core throughput next to the bare Bytewax ceiling, measured in one invocation.

    python -m benchmarks.replay_bench [--matches 400] [--rounds 2] [--feed FILE]
                                      [--tennis PBP_CSV]

The ceiling is the same lines read in batches of the same size, `key_on` +
`stateful_map` passthrough into a sink that drops everything: what Bytewax alone costs.
The core is the real replay flow: parse, validate, match state, markets and pricing, and
the DuckDB sink with its published file. Each run is a fresh child process (fork), so its
peak RSS is its own (the core's: plus its DuckDB writer process's); rounds alternate
ceiling/core and the best of each is kept. `--tennis`: also the same replay flow over as
many native tennis lines as the football feed has, the first of the real point-by-point
records' (`operators/adapters/tennis_pbp.py`: points, game/set/match ends, heartbeats).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import multiprocessing as mp
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from flows.replay import get_flow
from flows.runtime import freeze_startup_heap, tune_interpreter
from flows.sources import BATCH_LINES, read_lines
from operators.engine import LocalEngine
from operators.parse import RawLine


class _Drop(StatelessSinkPartition[object]):
    def write_batch(self, items: list[object]) -> None:
        pass


class DropSink(DynamicSink[object]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Drop:
        return _Drop()


class _Lines(StatefulSourcePartition[RawLine, None]):
    def __init__(self, path: Path) -> None:
        self.lines = read_lines(path)

    def next_batch(self) -> list[RawLine]:
        batch = list(itertools.islice(self.lines, BATCH_LINES))
        if not batch:
            raise StopIteration
        return batch

    def snapshot(self) -> None:
        return None


class LineSource(FixedPartitionedSource[RawLine, None]):
    """The file's lines in batches of the replay's size, and nothing else."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def list_parts(self) -> list[str]:
        return ["lines"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Lines:
        return _Lines(self.path)


def _passthrough(state: object, raw: RawLine) -> tuple[object, RawLine]:
    return state, raw


class _Key(msgspec.Struct):
    match_id: object = None


_key_decoder = msgspec.json.Decoder(_Key)


def bare_key(raw: RawLine) -> str:
    """The least a keyed flow must do: read the match id."""
    try:
        key = _key_decoder.decode(raw.data).match_id
    except msgspec.MsgspecError:
        return ""
    return key if isinstance(key, str) else ""


def ceiling_flow(feed: Path) -> Dataflow:
    flow = Dataflow("ceiling")
    lines = op.input("read", flow, LineSource(feed))
    keyed = op.key_on("key", lines, bare_key)
    out = op.stateful_map("pass", keyed, _passthrough)
    op.output("drop", out, DropSink())
    return flow


READER = """
import sys, time
from pathlib import Path
from dashboard.queries import refresh_all
path, stop, every = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
while not stop.exists():
    refresh_all(path)
    time.sleep(every)
"""


def _child(kind: str, feed: Path, db: Path, conn: mp.connection.Connection) -> None:
    tune_interpreter()  # what get_flow does for the core: the same process settings for both
    flow = ceiling_flow(feed) if kind == "ceiling" else get_flow([feed], db)
    freeze_startup_heap()  # what `oddsflow replay` does before running: both runs too
    reader = None
    stop = db.with_name("stop-reader")
    if kind.startswith("core+dashboard"):
        every = kind.split("@")[1]
        reader = subprocess.Popen([sys.executable, "-c", READER, str(db), str(stop), every])
    started = time.perf_counter()
    run_main(flow)
    elapsed = time.perf_counter() - started
    # The flow's own peak plus its DuckDB writer process's (ended and waited for by now;
    # the dashboard reader, another child, is not yet).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if reader is not None:
        stop.touch()
        reader.wait()
    conn.send((elapsed, peak / 1024))


def measure(kind: str, feed: Path, db: Path) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one run in a fresh child process (with its DuckDB
    writer process: the sum of both peaks)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    for stale in db.parent.glob(f"{db.stem}*"):
        if stale.is_dir():  # the sink's segments (`<db>.data`)
            shutil.rmtree(stale)
        else:
            stale.unlink()
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_child, args=(kind, feed, db, child))
    proc.start()
    result: tuple[float, float] = parent.recv()
    proc.join()
    return result


def suspension_latency(feed: Path) -> tuple[float, float, int]:
    """p50/p99 µs of deciding a `goal possible` line into its suspension rows, in process."""
    engine = LocalEngine()
    samples: list[float] = []
    with gzip.open(feed, "rb") if feed.suffix == ".gz" else feed.open("rb") as f:
        for i, data in enumerate(f, 1):
            raw = RawLine(f"bench:{i}", data.rstrip(b"\n"))
            is_possible = b'"possible"' in data and b'"goal"' in data
            started = time.perf_counter_ns()
            rows = engine.line(raw)
            if is_possible and any(getattr(r, "status", "") == "SUSPENDED" for r in rows):
                samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return statistics.median(samples), p99, len(samples)


def tennis_feed(records: Path, lines: int, out: Path) -> Path:
    """The first `lines` native lines of a point-by-point file, as a gzip JSON Lines feed."""
    from operators.adapters import tennis_pbp

    converted = (line for line in tennis_pbp.file_lines(records) if not line.get("reject"))
    with gzip.open(out, "wb") as f:
        for line in itertools.islice(converted, lines):
            f.write(msgspec.json.encode(line) + b"\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--matches", type=int, default=400, help="simulated matches (400 ≈ 580k lines)"
    )
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--bets-per-match",
        type=int,
        default=20,
        help="bet lines per match (about 620 makes a feed of 30 %% bets)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--feed", type=Path, help="an existing feed instead of a simulated one")
    parser.add_argument(
        "--dashboard",
        type=float,
        metavar="SECONDS",
        help="also run the core with a process running every dashboard query "
        "every SECONDS on the published file (the app refreshes every 2)",
    )
    parser.add_argument(
        "--tennis",
        type=Path,
        metavar="PBP_CSV",
        help="also replay as many native tennis lines, converted from this point-by-point "
        "file (../shared/data/tennis/atp_main_2017.csv.gz)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="oddsflow-bench-"))
    feed = args.feed
    if feed is None:
        from tooling.simulator import write_feed

        feed = work / f"sim-{args.matches}-{args.seed}.jsonl.gz"
        write_feed(feed, matches=args.matches, seed=args.seed, bets_per_match=args.bets_per_match)
    with gzip.open(feed, "rb") if feed.suffix == ".gz" else feed.open("rb") as f:
        lines = sum(1 for _ in f)
    with gzip.open(feed, "rb") if feed.suffix == ".gz" else feed.open("rb") as f:
        bets = sum(1 for line in f if b'"type":"bet"' in line)
    print(f"feed: {feed} ({lines:,} lines, {bets / lines:.0%} bets)")

    kinds = ["ceiling", "core"]
    if args.dashboard:
        kinds.append(f"core+dashboard@{args.dashboard}")
    feeds = dict.fromkeys(kinds, feed)
    if args.tennis:
        feeds["tennis"] = tennis_feed(args.tennis, lines, work / "tennis.jsonl.gz")
        kinds.append("tennis")
        with gzip.open(feeds["tennis"], "rb") as f:
            points = sum(1 for line in f if b'"type":"point"' in line)
        print(f"tennis feed: {feeds['tennis']} ({lines:,} lines, {points / lines:.0%} points)")
    best: dict[str, tuple[float, float]] = {}
    for r in range(args.rounds):
        for kind in kinds:
            seconds, rss = measure(kind, feeds[kind], work / "out" / "bench.duckdb")
            print(
                f"  round {r + 1} {kind:8s} {lines / seconds:>10,.0f} lines/s  "
                f"{seconds:6.2f} s  peak RSS {rss:,.0f} MiB"
            )
            if kind not in best or seconds < best[kind][0]:
                best[kind] = (seconds, rss)
    ceiling, core = (lines / best[k][0] for k in ("ceiling", "core"))
    print(
        f"ceiling (bytewax key_on + stateful_map passthrough): {ceiling:,.0f} lines/s, "
        f"peak RSS {best['ceiling'][1]:,.0f} MiB"
    )
    print(
        f"core (parse+validate+state+markets+pricing+DuckDB):  {core:,.0f} lines/s, "
        f"peak RSS {best['core'][1]:,.0f} MiB"
    )
    print(f"core / ceiling: {core / ceiling:.0%}")
    if args.tennis:
        tennis = lines / best["tennis"][0]
        print(
            f"tennis core (the same flow, real tennis lines):     {tennis:,.0f} lines/s, "
            f"peak RSS {best['tennis'][1]:,.0f} MiB; tennis / football: {tennis / core:.0%}"
        )
    if args.dashboard:
        with_reader = lines / best[kinds[-1]][0]
        print(
            f"core with the dashboard's queries every {args.dashboard:g} s: "
            f"{with_reader:,.0f} lines/s, {with_reader / core:.0%} of the core alone"
        )
    p50, p99, n = suspension_latency(feed)
    print(
        f"goal possible -> suspension rows, in process: p50 {p50:.1f} µs, p99 {p99:.1f} µs "
        f"({n} goals)"
    )


if __name__ == "__main__":
    main()
