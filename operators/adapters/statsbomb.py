"""StatsBomb open-data events (+ lineups) -> native feed lines (docs/feed-format.md).

Data: StatsBomb (Hudl) open data; anyone using it must credit StatsBomb as the source.

`to_native` turns one match's events array into native line dicts in arrival order: goals,
penalties, cards, fouls, substitutions and corners (`_BUILDERS`, one per StatsBomb type;
the shoot-out, period 5, emits nothing), plus a generated `fixture`, period changes,
`clock` heartbeats and `match_end`. StatsBomb's `timestamp` restarts each period, so a
period starts where the one before really ended plus a break. Home is the team of the first
`Starting XI` event. A malformed event becomes a reject dict and the others still convert;
a file over the StatsBomb limit (`operators.parse.Limits`) is never decoded. The mapping in
full: docs/feed-format.md, its StatsBomb section.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from operators import parse
from operators.parse import Limits

Line = dict[str, Any]

FIXTURE_LEAD_MS = 5 * 60_000
BREAK_BEFORE_MS = {2: 15 * 60_000, 3: 5 * 60_000, 4: 60_000}
BASE_MINUTE = {1: 0, 2: 45, 3: 90, 4: 105}
NOMINAL_END_MINUTE = {1: 45, 2: 90, 3: 105, 4: 120}
SHOOTOUT = 5
CONFIRM_DELAY_MS = 2_000
PENALTY_LEAD_MS = 5_000
HEARTBEAT_MS = 5_000
MAX_PERIOD_MS = 90 * 60_000  # clock minutes stay within the validator's 200
MATCH_END_DELAY_MS = 1_000
CARD_COLORS = {"Yellow Card": "yellow", "Second Yellow": "second_yellow", "Red Card": "red"}

# Tie-break for lines sharing a ts: the period opens before anything happens in it, and a
# heartbeat reports the clock before the period closes.
_RANK = {"fixture": 0, "period_start": 1, "clock": 3, "period_end": 4, "match_end": 5}
_EVENT_RANK = 2
_TIMESTAMP = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?")


class BadEvent(ValueError):
    """A StatsBomb event that cannot be converted; `reason` (and `detail`, when the reason
    alone does not say it) go into the reject."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Header:
    """The fields every StatsBomb event must have."""

    kind: str  # `type.name`
    period: int
    clock_ms: int  # `timestamp`: time since the period started


@dataclass(frozen=True)
class MatchContext:
    """What converting one event needs to know about the whole match."""

    match_id: str
    provider: str
    kickoff_ts: int
    home: str
    away: str
    sides: Mapping[int, str]  # StatsBomb team id -> "home" / "away"
    periods: Mapping[int, tuple[int, int]]  # period -> (start, end), ms after kickoff

    def ts(self, period: int, clock_ms: int) -> int:
        if period not in self.periods:
            raise BadEvent("unknown_period")
        return self.kickoff_ts + self.periods[period][0] + clock_ms

    def side(self, ev: dict) -> str:
        team_id = _field(ev, "team.id")
        if not isinstance(team_id, int) or team_id not in self.sides:
            raise BadEvent("unknown_team")
        return self.sides[team_id]

    def line(self, kind: str, ts: int, **fields: Any) -> Line:
        """A native line without `seq` (numbered once the whole match is ordered)."""
        head = {"v": 1, "provider": self.provider, "match_id": self.match_id}
        return head | {"ts": ts, "type": kind, **fields}

    def clock_at(self, ts: int) -> tuple[int, int]:
        """The running match clock (minute, second) at `ts`, held between periods."""
        since_kickoff = ts - self.kickoff_ts
        held_minute = 0
        for period, (start, end) in sorted(self.periods.items()):
            if since_kickoff < start:
                break
            if since_kickoff <= end:
                elapsed_s = (since_kickoff - start) // 1000
                return BASE_MINUTE[period] + elapsed_s // 60, elapsed_s % 60
            held_minute = NOMINAL_END_MINUTE[period]
        return held_minute, 0


@dataclass(frozen=True)
class Converted:
    """One StatsBomb event's result: native lines (no `seq` yet) or a reject."""

    lines: tuple[Line, ...] = ()
    reject: Line | None = None
    ts: int | None = None  # the event's own time, when it could be read


def to_native(
    events: Sequence[Any],
    lineups: Sequence[Any] | None,
    *,
    match_id: str,
    kickoff_ts: int,
    home_rate: float = 1.45,
    away_rate: float = 1.15,
    provider: str = "statsbomb",
    source: str = "statsbomb",
    home_team: str | None = None,
) -> Iterator[Line]:
    """Native feed v1 line dicts in arrival order (`ts` non-decreasing), seq 1, 2, 3…

    A malformed event's reject dict (`make_reject`; `source` `<source>:event <n>`, n its
    1-based place in the array) comes in at the time of the good event before it, without
    a `seq`.
    """
    try:
        ctx = build_context(
            events,
            lineups,
            match_id=match_id,
            kickoff_ts=kickoff_ts,
            provider=provider,
            home_team=home_team,
        )
    except BadEvent as bad:
        yield make_reject(bad.reason, None, source, provider=provider, match_id=match_id)
        return

    fixture_ts = max(0, kickoff_ts - FIXTURE_LEAD_MS)
    lines = [
        ctx.line(
            "fixture",
            fixture_ts,
            home=ctx.home,
            away=ctx.away,
            kickoff=kickoff_ts,
            home_rate=home_rate,
            away_rate=away_rate,
        ),
        *_period_lines(ctx),
    ]
    rejects: list[Line] = []
    last_ts = fixture_ts
    for position, ev in enumerate(events, start=1):
        got = convert_event(ev, ctx, source=f"{source}:event {position}")
        last_ts = got.ts if got.ts is not None else last_ts
        lines.extend(got.lines)
        if got.reject is not None:
            rejects.append(got.reject | {"ts": last_ts})

    end_ts = max(line["ts"] for line in lines) + MATCH_END_DELAY_MS
    lines.append(ctx.line("match_end", end_ts, **_score(lines)))
    starts = [line["ts"] for line in lines if line["type"] == "period_start"]
    if starts:
        lines.extend(_heartbeats(ctx, min(starts), end_ts))
    yield from _in_arrival_order(lines, rejects)


def read_match(
    events_path: Path,
    lineups_path: Path | None = None,
    *,
    limits: Limits | None = None,
    **kwargs: Any,
) -> Iterator[Line]:
    """Load a StatsBomb events file (.json or .json.gz) (+ lineups) and convert.

    `kwargs` go to `to_native`; `match_id` defaults to the file's id (`15986_events.json`
    -> `15986`) and `source` to the file name. A file that is not a JSON array, or is over
    the StatsBomb limit of `limits` (default: this process's), yields one reject; bad
    lineups yield a reject and the match converts without them.
    """
    events_path = Path(events_path)
    limits = limits or parse.LIMITS
    kwargs.setdefault("match_id", events_path.name.split("_events")[0].split(".")[0])
    kwargs.setdefault("source", events_path.name)
    where = {"provider": kwargs.get("provider", "statsbomb"), "match_id": kwargs["match_id"]}
    try:
        events = _load_array(events_path, limits)
    except BadEvent as bad:
        yield make_reject(bad.reason, None, events_path.name, detail=bad.detail, **where)
        return
    lineups = None
    if lineups_path is not None:
        try:
            lineups = _load_array(Path(lineups_path), limits)
        except BadEvent as bad:
            name = Path(lineups_path).name
            yield make_reject(f"lineups_{bad.reason}", None, name, detail=bad.detail, **where)
    yield from to_native(events, lineups, **kwargs)


def convert_event(ev: Any, ctx: MatchContext, *, source: str = "statsbomb") -> Converted:
    """One StatsBomb event -> 0..n native lines (no `seq`), or a reject; never raises."""
    try:
        header = read_header(ev)
        ts = ctx.ts(header.period, header.clock_ms) if header.period != SHOOTOUT else None
    except BadEvent as bad:
        return Converted(reject=make_reject(bad.reason, ev, source, ctx.provider, ctx.match_id))
    build = _BUILDERS.get(header.kind)
    if build is None or ts is None:  # the shoot-out never changes the score
        return Converted(ts=ts)
    try:
        return Converted(lines=tuple(build(ev, header, ctx, ts)), ts=ts)
    except BadEvent as bad:
        reject = make_reject(bad.reason, ev, source, ctx.provider, ctx.match_id)
        return Converted(reject=reject, ts=ts)


def build_context(
    events: Sequence[Any],
    lineups: Sequence[Any] | None,
    *,
    match_id: str,
    kickoff_ts: int,
    provider: str = "statsbomb",
    home_team: str | None = None,
) -> MatchContext:
    """Sides and period timing from the whole match (malformed events are skipped here)."""
    good = [(ev, header) for ev in events if (header := _try_header(ev)) is not None]
    names = _team_names(good, lineups)
    order = list(names)
    if len(order) < 2:
        raise BadEvent("missing_teams")
    home_id, away_id = order[0], order[1]
    if home_team is not None:
        if home_team not in (names[home_id], names[away_id]):
            raise ValueError(
                f"home_team {home_team!r} is neither {names[home_id]!r} nor {names[away_id]!r}"
            )
        if names[away_id] == home_team:
            home_id, away_id = away_id, home_id
    return MatchContext(
        match_id=match_id,
        provider=provider,
        kickoff_ts=kickoff_ts,
        home=names[home_id],
        away=names[away_id],
        sides={home_id: "home", away_id: "away"},
        periods=_period_bounds(good),
    )


def read_header(ev: Any) -> Header:
    if not isinstance(ev, dict):
        raise BadEvent("bad_shape:not_an_object")
    kind = _text(ev, "type.name")
    period = _field(ev, "period")
    if not isinstance(period, int) or isinstance(period, bool) or not 1 <= period <= SHOOTOUT:
        raise BadEvent("bad_field:period")
    match = _TIMESTAMP.fullmatch(str(_field(ev, "timestamp")))
    if match is None:
        raise BadEvent("bad_field:timestamp")
    hours, minutes, seconds, fraction = match.groups()
    millis = int((fraction or "0").ljust(3, "0")[:3])
    clock_ms = ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + millis
    if clock_ms > MAX_PERIOD_MS:  # such an event would stretch its period to days of heartbeats
        raise BadEvent("bad_field:timestamp")
    return Header(kind=kind, period=period, clock_ms=clock_ms)


def make_reject(
    reason: str,
    raw: Any,
    source: str,
    provider: str = "statsbomb",
    match_id: str = "",
    detail: str = "",
) -> Line:
    text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
    reject: Line = {
        "reject": True,
        "provider": provider,
        "match_id": match_id,
        "reason": reason,
        "raw": text if raw is not None else "",
        "source": source,
    }
    if detail:
        reject["detail"] = detail
    return reject


# --- one builder per mapped StatsBomb type ---------------------------------------------

Builder = Callable[[dict, Header, MatchContext, int], list[Line]]


def _shot(ev: dict, header: Header, ctx: MatchContext, ts: int) -> list[Line]:
    """A goal is `possible` at the shot and `confirmed` a little later; a penalty is also
    `awarded` before the shot (not before its period starts) and `scored` / `missed` after."""
    team = ctx.side(ev)
    scored = _text(ev, "shot.outcome.name") == "Goal"
    if _dig(ev, "shot", "type", "name") != "Penalty":
        return _goal(ev, ctx, team, ts) if scored else []
    awarded_ts = max(ts - PENALTY_LEAD_MS, ctx.ts(header.period, 0))
    taken = ctx.line(
        "penalty", ts + CONFIRM_DELAY_MS, team=team, state="scored" if scored else "missed"
    )
    lines = [ctx.line("penalty", awarded_ts, team=team, state="awarded")]
    if not scored:
        return [*lines, taken]
    possible, confirmed = _goal(ev, ctx, team, ts)
    return [*lines, possible, taken, confirmed]


def _own_goal_against(ev: dict, header: Header, ctx: MatchContext, ts: int) -> list[Line]:
    conceding = ctx.side(ev)
    return _goal(ev, ctx, "away" if conceding == "home" else "home", ts)


def _goal(ev: dict, ctx: MatchContext, team: str, ts: int) -> list[Line]:
    goal_id = _text(ev, "id")
    return [
        ctx.line("goal", ts, goal_id=goal_id, team=team, state="possible"),
        ctx.line("goal", ts + CONFIRM_DELAY_MS, goal_id=goal_id, team=team, state="confirmed"),
    ]


def _foul_committed(ev: dict, header: Header, ctx: MatchContext, ts: int) -> list[Line]:
    lines = [ctx.line("foul", ts, team=ctx.side(ev), player=_player(ev))]
    # Real files put the card under `foul_committed`; accept the shorter `foul` too.
    detail = "foul_committed" if "foul_committed" in ev else "foul"
    if _dig(ev, detail, "card") is not None:
        lines.append(_card(ev, ctx, ts, f"{detail}.card.name"))
    return lines


def _bad_behaviour(ev: dict, header: Header, ctx: MatchContext, ts: int) -> list[Line]:
    if _dig(ev, "bad_behaviour", "card") is None:
        return []
    return [_card(ev, ctx, ts, "bad_behaviour.card.name")]


def _card(ev: dict, ctx: MatchContext, ts: int, card_path: str) -> Line:
    color = CARD_COLORS.get(_text(ev, card_path))
    if color is None:
        raise BadEvent(f"bad_field:{card_path}")
    return ctx.line("card", ts, team=ctx.side(ev), player=_text(ev, "player.name"), color=color)


def _substitution(ev: dict, header: Header, ctx: MatchContext, ts: int) -> list[Line]:
    player_in = _text(ev, "substitution.replacement.name")
    return [
        ctx.line("substitution", ts, team=ctx.side(ev), player=player_in, player_out=_player(ev))
    ]


def _pass(ev: dict, header: Header, ctx: MatchContext, ts: int) -> list[Line]:
    if _dig(ev, "pass", "type", "name") != "Corner":
        return []
    return [ctx.line("corner", ts, team=ctx.side(ev), player=_player(ev))]


_BUILDERS: dict[str, Builder] = {
    "Shot": _shot,
    "Own Goal Against": _own_goal_against,
    "Foul Committed": _foul_committed,
    "Bad Behaviour": _bad_behaviour,
    "Substitution": _substitution,
    "Pass": _pass,
}


# --- whole-match pieces ----------------------------------------------------------------


def _team_names(good: list[tuple[dict, Header]], lineups: Sequence[Any] | None) -> dict[int, str]:
    """Team id -> name, in home-first order: Starting XI, then lineups, then first seen."""
    from_events: dict[int, str] = {}
    starting: list[int] = []
    for ev, header in good:
        team_id, name = _dig(ev, "team", "id"), _dig(ev, "team", "name")
        if isinstance(team_id, int) and isinstance(name, str) and name:
            from_events.setdefault(team_id, name)
            if header.kind == "Starting XI" and team_id not in starting:
                starting.append(team_id)
    from_lineups = {
        team["team_id"]: team["team_name"]
        for team in lineups or ()
        if isinstance(team, dict)
        and isinstance(team.get("team_id"), int)
        and isinstance(team.get("team_name"), str)
        and team["team_name"]
    }
    names: dict[int, str] = {}
    for team_id in [*starting, *from_lineups, *from_events]:
        names.setdefault(team_id, from_lineups.get(team_id) or from_events[team_id])
    return names


def _period_bounds(good: list[tuple[dict, Header]]) -> dict[int, tuple[int, int]]:
    """Period -> (start, end) in ms after kickoff, from the real `Half End` times."""
    half_end: dict[int, int] = {}
    latest: dict[int, int] = {}
    for _, header in good:
        if header.period == SHOOTOUT:
            continue
        latest[header.period] = max(latest.get(header.period, 0), header.clock_ms)
        if header.kind == "Half End":
            half_end[header.period] = max(half_end.get(header.period, 0), header.clock_ms)
    bounds: dict[int, tuple[int, int]] = {}
    previous_end: int | None = None
    for period in sorted(latest):
        start = 0 if previous_end is None else previous_end + BREAK_BEFORE_MS[period]
        bounds[period] = (start, start + half_end.get(period, latest[period]))
        previous_end = bounds[period][1]
    return bounds


def _period_lines(ctx: MatchContext) -> list[Line]:
    lines = []
    for period, (start, end) in sorted(ctx.periods.items()):
        lines.append(ctx.line("period_start", ctx.kickoff_ts + start, period=period))
        lines.append(ctx.line("period_end", ctx.kickoff_ts + end, period=period))
    return lines


def _heartbeats(ctx: MatchContext, first_ts: int, end_ts: int) -> Iterator[Line]:
    for ts in range(first_ts, end_ts, HEARTBEAT_MS):
        minute, second = ctx.clock_at(ts)
        yield ctx.line("clock", ts, minute=minute, second=second)


def _score(lines: Iterable[Line]) -> dict[str, int]:
    score = {"home_score": 0, "away_score": 0}
    for line in lines:
        if line["type"] == "goal" and line["state"] == "confirmed":
            score[f"{line['team']}_score"] += 1
    return score


def _in_arrival_order(lines: list[Line], rejects: list[Line]) -> Iterator[Line]:
    """Stable sort by ts (ties by `_RANK`), then number the feed lines 1, 2, 3, ..."""
    tagged = [(line["ts"], _RANK.get(line["type"], _EVENT_RANK), line) for line in lines]
    tagged += [(reject["ts"], _EVENT_RANK, reject) for reject in rejects]
    tagged.sort(key=lambda item: (item[0], item[1]))
    seq = 0
    for _, _, line in tagged:
        if line.get("reject"):
            yield line
            continue
        seq += 1
        yield {
            "v": 1,
            "provider": line["provider"],
            "match_id": line["match_id"],
            "seq": seq,
        } | line


# --- small readers -----------------------------------------------------------------------


def _load_array(path: Path, limits: Limits) -> list[Any]:
    """The JSON array in `path`, read (decompressed) up to the StatsBomb limit, no further."""
    opener = gzip.open if path.name.endswith(".gz") else open
    max_bytes = limits.max_bytes("statsbomb")
    try:
        with opener(path, "rb") as file:
            text = file.read(max_bytes + 1)
        if len(text) > max_bytes:
            raise BadEvent("line_too_long", limits.too_long("statsbomb"))
        data = json.loads(text.decode("utf-8"))
    except (
        json.JSONDecodeError,
        UnicodeDecodeError,
        gzip.BadGzipFile,
        EOFError,
        RecursionError,  # nested deeper than Python's json can decode
    ) as err:
        raise BadEvent(f"bad_json:{type(err).__name__}") from err
    if not isinstance(data, list):
        raise BadEvent("bad_shape:not_a_json_array")
    return data


def _field(ev: dict, path: str) -> Any:
    """`ev[a][b]...` for `path` "a.b...", or BadEvent naming what is missing or not an object."""
    value: Any = ev
    walked: list[str] = []
    for key in path.split("."):
        if not isinstance(value, dict):
            raise BadEvent(f"bad_field:{'.'.join(walked)}")
        walked.append(key)
        if value.get(key) is None:
            raise BadEvent(f"missing_field:{'.'.join(walked)}")
        value = value[key]
    return value


def _text(ev: dict, path: str) -> str:
    value = _field(ev, path)
    if not isinstance(value, str) or not value.strip():
        raise BadEvent(f"bad_field:{path}")
    return value


def _dig(ev: Any, *keys: str) -> Any:
    """`ev[a][b]...`, or None where the path is missing or not an object."""
    for key in keys:
        if not isinstance(ev, dict):
            return None
        ev = ev.get(key)
    return ev


def _player(ev: dict) -> str:
    name = _dig(ev, "player", "name")
    return name if isinstance(name, str) else ""


def _try_header(ev: Any) -> Header | None:
    try:
        return read_header(ev)
    except BadEvent:
        return None
