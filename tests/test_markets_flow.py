"""Market invariants over whole replays: a 200-match simulated feed and a real StatsBomb match."""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from pathlib import Path

import msgspec

from operators.adapters.statsbomb import read_match
from operators.markets import winner
from operators.settings import DEFAULT_RULES
from tests.conftest import replay, shared_data, table


def _holds(db: Path) -> dict[str, list[tuple[int, int, str]]]:
    """Per match, (trigger ts, end of the hold, what) for every suspension trigger in the
    accepted feed: the hold ends at its resolution or min_suspension_ms, whichever is later."""
    lines = defaultdict(list)
    for match_id, ts, payload in table(
        db, "SELECT match_id, ts, payload FROM feed_events ORDER BY match_id, seq"
    ):
        lines[match_id].append((ts, json.loads(payload)))
    holds: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    hold = DEFAULT_RULES.min_suspension_ms
    for match_id, events in lines.items():
        end = events[-1][0]
        for i, (ts, o) in enumerate(events):
            kind, state = o["type"], o.get("state")
            if (kind, state) in {("goal", "possible"), ("penalty", "awarded"), ("var", "start")}:

                def resolves(x: dict, o: dict = o) -> bool:
                    if o["type"] == "goal":
                        return x.get("goal_id") == o["goal_id"] and x["state"] != "possible"
                    if o["type"] == "penalty":
                        return (
                            x["type"] == "penalty"
                            and x["team"] == o["team"]
                            and x["state"] != "awarded"
                        )
                    return x["type"] == "var" and x["state"] == "end"

                resolved = next((t for t, x in events[i + 1 :] if resolves(x)), end)
            elif kind == "card" and o["color"] != "yellow":
                resolved = ts
            else:
                continue
            holds[match_id].append((ts, max(resolved, ts + hold), f"{kind} {state or ''}"))
    return holds


def test_no_market_is_open_while_an_incident_holds_it(sim200_db: Path) -> None:
    history = defaultdict(list)
    for match_id, market, version, status, ts in table(
        sim200_db,
        "SELECT match_id, market, version, status, ts FROM market_history "
        "ORDER BY match_id, market, version",
    ):
        history[(match_id, market)].append((ts, version, status))
    holds = _holds(sim200_db)
    assert sum(map(len, holds.values())) > 500
    checked = 0
    for (match_id, _market), rows in history.items():
        times = [r[0] for r in rows]
        for start, end, what in holds[match_id]:
            at_start = bisect.bisect_right(times, start) - 1  # the status once `start` is done
            if at_start < 0:
                continue
            assert rows[at_start][2] != "OPEN", (match_id, _market, what, start)
            inside = rows[at_start + 1 : bisect.bisect_left(times, end)]
            assert all(r[2] != "OPEN" for r in inside), (match_id, _market, what, start, end)
            checked += 1
    assert checked > 5_000


def test_every_reopening_publishes_prices_of_the_same_version(sim200_db: Path) -> None:
    unpriced = table(
        sim200_db,
        "SELECT h.match_id, h.market, h.version FROM market_history h "
        "ANTI JOIN prices p USING (match_id, market, version) WHERE h.status = 'OPEN'",
    )
    assert unpriced == []
    opened = table(sim200_db, "SELECT count(*) FROM market_history WHERE status = 'OPEN'")
    assert opened[0][0] > 10_000


def test_every_market_settles_with_the_winner_of_the_final_score(sim200_db: Path) -> None:
    scorers: dict[str, list[str]] = defaultdict(list)
    confirmed: dict[tuple[str, str], str] = {}
    for match_id, payload in table(
        sim200_db,
        "SELECT match_id, payload FROM feed_events WHERE type = 'goal' ORDER BY match_id, seq",
    ):
        o = json.loads(payload)
        if o["state"] == "possible":
            confirmed[(match_id, o["goal_id"])] = ""
        elif o["state"] == "confirmed":
            confirmed[(match_id, o["goal_id"])] = o["team"]
        else:
            confirmed[(match_id, o["goal_id"])] = ""
    for (match_id, _), team in confirmed.items():
        if team:
            scorers[match_id].append(team)
    scores = {
        m: (h, a)
        for m, h, a in table(sim200_db, "SELECT match_id, home_score, away_score FROM matches")
    }
    rows = table(sim200_db, "SELECT match_id, market, status, winner FROM market_status")
    assert {r[2] for r in rows} == {"SETTLED"}
    for match_id, market, _, won in rows:
        home, away = scores[match_id]
        assert won == winner(market, home, away, scorers[match_id]), (match_id, market)
    assert len(rows) >= 200 * 7


def test_the_real_statsbomb_match_suspends_at_goals_and_the_red_card(tmp_path: Path) -> None:
    events = shared_data("statsbomb", "15986_events.json.gz")
    lineups = shared_data("statsbomb", "15986_lineups.json")
    feed = tmp_path / "15986.jsonl"
    lines = [
        o for o in read_match(events, lineups, kickoff_ts=1_518_000_000_000) if not o.get("reject")
    ]
    feed.write_bytes(b"\n".join(msgspec.json.encode(o) for o in lines) + b"\n")
    db = replay([feed], tmp_path / "15986.duckdb")

    assert table(db, "SELECT home, away, home_score, away_score, home_red FROM matches") == [
        ("Barcelona", "Girona", 2, 2, 1)
    ]
    assert table(db, "SELECT reason FROM rejects") == []
    suspensions = table(
        db,
        "SELECT reason, count(*) FROM market_history WHERE market = '1x2' "
        "AND status = 'SUSPENDED' GROUP BY reason ORDER BY reason",
    )
    assert suspensions == [("goal_possible", 4), ("red_card", 1)]
    red_ts = next(o["ts"] for o in lines if o["type"] == "card" and o["color"] != "yellow")
    home_win = table(
        db,
        "SELECT ts, price FROM prices WHERE market = '1x2' AND selection = 'home' ORDER BY version",
    )
    before = [p for t, p in home_win if t < red_ts][-1]
    after = next(p for t, p in home_win if t > red_ts)
    assert after > before  # Barcelona's win price lengthens: P(Barcelona win) drops
    winners = dict(table(db, "SELECT market, winner FROM market_status"))
    assert winners["1x2"] == "draw" and winners["ou_3.5"] == "over"
    assert [winners[f"goal_{n}"] for n in range(1, 6)] == ["home", "away", "away", "home", "none"]
