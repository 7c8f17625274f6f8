"""Each real Betfair recording replayed, next to betfairlightweight's reading of the same lines.

Run from the repository root: `.venv/bin/python -m benchmarks.betfair_agreement`. Needs
../shared/data/betfair beside the repository and betfairlightweight (a test dependency).

Per file it prints: lines, markets, rejects by reason (from `oddsflow replay` into a real
DuckDB file), and how many lines leave oddsflow's market cache equal to betfairlightweight's
(best back of every active runner, last traded prices), whether the status changes and the
winner agree. The multi-market image is the one the input-limit test builds from the same
files (every market's first change and its cache at each status change, in one line).
The comparisons are the tests' own (tests/test_betfair_adapter.py), so this report and the
tests cannot drift apart.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

from tests.conftest import shared_data
from tests.test_betfair_adapter import (
    MARKET_FILES,
    SPORTS,
    Recording,
    published_transitions,
    read_lines,
    reference_states,
    run,
    transitions,
)
from tests.test_input_limits import big_image_file


def replayed(path: Path, work: Path) -> tuple[int, int, dict[str, int]]:
    """`oddsflow replay` of one file: (lines read, markets, rejects by reason)."""
    db = work / f"{path.name}.duckdb"
    done = subprocess.run(
        [sys.executable, "-m", "flows", "replay", str(path), "--db", str(db)],
        check=True,
        capture_output=True,
        text=True,
    )
    [read] = re.findall(r"^lines read\s+([\d,]+)", done.stdout, re.M)
    con = duckdb.connect(str(db), read_only=True)
    try:
        [(markets,)] = con.execute("SELECT count(DISTINCT match_id) FROM market_status").fetchall()
        rejects = dict(con.execute("SELECT reason, count(*) FROM rejects GROUP BY ALL").fetchall())
    finally:
        con.close()
    return int(read.replace(",", "")), markets, rejects


def agreement(name: str) -> str:
    """Lines after which oddsflow's cache equals betfairlightweight's, and the rest."""
    lines = read_lines(name)
    market_id = json.loads(lines[0])["mc"][0]["id"]
    ours = run(lines, name, market_id)
    rec = Recording(name, market_id, lines, ours, reference_states(lines, market_id))
    back = sum(
        (a.back if a else None) == (b.back if b else None)
        for a, b in zip(ours.states, rec.reference, strict=True)
    )
    ltp = sum(
        (a.ltp if a else None) == (b.ltp if b else None)
        for a, b in zip(ours.states, rec.reference, strict=True)
    )
    expected = transitions(rec.reference)
    status = published_transitions(ours.market_rows()) == expected
    last = rec.reference[-1]
    winner = last is not None and ours.states[-1] is not None
    winner = winner and ours.states[-1].winners == last.winners  # type: ignore[union-attr]
    n = len(lines)
    return (
        f"best back equal after {back:,}/{n:,} lines, ltp {ltp:,}/{n:,}, "
        f"{len(expected)} status changes {'equal' if status else 'DIFFER'}, "
        f"winner {'equal' if winner else 'DIFFERS'}"
    )


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = [shared_data("betfair", name) for name in (*MARKET_FILES, SPORTS)]
        big = big_image_file(work)
        print(f"{'file':<32} {'lines':>7} {'markets':>7}  rejects by reason")
        for path in [*files, big.path]:
            lines, markets, rejects = replayed(path, work)
            label = "45-market image (tests)" if path == big.path else path.name
            print(f"{label:<32} {lines:>7,} {markets:>7}  {rejects or 'none'}")
            if path.name in MARKET_FILES:
                print(f"{'':<32} betfairlightweight: {agreement(path.name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
