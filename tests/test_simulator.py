"""The feed simulator: determinism, a well-formed native feed, realistic match structure,
the bet mix, and faults labelled with exactly the reason the real validator gives."""

from __future__ import annotations

import gzip
import itertools
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from operators.engine import LocalEngine
from operators.events import Event
from operators.parse import RawLine
from operators.rows import Reject
from tooling.simulator import FAULT_KINDS, HARMLESS_TYPES, SimLine, main, simulate, write_feed

MATCHES, SEED = 100, 3
FAULT_CODE = re.compile(
    r"duplicate|out_of_order|malformed_json|unknown_type|unknown_match|ts_out_of_range"
    r"|unknown_goal|(invalid_field|missing_field):[a-z_]+"
)
MARKETS = {"1x2": {"home", "draw", "away"}} | {f"ou_{n}.5": {"over", "under"} for n in range(5)}


@pytest.fixture(scope="module")
def feed() -> list[SimLine]:
    return list(simulate(MATCHES, SEED))


@pytest.fixture(scope="module")
def valid(feed: list[SimLine]) -> list[dict[str, Any]]:
    return [json.loads(sim.line) for sim in feed if sim.fault is None]


def by_match(lines: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The valid `sim` feed lines of each match, in arrival order."""
    matches: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in lines:
        if d.get("provider") == "sim":
            matches[d["match_id"]].append(d)
    yield from matches.items()


# -- determinism --------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_feed(tmp_path: Path) -> None:
    first = write_feed(tmp_path / "a.jsonl.gz", 4, 11)
    second = write_feed(tmp_path / "b.jsonl.gz", 4, 11)
    other = write_feed(tmp_path / "c.jsonl.gz", 4, 12)
    a, b, c = ((tmp_path / n).read_bytes() for n in ("a.jsonl.gz", "b.jsonl.gz", "c.jsonl.gz"))
    assert a == b and a != c
    assert first.lines == second.lines and first.faults == second.faults
    assert other.lines != first.lines or c != a
    text = gzip.decompress(a).decode().splitlines()
    assert text == [sim.line for sim in simulate(4, 11)]


# -- a well-formed native feed --------------------------------------------------------------------


def test_every_valid_line_decodes_as_a_native_event(feed: list[SimLine]) -> None:
    decoder = msgspec.json.Decoder(Event)
    for sim in feed:
        if sim.fault is None:
            decoder.decode(sim.line)
            assert sim.line == json.dumps(json.loads(sim.line), separators=(",", ":"))


def test_seq_runs_one_by_one_per_provider_and_match(feed: list[SimLine]) -> None:
    """Valid lines arrive in rising seq; with the out_of_order lines (sent late, so rejected,
    so their successor is accepted with a gap) they are 1, 2, 3, ... exactly once. The
    `sim-faults` lines have their own run."""
    seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
    late: dict[tuple[str, str], list[int]] = defaultdict(list)
    for sim in feed:
        faulty_provider = sim.line.startswith('{"v":1,"provider":"sim-faults"')
        if sim.fault not in (None, "out_of_order") and not faulty_provider:
            continue
        d = json.loads(sim.line)
        if "seq" in d:
            key = (d["provider"], d["match_id"])
            (late if sim.fault == "out_of_order" else seqs)[key].append(d["seq"])
    for key, arrived in seqs.items():
        assert arrived == sorted(arrived)
        assert sorted(arrived + late[key]) == list(range(1, len(arrived) + len(late[key]) + 1))
    assert sum(p == "sim" for p, _ in seqs) == MATCHES
    assert sum(len(v) for v in late.values()) >= 10


def test_arrival_order_is_event_time_with_matches_overlapping(valid: list[dict[str, Any]]) -> None:
    """Valid lines arrive in ts order (only an out_of_order line runs late)."""
    stamps = [d["ts"] for d in valid]
    assert stamps == sorted(stamps)
    kickoffs = sorted(d["kickoff"] for d in valid if d["type"] == "fixture")
    assert kickoffs[1] - kickoffs[0] < 30 * 60_000  # the next match starts in play


def test_every_match_has_the_shape_of_a_football_match(valid: list[dict[str, Any]]) -> None:
    for match_id, lines in by_match(valid):
        kinds = [d["type"] for d in lines]
        fixture, end = lines[0], lines[-1]
        assert match_id.startswith(f"sim-{SEED}-")
        assert kinds[0] == "fixture" and kinds[-1] == "match_end"
        assert fixture["home"] != fixture["away"]
        assert 0.6 <= fixture["home_rate"] <= 2.2 and 0.6 <= fixture["away_rate"] <= 2.2
        assert 5 * 60_000 <= fixture["kickoff"] - fixture["ts"] <= 30 * 60_000
        periods = [(d["type"], d["period"]) for d in lines if "period" in d]
        assert periods == [
            ("period_start", 1),
            ("period_end", 1),
            ("period_start", 2),
            ("period_end", 2),
        ]
        ts = {p: d["ts"] for d in lines if "period" in d for p in [(d["type"], d["period"])]}
        half_time = ts[("period_start", 2)] - ts[("period_end", 1)]
        assert 15 * 60_000 <= half_time <= 16 * 60_000
        assert 45 * 60_000 <= ts[("period_end", 1)] - ts[("period_start", 1)] <= 55 * 60_000
        assert end["ts"] > ts[("period_end", 2)]


def test_clock_heartbeats_at_most_5s_apart_in_play_half_time_included(
    valid: list[dict[str, Any]],
) -> None:
    for _, lines in by_match(valid):
        at = {(d["type"], d.get("period")): d["ts"] for d in lines}
        clocks = [d for d in lines if d["type"] == "clock"]
        beats = [at["period_start", 1], *(d["ts"] for d in clocks), at["match_end", None]]
        assert max(b - a for a, b in itertools.pairwise(beats)) <= 5_000
        half_time = {
            (d["minute"], d["second"])
            for d in clocks
            if at["period_end", 1] < d["ts"] < at["period_start", 2]
        }
        assert half_time == {(45, 0)}


def test_match_end_is_the_score_of_the_goal_lines_and_the_red_cards(
    valid: list[dict[str, Any]],
) -> None:
    undone = 0
    for _, lines in by_match(valid):
        states: dict[str, str] = {}
        score = {"home": 0, "away": 0}
        reds = {"home": 0, "away": 0}
        for d in lines:
            if d["type"] == "goal":
                before = states.get(d["goal_id"])
                assert (before, d["state"]) in {
                    (None, "possible"),
                    ("possible", "confirmed"),
                    ("possible", "disallowed"),
                    ("confirmed", "disallowed"),
                }
                score[d["team"]] += (d["state"] == "confirmed") - (before == "confirmed")
                undone += before == "confirmed"
                states[d["goal_id"]] = d["state"]
            elif d["type"] == "card" and d["color"] != "yellow":
                reds[d["team"]] += 1
        end = lines[-1]
        assert (end["home_score"], end["away_score"]) == (score["home"], score["away"])
        assert (end["home_red"], end["away_red"]) == (reds["home"], reds["away"])
    assert undone >= 1  # a confirmed goal ruled out after VAR happens in this feed


def test_penalties_score_only_through_their_goal_lines(valid: list[dict[str, Any]]) -> None:
    scored = 0
    for _, lines in by_match(valid):
        for i, d in enumerate(lines):
            if d["type"] == "penalty" and d["state"] == "scored":
                scored += 1
                nxt = lines[i + 1]
                assert (nxt["type"], nxt["state"], nxt["team"]) == ("goal", "possible", d["team"])
    assert scored >= 5


def test_second_yellows_go_to_booked_players_and_no_one_plays_after_a_red(
    valid: list[dict[str, Any]],
) -> None:
    second_yellows = 0
    for _, lines in by_match(valid):
        booked, off = set(), set()
        for d in lines:
            who = (d.get("team"), d.get("player"))
            if d["type"] in ("foul", "corner", "card"):
                assert who not in off
            if d["type"] == "card":
                if d["color"] == "second_yellow":
                    assert who in booked
                    second_yellows += 1
                booked.add(who)
                if d["color"] != "yellow":
                    off.add(who)
            elif d["type"] == "substitution":
                off.add((d["team"], d["player_out"]))
    assert second_yellows >= 1


# -- bets ---------------------------------------------------------------------------------------


def test_users_deposit_before_betting_on_priced_markets(valid: list[dict[str, Any]]) -> None:
    first_deposit: dict[str, int] = {}
    window = {d["match_id"]: [d["ts"], None] for d in valid if d["type"] == "fixture"}
    for d in valid:
        if d["type"] == "match_end":
            window[d["match_id"]][1] = d["ts"]
    bets = [d for d in valid if d["type"] == "bet"]
    for d in valid:
        if d["type"] == "deposit":
            first_deposit.setdefault(d["user_id"], d["ts"])
            assert re.fullmatch(r"\d+\.\d\d", d["amount"])
    assert len(first_deposit) == 100
    for bet in bets:
        assert first_deposit[bet["user_id"]] < bet["ts"]
        start, end = window[bet["match_id"]]
        assert start < bet["ts"] < end
        selections = MARKETS.get(bet["market"], {"home", "none", "away"})
        if bet["market"] == "ou_6.5":  # the one market no match offers: unknown_market
            continue
        assert re.fullmatch(r"1x2|ou_[0-4]\.5|goal_[1-9]\d*", bet["market"])
        assert bet["selection"] in selections
        assert re.fullmatch(r"\d+\.\d\d", bet["stake"]) and re.fullmatch(r"\d+\.\d\d", bet["price"])
    assert abs(len(bets) / MATCHES - 20) <= 1


def test_the_bet_mix_includes_what_the_engine_must_refuse(
    valid: list[dict[str, Any]], feed: list[SimLine]
) -> None:
    bets = [d for d in valid if d["type"] == "bet"]
    assert len({d["bet_id"] for d in bets}) == len(bets)
    resent = [json.loads(s.line) for s in feed if s.fault == "duplicate"]
    assert any(d.get("type") == "bet" for d in resent)  # a few bets sent twice
    possible: defaultdict[str, list[int]] = defaultdict(list)
    first_goal: dict[str, int] = {}
    for d in valid:
        if d["type"] == "goal" and d["state"] == "possible":
            possible[d["match_id"]].append(d["ts"])
        if d["type"] == "goal" and d["state"] == "confirmed":
            first_goal.setdefault(d["match_id"], d["ts"])
    just_before = [b for b in bets if any(0 < t - b["ts"] < 5_000 for t in possible[b["match_id"]])]
    after_goal = [
        b
        for b in bets
        if b["market"] == "ou_0.5" and b["ts"] > first_goal.get(b["match_id"], 1 << 62)
    ]
    deposited: defaultdict[str, Decimal] = defaultdict(Decimal)
    for d in valid:
        if d["type"] == "deposit":
            deposited[d["user_id"]] += Decimal(d["amount"])
    too_big = [b for b in bets if Decimal(b["stake"]) > deposited[b["user_id"]]]
    assert len(just_before) >= 10 and len(after_goal) >= 10 and len(too_big) >= 10


# -- faults -------------------------------------------------------------------------------------


def test_faults_come_in_the_configured_share_with_known_codes(feed: list[SimLine]) -> None:
    faults = Counter(sim.fault for sim in feed if sim.fault is not None)
    share = sum(faults.values()) / len(feed)
    assert 0.004 <= share <= 0.006, share
    assert all(FAULT_CODE.fullmatch(code) for code in faults), faults
    kinds = {code.split(":")[0] for code in faults}
    assert kinds == set(FAULT_KINDS)  # every kind the simulator can inject turns up
    # Without injected faults only a bettor's resent bet (one bet, the repeat rejected) remains.
    clean = [sim for sim in simulate(5, SEED, fault_rate=0) if sim.fault]
    assert all(s.fault == "duplicate" and json.loads(s.line)["type"] == "bet" for s in clean)


def test_every_fault_gets_its_reason_from_the_real_validator(feed: list[SimLine]) -> None:
    """The engine's own parser and validator, line by line in arrival order: every fault is
    rejected with its label, no valid line is rejected at all."""
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
    assert dict(rejected) == expected


def test_faults_sit_between_their_matchs_fixture_and_match_end(feed: list[SimLine]) -> None:
    state: dict[str, str] = {}
    out_of_order = 0
    for i, sim in enumerate(feed):
        try:
            d = json.loads(sim.line)
        except json.JSONDecodeError:
            continue
        match = d.get("match_id", "").removesuffix("-ghost")
        if sim.fault is None and d.get("provider") == "sim":
            state[match] = "ended" if d["type"] == "match_end" else "open"
        elif sim.fault is not None and match:
            assert state.get(match) == "open", sim
        if sim.fault == "out_of_order":
            out_of_order += 1
            successor = json.loads(feed[i - 1].line)
            assert d["type"] in HARMLESS_TYPES
            assert (successor["match_id"], successor["seq"]) == (d["match_id"], d["seq"] + 1)
        if sim.fault == "duplicate" and d.get("type") == "bet":  # resent later, same bet_id
            assert any(p.fault is None and f'"bet_id":"{d["bet_id"]}"' in p.line for p in feed[:i])
        elif sim.fault == "duplicate":
            assert SimLine(sim.line, None) in feed[max(i - 400, 0) : i]
    assert out_of_order >= 10


# -- scale and the command line ---------------------------------------------------------------


def test_200_matches_generate_quickly() -> None:
    started = time.perf_counter()
    lines = sum(1 for _ in simulate(200, 1))
    seconds = time.perf_counter() - started
    print(f"\n200 matches: {lines} lines in {seconds:.2f} s = {lines / seconds:,.0f} lines/s")
    assert lines > 250_000 and seconds < 30


def test_cli_writes_the_file_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "feed.jsonl"
    assert main(["--matches", "2", "--seed", "5", "--out", str(out), "--fault-rate", "0"]) == 0
    printed = capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert lines == [sim.line for sim in simulate(2, 5, fault_rate=0)]
    assert re.match(
        rf"wrote {re.escape(str(out))}: {len(lines)} lines, 2 matches, 3[89] bets, ", printed
    )
    assert printed.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--bets-per-match" in capsys.readouterr().out
