"""Every real ATP match of 2017 (../shared/data/tennis) replayed through the real command,
`oddsflow replay FILE --format tennis-pbp`, into a DuckDB file: each match ends with its
record's final score (sets and the games of every set) and winner, every market settled,
and the dashboard's match page shows a tennis match in its own terms."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import queries
from operators.adapters import tennis_pbp
from tests.conftest import shared_data

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
SIDES = ("home", "away")


@pytest.fixture(scope="module")
def records() -> dict[str, tennis_pbp.Converted]:
    """Every row of the file, by match id, as the adapter reads it (record or reject)."""
    path = shared_data("tennis", "atp_main_2017.csv.gz")
    return {(c.record.pbp_id if c.record else c.source): c for c in tennis_pbp.read_rows(path)}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The published file of a real replay of the whole file, on two processes (pricing
    after every point is most of its time, and matches spread over the processes)."""
    path = tmp_path_factory.mktemp("tennis") / "tennis.duckdb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "flows",
            "replay",
            str(shared_data("tennis", "atp_main_2017.csv.gz")),
            "--format",
            "tennis-pbp",
            "--processes",
            "2",
            "--db",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
    )
    return path


def sql(db: Path, query: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(query).fetchall()


def expected(record: tennis_pbp.Record) -> tuple[str, int, int, str]:
    """(set scores home first, home sets, away sets, winner side) from the record, whose
    score is written from the winner's side."""
    w = record.winner
    sets = [(won, lost) if w == 0 else (lost, won) for won, lost, _ in record.score]
    text = " ".join(f"{h}-{a}" for h, a in sets)
    home = sum(1 for h, a in sets if h > a)
    return text, home, len(sets) - home, SIDES[w]


def test_every_real_match_ends_with_its_records_score_and_winner(
    db: Path, records: dict[str, tennis_pbp.Converted]
) -> None:
    played = {r.pbp_id: r for c in records.values() if (r := c.record) is not None}
    assert len(played) > 2000
    rows = sql(
        db,
        """
        SELECT t.match_id, t.set_scores, t.home_sets, t.away_sets, t.result, m.status,
               ms.winner
        FROM tennis_scores t JOIN matches m USING (match_id)
        JOIN market_status ms ON ms.match_id = t.match_id AND ms.market = 'match'
        """,
    )
    got = {row[0]: row[1:] for row in rows}
    assert set(got) == set(played)
    wrong = []
    for match_id, record in played.items():
        sets, home, away, winner = expected(record)
        set_scores, home_sets, away_sets, result, status, match_winner = got[match_id]
        if (set_scores, home_sets, away_sets, status, match_winner) != (
            sets,
            home,
            away,
            "ended",
            winner,
        ) or result not in (winner, f"retired:{SIDES[1 - record.winner]}"):
            wrong.append((match_id, got[match_id], (sets, home, away, winner)))
    assert wrong == []


def test_every_market_of_every_match_is_settled_and_no_line_is_rejected(
    db: Path, records: dict[str, tennis_pbp.Converted]
) -> None:
    assert sql(db, "SELECT status, count(*) FROM market_status GROUP BY ALL") == [
        ("SETTLED", sql(db, "SELECT count(*) FROM market_status")[0][0])
    ]
    adapter_rejects = sum(1 for c in records.values() if c.reject is not None)
    reasons = sql(db, "SELECT reason, count(*) FROM rejects GROUP BY ALL ORDER BY ALL")
    assert sum(n for _, n in reasons) == adapter_rejects  # only records the adapter refused
    voided = sql(
        db,
        "SELECT count(*) FROM market_status WHERE market = 'match' AND winner = 'void'",
    )
    assert voided == [(0,)]  # retirements in the data come between sets: never void


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, str], AppTest]:
    def run(path: Path, match_id: str) -> AppTest:
        monkeypatch.setenv(queries.DB_ENV, str(path))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params["page"] = "match"
        at.run()
        at.selectbox(key="match").set_value(match_id).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return run


def test_the_match_page_shows_a_tennis_match_in_its_own_terms(
    db: Path, page: Callable[[Path, str], AppTest]
) -> None:
    match_id, sets, home_sets, away_sets = sql(
        db,
        """
        SELECT match_id, set_scores, home_sets, away_sets FROM tennis_scores
        ORDER BY points_played DESC, match_id LIMIT 1
        """,
    )[0]
    at = page(db, match_id)
    shown = {m.label: (m.value, m.delta) for m in at.metric}
    assert shown["Sets"] == (f"{home_sets}-{away_sets}", sets)
    assert {"Games", "Points", "Status"} <= set(shown)
    assert "Red cards" not in shown
    assert shown["Status"][0].startswith("ended")
