"""The StatsBomb adapter against a real match (Barcelona 2-2 Girona, StatsBomb open data).

Data: StatsBomb (Hudl) open data, read from ../shared/data (never copied into the repo).
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from operators.adapters.statsbomb import read_match, to_native
from operators.events import Event
from operators.parse import Limits

DATA = Path(__file__).parents[1].parent / "shared" / "data" / "statsbomb"
EVENTS = DATA / "15986_events.json.gz"
LINEUPS = DATA / "15986_lineups.json"
KICKOFF = 1_537_728_300_000  # 2018-09-23 18:45 UTC, the real kickoff
MINUTE_MS = 60_000


def _require_data() -> None:
    if EVENTS.exists() and LINEUPS.exists():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"StatsBomb test data missing under {DATA}")
    pytest.skip(f"StatsBomb test data missing under {DATA}")


@pytest.fixture(scope="module")
def raw_events() -> list[dict]:
    _require_data()
    with gzip.open(EVENTS, "rt", encoding="utf-8") as file:
        return json.load(file)


@pytest.fixture(scope="module")
def lines() -> list[dict]:
    _require_data()
    started = time.perf_counter()
    out = list(read_match(EVENTS, LINEUPS, kickoff_ts=KICKOFF))
    elapsed = time.perf_counter() - started
    print(f"\nStatsBomb 15986: {len(out)} lines in {elapsed * 1000:.0f} ms (load + convert)")
    return out


def _of(lines: list[dict], kind: str, **fields: Any) -> list[dict]:
    return [
        line
        for line in lines
        if line.get("type") == kind and all(line[k] == v for k, v in fields.items())
    ]


def _clock_before(lines: list[dict], ts: int) -> tuple[int, int]:
    """The match clock of the last heartbeat at or before `ts`."""
    clock = [line for line in _of(lines, "clock") if line["ts"] <= ts][-1]
    return clock["minute"], clock["second"]


# --- the real match ----------------------------------------------------------------------


def test_fixture_comes_first_with_sides_from_the_lineups(lines: list[dict]) -> None:
    first = lines[0]
    assert first["type"] == "fixture" and first["seq"] == 1
    assert (first["home"], first["away"]) == ("Barcelona", "Girona")
    assert first["kickoff"] == KICKOFF and first["ts"] < KICKOFF
    assert (first["home_rate"], first["away_rate"]) == (1.45, 1.15)
    assert first["match_id"] == "15986" and first["provider"] == "statsbomb"


def test_match_ends_two_all_after_the_last_period(lines: list[dict]) -> None:
    last = lines[-1]
    assert last["type"] == "match_end"
    assert (last["home_score"], last["away_score"]) == (2, 2)
    assert last["ts"] > _of(lines, "period_end")[-1]["ts"]


def test_four_goals_possible_then_confirmed_for_the_right_sides_and_minutes(
    lines: list[dict],
) -> None:
    possible = _of(lines, "goal", state="possible")
    confirmed = _of(lines, "goal", state="confirmed")
    assert [g["team"] for g in possible] == [
        "home",
        "away",
        "away",
        "home",
    ]  # Messi, Stuani x2, Piqué
    assert [g["goal_id"] for g in confirmed] == [g["goal_id"] for g in possible]
    assert len({g["goal_id"] for g in possible}) == 4
    assert all(c["ts"] - p["ts"] == 2_000 for p, c in zip(possible, confirmed, strict=True))
    minutes = [_clock_before(lines, g["ts"])[0] for g in possible]
    for got, expected in zip(minutes, [18, 44, 50, 62], strict=True):
        assert abs(got - expected) <= 1, minutes
    assert not _of(lines, "penalty")  # no penalties in this match


def test_lenglet_is_sent_off_at_32_minutes(lines: list[dict]) -> None:
    reds = [c for c in _of(lines, "card") if c["color"] in ("red", "second_yellow")]
    assert len(reds) == 1
    (red,) = reds
    assert red["team"] == "home" and "Lenglet" in red["player"]
    assert _clock_before(lines, red["ts"])[0] == 32


def test_periods_use_the_real_first_half_length_and_a_15_minute_break(lines: list[dict]) -> None:
    starts, ends = _of(lines, "period_start"), _of(lines, "period_end")
    assert [s["period"] for s in starts] == [1, 2] and [e["period"] for e in ends] == [1, 2]
    assert starts[0]["ts"] == KICKOFF
    assert ends[0]["ts"] == KICKOFF + 48 * MINUTE_MS + 1_108  # first-half Half End 00:48:01.108
    assert starts[1]["ts"] == ends[0]["ts"] + 15 * MINUTE_MS
    assert ends[1]["ts"] == starts[1]["ts"] + 48 * MINUTE_MS + 8_184


def test_clock_heartbeats_leave_no_gap_over_5s_and_hold_at_half_time(lines: list[dict]) -> None:
    start = _of(lines, "period_start")[0]["ts"]
    in_play = [line["ts"] for line in lines if line["ts"] >= start]
    gaps = [b - a for a, b in itertools.pairwise(in_play)]
    assert max(gaps) <= 5_000
    half_time = _of(lines, "period_end", period=1)[0]["ts"]
    second_half = _of(lines, "period_start", period=2)[0]["ts"]
    held = [c for c in _of(lines, "clock") if half_time < c["ts"] < second_half]
    assert held and all((c["minute"], c["second"]) == (45, 0) for c in held)
    for period, base_minute in ((1, 0), (2, 45)):
        start = _of(lines, "period_start", period=period)[0]["ts"]
        end = _of(lines, "period_end", period=period)[0]["ts"]
        for c in _of(lines, "clock"):
            if start <= c["ts"] <= end:
                assert (
                    c["minute"] * 60 + c["second"] == base_minute * 60 + (c["ts"] - start) // 1000
                )


def test_substitutions_corners_and_cards_are_all_mapped(
    lines: list[dict], raw_events: list[dict]
) -> None:
    corners = [
        e
        for e in raw_events
        if e["type"]["name"] == "Pass" and e["pass"].get("type", {}).get("name") == "Corner"
    ]
    assert len(_of(lines, "corner")) == len(corners) == 10
    assert len(_of(lines, "foul")) == 28
    assert len(_of(lines, "card", color="yellow")) == 8
    subs = _of(lines, "substitution")
    assert len(subs) == 6
    assert {
        "team": "home",
        "player": "Samuel Yves Umtiti",
        "player_out": "Ousmane Dembélé",
    }.items() <= subs[1].items()


def test_every_line_is_a_valid_native_event_in_order(lines: list[dict]) -> None:
    decoder = msgspec.json.Decoder(Event)
    for line in lines:
        decoder.decode(msgspec.json.encode(line))
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert all(a["ts"] <= b["ts"] for a, b in itertools.pairwise(lines))
    assert not [line for line in lines if line.get("reject")]


def test_malformed_events_become_rejects_and_the_rest_still_converts(
    lines: list[dict], raw_events: list[dict]
) -> None:
    broken: list[Any] = [*raw_events]
    broken.insert(100, {"id": "no-type", "index": 101, "period": 1, "timestamp": "00:02:00.000"})
    broken.insert(200, 42)
    broken.insert(300, {"type": {"name": "Shot"}, "period": 1, "timestamp": "two minutes"})

    out = list(
        to_native(broken, None, match_id="15986", kickoff_ts=KICKOFF, source="15986_events.json.gz")
    )

    rejects = [line for line in out if line.get("reject")]
    assert [(r["reason"], r["source"]) for r in rejects] == [
        ("missing_field:type", "15986_events.json.gz:event 101"),
        ("bad_shape:not_an_object", "15986_events.json.gz:event 201"),
        ("bad_field:timestamp", "15986_events.json.gz:event 301"),
    ]
    assert json.loads(rejects[0]["raw"])["id"] == "no-type" and rejects[1]["raw"] == "42"
    assert all(r["provider"] == "statsbomb" and r["match_id"] == "15986" for r in rejects)
    assert all(KICKOFF <= r["ts"] < KICKOFF + 6 * MINUTE_MS for r in rejects)
    assert [line for line in out if not line.get("reject")] == lines  # nothing else changed


# --- cases the real match does not have --------------------------------------------------

BARCA, GIRONA = {"id": 217, "name": "Barcelona"}, {"id": 211, "name": "Girona"}


def _ev(kind: str, period: int, timestamp: str, team: dict, **extra: Any) -> dict:
    return {"id": f"{kind}-{period}-{timestamp}", "type": {"name": kind}, "period": period,
            "timestamp": timestamp, "team": team, **extra}  # fmt: skip


def _match(*middle: dict, periods: tuple[int, ...] = (1, 2)) -> list[dict]:
    events = [
        _ev("Starting XI", 1, "00:00:00.000", BARCA),
        _ev("Starting XI", 1, "00:00:00.000", GIRONA),
    ]
    for period in periods:
        events.append(_ev("Half Start", period, "00:00:00.000", BARCA))
        events.extend(e for e in middle if e["period"] == period)
        length = "00:45:00.000" if period <= 2 else "00:15:00.000"
        events.append(_ev("Half End", period, length, BARCA))
    events.extend(e for e in middle if e["period"] not in periods)
    return events


def _convert(events: list[dict]) -> list[dict]:
    return list(to_native(events, None, match_id="m", kickoff_ts=KICKOFF))


def _incidents(lines: list[dict]) -> list[tuple]:
    skip = {"fixture", "clock", "period_start", "period_end"}
    return [
        (line["type"], line.get("team"), line.get("state") or line.get("color"))
        for line in lines
        if line["type"] not in skip
    ]


def test_own_goal_counts_once_for_the_other_team() -> None:
    lines = _convert(
        _match(
            _ev("Own Goal Against", 1, "00:10:00.000", BARCA, player={"name": "Piqué"}),
            _ev("Own Goal For", 1, "00:10:00.000", GIRONA),
        )
    )
    assert _incidents(lines) == [
        ("goal", "away", "possible"),
        ("goal", "away", "confirmed"),
        ("match_end", None, None),
    ]
    assert (lines[-1]["home_score"], lines[-1]["away_score"]) == (0, 1)


def test_penalties_are_awarded_before_the_shot_and_the_shootout_scores_nothing() -> None:
    scored = {"outcome": {"name": "Goal"}, "type": {"name": "Penalty"}}
    saved = {"outcome": {"name": "Saved"}, "type": {"name": "Penalty"}}
    lines = _convert(
        _match(
            _ev("Shot", 1, "00:20:00.000", GIRONA, shot=scored),
            _ev("Shot", 2, "00:30:00.000", BARCA, shot=saved),
            _ev("Shot", 5, "00:01:00.000", BARCA, shot=scored),
            _ev("Half Start", 5, "00:00:00.000", BARCA),
        )
    )
    assert _incidents(lines) == [
        ("penalty", "away", "awarded"),
        ("goal", "away", "possible"),
        ("penalty", "away", "scored"),
        ("goal", "away", "confirmed"),
        ("penalty", "home", "awarded"),
        ("penalty", "home", "missed"),
        ("match_end", None, None),
    ]
    awarded = _of(lines, "penalty", state="awarded")[0]
    assert _of(lines, "goal", state="possible")[0]["ts"] - awarded["ts"] == 5_000
    assert (lines[-1]["home_score"], lines[-1]["away_score"]) == (0, 1)
    assert [p["period"] for p in _of(lines, "period_start")] == [1, 2]


def test_bad_behaviour_second_yellow_and_a_card_without_a_player() -> None:
    second = {"card": {"name": "Second Yellow"}}
    lines = _convert(
        _match(
            _ev(
                "Bad Behaviour",
                1,
                "00:05:00.000",
                GIRONA,
                player={"name": "Stuani"},
                bad_behaviour=second,
            ),
            _ev("Bad Behaviour", 1, "00:06:00.000", GIRONA, bad_behaviour=second),
            _ev("Foul Committed", 1, "00:07:00.000", {"id": 999, "name": "Nobody"}),
        )
    )
    assert _incidents([line for line in lines if not line.get("reject")])[0] == (
        "card",
        "away",
        "second_yellow",
    )
    assert [r["reason"] for r in lines if r.get("reject")] == [
        "missing_field:player",
        "unknown_team",
    ]


def test_extra_time_periods_and_breaks() -> None:
    lines = _convert(_match(periods=(1, 2, 3, 4)))
    starts = {s["period"]: s["ts"] - KICKOFF for s in _of(lines, "period_start")}
    # 45 + 15 break + 45 + 5 break + 15 + 1 change of ends + 15
    assert starts == {1: 0, 2: 60 * MINUTE_MS, 3: 110 * MINUTE_MS, 4: 126 * MINUTE_MS}
    assert _clock_before(lines, KICKOFF + 108 * MINUTE_MS) == (90, 0)  # held before extra time
    assert _clock_before(lines, KICKOFF + 126 * MINUTE_MS + 5_000) == (105, 5)
    assert _clock_before(lines, lines[-1]["ts"]) == (120, 0)


def test_read_match_takes_plain_json_and_rejects_a_non_array(tmp_path: Path) -> None:
    plain = tmp_path / "777_events.json"
    plain.write_text(json.dumps(_match()), encoding="utf-8")
    lines = list(read_match(plain, kickoff_ts=KICKOFF))
    assert lines[0]["match_id"] == "777" and lines[-1]["type"] == "match_end"

    wrong = tmp_path / "778_events.json"
    wrong.write_text('{"not": "an array"}', encoding="utf-8")
    assert [(r["reason"], r["source"]) for r in read_match(wrong, kickoff_ts=KICKOFF)] == [
        ("bad_shape:not_a_json_array", "778_events.json")
    ]


def test_a_file_over_the_statsbomb_limit_is_one_reject_and_is_never_decoded(
    tmp_path: Path,
) -> None:
    events = tmp_path / "777_events.json"
    events.write_text(json.dumps(_match()), encoding="utf-8")
    size = events.stat().st_size
    tight = Limits(max_statsbomb_bytes=size - 1)
    assert [
        (r["reason"], r["source"], r["match_id"], r["detail"])
        for r in read_match(events, limits=tight, kickoff_ts=KICKOFF)
    ] == [
        (
            "line_too_long",
            "777_events.json",
            "777",
            f"over {size - 1} bytes, the statsbomb file limit (ODDSFLOW_MAX_STATSBOMB_BYTES)",
        )
    ]
    exact = list(read_match(events, limits=Limits(max_statsbomb_bytes=size), kickoff_ts=KICKOFF))
    assert exact[-1]["type"] == "match_end"
    # lineups over the limit: the match converts without them
    lineups = tmp_path / "777_lineups.json"
    lineups.write_text(json.dumps([{"team_id": 1, "pad": "x" * size}]), encoding="utf-8")
    lines = list(
        read_match(events, lineups, limits=Limits(max_statsbomb_bytes=size), kickoff_ts=KICKOFF)
    )
    assert [r["reason"] for r in lines if r.get("reject")] == ["lineups_line_too_long"]
    assert lines[-1]["type"] == "match_end"


def test_nesting_deeper_than_pythons_json_decodes_is_a_reject(tmp_path: Path) -> None:
    deep = tmp_path / "779_events.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")  # a RecursionError before
    assert [(r["reason"], r["source"]) for r in read_match(deep, kickoff_ts=KICKOFF)] == [
        ("bad_json:RecursionError", "779_events.json")
    ]
