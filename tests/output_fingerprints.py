"""Fingerprints of everything a replay emits, to show that a change of code leaves the
outputs alone: every DuckDB table and view (from a real `oddsflow replay`), and every
Kafka topic's messages (the engine's rows through the Kafka serde, per key in order).

`python -m tests.output_fingerprints --write` records them in `tests/golden/outputs.json`;
`tests/test_outputs_unchanged.py` replays the same feeds and compares. Record them again
only for a change that is meant to change the outputs, and say so in its commit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "outputs.json"
SAMPLE = ROOT / "data" / "sample.jsonl.gz"
# The 200-match feed: football and tennis, bets, deposits and faulty lines.
SIMULATED = ("--matches", "200", "--seed", "21", "--sport", "mixed")


def feeds(work: Path) -> dict[str, Path]:
    """The feeds fingerprinted: the bundled sample and a simulated 200-match feed."""
    simulated = work / "mixed-200.jsonl.gz"
    if not simulated.exists():
        _oddsflow("simulate", *SIMULATED, "--out", str(simulated))
    return {"sample": SAMPLE, "mixed-200": simulated}


def table_fingerprints(feed: Path, work: Path, processes: int = 1) -> dict[str, str]:
    """Replay `feed` into a fresh DuckDB file: table or view -> "rows md5"."""
    db = work / f"{feed.name}.{processes}.duckdb"
    db.unlink(missing_ok=True)
    _oddsflow("replay", str(feed), "--db", str(db), "--processes", str(processes))
    out: dict[str, str] = {}
    with duckdb.connect(str(db), read_only=True) as con:
        names = con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'main' ORDER BY table_name"
        ).fetchall()
        for (name,) in names:
            count, digest = con.execute(
                f"SELECT count(*), md5(coalesce(string_agg(CAST(t AS VARCHAR), chr(10) "
                f"ORDER BY CAST(t AS VARCHAR)), '')) FROM \"{name}\" AS t"
            ).fetchone()  # type: ignore[misc]
            out[name] = f"{count} {digest}"
    return out


def topic_fingerprints(feed: Path) -> dict[str, str]:
    """Every row the engine emits for `feed`, through the Kafka serde: topic -> "messages
    md5", the messages grouped by key in the order they were emitted (a consumer's order)."""
    from connectors.kafka import to_messages
    from flows.sources import read_lines
    from operators.engine import LocalEngine

    engine = LocalEngine()
    by_topic: dict[str, dict[str, list[bytes]]] = defaultdict(lambda: defaultdict(list))
    count: dict[str, int] = defaultdict(int)

    def take(rows: list[object]) -> None:
        for topic, key, value in to_messages(("", rows)):
            by_topic[topic][key].append(value)
            count[topic] += 1

    for raw in read_lines(feed):
        take(list(engine.line(raw)))
    take(list(engine.finish()))
    out: dict[str, str] = {}
    for topic in sorted(by_topic):
        h = hashlib.md5()
        for key in sorted(by_topic[topic]):
            h.update(key.encode() + b"\0")
            for value in by_topic[topic][key]:
                h.update(value + b"\n")
        out[topic] = f"{count[topic]} {h.hexdigest()}"
    return out


def fingerprints(work: Path) -> dict[str, dict[str, dict[str, str]]]:
    """feed -> {"tables": ..., "topics": ...}."""
    return {
        name: {"tables": table_fingerprints(path, work), "topics": topic_fingerprints(path)}
        for name, path in feeds(work).items()
    }


def _oddsflow(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-m", "flows", *args],
        check=True,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "fingerprints")
    parser.add_argument("--write", action="store_true", help=f"record them in {GOLDEN}")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    found = fingerprints(args.work)
    text = json.dumps(found, indent=1, sort_keys=True) + "\n"
    if args.write:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
        print(f"wrote {GOLDEN}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
