"""Replay throughput with 2 processes against 1, and with recovery on against off, on the
same feed, measured in one invocation.

    python -m benchmarks.scaling_bench [--matches 150] [--rounds 2] [--feed FILE]

Every run is the real command, `python -m flows replay FEED --db ...`, in a fresh child
process: 1 process, 2 worker threads, `--processes 2` (a local cluster), and 1 process with
`--recovery-dir` at the default snapshot interval and at 1 s. Rounds alternate the setups;
for each, the best wall time and the least CPU are kept. CPU is user + system time of the
run and all its processes (CPU / wall: the cores it kept busy); on a machine shared with
other work the CPU ratios are the steadier figure (the load average is printed). Every run
must publish the same tables (counted).
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

SETUPS: dict[str, list[str]] = {
    "1 process": [],
    "2 workers (threads)": ["--workers", "2"],
    "2 processes": ["--processes", "2"],
    "recovery, snapshot 10 s": ["--recovery-dir", "{store}"],
    "recovery, snapshot 1 s": ["--recovery-dir", "{store}", "--snapshot-s", "1"],
}


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float
    rows: int


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def published_rows(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return sum(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in tables)
    finally:
        con.close()


def run(feed: Path, work: Path, options: list[str]) -> Run:
    """One replay from scratch (new database, new recovery store)."""
    for old in work.glob("*"):
        if old.is_dir():
            for f in old.glob("*"):
                f.unlink()
            old.rmdir()
        else:
            old.unlink()
    db, store = work / "bench.duckdb", work / "recovery"
    command = [sys.executable, "-m", "flows", "replay", str(feed), "--db", str(db)]
    command += [o.format(store=store) for o in options]
    cpu, started = children_cpu(), time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    return Run(wall, children_cpu() - cpu, published_rows(db))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--matches", type=int, default=150, help="simulated matches")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--feed", type=Path, help="replay this feed instead of simulating one")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="oddsflow-scaling-") as tmp:
        feed = args.feed
        if feed is None:
            from flows.simulator import write_feed

            feed = Path(tmp) / "feed.jsonl.gz"
            write_feed(feed, matches=args.matches, seed=args.seed)
        with gzip.open(feed) if feed.suffix == ".gz" else feed.open("rb") as f:
            lines = sum(1 for _ in f)
        work = Path(tmp) / "work"
        work.mkdir()
        print(f"{feed.name}: {lines:,} lines, {os.cpu_count()} cores, load {_load()}")

        wall: dict[str, float] = {}
        cpu: dict[str, float] = {}
        rows: dict[str, int] = {}
        for r in range(args.rounds):
            for name, options in SETUPS.items():
                got = run(feed, work, options)
                print(
                    f"  round {r + 1}  {name:24s} {lines / got.wall_s:>8,.0f} lines/s  "
                    f"{got.wall_s:6.1f} s wall  {got.cpu_s:6.1f} s CPU  "
                    f"{got.cpu_s / got.wall_s:4.2f} cores"
                )
                wall[name] = min(wall.get(name, got.wall_s), got.wall_s)
                cpu[name] = min(cpu.get(name, got.cpu_s), got.cpu_s)
                rows[name] = got.rows
        print(f"load after: {_load()}")

    assert len(set(rows.values())) == 1, f"the setups published different tables: {rows}"
    print("against 1 process (best wall time, least CPU of each):")
    for name in SETUPS:
        if name != "1 process":
            print(
                f"  {name:24s} throughput x{wall['1 process'] / wall[name]:.2f}, "
                f"CPU per line x{cpu[name] / cpu['1 process']:.2f}"
            )


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
