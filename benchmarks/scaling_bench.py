"""Replay throughput at 1, 2, 4, ... processes, against one process and against the domain
alone, measured in one invocation.

    python -m benchmarks.scaling_bench [--matches 600] [--files 16] [--processes 1,2,4,8,16]
                                       [--rounds 2] [--workers 1] [--live [--kafka BOOTSTRAP]]

A simulated feed is split by match into `--files` files (`oddsflow simulate --partitions`):
every run replays the same files, one partition each, so all runs do the same work and
must publish the same tables (checked). Each run is the real command, `python -m flows
replay FILE... --db ... --processes N`, in a fresh child process, from scratch. Rounds
alternate the setups; for each the best wall time and the least CPU are kept. CPU is user +
system time of the run and all its processes (flows and DuckDB writers); on a machine
shared with other work the CPU figures are the steadier ones (the load is printed).

Also measured, in the same invocation:
- the domain alone: `LocalEngine` over the same lines merged into one stream, in a plain
  loop in a fresh process (no Bytewax, no DuckDB): the full replay at 1 process against it;
- start-up: the same command over a one-line file, at each N: what a run pays besides the
  lines (cluster start, writer processes, the final publication).

`--live` (a broker: `oddsflow kafka up`): the same at each N for `oddsflow live --processes
N --event-time-only` over input topics with `--files` partitions (fresh topics per run, the
whole feed published before the flow starts, deleted after): lines/s from the start of the
command to its last output message (the run is stopped once no output came for 3 s), CPU of
the command and all its processes. Kafka's broker runs on the same cores (its CPU is not
counted). The live tables must be identical at every N (they are a replay of the
partitions merged, not of the split files: see connectors/kafka/source.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import multiprocessing as mp
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from connectors.kafka.settings import ALL_TOPICS, ENV_PREFIX, OUTPUT_TOPICS, KafkaSettings
from sinks.tables import tables

WHERE_FROM = ("source", "ref", "detail")  # columns that may name a line's topic
TIMINGS = ("latency",)  # tables of the run's own timings: no two runs agree
QUIET_S = 3.0  # live: no output for this long after the feed's rows came means done


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float
    digest: tuple[tuple[str, int, int], ...]  # per table: rows and a hash of their values


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def digest(db: Path, topic_prefix: str = "") -> tuple[tuple[str, int, int], ...]:
    """Every table's row count and an order-free hash of its rows, but the run's timings;
    `topic_prefix` (live: a run's own topics) is taken out of the columns that name where a
    line came from."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = []
        for name, table in tables().items():
            if name in TIMINGS:
                continue
            columns = ", ".join(
                f"replace({c}, '{topic_prefix}', '')" if c in WHERE_FROM and topic_prefix else c
                for c in table.columns
            )
            sql = f"SELECT count(*), bit_xor(hash(({columns}))) FROM {name}"
            rows, xor = con.execute(sql).fetchone()  # type: ignore[misc]
            out.append((name, rows, xor or 0))
        return tuple(out)
    finally:
        con.close()


def replay(files: list[Path], work: Path, processes: int, workers: int) -> Run:
    """One replay from scratch (new database)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db = work / "bench.duckdb"
    command = [sys.executable, "-m", "flows", "replay", *map(str, files), "--db", str(db)]
    if processes > 1:
        command += ["--processes", str(processes)]
    if workers > 1:
        command += ["--workers", str(workers)]
    cpu, started = children_cpu(), time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    return Run(wall, children_cpu() - cpu, digest(db))


def live(feed: Path, work: Path, processes: int, base: KafkaSettings, partitions: int) -> Run:
    """`oddsflow live` from scratch over fresh topics of `partitions` partitions holding
    `feed`, stopped (SIGINT) once its output has been quiet for `QUIET_S`; the wall time is
    up to its last output message."""
    from connectors.kafka.admin import drop_topics, ensure_topics
    from tooling.kafka_tools import publish

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db = work / "bench.duckdb"
    settings = dataclasses.replace(base, topic_prefix=f"bench-scaling-{uuid.uuid4().hex[:8]}.")
    ensure_topics(settings, ALL_TOPICS, partitions=partitions)
    try:
        publish(settings, feed)
        command = [sys.executable, "-m", "flows", "live", "--kafka", settings.bootstrap]
        command += ["--db", str(db), "--event-time-only", "--processes", str(processes)]
        env = {**os.environ, ENV_PREFIX: settings.topic_prefix}
        cpu, started = children_cpu(), time.perf_counter()
        log = (work / "live.log").open("wb")
        flow = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        last, changed = 0, started
        while True:
            time.sleep(0.1)
            now = time.perf_counter()
            count = sum(_output_counts(settings).values())
            if count != last:
                last, changed = count, now
            elif count and now - changed >= QUIET_S:
                break
            if flow.poll() is not None:
                raise SystemExit(f"oddsflow live ended early:\n{_tail(work / 'live.log')}")
        flow.send_signal(signal.SIGINT)
        if flow.wait(120):
            raise SystemExit(f"oddsflow live failed on SIGINT:\n{_tail(work / 'live.log')}")
        log.close()
        return Run(changed - started, children_cpu() - cpu, digest(db, settings.topic_prefix))
    finally:
        drop_topics(settings)


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _output_counts(settings: KafkaSettings) -> dict[str, int]:
    """Messages per output topic so far (the partitions' end offsets)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(settings.consumer_config(f"bench-{uuid.uuid4().hex}"))
    try:
        metadata = consumer.list_topics(timeout=10)
        out = {}
        for name in OUTPUT_TOPICS:
            topic = settings.topic(name)
            out[name] = sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in metadata.topics[topic].partitions
            )
        return out
    finally:
        consumer.close()


def _domain_child(files: list[Path], conn: mp.connection.Connection) -> None:
    from flows.runtime import freeze_startup_heap, tune_interpreter
    from flows.sources import merged_lines
    from operators.engine import LocalEngine

    tune_interpreter()
    lines = list(merged_lines(files))
    freeze_startup_heap()
    engine = LocalEngine()
    started = time.perf_counter()
    for raw in lines:
        engine.line(raw)
    engine.finish()
    conn.send(time.perf_counter() - started)


def domain_only(files: list[Path]) -> float:
    """Seconds of `LocalEngine` over the lines (read beforehand) in a fresh process."""
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_domain_child, args=(files, child))
    proc.start()
    seconds: float = parent.recv()
    proc.join()
    return seconds


def main() -> None:
    cores = os.cpu_count() or 1
    default = [n for n in (1, 2, 4, 8, 16) if n <= cores] or [1]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--matches", type=int, default=600, help="simulated matches (600 ≈ 870k lines)"
    )
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--files", type=int, help="files the feed is split into (default: the most processes)"
    )
    parser.add_argument(
        "--processes",
        default=",".join(map(str, default)),
        help=f"process counts to run (default here: {','.join(map(str, default))})",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker threads per process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="write the feed here and keep it")
    parser.add_argument(
        "--live", action="store_true", help="also `oddsflow live` over topics of --files partitions"
    )
    parser.add_argument("--kafka", help="bootstrap servers for --live (default: as oddsflow)")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    parts = args.files or max(counts)

    from tooling.simulator import partition_paths, write_feed

    tmp = Path(tempfile.mkdtemp(prefix="oddsflow-scaling-"))
    try:
        feed = (args.keep or tmp) / "feed.jsonl.gz"
        files = partition_paths(feed, parts)
        if not all(f.exists() for f in files):
            write_feed(feed, matches=args.matches, seed=args.seed, partitions=parts)
        lines = 0
        for f in files:
            with gzip.open(f) as lines_of:
                lines += sum(1 for _ in lines_of)
        tiny = tmp / "one-line.jsonl"
        with gzip.open(files[0]) as first:
            tiny.write_bytes(first.readline())
        print(
            f"{lines:,} lines in {len(files)} files ({args.matches} matches), {cores} cores, "
            f"{args.workers} worker(s) per process, load {_load()}"
        )

        domain = min(domain_only(files) for _ in range(args.rounds))
        print(f"  domain alone (LocalEngine, one stream): {lines / domain:>10,.0f} lines/s")
        startup = {n: replay([tiny], tmp / "work", n, args.workers).wall_s for n in counts}
        replays = Best("")
        for r in range(args.rounds):
            for n in counts:
                replays.add(r, n, replay(files, tmp / "work", n, args.workers), lines)
        lives = Best("live ")
        if args.live:
            whole = tmp / "whole.jsonl.gz"  # one file: the topics' keys split it
            write_feed(whole, matches=args.matches, seed=args.seed)
            kafka = KafkaSettings.from_env_and_args(args.kafka)
            for r in range(args.rounds):
                for n in counts:
                    lives.add(r, n, live(whole, tmp / "work", n, kafka, parts), lines)
        print(f"load after: {_load()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"replay over {len(files)} files:")
    same = replays.report(lines, counts, startup)
    if 1 in replays.wall:
        print(f"full replay at 1 process / domain alone: {domain / replays.wall[1]:.0%}")
    if args.live:
        print(f"live over {parts}-partition topics:")
        same = lives.report(lines, counts) and same
    if not same:
        raise SystemExit("the setups published different tables")


class Best:
    """Per process count, over rounds: the best wall time, the least CPU, the last tables."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.wall: dict[int, float] = {}
        self.cpu: dict[int, float] = {}
        self.digests: dict[int, tuple[tuple[str, int, int], ...]] = {}

    def add(self, round_: int, n: int, got: Run, lines: int) -> None:
        print(
            f"  {self.label}round {round_ + 1}  {n:2d} process(es) "
            f"{lines / got.wall_s:>10,.0f} lines/s  {got.wall_s:6.1f} s wall  "
            f"{got.cpu_s:6.1f} s CPU  {got.cpu_s / got.wall_s:5.2f} cores",
            flush=True,
        )
        self.wall[n] = min(self.wall.get(n, got.wall_s), got.wall_s)
        self.cpu[n] = min(self.cpu.get(n, got.cpu_s), got.cpu_s)
        self.digests[n] = got.digest

    def report(
        self, lines: int, counts: list[int], startup: dict[int, float] | None = None
    ) -> bool:
        """Print the figures against the first process count; whether the tables were the
        same at every count."""
        same = len(set(self.digests.values())) == 1
        rows = sum(r for _, r, _ in next(iter(self.digests.values())))
        print(f"  tables: {'identical' if same else 'DIFFERENT'} at every scale ({rows:,} rows)")
        base, wall, cpu = counts[0], self.wall, self.cpu
        print(f"  against {base} process(es) (best wall time, least CPU of each):")
        head = "  processes   lines/s  throughput  CPU µs/line  CPU/line"
        print(head + ("  start-up  start-up share" if startup else ""))
        for n in counts:
            line = (
                f"  {n:9d} {lines / wall[n]:>9,.0f}  x{wall[base] / wall[n]:9.2f}  "
                f"{cpu[n] / lines * 1e6:11.1f}  x{cpu[n] / cpu[base]:7.2f}"
            )
            if startup:
                line += f"  {startup[n]:6.1f} s  {startup[n] / wall[n]:13.0%}"
            print(line)
        return same


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
