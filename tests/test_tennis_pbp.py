"""The point-by-point tennis adapter against the real ATP 2017 file, and rows made wrong.

Data: Jeff Sackmann / Tennis Abstract `tennis_pointbypoint` (CC BY-NC-SA 4.0), read from
../shared/data (never copied into the repo).
"""

from __future__ import annotations

import csv
import gzip
import itertools
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from flows.sources import file_format, read_lines
from operators.adapters import tennis_pbp
from operators.adapters.tennis_pbp import (
    BadRecord,
    Converted,
    file_lines,
    native_lines,
    read_record,
    read_rows,
    walk,
)
from tests.conftest import shared_data

AO_FINAL = "10563803"  # Federer d. Nadal 6-4 3-6 6-1 3-6 6-3, Australian Open 2017


@pytest.fixture(scope="module")
def path() -> Path:
    return shared_data("tennis", "atp_main_2017.csv.gz")


@pytest.fixture(scope="module")
def rows(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def converted(path: Path) -> list[Converted]:
    return list(read_rows(path))


def _row(rows: list[dict[str, str]], pbp_id: str) -> dict[str, str]:
    return next(row for row in rows if row["pbp_id"] == pbp_id)


def _lines(row: dict[str, str], start_ts: int = 1_000_000_000_000) -> list[dict]:
    record = read_record(row)
    return list(native_lines(record, walk(record), start_ts))


# --- the whole file ---------------------------------------------------------------------------


def test_every_record_walks_to_its_score_and_winner_or_is_a_reject(
    converted: list[Converted], rows: list[dict[str, str]]
) -> None:
    assert len(converted) == len(rows) == 2148
    outcomes = Counter(
        c.reject["reason"]
        if c.reject
        else "retired"
        if c.walk and c.walk.retired is not None
        else "ok"
        for c in converted
    )
    print(f"\ntennis-pbp 2017: {dict(outcomes)}")
    # one row is in the file twice; four stop after two sets of a best of 5 (retirements)
    assert outcomes == {"ok": 2143, "retired": 4, "duplicate_match": 1}
    for item in converted:
        if item.walk is None:
            continue
        assert item.record is not None
        won = item.record.winner
        sets = [(g[won], g[1 - won]) for g in item.walk.score.set_games]
        assert sets == [(a, b) for a, b, _ in item.record.score]
        if item.walk.retired is None:
            assert item.walk.score.winner == won
        else:
            assert item.walk.retired == 1 - won and item.walk.score.winner is None


def test_the_file_becomes_time_ordered_lines_with_every_match_ended(path: Path) -> None:
    ends: dict[str, dict] = {}
    seqs: dict[str, int] = {}
    last_ts = 0
    rejects = []
    for line in file_lines(path):
        if line.get("reject"):
            rejects.append(line)
            continue
        assert line["ts"] >= last_ts
        last_ts = line["ts"]
        match_id = line["match_id"]
        assert line["seq"] == seqs.get(match_id, 0) + 1
        seqs[match_id] = line["seq"]
        if line["type"] == "match_end":
            ends[match_id] = line
    assert len(ends) == len(seqs) == 2147
    assert [r["reason"] for r in rejects] == ["duplicate_match"]
    assert rejects[0]["source"] == "atp_main_2017.csv.gz:842"


def test_replay_reads_it_by_name_and_by_its_header(path: Path) -> None:
    assert file_format(path) == "tennis-pbp"
    head = list(itertools.islice(read_lines(path, "tennis-pbp"), 3))
    assert head[0].rejected.endswith("duplicate_match\tpbp_id 10868533")
    first = msgspec.json.decode(head[1].data)
    assert first["type"] == "fixture" and first["sport"] == "tennis"


# --- one real match ---------------------------------------------------------------------------


def test_the_australian_open_final(rows: list[dict[str, str]]) -> None:
    row = _row(rows, AO_FINAL)
    lines = _lines(row)
    fixture = lines[0]
    assert fixture == {
        "v": 1,
        "provider": "tennis-pbp",
        "match_id": AO_FINAL,
        "seq": 1,
        "ts": 1_000_000_000_000 - 5 * 60_000,
        "type": "fixture",
        "sport": "tennis",
        "home": "Rafael Nadal",
        "away": "Roger Federer",
        "kickoff": 1_000_000_000_000,
        "best_of": 5,
        "first_server": "home",
        "final_set_tiebreak": False,
    }
    sets = [(s["home_games"], s["away_games"]) for s in lines if s["type"] == "set_end"]
    assert sets == [(4, 6), (6, 3), (1, 6), (6, 3), (3, 6)]
    assert lines[-1]["type"] == "match_end"
    assert (lines[-1]["home_score"], lines[-1]["away_score"]) == (2, 3)
    points = [line for line in lines if line["type"] == "point"]
    assert len(points) == sum(ch in "SARD" for ch in row["pbp"])
    # spread evenly over the recorded minutes, the last point at the end
    assert points[-1]["ts"] - 1_000_000_000_000 == int(row["wh_minutes"]) * 60_000
    aces = sum(1 for p in points if p.get("detail") == "ace")
    faults = sum(1 for p in points if p.get("detail") == "double_fault")
    assert (aces, faults) == (row["pbp"].count("A"), row["pbp"].count("D"))
    assert all(p["won_by"] == "server" for p in points if p.get("detail") == "ace")


def test_checks_follow_their_point_and_clock_beats_every_five_seconds(
    rows: list[dict[str, str]],
) -> None:
    lines = _lines(_row(rows, AO_FINAL))
    kinds = [line["type"] for line in lines]
    for i, kind in enumerate(kinds):
        if kind == "game_end":
            assert kinds[i - 1] in ("point",) and lines[i]["ts"] == lines[i - 1]["ts"]
        if kind == "set_end":
            assert kinds[i - 1] == "game_end"
    games = [line for line in lines if line["type"] == "game_end"]
    assert (games[0]["winner"], games[0]["home_games"], games[0]["away_games"]) == ("home", 1, 0)
    clocks = [line for line in lines if line["type"] == "clock"]
    assert [c["ts"] - clocks[0]["ts"] for c in clocks[:3]] == [0, 5_000, 10_000]
    assert (clocks[12]["minute"], clocks[12]["second"]) == (1, 5)
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))


def test_a_tiebreak_set_and_the_tournament_tiebreak_rule(rows: list[dict[str, str]]) -> None:
    row = next(r for r in rows if r["tny_name"].startswith("ATP") and "7-6" in r["score"])
    lines = _lines(row)
    assert lines[0]["best_of"] == 3 and lines[0]["final_set_tiebreak"] is True
    set_ends = [(s["home_games"], s["away_games"]) for s in lines if s["type"] == "set_end"]
    assert (7, 6) in set_ends or (6, 7) in set_ends


def test_a_retirement_ends_with_the_loser_retiring(converted: list[Converted]) -> None:
    item = next(c for c in converted if c.walk is not None and c.walk.retired is not None)
    assert item.record is not None and item.walk is not None
    lines = list(native_lines(item.record, item.walk, 0))
    retirement, end = lines[-2], lines[-1]
    loser = ("home", "away")[1 - item.record.winner]
    assert retirement["type"] == "retirement" and retirement["player"] == loser
    assert end["type"] == "match_end"
    assert (end["home_score"], end["away_score"]) == item.walk.score.sets


def test_no_details_when_the_record_has_no_ace_flag(rows: list[dict[str, str]]) -> None:
    row = next(r for r in rows if r["adf_flag"] == "0")
    assert all("detail" not in line for line in _lines(row) if line["type"] == "point")


def test_minutes_that_wrapped_at_midnight_get_a_day_back(rows: list[dict[str, str]]) -> None:
    row = next(r for r in rows if int(r["wh_minutes"]) < -1000)
    points = [line for line in _lines(row, 0) if line["type"] == "point"]
    assert points[-1]["ts"] == (int(row["wh_minutes"]) + 1440) * 60_000


# --- records made wrong -----------------------------------------------------------------------


def _sets(pbp: str, n: int) -> str:
    """The points of the first `n` sets."""
    return ".".join(pbp.split(".")[:n]) + "."


def _reason(row: dict[str, str]) -> str:
    (item,) = tennis_pbp.convert_rows([("test:2", "raw", row)])
    assert item.reject is not None
    return item.reject["reason"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r | {"pbp": r["pbp"].replace(";", "", 1)}, "game_marker_mismatch"),
        (lambda r: r | {"pbp": r["pbp"].replace(".", ";", 1)}, "set_marker_mismatch"),
        (lambda r: r | {"pbp": r["pbp"].rstrip(";.")[:-1]}, "score_mismatch"),
        (lambda r: r | {"pbp": _sets(r["pbp"], 4), "score": "6-4 3-6 6-1 3-6"}, "winner_mismatch"),
        (lambda r: r | {"pbp": r["pbp"] + ";SSSS"}, "points_after_match_end"),
        (lambda r: r | {"pbp": "X" + r["pbp"]}, "bad_point"),
        (lambda r: r | {"score": "6-4 3-6 6-1 3-6 7-5"}, "score_mismatch"),
        (lambda r: r | {"winner": "1"}, "score_mismatch"),
        (lambda r: r | {"score": "six-four"}, "bad_field:score"),
        (lambda r: r | {"date": "29/01/2017"}, "bad_field:date"),
        (lambda r: {k: v for k, v in r.items() if k != "server2"}, "missing_field:server2"),
    ],
)
def test_a_record_that_disagrees_with_itself_is_a_reject(
    rows: list[dict[str, str]], change, reason: str
) -> None:
    assert _reason(change(_row(rows, AO_FINAL))) == reason


def test_a_tiebreak_without_its_server_change_marks_is_a_reject(
    rows: list[dict[str, str]],
) -> None:
    row = next(r for r in rows if "/" in r["pbp"])
    assert _reason(row | {"pbp": row["pbp"].replace("/", "", 1)}) == "tiebreak_marker_mismatch"


def test_the_walk_raises_bad_record_for_the_flow_to_turn_into_data(
    rows: list[dict[str, str]],
) -> None:
    with pytest.raises(BadRecord):
        walk(read_record(_row(rows, AO_FINAL) | {"pbp": "SSSS;"}))


def test_the_tour_serve_average_is_the_files(converted: list[Converted]) -> None:
    from operators.tennis_pricing import TOUR_SERVE_WIN

    points = [p for c in converted if c.walk is not None for p in c.walk.points]
    share = sum(p.server_won for p in points) / len(points)
    assert len(points) == 352_821
    assert share == pytest.approx(TOUR_SERVE_WIN, abs=5e-5)
