"""Point-by-point tennis records (one match a CSV row) -> native tennis feed lines.

Data: Jeff Sackmann / Tennis Abstract `tennis_pointbypoint` (CC BY-NC-SA 4.0): credit the
source; non-commercial use only.

`read_record` checks a row's fields; `walk` plays its points through
`operators.tennis_score.play_point`, so a record must agree with itself: its game, set and
tiebreak markers where the score puts them, its final score and winner where the points
end. A record that fails is a reject with a reason, never dropped; one whose points stop
between sets of an unfinished match is a retirement of the loser. `file_lines` lays every
match out in event time, its points spread over its recorded minutes, with the provider's
score checks, heartbeats and the result. The record format and the lines in full:
docs/feed-format.md, its tennis-pbp section.
"""

from __future__ import annotations

import csv
import gzip
import heapq
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from operators import parse
from operators.parse import Limits
from operators.tennis_score import PointResult, TennisFormat, TennisScore, play_point, start

Line = dict[str, Any]

PROVIDER = "tennis-pbp"
FIELDS = ("pbp_id", "date", "tny_name", "server1", "server2", "winner", "pbp", "score")
FIXTURE_LEAD_MS = 5 * 60_000
DAY_START = timedelta(hours=10)  # UTC: the data has dates, not times
START_STAGGER_MS = 10 * 60_000  # the n-th match of a day starts n times this after DAY_START
HEARTBEAT_MS = 5_000
RETIREMENT_DELAY_MS = 30_000
MATCH_END_DELAY_MS = 1_000
# A point's length where the recorded minutes give none within PLAUSIBLE_POINT_S (a typical
# pace in the data).
NOMINAL_POINT_S = 40.0
PLAUSIBLE_POINT_S = (20.0, 90.0)

SLAMS_NO_FINAL_TIEBREAK = ("AustralianOpen", "FrenchOpen", "Wimbledon")
SLAMS = (*SLAMS_NO_FINAL_TIEBREAK, "USOpen")
DAVIS_CUP_WORLD_GROUP = "DavisCup"
# `pbp` has one character a point (below), `;` after a game, `.` after a set and `/` at each
# change of server inside a tiebreak.
SERVER_WON = {
    "S": (True, None),
    "A": (True, "ace"),
    "R": (False, None),
    "D": (False, "double_fault"),
}
SIDES = ("home", "away")
_SET_SCORE = re.compile(r"(\d+)-(\d+)(?:\((\d+)\))?")


class BadRecord(ValueError):
    """A record that cannot become a match: `reason` (and `detail`) go into its reject."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Record:
    """One CSV row, checked; players by index: 0 served first (home), 1 (away)."""

    pbp_id: str
    date: datetime
    tournament: str
    players: tuple[str, str]
    winner: int
    pbp: str
    score: tuple[tuple[int, int, int | None], ...]  # per set: winner's, loser's games, tb pts
    adf: bool
    minutes: int | None  # as recorded (None: missing)


@dataclass(frozen=True, slots=True)
class Point:
    server_won: bool
    detail: str | None  # "ace" / "double_fault", recorded only where `adf` is on
    result: PointResult


@dataclass(frozen=True, slots=True)
class Walk:
    """A record played through: every point and the result, checked against the record."""

    fmt: TennisFormat
    points: tuple[Point, ...]
    score: TennisScore  # after the last point
    retired: int | None  # the player who retired, when the points stop before the end


def read_record(row: Mapping[str, str | None]) -> Record:
    """A CSV row as a `Record`; BadRecord names the missing or malformed field."""
    values = {}
    for name in FIELDS:
        value = row.get(name)
        if value is None or not value.strip():
            raise BadRecord(f"missing_field:{name}")
        values[name] = value.strip()
    try:
        date = datetime.strptime(values["date"], "%d %b %y").replace(tzinfo=UTC)
    except ValueError as err:
        raise BadRecord("bad_field:date") from err
    if values["winner"] not in ("1", "2"):
        raise BadRecord("bad_field:winner")
    sets = [_SET_SCORE.fullmatch(part) for part in values["score"].split()]
    if not sets or any(m is None for m in sets):
        raise BadRecord("bad_field:score")
    minutes = (row.get("wh_minutes") or "").strip()
    if minutes and not re.fullmatch(r"-?\d+", minutes):
        raise BadRecord("bad_field:wh_minutes")
    return Record(
        pbp_id=values["pbp_id"],
        date=date,
        tournament=values["tny_name"],
        players=(values["server1"], values["server2"]),
        winner=int(values["winner"]) - 1,
        pbp=values["pbp"],
        score=tuple(
            (int(m[1]), int(m[2]), int(m[3]) if m[3] is not None else None)
            for m in sets
            if m is not None
        ),
        adf=(row.get("adf_flag") or "").strip() == "1",
        minutes=int(minutes) if minutes else None,
    )


def match_format(record: Record) -> TennisFormat:
    """Best of 3 or 5 and the final-set tiebreak from the tournament (2017 rules)."""
    name = record.tournament
    slam = any(key in name for key in SLAMS)
    winner_sets = sum(1 for won, lost, _ in record.score if won > lost)
    world_group = name == DAVIS_CUP_WORLD_GROUP and winner_sets != 2
    return TennisFormat(
        best_of=5 if slam or world_group else 3,
        final_set_tiebreak=not any(key in name for key in SLAMS_NO_FINAL_TIEBREAK),
    )


def walk(record: Record) -> Walk:
    """Every point of `record` through the score; BadRecord where the record disagrees."""
    fmt = match_format(record)
    score = start(0)
    points: list[Point] = []
    tiebreaks: dict[int, tuple[int, int]] = {}  # set index -> the tiebreak's final points
    text = record.pbp
    for i, char in enumerate(text):
        if char in ";./":
            continue
        if char not in SERVER_WON:
            raise BadRecord("bad_point", f"{char!r} at {i}")
        if score.winner is not None:
            raise BadRecord("points_after_match_end", f"at {i}")
        server_won, detail = SERVER_WON[char]
        tiebreak = score.in_tiebreak(fmt)
        result = play_point(score, fmt, server_won)
        if tiebreak and result.set_won_by is not None:
            points_after = list(score.points)
            points_after[result.game_won_by or 0] += 1
            tiebreaks[len(score.set_games)] = (points_after[0], points_after[1])
        _check_markers(text, i, score, result, tiebreak)
        points.append(Point(server_won, detail if record.adf else None, result))
        score = result.score
    retired = _check_end(record, fmt, score, tiebreaks)
    return Walk(fmt, tuple(points), score, retired)


def _check_markers(
    text: str, i: int, before: TennisScore, result: PointResult, tiebreak: bool
) -> None:
    """The marker after point `i` must say what the score says happened: `.` after a set,
    `;` after any other game, `/` where the server changes inside a tiebreak."""
    after = text[i + 1] if i + 1 < len(text) else ""
    if (result.set_won_by is not None) != (
        after == "." or (after == "" and result.set_won_by is not None)
    ):
        raise BadRecord("set_marker_mismatch", f"at {i}")
    ended_game = result.game_won_by is not None
    if ended_game != (after in (";", ".") or (after == "" and ended_game)):
        raise BadRecord("game_marker_mismatch", f"at {i}")
    changed = result.score.server != before.server
    if tiebreak and not ended_game and (after == "/") != changed:
        raise BadRecord("tiebreak_marker_mismatch", f"at {i}")


def _check_end(
    record: Record, fmt: TennisFormat, score: TennisScore, tiebreaks: dict[int, tuple[int, int]]
) -> int | None:
    """The walk's end against the record's score and winner; the retired player, if any."""
    w = record.winner
    played = [(g[w], g[1 - w]) for g in score.set_games]
    if score.games != (0, 0):
        played.append((score.games[w], score.games[1 - w]))
    recorded = [(won, lost) for won, lost, _ in record.score]
    if played != recorded:
        raise BadRecord("score_mismatch", f"points give {played}, the record {recorded}")
    for n, (_, _, tb_points) in enumerate(record.score):
        if tb_points is not None and n in tiebreaks:
            loser_points = tiebreaks[n][1 - w] if score.set_games[n][w] == 7 else tiebreaks[n][w]
            if loser_points != tb_points:
                raise BadRecord("score_mismatch", f"set {n + 1} tiebreak {tiebreaks[n]}")
    if score.winner is not None:
        if score.winner != w:
            raise BadRecord("winner_mismatch", f"points give player {score.winner + 1}")
        return None
    if score.points != (0, 0) or score.games != (0, 0) or score.sets[w] <= score.sets[1 - w]:
        raise BadRecord("winner_mismatch", "the points stop in play, the winner behind")
    return 1 - w  # the points stop between sets with the record's winner ahead


# --- native lines ---------------------------------------------------------------------------


def point_ms(record: Record, points: int) -> float:
    """The length of one point: the match's minutes spread evenly, or the nominal pace."""
    minutes = record.minutes
    if minutes is not None and minutes <= 0:
        minutes += 1440  # the clock wrapped at midnight
    if minutes is None or points == 0:
        return NOMINAL_POINT_S * 1000
    pace_s = minutes * 60 / points
    low, high = PLAUSIBLE_POINT_S
    return pace_s * 1000 if low <= pace_s <= high else NOMINAL_POINT_S * 1000


def native_lines(record: Record, played: Walk, start_ts: int) -> Iterator[Line]:
    """The match's native lines in arrival order, `seq` 1, 2, 3, ... (generated lazily)."""
    head = {"v": 1, "provider": PROVIDER, "match_id": record.pbp_id}
    seq = 0

    def line(kind: str, ts: int, **fields: Any) -> Line:
        nonlocal seq
        seq += 1
        return {**head, "seq": seq, "ts": ts, "type": kind, **fields}

    yield line(
        "fixture",
        start_ts - FIXTURE_LEAD_MS,
        sport="tennis",
        home=record.players[0],
        away=record.players[1],
        kickoff=start_ts,
        best_of=played.fmt.best_of,
        first_server="home",
        final_set_tiebreak=played.fmt.final_set_tiebreak,
    )
    step = point_ms(record, len(played.points))
    beat = start_ts + HEARTBEAT_MS
    end_ts = start_ts
    for n, point in enumerate(played.points, 1):
        ts = start_ts + round(n * step)
        while beat <= ts:  # a heartbeat reports the clock before what happens at its time
            yield _clock(line, beat, start_ts)
            beat += HEARTBEAT_MS
        yield line("point", ts, **_point_fields(point))
        for delay, kind, fields in score_checks(point.result):
            yield line(kind, ts + delay, **fields)
        end_ts = ts
    if played.retired is not None:
        end_ts += RETIREMENT_DELAY_MS
        while beat <= end_ts:
            yield _clock(line, beat, start_ts)
            beat += HEARTBEAT_MS
        yield line("retirement", end_ts, player=SIDES[played.retired])
        end_ts += MATCH_END_DELAY_MS
        sets = played.score.sets
        yield line("match_end", end_ts, home_score=sets[0], away_score=sets[1])


def _clock(line: Any, ts: int, start_ts: int) -> Line:
    elapsed_s = (ts - start_ts) // 1000
    return line("clock", ts, minute=elapsed_s // 60, second=elapsed_s % 60)


def _point_fields(point: Point) -> dict[str, str]:
    fields = {"won_by": "server" if point.server_won else "receiver"}
    if point.detail is not None:
        fields["detail"] = point.detail
    return fields


def score_checks(result: PointResult) -> list[tuple[int, str, dict[str, Any]]]:
    """The provider's `game_end` / `set_end` / `match_end` after a point that finished
    them, as (delay after the point in ms, type, fields); [] after any other point."""
    score = result.score
    if result.game_won_by is None:
        return []
    games = score.set_games[-1] if result.set_won_by is not None else score.games
    checks: list[tuple[int, str, dict[str, Any]]] = [
        (
            0,
            "game_end",
            {"winner": SIDES[result.game_won_by], "home_games": games[0], "away_games": games[1]},
        )
    ]
    if result.set_won_by is not None:
        sets = {"home_sets": score.sets[0], "away_sets": score.sets[1]}
        games_fields = {"home_games": games[0], "away_games": games[1]}
        checks.append((0, "set_end", {"winner": SIDES[result.set_won_by], **sets, **games_fields}))
    if result.match_won_by is not None:
        final = {"home_score": score.sets[0], "away_score": score.sets[1]}
        checks.append((MATCH_END_DELAY_MS, "match_end", final))
    return checks


# --- the whole file ---------------------------------------------------------------------------


def make_reject(reason: str, raw: str, source: str, match_id: str = "", detail: str = "") -> Line:
    reject: Line = {
        "reject": True,
        "provider": PROVIDER,
        "match_id": match_id,
        "reason": reason,
        "raw": raw,
        "source": source,
    }
    if detail:
        reject["detail"] = detail
    return reject


@dataclass(frozen=True, slots=True)
class Converted:
    """One CSV row: its record and walk, or its reject; `source` is `<file>:<row>`."""

    source: str
    raw: str
    record: Record | None = None
    walk: Walk | None = None
    reject: Line | None = None


def convert_rows(rows: Iterable[tuple[str, str, Mapping[str, str | None]]]) -> Iterator[Converted]:
    """(source, raw text, row) -> a `Converted` each; a repeated `pbp_id` is a reject."""
    seen: set[str] = set()
    for source, raw, row in rows:
        try:
            record = read_record(row)
            if record.pbp_id in seen:
                raise BadRecord("duplicate_match", f"pbp_id {record.pbp_id}")
            played = walk(record)
        except BadRecord as bad:
            match_id = str(row.get("pbp_id") or "")
            reject = make_reject(bad.reason, raw, source, match_id, bad.detail)
            yield Converted(source, raw, reject=reject)
            continue
        seen.add(record.pbp_id)
        yield Converted(source, raw, record, played)


def read_rows(path: Path, limits: Limits | None = None) -> Iterator[Converted]:
    """The file's rows converted; a file over its limit, or not CSV text, one reject."""
    limits = limits or parse.LIMITS
    max_bytes = limits.max_bytes(PROVIDER)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as file:
            data = file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise BadRecord("line_too_long", limits.too_long(PROVIDER))
        text = data.decode("utf-8")
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError) as err:
        reason = err.reason if isinstance(err, BadRecord) else f"bad_file:{type(err).__name__}"
        yield Converted(path.name, "", reject=make_reject(reason, "", path.name))
        return
    lines = text.splitlines()
    rows = csv.DictReader(io.StringIO(text))
    yield from convert_rows(
        (f"{path.name}:{rows.line_num}", lines[rows.line_num - 1], row) for row in rows
    )


def file_lines(path: Path, limits: Limits | None = None) -> Iterator[Line]:
    """Every match of a point-by-point file as native lines, all matches merged in time
    order (ties: the earlier start first); the rejects first. Each match is walked again
    when its fixture is due, so only the matches in play at a time are held in memory."""
    starts: list[tuple[int, int, Record]] = []
    per_day: dict[datetime, int] = {}
    converted = list(read_rows(Path(path), limits))
    for order, item in enumerate(sorted(converted, key=_day)):
        if item.record is None:
            assert item.reject is not None
            yield item.reject
            continue
        n = per_day.get(item.record.date, 0)
        per_day[item.record.date] = n + 1
        starts.append(
            (_ms(item.record.date + DAY_START) + n * START_STAGGER_MS, order, item.record)
        )
    yield from _merged(starts)


def _day(item: Converted) -> datetime:
    return item.record.date if item.record is not None else datetime.min.replace(tzinfo=UTC)


def _merged(starts: list[tuple[int, int, Record]]) -> Iterator[Line]:
    """The matches' lines by (ts, match order), each match started once its fixture is due."""
    heap: list[tuple[int, int, Line, Iterator[Line]]] = []
    pending = iter(sorted(starts, key=lambda s: (s[0], s[1])))
    upcoming = next(pending, None)
    while heap or upcoming is not None:
        while upcoming is not None and (not heap or upcoming[0] - FIXTURE_LEAD_MS <= heap[0][0]):
            start_ts, order, record = upcoming
            lines = native_lines(record, walk(record), start_ts)
            first = next(lines)
            heapq.heappush(heap, (first["ts"], order, first, lines))
            upcoming = next(pending, None)
        _, order, line, lines = heap[0]
        yield line
        following = next(lines, None)
        if following is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (following["ts"], order, following, lines))


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
