"""The feed simulator: a deterministic recorded football feed (native format v1) with bets.

`simulate(matches, seed)` yields every line of the feed in arrival order, each labelled with
the reject reason the validator must give it (`fault`), or None for a line that must be
accepted. Same arguments, same lines, byte for byte.

How a feed is made:
- Matches kick off every `KICKOFF_STAGGER_MS` so they overlap; each has its own random
  stream (`Random("<seed>:<n>")`), so one match never changes another.
- A match is played on event time as competing Poisson processes (goals from the fixture
  rates, cut x0.67 for a side down to ten men and raised x1.2 for its opponent; penalties,
  cards, fouls, corners, substitutions). An incident (goal check, VAR, penalty) runs to its
  end before play goes on; stoppage time grows if an incident runs past it.
- `clock` heartbeats every 5 s from the first `period_start` to `match_end`, half time
  included; the running clock is held at 45:00 at half time and 90:00 after full time.
- Bets are priced with `operators.pricing.quote` at the moment the bettor saw the price.
- Faults (`FAULT_KINDS`) are injected per match at `fault_rate` per line, never before the
  match's fixture nor after its match_end. Fault lines that decode cleanly and need a seq
  (`unknown_match`, `ts_out_of_range`, `unknown_goal`) come from provider `sim-faults`,
  which keeps its own seq, so the `sim` lines' seqs stay 1, 2, 3, ... without gaps.
- Matches are generated lazily as the merged stream reaches them: memory holds only the
  matches in play, whatever `matches` is.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import heapq
import math
import random
import sys
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from decimal import Decimal
from io import BufferedIOBase
from pathlib import Path
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

import msgspec

from operators.events import MAX_PRICE
from operators.pricing import MAX_REDS, RED_OPPONENT, RED_OWN, PricingState, quote
from operators.settings import DEFAULT_RULES

PROVIDER = "sim"
FAULT_PROVIDER = "sim-faults"
DEFAULT_START_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
KICKOFF_STAGGER_MS = 3 * 60_000
FIXTURE_LEAD_MS = (10 * 60_000, 20 * 60_000)  # the fixture arrives this long before kickoff
HEARTBEAT_MS = 5_000
HALF_TIME_MS = 15 * 60_000
HALF_S = 45 * 60
MATCH_MS = 90 * 60_000

FAULT_KINDS = (
    "duplicate",
    "out_of_order",
    "malformed_json",
    "unknown_type",
    "invalid_field",
    "missing_field",
    "unknown_match",
    "ts_out_of_range",
    "unknown_goal",
)
_FAULT_WEIGHTS = (15, 15, 14, 10, 14, 10, 8, 7, 7)
HARMLESS_TYPES = frozenset({"foul", "corner", "substitution"})  # out_of_order candidates
SPORTS = ("football", "tennis", "mixed")

Payload = dict[str, Any]
Quote = dict[str, dict[str, tuple[float, Decimal]]]
TimelineT = TypeVar("TimelineT")  # a sport's timeline of one match, which its bettors bet on
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class SimLine:
    line: str  # the exact text of the line (no trailing newline); compact JSON for valid lines
    fault: str | None  # None = a valid line that must be accepted; else the reject reason


@dataclass(frozen=True, slots=True)
class SimSummary:
    """What `write_feed` wrote."""

    path: Path
    lines: int
    matches: int
    bets: int  # valid bet lines (a resent bet_id is a duplicate fault)
    deposits: int
    faults: dict[str, int] = field(default_factory=dict)  # reason -> lines

    @property
    def fault_lines(self) -> int:
        return sum(self.faults.values())


# ---------------------------------------------------------------------------------------------
# Public API


def simulate(matches: int, seed: int, **options: Any) -> Iterator[SimLine]:
    """Every line of the recorded feed in arrival order (all matches interleaved by ts);
    `options` as `simulate_streams` takes them."""
    return (line for _, line in simulate_streams(matches, seed, **options))


def simulate_streams(
    matches: int,
    seed: int,
    *,
    start_ts: int = DEFAULT_START_TS,
    users: int = 100,
    bets_per_match: int = 20,
    fault_rate: float = 0.005,
    margin: float = DEFAULT_RULES.margin,
    sport: str = "football",
) -> Iterator[tuple[int, SimLine]]:
    """`simulate`'s lines, each with its stream: 0 for the deposits, n + 1 for match n (its
    feed lines, bets and faulty lines). Bets take the prices of the engine's pricer at
    `margin` (`[rules] margin` of the config file, for `oddsflow simulate`). `sport`: every
    match football, every match tennis (`tooling.tennis_simulator`), or `mixed` (the
    odd-numbered matches tennis: match 1, 3, ... of 0, 1, 2, ...); a football match is the
    same whatever `sport` is."""
    if sport not in SPORTS:
        raise ValueError(f"sport must be one of {', '.join(SPORTS)}, got {sport!r}")
    if matches < 0 or users < 0 or bets_per_match < 0:
        raise ValueError("matches, users and bets_per_match must be >= 0")
    if not 0.0 <= fault_rate < 1.0:
        raise ValueError(f"fault_rate must be within [0, 1), got {fault_rate}")
    if bets_per_match and not users:
        raise ValueError("bets need users: pass users >= 1 or bets_per_match=0")
    last_kickoff = start_ts + max(matches - 1, 0) * KICKOFF_STAGGER_MS
    ledger = _deposit_schedule(
        seed, users, start_ts, last_kickoff + 2 * MATCH_MS, matches, bets_per_match
    )
    settings = _Settings(seed, users, bets_per_match, fault_rate, ledger, margin)

    def build(n: int) -> list[tuple[int, SimLine]]:
        kickoff = start_ts + n * KICKOFF_STAGGER_MS
        if sport == "tennis" or (sport == "mixed" and n % 2 == 1):
            from tooling.tennis_simulator import tennis_match_lines  # it imports this module

            return tennis_match_lines(n, kickoff, settings)
        return _match_lines(n, kickoff, settings)

    def earliest(n: int) -> int:
        return start_ts + n * KICKOFF_STAGGER_MS - FIXTURE_LEAD_MS[1]

    return _merge(ledger.lines(), matches, earliest, build)


def write_feed(
    path: Path, matches: int, seed: int, partitions: int = 1, **kwargs: Any
) -> SimSummary:
    """Write simulate(...) to path (gzip if path ends with .gz), return counts.

    `partitions` > 1: split by match into that many files instead (`partition_paths`):
    match n's lines (feed, bets, faults) in file n % partitions, every deposit in the first;
    each file in arrival order. The gzip header carries no name and no time, so the same
    arguments give the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    faults: Counter[str] = Counter()
    lines = bets = deposits = 0
    paths = partition_paths(path, partitions)
    batches: list[list[str]] = [[] for _ in paths]
    with contextlib.ExitStack() as files:
        outs = [
            files.enter_context(_compressed(files.enter_context(p.open("wb")), p)) for p in paths
        ]
        for stream, sim in simulate_streams(matches, seed, **kwargs):
            lines += 1
            if sim.fault is not None:
                faults[sim.fault] += 1
            elif sim.line.startswith('{"v":1,"ts"'):  # bet-stream lines have no provider
                bets += '"type":"bet"' in sim.line
                deposits += '"type":"deposit"' in sim.line
            part = (stream - 1) % len(paths) if stream else 0
            batch = batches[part]
            batch.append(sim.line)
            if len(batch) >= 4096:
                outs[part].write(("\n".join(batch) + "\n").encode())
                batch.clear()
        for out, batch in zip(outs, batches, strict=True):
            if batch:
                out.write(("\n".join(batch) + "\n").encode())
    return SimSummary(path, lines, matches, bets, deposits, dict(sorted(faults.items())))


def partition_paths(path: Path, partitions: int) -> list[Path]:
    """The files of a feed split into `partitions`: `feed.jsonl.gz` -> `feed-00.jsonl.gz`, ...
    (just `path` for one)."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    if partitions == 1:
        return [path]
    stem, dot, suffixes = path.name.partition(".")
    return [path.with_name(f"{stem}-{i:02d}{dot}{suffixes}") for i in range(partitions)]


def _compressed(raw: BufferedIOBase, path: Path) -> AbstractContextManager[BufferedIOBase]:
    """gzip for a `.gz` path, with no name and no time in the header (same input, same
    bytes); else the file itself."""
    if path.name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, filename="", mtime=0)
    return nullcontext(raw)


def main(argv: list[str] | None = None) -> int:
    """`oddsflow simulate`: write a recorded feed and print a one-line summary."""
    from flows import config

    args = _parser().parse_args(argv)
    started = time.monotonic()
    summary = write_feed(
        args.out,
        args.matches,
        args.seed,
        partitions=args.partitions,
        users=args.users,
        bets_per_match=args.bets_per_match,
        fault_rate=args.fault_rate,
        margin=config.current().rules.margin,
        sport=args.sport,
    )
    seconds = time.monotonic() - started
    faults = ", ".join(f"{k} {v}" for k, v in summary.faults.items()) or "none"
    files = partition_paths(summary.path, args.partitions)
    where = f"{len(files)} files {files[0]} .. {files[-1].name}" if len(files) > 1 else files[0]
    print(
        f"wrote {where}: {summary.lines} lines, {summary.matches} matches, "
        f"{summary.bets} bets, {summary.deposits} deposits, {summary.fault_lines} faults "
        f"({faults}) in {seconds:.1f}s ({summary.lines / max(seconds, 1e-9):,.0f} lines/s)"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oddsflow simulate",
        description="Write a realistic, deterministic recorded feed (native format v1, see "
        "data/README.md): matches starting 3 min apart, clock heartbeats, goals, VAR, "
        "penalties, cards (tennis: points, challenges, rain, retirements), deposits and bets, "
        "with a small share of faulty lines.",
        epilog="example: oddsflow simulate --matches 6 --seed 7 --out data/sample.jsonl.gz",
    )
    arg = parser.add_argument
    arg("--matches", type=int, required=True, metavar="N", help="number of matches")
    arg("--seed", type=int, required=True, metavar="S", help="random seed: same seed, same file")
    arg("--out", type=Path, required=True, metavar="FILE", help="output, .jsonl or .jsonl.gz")
    arg(
        "--partitions",
        type=int,
        default=1,
        metavar="N",
        help="split by match into N files FILE-00 ... (match n in file n %% N, deposits in "
        "the first), for replays with one partition per file (default 1: one file)",
    )
    arg(
        "--sport",
        choices=SPORTS,
        default="football",
        help="football (default), tennis, or mixed (every other match tennis)",
    )
    arg("--users", type=int, default=100, metavar="U", help="bettors u0001... (default 100)")
    arg(
        "--bets-per-match",
        type=int,
        default=20,
        metavar="B",
        help="bet lines per match (default 20)",
    )
    arg(
        "--fault-rate",
        type=float,
        default=0.005,
        metavar="F",
        help="share of faulty lines, 0 for a clean feed (default 0.005)",
    )
    return parser


# ---------------------------------------------------------------------------------------------
# Merging the streams


def _merge(
    first: list[tuple[int, SimLine]],
    count: int,
    earliest: Callable[[int], int],
    build: Callable[[int], list[tuple[int, SimLine]]],
) -> Iterator[tuple[int, SimLine]]:
    """Merge `first` and the `count` match streams by sort ts, stable (stream order breaks
    ties, each stream keeps its own order); each line with its stream's number. Match n is
    built only once the merge reaches `earliest(n)`, a bound below its first line's ts that
    never decreases with n."""
    streams: dict[int, list[tuple[int, SimLine]]] = {}
    heap: list[tuple[int, int, int]] = []  # (sort ts, stream, position)

    def open_stream(stream: int, lines: list[tuple[int, SimLine]]) -> None:
        if lines:
            streams[stream] = lines
            heapq.heappush(heap, (lines[0][0], stream, 0))

    open_stream(0, first)
    built = 0
    while heap or built < count:
        while built < count and (not heap or earliest(built) <= heap[0][0]):
            open_stream(built + 1, build(built))
            built += 1
        if not heap:
            continue
        _, stream, pos = heapq.heappop(heap)
        lines = streams[stream]
        yield stream, lines[pos][1]
        if pos + 1 < len(lines):
            heapq.heappush(heap, (lines[pos + 1][0], stream, pos + 1))
        else:
            del streams[stream]


# ---------------------------------------------------------------------------------------------
# Wallets


class _Ledger:
    """Every deposit of every user, known before the first bet (bets need the totals)."""

    def __init__(self, deposits: list[tuple[int, str, int]]) -> None:
        self.deposits = sorted(deposits)  # (ts, user_id, cents)
        self._by_user: dict[str, tuple[list[int], list[int]]] = {}
        for ts, user, cents in self.deposits:
            times, running = self._by_user.setdefault(user, ([], []))
            times.append(ts)
            running.append((running[-1] if running else 0) + cents)

    def total_cents(self, user: str, ts: int) -> int:
        """Everything `user` has deposited up to `ts`."""
        times, running = self._by_user.get(user, ([], []))
        i = bisect_right(times, ts)
        return running[i - 1] if i else 0

    def lines(self) -> list[tuple[int, SimLine]]:
        """The deposit lines, as (sort ts, line)."""
        return [
            (ts, SimLine(_deposit_text(ts, user, cents), None)) for ts, user, cents in self.deposits
        ]


def _deposit_text(ts: int, user: str, cents: int) -> str:
    return _json({"v": 1, "ts": ts, "type": "deposit", "user_id": user, "amount": _money(cents)})


def _deposit_schedule(
    seed: int, users: int, start_ts: int, end_ts: int, matches: int, bets_per_match: int
) -> _Ledger:
    """One deposit per user half an hour before the first kickoff (before any fixture), and
    top-ups later, more of them the more each user is expected to bet."""
    rng = random.Random(f"{seed}:wallets")
    topups = max(0.3, matches * bets_per_match / max(users, 1) / 25)
    deposits = []
    for u in range(1, users + 1):
        user = _user_id(u)
        deposits.append(
            (start_ts - 30 * 60_000 + rng.randrange(600_000), user, rng.randrange(5, 51) * 1000)
        )
        for _ in range(_poisson_draw(rng, topups)):
            deposits.append((rng.randrange(start_ts, end_ts), user, rng.randrange(2, 21) * 1000))
    return _Ledger(deposits)


# ---------------------------------------------------------------------------------------------
# Pricing


def _price(state: PricingState, margin: float) -> Quote:
    """The in-play pricer's book at `margin`."""
    return quote(state, margin)


def _red_factor(own_reds: int, other_reds: int) -> float:
    """A side's goal-rate multiplier for red cards, the pricer's own model: a side a player
    short scores less, its opponent more."""
    return float(RED_OWN ** min(own_reds, MAX_REDS) * RED_OPPONENT ** min(other_reds, MAX_REDS))


# ---------------------------------------------------------------------------------------------
# One match


@dataclass(frozen=True, slots=True)
class _Settings:
    seed: int
    users: int
    bets_per_match: int
    fault_rate: float
    ledger: _Ledger
    margin: float


def _match_lines(n: int, kickoff: int, settings: _Settings) -> list[tuple[int, SimLine]]:
    """Match n's lines (feed, its bets, its faults) as (sort ts, line), in arrival order."""
    rng = random.Random(f"{settings.seed}:{n}")
    match_id = f"sim-{settings.seed}-{n + 1}"
    home, away, home_rate, away_rate = _teams(rng, settings.seed)
    fixture_ts = kickoff - rng.randrange(*FIXTURE_LEAD_MS)
    timeline = _Timeline(rng, match_id, kickoff, home_rate, away_rate)
    timeline.play()
    fixture = {
        "home": home,
        "away": away,
        "kickoff": kickoff,
        "home_rate": home_rate,
        "away_rate": away_rate,
    }
    feed = _sequenced(match_id, [(fixture_ts, "fixture", fixture), *timeline.with_heartbeats()])
    bettors = _Bettors(rng, match_id, fixture_ts, timeline, settings)
    entries = list(heapq.merge(feed, bettors.lines(), key=lambda e: e.sort_ts))
    return _FaultInjector(rng, entries, match_id, kickoff, timeline.periods[0]).run(
        settings.fault_rate
    )


class _Entry(NamedTuple):
    sort_ts: int
    payload: Payload
    text: str


def _sequenced(match_id: str, events: list[tuple[int, str, Payload]]) -> list[_Entry]:
    out = []
    for seq, (ts, kind, fields) in enumerate(events, start=1):
        payload = {
            "v": 1,
            "provider": PROVIDER,
            "match_id": match_id,
            "seq": seq,
            "ts": ts,
            "type": kind,
            **fields,
        }
        out.append(_Entry(ts, payload, _json(payload)))
    return out


# fmt: off
_TOWNS = (
    "Ashford", "Bramley", "Castleton", "Dunmore", "Eastleigh", "Fairhaven", "Glenmoor",
    "Harrowgate", "Ironbridge", "Kingsbury", "Lindfield", "Marston", "Northwick", "Oakham",
    "Penrith", "Queensferry", "Redcliffe", "Stanbrook", "Thornbury", "Upminster", "Valemont",
    "Westbury", "Yarmouth", "Aldergate", "Blackwater", "Coldstream", "Denholm", "Eversley",
    "Fernhill", "Greystone", "Hollowell", "Kelvedon",
)
_SUFFIXES = (
    "United", "City", "Rovers", "Athletic", "Town", "Albion", "Wanderers", "FC", "County",
    "Rangers",
)
_SURNAMES = (
    "Adams", "Baker", "Carter", "Dias", "Evans", "Fischer", "Garcia", "Hughes", "Ivanov",
    "Jensen", "Kowalski", "Lopez", "Moreau", "Nielsen", "Okafor", "Pereira", "Quinn", "Rossi",
    "Silva", "Tanaka", "Usman", "Varga", "Walsh", "Xhaka", "Yilmaz", "Zielinski", "Andersen",
    "Bianchi", "Costa", "Doyle", "Eriksen", "Ferreira", "Gallagher", "Horvat", "Ibrahim",
    "Janssen", "Keller", "Larsen", "Mensah", "Novak", "Olsen", "Park", "Reyes", "Schmidt",
)
# fmt: on
_TEAM_COUNT = len(_TOWNS) * len(_SUFFIXES)


def _teams(rng: random.Random, seed: int) -> tuple[str, str, float, float]:
    """Two distinct clubs and their pre-match rates (strength gap, home advantage)."""
    home_i, away_i = rng.sample(range(_TEAM_COUNT), 2)
    home_s, away_s = _strength(seed, home_i), _strength(seed, away_i)
    home_rate = round(min(max(1.45 * math.exp(home_s - away_s), 0.6), 2.2), 2)
    away_rate = round(min(max(1.15 * math.exp(away_s - home_s), 0.6), 2.2), 2)
    return _team_name(home_i), _team_name(away_i), home_rate, away_rate


def _team_name(i: int) -> str:
    return f"{_TOWNS[i % len(_TOWNS)]} {_SUFFIXES[i // len(_TOWNS)]}"


def _strength(seed: int, team: int) -> float:
    """A club's strength, the same in every match of a seed."""
    return random.Random(f"{seed}:team:{team}").uniform(-0.4, 0.4)


@dataclass(slots=True)
class _Side:
    on_pitch: list[str]
    bench: list[str]
    booked: set[str] = field(default_factory=set)
    subs: int = 0


# Expected events per team per 90 minutes of play (goals come from the fixture rates).
_PER_90 = {"penalty": 0.13, "yellow": 1.8, "red": 0.05, "foul": 11.0, "corner": 5.0}
_SUBS_PER_HALF = 3.5  # per team, second half only
DISALLOWED_SHARE = 0.10
OVERTURNED_SHARE = 0.02  # confirmed goals later disallowed after VAR
PENALTY_SCORED = 0.78


class _Timeline:
    """One match played on event time: its feed events (no seq yet), the score and red-card
    changes, the windows in which its markets are suspended, and its goals."""

    def __init__(
        self,
        rng: random.Random,
        match_id: str,
        kickoff: int,
        home_rate: float,
        away_rate: float,
    ) -> None:
        self.rng, self.match_id, self.kickoff = rng, match_id, kickoff
        self.rates = {"home": home_rate, "away": away_rate}
        self.sides = {"home": _squad(rng), "away": _squad(rng)}
        self.score = {"home": 0, "away": 0}
        self.reds = {"home": 0, "away": 0}
        self.events: list[tuple[int, str, Payload]] = []
        self.changes: list[tuple[int, tuple[int, int, int, int]]] = []  # ts -> state from then
        self.windows: list[tuple[int, int]] = []  # markets suspended from, to
        self.goals: list[tuple[int, int | None]] = []  # possible ts, confirmed ts (if counted)
        self.periods = (0, 0, 0, 0, 0)  # ps1, pe1, ps2, pe2, match_end
        self._goal_ids = 0

    # -- the match ----------------------------------------------------------------------------

    def play(self) -> None:
        rng = self.rng
        ps1 = self.kickoff + rng.randrange(45_000)
        self._emit(ps1, "period_start", period=1)
        pe1 = self._half(1, ps1, added_s=rng.randint(60, 300))
        self._emit(pe1, "period_end", period=1)
        ps2 = pe1 + HALF_TIME_MS + rng.randrange(60_000)
        self._emit(ps2, "period_start", period=2)
        pe2 = self._half(2, ps2, added_s=rng.randint(120, 480))
        self._emit(pe2, "period_end", period=2)
        end = pe2 + rng.randrange(3_000, 30_000)
        self._emit(
            end,
            "match_end",
            home_score=self.score["home"],
            away_score=self.score["away"],
            home_red=self.reds["home"],
            away_red=self.reds["away"],
        )
        self.periods = (ps1, pe1, ps2, pe2, end)

    def _half(self, period: int, start: int, added_s: int) -> int:
        """Play one half from `start`; the ts its period ends."""
        end = start + (HALF_S + added_s) * 1000 + self.rng.randrange(1000)
        t = start
        while True:
            kinds, weights = self._hazards(period)
            t += int(self.rng.expovariate(sum(weights))) + 1
            if t >= end:
                return end
            kind, team = self.rng.choices(kinds, weights)[0]
            t = self._happen(kind, team, t)
            if t >= end:  # an incident ran past the planned end: the referee adds time
                return t + self.rng.randrange(5_000, 30_000)

    def _hazards(self, period: int) -> tuple[list[tuple[str, str]], list[float]]:
        """Every event kind that can happen next and its rate per millisecond."""
        kinds, weights = [], []
        for team, other in (("home", "away"), ("away", "home")):
            factor = _red_factor(self.reds[team], self.reds[other])
            per_90 = {"goal": self.rates[team] * factor, **_PER_90}
            if period == 2 and self.sides[team].subs < 5:
                per_90["sub"] = _SUBS_PER_HALF * 2
            for kind, rate in per_90.items():
                kinds.append((kind, team))
                weights.append(rate / MATCH_MS)
        return kinds, weights

    def _happen(self, kind: str, team: str, t: int) -> int:
        """Emit one event (an incident may span several lines); the ts play resumes."""
        if kind == "goal":
            return self._goal(team, t)
        if kind == "penalty":
            return self._penalty(team, t)
        side = self.sides[team]
        if kind in ("yellow", "red") and self.reds[team] < 3:
            self._card(team, t, kind)
        elif kind == "sub" and side.bench:
            player = side.bench.pop(self.rng.randrange(len(side.bench)))
            out = self._swap(side, player)
            side.subs += 1
            self._emit(t, "substitution", team=team, player=player, player_out=out)
        else:
            self._emit(
                t,
                "corner" if kind == "corner" else "foul",
                team=team,
                player=self.rng.choice(side.on_pitch),
            )
        return t

    def _goal(self, team: str, t: int, *, penalty: bool = False) -> int:
        rng = self.rng
        self._goal_ids += 1
        goal_id = f"{self.match_id}-g{self._goal_ids}"
        self._emit(t, "goal", goal_id=goal_id, team=team, state="possible")
        if not penalty and rng.random() < DISALLOWED_SHARE:
            end = self._disallow(goal_id, team, t, var=rng.random() < 0.6)
            self.windows.append((t, end))
            self.goals.append((t, None))
            return end + rng.randrange(20_000, 45_000)
        confirmed = t + rng.randrange(4_000, 15_000)
        self._emit(confirmed, "goal", goal_id=goal_id, team=team, state="confirmed")
        self._count(confirmed, team, +1)
        self.windows.append((t, confirmed))
        self.goals.append((t, confirmed))
        if penalty or rng.random() >= OVERTURNED_SHARE:
            return confirmed + rng.randrange(30_000, 60_000)
        check = confirmed + rng.randrange(20_000, 60_000)
        end = self._disallow(goal_id, team, check, var=True, undo=True)
        self.windows.append((check, end))
        return end + rng.randrange(20_000, 45_000)

    def _disallow(self, goal_id: str, team: str, t: int, *, var: bool, undo: bool = False) -> int:
        """A goal ruled out at or after `t` (after a VAR check if `var`); when it ends."""
        rng = self.rng
        if not var:
            ts = t + rng.randrange(3_000, 12_000)
            self._emit(ts, "goal", goal_id=goal_id, team=team, state="disallowed")
            return ts
        start = t if undo else t + rng.randrange(5_000, 20_000)
        self._emit(start, "var", state="start", reason="goal_check")
        ts = start + rng.randrange(30_000, 150_000)
        self._emit(ts, "goal", goal_id=goal_id, team=team, state="disallowed")
        if undo:
            self._count(ts, team, -1)
        end = ts + rng.randrange(500, 2_000)
        self._emit(end, "var", state="end", reason="goal_check")
        return end

    def _penalty(self, team: str, t: int) -> int:
        self._emit(t, "penalty", team=team, state="awarded")
        taken = t + self.rng.randrange(45_000, 110_000)
        self.windows.append((t, taken))
        if self.rng.random() < PENALTY_SCORED:
            self._emit(taken, "penalty", team=team, state="scored")
            return self._goal(team, taken, penalty=True)
        self._emit(taken, "penalty", team=team, state="missed")
        return taken + self.rng.randrange(20_000, 40_000)

    def _card(self, team: str, t: int, color: str) -> None:
        side = self.sides[team]
        player = self.rng.choice(side.on_pitch)
        if color == "yellow" and player in side.booked:
            color = "second_yellow"
        side.booked.add(player)
        self._emit(t, "card", team=team, player=player, color=color)
        if color != "yellow":
            side.on_pitch.remove(player)
            self.reds[team] += 1
            self.windows.append((t, t + 3_000))
            self._record(t)

    def _swap(self, side: _Side, player: str) -> str:
        out = self.rng.choice(side.on_pitch)
        side.on_pitch[side.on_pitch.index(out)] = player
        return out

    def _count(self, ts: int, team: str, delta: int) -> None:
        self.score[team] += delta
        self._record(ts)

    def _record(self, ts: int) -> None:
        state = (self.score["home"], self.score["away"], self.reds["home"], self.reds["away"])
        self.changes.append((ts, state))

    def _emit(self, ts: int, kind: str, **fields: Any) -> None:
        self.events.append((ts, kind, fields))

    # -- reading it back ----------------------------------------------------------------------

    def clock_at(self, ts: int) -> tuple[int, int]:
        """The running match clock (minute, second) at `ts`: held at 45:00 at half time and
        90:00 after full time, 0:00 before kickoff."""
        ps1, pe1, ps2, pe2, _ = self.periods
        if ts < ps1:
            seconds = 0
        elif ts < pe1:
            seconds = (ts - ps1) // 1000
        elif ts < ps2:
            seconds = HALF_S
        elif ts < pe2:
            seconds = HALF_S + (ts - ps2) // 1000
        else:
            seconds = 2 * HALF_S
        return divmod(seconds, 60)

    def with_heartbeats(self) -> list[tuple[int, str, Payload]]:
        """The events with a `clock` line every 5 s from the first period_start to match_end
        (an event sharing a heartbeat's ts comes first)."""
        ps1, *_, end = self.periods
        clocks = []
        for ts in range(ps1 + HEARTBEAT_MS, end, HEARTBEAT_MS):
            minute, second = self.clock_at(ts)
            clocks.append((ts, "clock", {"minute": minute, "second": second}))
        return list(heapq.merge(self.events, clocks, key=lambda e: e[0]))

    def state_at(self, ts: int) -> PricingState:
        """What the engine knows at `ts`: score and reds, and the minute of the last heartbeat."""
        i = bisect_right(self.changes, ts, key=lambda c: c[0])
        score = self.changes[i - 1][1] if i else (0, 0, 0, 0)
        ps1 = self.periods[0]
        beat = ts if ts < ps1 else ps1 + (ts - ps1) // HEARTBEAT_MS * HEARTBEAT_MS
        return PricingState(self.rates["home"], self.rates["away"], self.clock_at(beat)[0], *score)

    def suspended_at(self, ts: int) -> bool:
        return any(start <= ts <= end for start, end in self.windows)


def _squad(rng: random.Random) -> _Side:
    names = [f"{rng.choice('ABCDEFGHJKLMNOPRST')}. {s}" for s in rng.sample(_SURNAMES, 18)]
    return _Side(on_pitch=names[:11], bench=names[11:])


# ---------------------------------------------------------------------------------------------
# Bets


# How the bettors of a match behave, by weight. Every kind but `prematch`/`inplay` is one the
# engine should reject; a kind that does not fit the match (no goal yet) becomes `inplay`.
_BET_KINDS = (
    "prematch",
    "inplay",
    "before_goal",
    "suspended",
    "stale",
    "big_stake",
    "closed_market",
    "unknown_market",
)
_BET_WEIGHTS = (30, 42, 7, 7, 6, 4, 4, 1)
RESEND_SHARE = 0.03  # a bet sent again with the same bet_id a moment later
CENT = Decimal("0.01")
_STAKES = (200, 500, 500, 1000, 1000, 1000, 1500, 2000, 2500, 5000, 750, 10000)  # cents


def bet_payload(
    rng: random.Random,
    users: int,
    bet_id: str,
    match_id: str,
    ts: int,
    market: str,
    selection: str,
    price: Decimal,
) -> Payload:
    """A bet line's fields: a user and a stake drawn from `rng`, in that order."""
    return {
        "v": 1,
        "ts": ts,
        "type": "bet",
        "bet_id": bet_id,
        "user_id": _user_id(rng.randint(1, users)),
        "match_id": match_id,
        "market": market,
        "selection": selection,
        "stake": _money(rng.choice(_STAKES)),
        "price": f"{price:.2f}",
    }


@dataclass
class Bettors(Generic[TimelineT]):
    """The bet lines of one match, each of a kind drawn by weight from `KINDS`; what the
    sports' bettors share. A kind method returns a bet payload, or None when it does not fit
    this match (then `FALLBACK` is made instead)."""

    KINDS: ClassVar[tuple[str, ...]]
    WEIGHTS: ClassVar[tuple[int, ...]]
    FALLBACK: ClassVar[str]

    rng: random.Random
    match_id: str
    fixture_ts: int
    timeline: TimelineT
    settings: _Settings
    _count: int = field(default=0, init=False)

    def lines(self) -> list[_Entry]:
        """`bets_per_match` bet lines; some sent twice a moment later (a client's resend);
        in arrival order."""
        rng, count = self.rng, self.settings.bets_per_match
        out: list[_Entry] = []
        while len(out) < count:
            bet = self._make(rng.choices(self.KINDS, self.WEIGHTS)[0])
            out.append(_bet_entry(bet))
            if len(out) < count and rng.random() < RESEND_SHARE:
                out.append(_bet_entry({**bet, "ts": bet["ts"] + rng.randrange(200, 3_000)}))
        out.sort(key=lambda e: e.sort_ts)
        return out

    def _make(self, kind: str) -> Payload:
        made: Payload | None = getattr(self, f"_{kind}")()
        return made if made is not None else getattr(self, f"_{self.FALLBACK}")()

    def _inplay(self) -> Payload | None:
        raise NotImplementedError

    def _stale(self) -> Payload | None:
        """Asks 8-30 % more than the price on offer (never past the ladder's 1000)."""
        bet = self._inplay()
        if bet is None:
            return None
        offered = Decimal(bet["price"])
        asked = min(max(offered * Decimal(self.rng.uniform(1.08, 1.3)), offered + CENT), MAX_PRICE)
        return None if asked <= offered else {**bet, "price": f"{asked:.2f}"}

    def _over_deposits(self, bet: Payload) -> Payload:
        """`bet` with a stake above everything its user has ever deposited by then."""
        cents = self.settings.ledger.total_cents(bet["user_id"], bet["ts"])
        return {**bet, "stake": _money(cents + self.rng.randrange(50, 300) * 100)}

    def _payload(self, ts: int, market: str, selection: str, price: Decimal) -> Payload:
        self._count += 1
        return bet_payload(
            self.rng, self.settings.users, f"{self.match_id}-b{self._count}", self.match_id, ts,
            market, selection, price,
        )  # fmt: skip


@dataclass
class _Bettors(Bettors["_Timeline"]):
    """The bet lines of one football match."""

    KINDS = _BET_KINDS
    WEIGHTS = _BET_WEIGHTS
    FALLBACK = "inplay"

    _quotes: dict[PricingState, Quote] = field(default_factory=dict, init=False)

    # -- kinds: each returns a bet payload, or None when it does not fit this match -----------

    def _prematch(self) -> Payload:
        ts = self.rng.randrange(self.fixture_ts + 20_000, self.timeline.kickoff)
        return self._bet(ts)

    def _inplay(self) -> Payload:
        ps1, *_, pe2, _ = self.timeline.periods
        return self._bet(self.rng.randrange(ps1 + 10_000, pe2 - 10_000))

    def _before_goal(self) -> Payload | None:
        """Placed less than the bet delay before a goal `possible`: the delay catches it."""
        if not self.timeline.goals:
            return None
        possible, _ = self.rng.choice(self.timeline.goals)
        ts = possible - self.rng.randrange(500, 4_500)
        return None if self.timeline.suspended_at(ts) else self._bet(ts)

    def _suspended(self) -> Payload | None:
        """Placed while the markets are suspended, at the last price seen before."""
        start, end = self.rng.choice(self.timeline.windows or [(0, 0)])
        if end - start < 1_000:
            return None
        return self._bet(self.rng.randrange(start + 300, end - 300), priced_at=start - 1)

    def _big_stake(self) -> Payload:
        return self._over_deposits(self._inplay() if self.rng.random() < 0.5 else self._prematch())

    def _closed_market(self) -> Payload | None:
        """`ou_0.5` after the first goal (decided, CLOSED), at the price seen before it."""
        confirmed = [(p, c) for p, c in self.timeline.goals if c is not None]
        if not confirmed:
            return None
        possible, first = confirmed[0]
        ts = first + self.rng.randrange(5_000, 120_000)
        state = self.timeline.state_at(ts)
        if ts >= self.timeline.periods[3] or state.home_score + state.away_score == 0:
            return None
        selection = self.rng.choice(("over", "under"))
        price = self._quote(self.timeline.state_at(possible - 1))["ou_0.5"][selection][1]
        return self._payload(ts, "ou_0.5", selection, price)

    def _unknown_market(self) -> Payload:
        """A market the match does not offer (over/under 6.5 goals)."""
        bet = self._inplay()
        return {**bet, "market": "ou_6.5", "selection": self.rng.choice(("over", "under"))}

    # -- helpers ------------------------------------------------------------------------------

    def _bet(self, ts: int, priced_at: int | None = None) -> Payload:
        """An ordinary bet at `ts` on an open market at the price on offer at `priced_at`
        (default `ts`); in play the bettor takes the lowest price of the clock minutes around
        it, so an engine repricing on its own schedule still offers at least that much."""
        state = self.timeline.state_at(ts if priced_at is None else priced_at)
        goals = state.home_score + state.away_score
        market = self.rng.choices(
            (
                "1x2",
                f"ou_{self.rng.randint(goals, 4)}.5" if goals < 5 else "1x2",
                f"goal_{goals + 1}",
            ),
            (40, 40, 20),
        )[0]
        book = self._quote(state)[market]
        selection = self.rng.choices(list(book), [max(p, 0.02) for p, _ in book.values()])[0]
        price = book[selection][1]
        if ts >= self.timeline.periods[0]:
            for minute in (state.minute - 1, state.minute + 1):
                near = self._quote(replace(state, minute=max(minute, 0))).get(market)
                if near and selection in near:
                    price = min(price, near[selection][1])
        return self._payload(ts, market, selection, price)

    def _quote(self, state: PricingState) -> Quote:
        """The pricer's book for `state` (a match prices few distinct states: cache them)."""
        book = self._quotes.get(state)
        if book is None:
            book = self._quotes[state] = _price(state, self.settings.margin)
        return book


def _resent(entry: _Entry, bet_ids: set[str]) -> str | None:
    """A bet sent again with a bet_id seen before: one bet, the repeat rejected."""
    bet_id = entry.payload.get("bet_id")
    if entry.payload.get("type") != "bet" or bet_id is None:
        return None
    if bet_id in bet_ids:
        return "duplicate"
    bet_ids.add(bet_id)
    return None


def _bet_entry(payload: Payload) -> _Entry:
    return _Entry(payload["ts"], payload, _json(payload))


# ---------------------------------------------------------------------------------------------
# Faults


class _FaultInjector:
    """Adds or disturbs lines of one match's valid entries, each labelled with its reason.

    A fault is anchored at a line from the fixture up to the line before match_end: extra
    lines are sent right after their anchor (same sort ts), so none comes before the fixture
    or after match_end. A line takes part in at most one out_of_order swap or duplicate.
    """

    def __init__(
        self,
        rng: random.Random,
        entries: list[_Entry],
        match_id: str,
        kickoff: int,
        in_play_from: int,
    ) -> None:
        self.rng, self.entries, self.match_id = rng, entries, match_id
        self.kickoff, self.in_play_from = kickoff, in_play_from
        self.end = len(entries) - 1  # match_end: the match's last line
        self.extras: dict[int, list[tuple[str, str | Payload]]] = {}  # anchor -> (fault, line)
        self.late: dict[int, int] = {}  # successor -> the earlier line sent after it
        self.taken: set[int] = set()
        self._phantoms = 0

    def run(self, rate: float) -> list[tuple[int, SimLine]]:
        if rate > 0:
            for anchor in range(self.end):
                if self.rng.random() < rate:
                    kind = self.rng.choices(FAULT_KINDS, _FAULT_WEIGHTS)[0]
                    getattr(self, f"_{kind}")(anchor) or self._malformed_json(anchor)
        return self._assemble()

    def _assemble(self) -> list[tuple[int, SimLine]]:
        moved = set(self.late.values())
        seqs: Counter[str] = Counter()
        bet_ids: set[str] = set()
        out = []
        for i, entry in enumerate(self.entries):
            if i not in moved:
                out.append((entry.sort_ts, SimLine(entry.text, _resent(entry, bet_ids))))
            if i in self.late:
                out.append(
                    (entry.sort_ts, SimLine(self.entries[self.late[i]].text, "out_of_order"))
                )
            for fault, line in self.extras.get(i, ()):
                out.append((entry.sort_ts, SimLine(self._text(line, seqs), fault)))
        return out

    @staticmethod
    def _text(line: str | Payload, seqs: Counter[str]) -> str:
        """The line's text; a `sim-faults` line takes the next seq of its match id here, in
        arrival order, so its own seqs run 1, 2, 3, ... as they arrive."""
        if isinstance(line, str):
            return line
        if line.get("provider") == FAULT_PROVIDER and line.get("seq") is None:
            seqs[line["match_id"]] += 1
            line = {**line, "seq": seqs[line["match_id"]]}
        return _json(line)

    def _add(self, anchor: int, fault: str, line: str | Payload) -> bool:
        self.extras.setdefault(anchor, []).append((fault, line))
        return True

    def _find(
        self, anchor: int, test: Callable[[int, Payload], bool], scan: int = 200
    ) -> int | None:
        for i in range(anchor, min(anchor + scan, self.end)):
            if test(i, self.entries[i].payload):
                return i
        return None

    # -- kinds: each returns True when it could be placed at `anchor` -------------------------

    def _duplicate(self, anchor: int) -> bool:
        """A feed line sent again verbatim a few lines later."""
        src = self._find(anchor, lambda i, p: "seq" in p and i not in self.taken)
        if src is None:
            return False
        self.taken.add(src)
        again = min(src + self.rng.randint(1, 4), self.end - 1)
        return self._add(again, "duplicate", self.entries[src].text)

    def _out_of_order(self, anchor: int) -> bool:
        """A harmless feed line sent just after its successor: rejected, the successor is
        accepted with a gap. Never a clock line, so heartbeats keep their 5 s."""

        def fits(i: int, p: Payload) -> bool:
            return p["type"] in HARMLESS_TYPES and i not in self.taken

        late = self._find(anchor, fits, scan=400)
        if late is None:
            return False
        successor = self._find(late + 1, lambda i, p: "seq" in p, scan=50)
        if successor is None or successor in self.taken:
            return False
        self.taken.update((late, successor))
        self.late[successor] = late
        return True

    def _malformed_json(self, anchor: int) -> bool:
        """A copy of a line cut off in the middle."""
        text = self.entries[anchor].text
        return self._add(
            anchor, "malformed_json", text[: self.rng.randrange(len(text) // 4, 3 * len(text) // 4)]
        )

    def _unknown_type(self, anchor: int) -> bool:
        src = self._find(anchor, lambda i, p: "seq" in p)
        if src is None:
            return False
        p = self.entries[src].payload
        kind = self.rng.choice(("throw_in", "offside", "goal_kick", "injury_break"))
        line = {k: p[k] for k in ("v", "provider", "match_id", "seq", "ts")}
        return self._add(
            anchor,
            "unknown_type",
            {**line, "type": kind, "team": self.rng.choice(("home", "away"))},
        )

    def _invalid_field(self, anchor: int) -> bool:
        """A copy with one field of the wrong type or out of range."""
        variants = {
            "seq": lambda p: "seq" in p,
            "minute": lambda p: p["type"] == "clock",
            "stake": lambda p: p["type"] == "bet",
            "team": lambda p: "team" in p,
        }
        name = self.rng.choice(list(variants))
        src = self._find(anchor, lambda i, p: variants[name](p), scan=400)
        if src is None:
            name, src = "seq", self._find(anchor, lambda i, p: "seq" in p)
        if src is None:
            return False
        p = self.entries[src].payload
        wrong = {"seq": str(p.get("seq")), "minute": -1, "stake": "abc", "team": "centre"}
        return self._add(anchor, f"invalid_field:{name}", {**p, name: wrong[name]})

    def _missing_field(self, anchor: int) -> bool:
        """A copy without one required field."""
        p = self.entries[anchor].payload
        names = ("ts", "ts", "seq") if "seq" in p else ("ts", "stake", "user_id")
        name = self.rng.choice(names)
        return self._add(anchor, f"missing_field:{name}", {k: v for k, v in p.items() if k != name})

    def _unknown_match(self, anchor: int) -> bool:
        ghost = f"{self.match_id}-ghost"
        return self._add(
            anchor, "unknown_match", self._fault_line(ghost, self.entries[anchor].sort_ts, "foul")
        )

    def _ts_out_of_range(self, anchor: int) -> bool:
        """A harmless line stamped more than a day from kickoff."""
        shift = 86_400_000 + self.rng.randrange(3_600_000, 5 * 86_400_000)
        ts = self.kickoff - shift if self.kickoff > shift else self.kickoff + shift
        kind = self.rng.choice(("clock", "foul"))
        return self._add(anchor, "ts_out_of_range", self._fault_line(self.match_id, ts, kind))

    def _unknown_goal(self, anchor: int) -> bool:
        """A goal `confirmed` in play whose goal_id was never `possible`."""
        src = self._find(
            anchor, lambda i, p: self.entries[i].sort_ts >= self.in_play_from, scan=self.end
        )
        if src is None:
            return False
        line = self._fault_line(self.match_id, self.entries[src].sort_ts, "goal")
        return self._add(src, "unknown_goal", line)

    def _fault_line(self, match_id: str, ts: int, kind: str) -> Payload:
        """A well-formed line from the `sim-faults` provider (its seq is set on assembly)."""
        line = {
            "v": 1,
            "provider": FAULT_PROVIDER,
            "match_id": match_id,
            "seq": None,
            "ts": ts,
            "type": kind,
        }
        team = self.rng.choice(("home", "away"))
        if kind == "clock":
            return {**line, "minute": 30, "second": 0}
        if kind == "goal":
            self._phantoms += 1
            return {
                **line,
                "goal_id": f"{self.match_id}-phantom{self._phantoms}",
                "team": team,
                "state": "confirmed",
            }
        return {**line, "team": team, "player": "A. Nobody"}


# ---------------------------------------------------------------------------------------------
# Small helpers


def _json(payload: Payload) -> str:
    return _encode(payload).decode()


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _user_id(n: int) -> str:
    return f"u{n:04d}"


def _poisson_draw(rng: random.Random, mean: float) -> int:
    """Knuth's Poisson sampler (fine for the small means used here)."""
    limit, k, product = math.exp(-min(mean, 50.0)), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


if __name__ == "__main__":
    sys.exit(main())
