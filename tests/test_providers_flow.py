"""Real provider recordings through the replay flow: format picked from the file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from flows.sources import merged_lines, read_lines
from operators.engine import LocalEngine
from operators.rows import MarketStatusRow
from tests.conftest import replay, shared_data, table

BETFAIR = ("1.200806927.gz", "1.166811431.bz2", "1.197931750.gz")


def test_each_betfair_file_replays_as_the_adapter_reads_it(tmp_path: Path) -> None:
    for name in BETFAIR:
        path = shared_data("betfair", name)
        db = replay([path], tmp_path / f"{name}.duckdb")
        engine = LocalEngine()
        direct = [
            r
            for raw in read_lines(path)
            for r in engine.line(raw)
            if isinstance(r, MarketStatusRow)
        ]
        expected = sorted(
            (r.match_id, r.market, r.version, r.status, r.reason, r.ts) for r in direct
        )
        got = table(
            db,
            "SELECT match_id, market, version, status, reason, ts FROM market_history ORDER BY ALL",
        )
        assert got == expected and got, name
        assert table(db, "SELECT count(*) FROM rejects")[0][0] == 0
        settled = table(db, "SELECT status, winner FROM market_status")
        assert settled and all(s == "SETTLED" and w for s, w in settled), name


def test_the_sports_data_stream_merged_by_time_suspends_at_match_complete(tmp_path: Path) -> None:
    market = shared_data("betfair", "1.200806927.gz")
    sports = shared_data("betfair", "sportsdata-1.200806927.gz")
    times = [json.loads(raw.data).get("pt", 0) for raw in merged_lines([market, sports])]
    assert times == sorted(times)
    db = tmp_path / "cricket.duckdb"
    from bytewax.testing import run_main

    from flows.replay import get_flow

    run_main(get_flow([market, sports], db, merge=True))
    reasons = dict(table(db, "SELECT reason, min(ts) FROM market_history GROUP BY reason"))
    complete = reasons["sportsdata:MATCH_COMPLETE"]
    assert table(
        db,
        f"SELECT status FROM market_history WHERE ts = {complete} "
        "AND reason = 'sportsdata:MATCH_COMPLETE'",
    ) == [("SUSPENDED",)]
    # after the sports feed said MATCH_COMPLETE, oddsflow offered no more prices
    assert table(db, f"SELECT count(*) FROM prices WHERE ts > {complete}")[0][0] == 0
    assert table(db, "SELECT status, winner FROM market_status") == [("SETTLED", "228749")]


def test_the_statsbomb_file_replays_with_its_goals_and_red_card(tmp_path: Path) -> None:
    events = shared_data("statsbomb", "15986_events.json.gz")
    db = replay([events], tmp_path / "sb.duckdb")
    assert table(
        db, "SELECT home, away, home_score, away_score, home_red, away_red, status FROM matches"
    ) == [("Barcelona", "Girona", 2, 2, 1, 0, "ended")]
    assert table(
        db,
        "SELECT reason, count(*) FROM market_history WHERE market = '1x2' AND "
        "status = 'SUSPENDED' GROUP BY ALL ORDER BY ALL",
    ) == [("goal_possible", 4), ("red_card", 1)]


def test_malformed_provider_input_is_rejected_with_provider_and_reason(tmp_path: Path) -> None:
    good = gzip.decompress(shared_data("betfair", "1.197931750.gz").read_bytes()).splitlines()
    bad_betfair = tmp_path / "bf.jsonl"
    bad_betfair.write_bytes(
        b"\n".join(
            [
                good[0],
                good[1][: len(good[1]) // 2],  # truncated JSON
                b'{"op":"mcm","id":1,"pt":1650384000000,"clk":"x"}',  # no mc, not a heartbeat
                b'{"op":"mcm","pt":"soon","mc":[]}',  # wrong type
                *good[2:],
            ]
        )
        + b"\n"
    )
    events = json.loads(
        gzip.decompress(shared_data("statsbomb", "15986_events.json.gz").read_bytes())
    )
    del events[10]["type"]
    bad_sb = tmp_path / "15986_events.json"
    bad_sb.write_text(json.dumps(events))
    db = replay([bad_betfair, bad_sb], tmp_path / "bad.duckdb")
    rejects = table(db, "SELECT provider, reason, source FROM rejects ORDER BY source")
    assert rejects == [
        ("statsbomb", "missing_field:type", "15986_events.json:event 11"),
        ("betfair", "malformed_json", "bf.jsonl:2"),
        ("betfair", "missing_field:mc", "bf.jsonl:3"),
        ("betfair", "invalid_field:pt", "bf.jsonl:4"),
    ]
    # the valid lines around them are unaffected
    assert table(db, "SELECT home_score, away_score FROM matches") == [(2, 2)]
    valid = len(good) - 1  # all but the truncated one
    assert table(db, "SELECT count(*) FROM feed_events WHERE provider = 'betfair'")[0][0] == valid
