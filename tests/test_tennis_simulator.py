"""`oddsflow simulate --sport tennis|mixed`: tennis matches played from the model, their
incidents and bets, faults labelled with the real engine's reasons, football unchanged."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from operators.engine import LocalEngine
from operators.parse import RawLine
from operators.rows import Reject
from operators.settings import Rules
from operators.tennis_score import TennisFormat, play_point, start
from tooling.simulator import SimLine, main, simulate, write_feed
from tooling.tennis_simulator import quote

MATCHES, SEED = 60, 4


@pytest.fixture(scope="module")
def feed() -> list[SimLine]:
    return list(simulate(MATCHES, SEED, sport="tennis"))


@pytest.fixture(scope="module")
def matches(feed: list[SimLine]) -> dict[str, list[dict[str, Any]]]:
    """The valid `sim` lines of each match, in arrival order."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sim in feed:
        if sim.fault is None:
            line = json.loads(sim.line)
            if line.get("provider") == "sim":
                out[line["match_id"]].append(line)
    return out


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    first = write_feed(tmp_path / "a.jsonl", 6, 9, sport="tennis")
    second = write_feed(tmp_path / "b.jsonl", 6, 9, sport="tennis")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert first.lines == second.lines > 1000


def test_a_mixed_feed_keeps_each_football_match_as_a_football_feed_has_it() -> None:
    def by_match(lines: list[SimLine]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for sim in lines:
            if sim.fault is None and '"provider":"sim"' in sim.line:
                out[json.loads(sim.line)["match_id"]].append(sim.line)
        return out

    mixed = by_match(list(simulate(6, 2, sport="mixed")))
    football = by_match(list(simulate(6, 2)))
    tennis = [m for m, lines in mixed.items() if '"sport":"tennis"' in lines[0]]
    assert tennis == ["sim-2-2", "sim-2-4", "sim-2-6"]
    for match_id in ("sim-2-1", "sim-2-3", "sim-2-5"):
        assert mixed[match_id] == football[match_id]


def test_the_points_make_the_score_the_provider_reports(
    matches: dict[str, list[dict[str, Any]]],
) -> None:
    endings: Counter[str] = Counter()
    for match_id, lines in matches.items():
        fixture = lines[0]
        assert fixture["type"] == "fixture" and fixture["sport"] == "tennis"
        fmt = TennisFormat(fixture["best_of"], fixture["final_set_tiebreak"])
        score = start(0 if fixture["first_server"] == "home" else 1)
        stopped = None
        for line in lines[1:]:
            kind = line["type"]
            if kind == "point":
                assert stopped is None
                result = play_point(score, fmt, line["won_by"] == "server")
                score = result.score
            elif kind == "game_end":
                assert result.game_won_by == ("home", "away").index(line["winner"])
                games = score.set_games[-1] if result.set_won_by is not None else score.games
                assert (line["home_games"], line["away_games"]) == games
            elif kind == "set_end":
                assert (line["home_sets"], line["away_sets"]) == score.sets
            elif kind in ("retirement", "walkover"):
                stopped = kind
            elif kind == "match_end":
                assert (line["home_score"], line["away_score"]) == score.sets
                assert (score.winner is not None) != (stopped is not None), match_id
        assert lines[-1]["type"] == "match_end"
        endings[stopped or "won"] += 1
    assert endings["won"] >= MATCHES - 5 and endings["retirement"] + endings["walkover"] >= 1


def test_incidents_and_heartbeats(matches: dict[str, list[dict[str, Any]]]) -> None:
    kinds: Counter[str] = Counter()
    for lines in matches.values():
        kinds.update(line["type"] for line in lines)
        clocks = [line["ts"] for line in lines if line["type"] == "clock"]
        assert all(b - a == 5_000 for a, b in itertools.pairwise(clocks))
        starts = [line for line in lines if line.get("state") == "start"]
        ends = [line for line in lines if line.get("state") == "end"]
        assert [s["type"] for s in starts] == [e["type"] for e in ends]
    assert kinds["challenge"] >= 2 * 100 and kinds["suspension"] >= 2
    assert kinds["medical_timeout"] >= 2
    details = Counter(line.get("detail") for ls in matches.values() for line in ls)
    assert details["ace"] > details["double_fault"] > 0


def test_bets_are_on_tennis_markets_at_the_offered_price(feed: list[SimLine]) -> None:
    bets = [json.loads(s.line) for s in feed if s.fault is None and '"type":"bet"' in s.line]
    markets = Counter(bet["market"].split("_")[0] for bet in bets)
    assert {"match", "set", "game", "games"} <= set(markets)
    assert markets["match"] > markets["games"]
    # a pre-match bet on the match winner is priced from the fixture's serve probabilities
    fixtures = {
        json.loads(s.line)["match_id"]: json.loads(s.line)
        for s in feed
        if '"type":"fixture"' in s.line and s.fault is None
    }
    checked = 0
    for bet in bets:
        fixture = fixtures[bet["match_id"]]
        if bet["ts"] >= fixture["kickoff"] or bet["market"] != "match":
            continue
        fmt = TennisFormat(fixture["best_of"], fixture["final_set_tiebreak"])
        first = start(0 if fixture["first_server"] == "home" else 1)
        book = quote(first, fmt, (fixture["home_serve"], fixture["away_serve"]), Rules().margin)
        if bet["price"] == f"{book['match'][bet['selection']][1]:.2f}":
            checked += 1
    assert checked >= 10


def test_every_fault_gets_its_reason_from_the_real_engine() -> None:
    """The engine's own parser and validator, line by line: every fault is rejected with its
    label, no valid line is rejected (tennis and football matches in one feed)."""
    feed = list(simulate(16, 8, sport="mixed", fault_rate=0.02))
    engine = LocalEngine()
    rejected: dict[str, list[str]] = defaultdict(list)
    for n, sim in enumerate(feed, start=1):
        for r in engine.line(RawLine(f"feed:{n}", sim.line.encode())):
            if isinstance(r, Reject):
                rejected[r.source].append(r.reason)
    for r in engine.finish():
        if isinstance(r, Reject):
            rejected[r.source].append(r.reason)
    expected = {f"feed:{n}": [s.fault] for n, s in enumerate(feed, start=1) if s.fault}
    assert len(expected) > 100
    assert dict(rejected) == expected


def test_the_command_line_takes_the_sport(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "t.jsonl.gz"
    assert main(["--matches", "2", "--seed", "1", "--sport", "tennis", "--out", str(out)]) == 0
    assert "2 matches" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--matches", "2", "--seed", "1", "--sport", "golf", "--out", str(out)])
