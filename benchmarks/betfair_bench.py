"""How fast the Betfair adapter processes a real Exchange Stream recording, next to what
`json.loads` alone takes over the same lines in the same run.

Run from the repository root: `.venv/bin/python -m benchmarks.betfair_bench [FILE]`
(default: the cricket MATCH_ODDS recording in ../shared/data/betfair). The lines are read
into memory first; each figure is the best of 5 passes over all of them. "adapter" is what
the flow does per line: `market_key`, then `BetfairProcessor.process` (fresh processors
each pass), every row built.
"""

from __future__ import annotations

import bz2
import gzip
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from operators.adapters.betfair import BetfairProcessor, market_key
from operators.parse import RawLine

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "betfair" / "1.200806927.gz"
PASSES = 5


def read_lines(path: Path) -> list[bytes]:
    opener = bz2.open if path.suffix == ".bz2" else gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        return [line.rstrip(b"\r\n") for line in file if line.strip()]


def best_seconds(sweep: Callable[[], object]) -> float:
    """The least disturbed of `PASSES` timed passes."""
    times = []
    for _ in range(PASSES):
        started = time.perf_counter()
        sweep()
        times.append(time.perf_counter() - started)
    return min(times)


def adapter_pass(raws: list[RawLine]) -> int:
    processors: dict[str, BetfairProcessor] = {}
    rows = 0
    for raw in raws:
        key = market_key(raw.data)
        processor = processors.get(key)
        if processor is None:
            processor = processors[key] = BetfairProcessor()
        rows += len(processor.process(raw))
    return rows


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    lines = read_lines(path)
    raws = [RawLine(f"{path.name}:{n}", data) for n, data in enumerate(lines, 1)]
    n, size = len(lines), sum(map(len, lines))
    decode = msgspec.json.decode
    runs: dict[str, Callable[[], object]] = {
        "json.loads": lambda: [json.loads(line) for line in lines],
        "msgspec.json.decode": lambda: [decode(line) for line in lines],
        "adapter": lambda: adapter_pass(raws),
    }
    seconds = {name: best_seconds(sweep) for name, sweep in runs.items()}
    rows = adapter_pass(raws)
    print(f"{path.name}: {n} lines, {size / 1e6:.1f} MB, {rows} rows; best of {PASSES} passes")
    for name, s in seconds.items():
        print(f"{name:>20}: {s * 1000:7.1f} ms  {n / s:>10,.0f} lines/s")
    ratio = seconds["adapter"] / seconds["json.loads"]
    print(f"{'adapter / json.loads':>20}: {ratio:.2f}x the time of json.loads alone")


if __name__ == "__main__":
    main()
