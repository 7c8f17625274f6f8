"""Replay throughput at 1, 2, 4, ... processes, against one process and against the domain
alone, measured in one invocation.

    python -m benchmarks.scaling_bench [--matches 600] [--files 16] [--processes 1,2,4,8,16]
                                       [--rounds 2] [--workers 1]

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
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from sinks.tables import tables


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float
    digest: tuple[tuple[str, int, int], ...]  # per table: rows and a hash of their values


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def digest(db: Path) -> tuple[tuple[str, int, int], ...]:
    """Every table's row count and an order-free hash of its rows."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = []
        for name in tables():
            sql = f"SELECT count(*), bit_xor(hash(t)) FROM {name} t"
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
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    parts = args.files or max(counts)

    from flows.simulator import partition_paths, write_feed

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
        wall: dict[int, float] = {}
        cpu: dict[int, float] = {}
        digests: dict[int, tuple[tuple[str, int, int], ...]] = {}
        for r in range(args.rounds):
            for n in counts:
                got = replay(files, tmp / "work", n, args.workers)
                print(
                    f"  round {r + 1}  {n:2d} process(es) {lines / got.wall_s:>10,.0f} lines/s  "
                    f"{got.wall_s:6.1f} s wall  {got.cpu_s:6.1f} s CPU  "
                    f"{got.cpu_s / got.wall_s:5.2f} cores",
                    flush=True,
                )
                wall[n] = min(wall.get(n, got.wall_s), got.wall_s)
                cpu[n] = min(cpu.get(n, got.cpu_s), got.cpu_s)
                digests[n] = got.digest
        print(f"load after: {_load()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    same = len(set(digests.values())) == 1
    rows = sum(r for _, r, _ in next(iter(digests.values())))
    print(f"tables: {'identical' if same else 'DIFFERENT'} at every scale ({rows:,} rows)")
    base = counts[0]
    print(f"against {base} process(es) (best wall time, least CPU of each):")
    print("  processes   lines/s  throughput  CPU µs/line  CPU/line  start-up  start-up share")
    for n in counts:
        print(
            f"  {n:9d} {lines / wall[n]:>9,.0f}  x{wall[base] / wall[n]:9.2f}  "
            f"{cpu[n] / lines * 1e6:11.1f}  x{cpu[n] / cpu[base]:7.2f}  {startup[n]:6.1f} s  "
            f"{startup[n] / wall[n]:13.0%}"
        )
    if 1 in wall:
        print(f"full replay at 1 process / domain alone: {domain / wall[1]:.0%}")
    if not same:
        raise SystemExit("the setups published different tables")


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
