"""The Betfair adapter on real Exchange Stream recordings, checked against an independent
reading of the same lines by betfairlightweight (the Betfair stream client flumine uses),
plus hand-written lines for the throttle, the rejects and the sports-data rule.

Data: ../shared/data/betfair (never copied into the repo); see its README for the sources.
"""

from __future__ import annotations

import bz2
import gzip
import heapq
import json
import logging
import pickle
import queue
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from operators.adapters.betfair import (
    BetfairProcessor,
    RunnerKey,
    is_betfair_line,
    market_key,
    split_by_market,
)
from operators.parse import RawLine
from operators.rows import FeedEventRow, MarketStatusRow, PriceRow, Reject, Row
from tests.conftest import shared_data

betfairlightweight = pytest.importorskip("betfairlightweight")
from betfairlightweight.streaming import StreamListener  # noqa: E402

logging.getLogger("betfairlightweight").setLevel(logging.ERROR)  # "unexpected conflation"

CRICKET, NBA, GREYHOUNDS = "1.200806927.gz", "1.166811431.bz2", "1.197931750.gz"
SPORTS = "sportsdata-1.200806927.gz"
MARKET_FILES = [CRICKET, NBA, GREYHOUNDS]
STATUS_REASONS = {"betfair_status", "in_play", "not_in_play"}


def read_lines(name: str) -> list[bytes]:
    path: Path = shared_data("betfair", name)
    opener = bz2.open if path.suffix == ".bz2" else gzip.open
    with opener(path, "rb") as file:
        return [line.rstrip(b"\r\n") for line in file if line.strip()]


# ---- oddsflow's reading: every line through one processor per key ---------------------------


@dataclass(frozen=True)
class State:
    """One market's cache after a line: ACTIVE runners' best back, every runner's ltp."""

    pt: int
    status: str | None
    in_play: bool | None
    back: dict[int, float | None]
    ltp: dict[int, float]
    winners: tuple[int, ...]


@dataclass
class Replay:
    rows: list[Row] = field(default_factory=list)
    per_line: list[list[Row]] = field(default_factory=list)
    states: list[State | None] = field(default_factory=list)
    processors: dict[str, BetfairProcessor] = field(default_factory=dict)

    def market_rows(self) -> list[MarketStatusRow]:
        return [r for r in self.rows if isinstance(r, MarketStatusRow)]

    def label(self, market_id: str, selection_id: int) -> str:
        mirror = self.processors["bf:" + market_id].markets[market_id]
        return mirror.label((selection_id, 0.0), keep=False)


def run(lines: list[bytes], source: str = "test", market_id: str | None = None) -> Replay:
    """Every output row, lines in order, one processor per `market_key` (as the flow does);
    with `market_id`, that market's cache after every line as well."""
    replay = Replay()
    for n, data in enumerate(lines, 1):
        key = market_key(data)
        processor = replay.processors.setdefault(key, BetfairProcessor())
        rows = processor.process(RawLine(f"{source}:{n}", data))
        replay.rows.extend(rows)
        replay.per_line.append(rows)
        if market_id is not None:
            replay.states.append(_state(replay.processors, market_id, json.loads(data)["pt"]))
    return replay


def _state(processors: dict[str, BetfairProcessor], market_id: str, pt: int) -> State | None:
    processor = processors.get("bf:" + market_id)
    mirror = processor.markets.get(market_id) if processor else None
    if mirror is None:
        return None
    book = mirror.book
    runners = book.runners.items()
    return State(
        pt=pt,
        status=book.status,
        in_play=book.in_play if book.status is not None else None,
        back={k[0]: r.offer() for k, r in runners if r.status == "ACTIVE"},
        ltp={k[0]: r.ltp for k, r in runners if r.ltp is not None},
        winners=tuple(k[0] for k, r in runners if r.status == "WINNER"),
    )


# ---- betfairlightweight's reading of the same lines ------------------------------------------


def reference_states(lines: list[bytes], market_id: str) -> list[State | None]:
    """The market as betfairlightweight's MarketStream caches it, after every line."""
    output: queue.Queue[list[dict[str, Any]]] = queue.Queue()
    listener = StreamListener(output_queue=output, max_latency=None, lightweight=True)
    listener.register_stream(0, "marketSubscription")
    states: list[State | None] = []
    last: State | None = None
    for data in lines:
        listener.on_data(data.decode())
        while not output.empty():
            for book in output.get_nowait():
                if book["marketId"] == market_id:
                    last = _reference_state(book)
        states.append(last)
    return states


def _reference_state(book: dict[str, Any]) -> State:
    runners = book["runners"]
    return State(
        pt=book["publishTime"],
        status=book["status"],
        in_play=book["inplay"] if book["status"] is not None else None,
        back={
            r["selectionId"]: (r["ex"]["availableToBack"] or [{"price": None}])[0]["price"]
            for r in runners
            if r["status"] == "ACTIVE"
        },
        ltp={r["selectionId"]: r["lastPriceTraded"] for r in runners if r["lastPriceTraded"]},
        winners=tuple(r["selectionId"] for r in runners if r["status"] == "WINNER"),
    )


def transitions(states: list[State | None]) -> list[tuple[int, str, bool]]:
    """(pt, status, in play) each time the exchange's status or in-play flag changes."""
    out: list[tuple[int, str, bool]] = []
    for s in states:
        if s is None or s.status is None or s.in_play is None:
            continue
        if not out or out[-1][1:] != (s.status, s.in_play):
            out.append((s.pt, s.status, s.in_play))
    return out


def published_transitions(rows: list[MarketStatusRow]) -> list[tuple[int, str, bool]]:
    """The same, read back from oddsflow's rows: in play since the last `in_play` row."""
    in_play = False
    out = []
    for r in rows:
        if r.reason not in STATUS_REASONS:
            continue
        in_play = {"in_play": True, "not_in_play": False}.get(r.reason, in_play)
        out.append((r.ts, r.status, in_play))
    return out


@dataclass
class Recording:
    name: str
    market_id: str
    lines: list[bytes]
    ours: Replay
    reference: list[State | None]


_recordings: dict[str, Recording] = {}


@pytest.fixture(params=MARKET_FILES)
def recording(request: pytest.FixtureRequest) -> Recording:
    name: str = request.param
    if name not in _recordings:
        lines = read_lines(name)
        market_id = json.loads(lines[0])["mc"][0]["id"]
        _recordings[name] = Recording(
            name,
            market_id,
            lines,
            run(lines, name, market_id),
            reference_states(lines, market_id),
        )
    return _recordings[name]


# ---- the real recordings -----------------------------------------------------------------------


def test_every_line_is_a_feed_event_and_none_is_rejected(recording: Recording) -> None:
    events = [r for r in recording.ours.rows if isinstance(r, FeedEventRow)]
    assert not [r for r in recording.ours.rows if isinstance(r, Reject)]
    assert [e.seq for e in events] == list(range(1, len(recording.lines) + 1))
    assert {(e.provider, e.match_id, e.type) for e in events} == {
        ("betfair", recording.market_id, "mcm")
    }
    assert [e.payload.encode() for e in events] == recording.lines
    assert [e.ts for e in events] == [json.loads(line)["pt"] for line in recording.lines]
    assert events[0].source == f"{recording.name}:1"


def test_status_transitions_match_betfairlightweight(recording: Recording) -> None:
    expected = transitions(recording.reference)
    assert published_transitions(recording.ours.market_rows()) == expected
    assert transitions(recording.ours.states) == expected
    assert expected[-1][1] == "CLOSED"


EXPECTED_HISTORY = {  # (status, reason) of every non-price version, for the reader
    CRICKET: [
        ("OPEN", "betfair_status"),
        ("SUSPENDED", "betfair_status"),
        ("OPEN", "in_play"),
        ("SUSPENDED", "betfair_status"),
        ("CLOSED", "betfair_status"),
        ("SETTLED", "settled"),
    ],
    GREYHOUNDS: [
        ("OPEN", "betfair_status"),
        ("SUSPENDED", "betfair_status"),
        ("CLOSED", "betfair_status"),
        ("SETTLED", "settled"),
    ],
}
EXPECTED_HISTORY[NBA] = EXPECTED_HISTORY[CRICKET]
EXPECTED_WINNER = {CRICKET: "228749", NBA: "Cleveland Cavaliers", GREYHOUNDS: "37947503"}


def test_market_history_and_winner(recording: Recording) -> None:
    rows = recording.ours.market_rows()
    assert [r.version for r in rows] == list(range(1, len(rows) + 1))
    assert {(r.match_id, r.market) for r in rows} == {
        (recording.market_id, "win" if recording.name == GREYHOUNDS else "match_odds")
    }
    history = [(r.status, r.reason) for r in rows if r.reason != "prices"]
    assert history == EXPECTED_HISTORY[recording.name]
    settled = rows[-1]
    assert settled.status == "SETTLED"
    assert settled.winner == EXPECTED_WINNER[recording.name]
    (winner,) = recording.reference[-1].winners  # type: ignore[union-attr]
    assert settled.winner == recording.ours.label(recording.market_id, winner)
    assert all(r.winner is None for r in rows[:-1])


def test_last_traded_prices_match_betfairlightweight(recording: Recording) -> None:
    reference = recording.reference[-1]
    assert reference is not None and reference.ltp
    processor = recording.ours.processors["bf:" + recording.market_id]
    assert processor.last_traded() == {
        recording.ours.label(recording.market_id, selection): Decimal(repr(ltp)).quantize(
            Decimal("0.01")
        )
        for selection, ltp in reference.ltp.items()
    }
    assert [s.ltp if s else None for s in recording.ours.states] == [
        s.ltp if s else None for s in recording.reference
    ]


def test_best_back_prices_match_betfairlightweight_after_every_line(recording: Recording) -> None:
    ours = [s.back if s else None for s in recording.ours.states]
    assert ours == [s.back if s else None for s in recording.reference]


def test_price_versions_carry_the_exchange_prices_throttled(recording: Recording) -> None:
    """Each published price set is betfairlightweight's best back at that moment: after the
    line that published it, or, for a version held back by the throttle (ts before the line's
    pt), after the line before; and price-only versions are at least 1 s after the last."""
    market_id, replay = recording.market_id, recording.ours
    priced_at: int | None = None
    versions = 0
    for n, rows in enumerate(replay.per_line):
        for row in rows:
            if not isinstance(row, MarketStatusRow) or row.status != "OPEN":
                continue
            versions += row.reason == "prices"
            if row.reason == "prices":
                assert priced_at is not None and row.ts - priced_at >= 1_000
            priced_at = row.ts
            held_back = row.ts < recording.reference[n].pt  # type: ignore[union-attr]
            reference = recording.reference[n - 1 if held_back else n]
            assert reference is not None and reference.pt <= row.ts
            prices = {
                p.selection: (p.price, p.probability)
                for p in rows
                if isinstance(p, PriceRow) and p.version == row.version
            }
            assert prices == {
                replay.label(market_id, selection): _offered(price)
                for selection, price in reference.back.items()
            }
    first, last = recording.reference[0], recording.reference[-1]
    assert first is not None and last is not None
    assert 0 < versions <= (last.pt - first.pt) // 1_000 + 1  # at most one a second


def _offered(price: float | None) -> tuple[Decimal, float]:
    if price is None:
        return Decimal("0.00"), 0.0
    return Decimal(repr(price)).quantize(Decimal("0.01")), 1 / price


def test_a_restored_snapshot_carries_on_the_same() -> None:
    """Bytewax snapshots the processor (pickle): a restored one continues identically."""
    lines = read_lines(GREYHOUNDS)
    whole = run(lines).rows
    first = BetfairProcessor()
    rows: list[Row] = []
    for n, data in enumerate(lines[:80], 1):
        rows.extend(first.process(RawLine(f"test:{n}", data)))
    restored: BetfairProcessor = pickle.loads(pickle.dumps(first))
    for n, data in enumerate(lines[80:], 81):
        rows.extend(restored.process(RawLine(f"test:{n}", data)))
    assert rows == whole


# ---- sports data ---------------------------------------------------------------------------------


def by_publish_time(*names: str) -> list[bytes]:
    """The recordings merged in event-time order (the order the sports-data rule needs)."""

    def timed(name: str) -> Iterator[tuple[int, int, bytes]]:
        for data in read_lines(name):
            yield json.loads(data)["pt"], names.index(name), data

    return [data for *_, data in heapq.merge(*(timed(n) for n in names))]


MARKET = "1.200806927"
POSSIBLE_WICKETS = [
    (1657545177741, 1657545187624),
    (1657546407083, 1657546410231),
    (1657546691716, 1657546694434),
    (1657547194073, 1657547197940),
    (1657548126120, 1657548133758),
    (1657549264497, 1657549268885),
]
MATCH_COMPLETE_AT = 1657550299614
EXCHANGE_SUSPENDED_AT = 1657550798245
EXCHANGE_CLOSED_AT = 1657550847332


@pytest.fixture(scope="module")
def cricket_with_sports() -> Replay:
    return run(by_publish_time(CRICKET, SPORTS), "merged")


def test_sports_feed_suspensions_on_the_real_match(cricket_with_sports: Replay) -> None:
    """What oddsflow does with the exchange's market when the sports feed reports a
    possible wicket, a review or the end of the match (the exchange itself kept the
    market OPEN through all of them)."""
    history = [
        (r.ts, r.status, r.reason)
        for r in cricket_with_sports.market_rows()
        if r.reason != "prices"
    ]
    expected = [
        (1657018212979, "OPEN", "betfair_status"),
        (1657537201427, "SUSPENDED", "betfair_status"),
        (1657537220540, "OPEN", "in_play"),
        (1657541763550, "SUSPENDED", "sportsdata:UMPIRE_REVIEW"),
        (1657541777959, "OPEN", "sportsdata:MATCH_STABLE"),
    ]
    for held, released in POSSIBLE_WICKETS:
        expected.append((held, "SUSPENDED", "sportsdata:POSSIBLE_WICKET"))
        expected.append((released, "OPEN", "sportsdata:MATCH_STABLE"))
    expected += [
        (MATCH_COMPLETE_AT, "SUSPENDED", "sportsdata:MATCH_COMPLETE"),
        (EXCHANGE_CLOSED_AT, "CLOSED", "betfair_status"),
        (EXCHANGE_CLOSED_AT, "SETTLED", "settled"),
    ]
    assert history == expected


def test_what_oddsflow_did_when_the_sports_feed_reported_match_complete(
    cricket_with_sports: Replay,
) -> None:
    """MATCH_COMPLETE came 8 minutes before the exchange suspended: oddsflow suspended the
    market at once, published no price after it, showed nothing new when the exchange
    suspended too, and closed and settled it with the exchange."""
    rows = cricket_with_sports.market_rows()
    at = next(i for i, r in enumerate(rows) if r.ts >= MATCH_COMPLETE_AT)
    before, after = rows[at - 1], rows[at:]
    assert before.status == "OPEN" and before.ts < MATCH_COMPLETE_AT
    assert [(r.ts, r.status, r.reason, r.winner) for r in after] == [
        (MATCH_COMPLETE_AT, "SUSPENDED", "sportsdata:MATCH_COMPLETE", None),
        (EXCHANGE_CLOSED_AT, "CLOSED", "betfair_status", None),
        (EXCHANGE_CLOSED_AT, "SETTLED", "settled", "228749"),
    ]
    assert not [
        r for r in cricket_with_sports.rows if isinstance(r, PriceRow) and r.ts >= MATCH_COMPLETE_AT
    ]
    exchange_alone = run(read_lines(CRICKET)).market_rows()
    assert [(r.ts, r.status) for r in exchange_alone if r.ts >= MATCH_COMPLETE_AT] == [
        (EXCHANGE_SUSPENDED_AT, "SUSPENDED"),
        (EXCHANGE_CLOSED_AT, "CLOSED"),
        (EXCHANGE_CLOSED_AT, "SETTLED"),
    ]


def test_no_prices_while_the_sports_feed_holds_the_market(cricket_with_sports: Replay) -> None:
    rows = cricket_with_sports.market_rows()
    for held, released in POSSIBLE_WICKETS:
        assert not [r for r in rows if held < r.ts < released]
        reopening = next(r for r in rows if r.ts == released)
        priced = [
            p
            for p in cricket_with_sports.rows
            if isinstance(p, PriceRow) and p.version == reopening.version
        ]
        assert len(priced) == 2  # the new prices come with the reopening


def test_the_exchange_stream_is_unchanged_by_the_sports_lines(
    cricket_with_sports: Replay,
) -> None:
    alone = run(read_lines(CRICKET), "merged")
    events = [r for r in cricket_with_sports.rows if isinstance(r, FeedEventRow)]
    exchange = [(r.seq, r.ts, r.payload) for r in events if r.provider == "betfair"]
    assert exchange == [(r.seq, r.ts, r.payload) for r in alone.rows if isinstance(r, FeedEventRow)]


def test_sports_data_is_normalized_and_deduplicated() -> None:
    lines = read_lines(SPORTS)
    replay = run(lines, SPORTS)
    assert list(replay.processors) == ["bf:" + MARKET]
    events = [r for r in replay.rows if isinstance(r, FeedEventRow)]
    assert not [r for r in replay.rows if isinstance(r, (Reject, MarketStatusRow))]
    assert {e.provider for e in events} == {"betfair-sports"}
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.payload.encode() for e in events if e.type == "ccm"] == lines

    ours = [e for e in events if e.match_id == MARKET]
    incidents = [json.loads(e.payload) for e in ours if e.type == "incident"]
    every = [
        i
        for data in lines
        for c in json.loads(data)["cc"]
        if c["marketId"] == MARKET
        for i in (c.get("incidentListWrapper") or {}).get("incidentList", [])
    ]
    assert len(every) == 2421  # each ball re-sent several times
    distinct = {(i["incidentType"], i["overs"], i["actualTime"]) for i in every}
    keys = [(i["incidentType"], i["overs"], i["actualTime"]) for i in incidents]
    assert len(keys) == len(set(keys)) == len(distinct) == 295
    assert set(keys) == distinct
    corrections = [json.loads(e.payload) for e in ours if e.type == "incident_update"]
    assert {"incidentType": "STRIKE", "overs": "1.6", "actualTime": 1657539470677} in [
        {k: c[k] for k in ("incidentType", "overs", "actualTime")} for c in corrections
    ]


def test_fixture_status_changes_match_betfairlightweight() -> None:
    lines = read_lines(SPORTS)
    output: queue.Queue[list[dict[str, Any]]] = queue.Queue()
    listener = StreamListener(output_queue=output, max_latency=None, lightweight=True)
    listener.register_stream(0, "cricketSubscription")
    expected: list[tuple[int, str, str]] = []
    for data in lines:
        listener.on_data(data.decode())
        while not output.empty():
            for match in output.get_nowait():
                info = match["fixtureInfo"] or {}
                if match["marketId"] != MARKET or not info.get("eventStatus"):
                    continue
                now = (info["fixtureStatus"], info["eventStatus"])
                if not expected or expected[-1][1:] != now:
                    expected.append((match["pt"], *now))
    ours = [
        (e.ts, *json.loads(e.payload).values())
        for e in run(lines).rows
        if isinstance(e, FeedEventRow) and e.type == "fixture_status" and e.match_id == MARKET
    ]
    assert ours == expected
    assert expected[-3:] == [
        (MATCH_COMPLETE_AT, "FINISHED", "MATCH_COMPLETE"),
        (1657550503234, "FINISHED", "UNKNOWN_EVENT"),
        (1657550505957, "FINISHED", "EVENT_CLOSED"),
    ]


def test_sports_lines_about_two_markets_split_into_one_line_each() -> None:
    lines = read_lines(SPORTS)
    two = [data for data in lines if len(json.loads(data)["cc"]) == 2]
    assert len(two) == 2
    raw = RawLine("sports:7", two[0])
    parts = split_by_market(raw)
    assert [p.source for p in parts] == ["sports:7#1", "sports:7#2"]
    assert [market_key(p.data) for p in parts] == ["bf:1.200806927", "bf:1.200660965"]
    original = json.loads(two[0])
    for n, part in enumerate(parts):
        assert json.loads(part.data) == {**original, "cc": [original["cc"][n]]}
    single = RawLine("sports:1", lines[0])
    assert split_by_market(single) == [single]


# ---- hand-written lines: throttle, image, multi-market, heartbeats ------------------------------

T0 = 1_700_000_000_000
M = "1.1"


def mcm(pt: int, *changes: dict[str, Any], **extra: Any) -> bytes:
    return msgspec.json.encode({"op": "mcm", "clk": "x", "pt": pt, "mc": list(changes), **extra})


def definition(
    status: str = "OPEN", in_play: bool = False, runners: dict[int, str] | None = None, **kw: Any
) -> dict[str, Any]:
    runners = runners or {1: "ACTIVE", 2: "ACTIVE"}
    return {
        "status": status,
        "inPlay": in_play,
        "betDelay": 5 if in_play else 0,
        "marketType": "MATCH_ODDS",
        "runners": [
            {"id": i, "status": s, "sortPriority": n} for n, (i, s) in enumerate(runners.items())
        ],
        **kw,
    }


def atb(pt: int, *runners: tuple[int, list[list[float]]]) -> bytes:
    """A delta of the back ladders: (runner id, [[price, size], ...]), size 0 removes."""
    return mcm(pt, {"id": M, "rc": [{"id": i, "atb": levels} for i, levels in runners]})


def prices_of(rows: list[Row], version: int) -> dict[str, Decimal]:
    return {r.selection: r.price for r in rows if isinstance(r, PriceRow) and r.version == version}


def test_price_changes_are_throttled_to_one_version_a_second() -> None:
    first = {"id": M, "img": True, "marketDefinition": definition()}
    first["rc"] = [{"id": 1, "atb": [[2.0, 5]]}, {"id": 2, "atb": [[2.1, 5]]}]
    lines = [
        mcm(T0, first),  # v1
        atb(T0 + 300, (1, [[2.0, 0], [1.9, 5]])),  # within v1's window: held back
        atb(T0 + 700, (1, [[1.9, 0], [1.8, 5]])),  # the price when the window ends
        atb(T0 + 1_500, (2, [[2.1, 0], [2.2, 5]])),  # first v2 at T0+1000, then held back
        atb(T0 + 1_600, (2, [[2.2, 0], [2.24, 5]])),
        atb(T0 + 2_500, (1, [[1.8, 0], [1.75, 5]])),  # v3 at T0+2000, then held back
        mcm(T0 + 9_000, {"id": M, "marketDefinition": definition("SUSPENDED")}),  # v4, v5
    ]
    replay = run(lines)
    history = [(r.version, r.status, r.reason, r.ts - T0) for r in replay.market_rows()]
    assert history == [
        (1, "OPEN", "betfair_status", 0),
        (2, "OPEN", "prices", 1_000),
        (3, "OPEN", "prices", 2_000),
        (4, "OPEN", "prices", 3_000),
        (5, "SUSPENDED", "betfair_status", 9_000),
    ]
    rows = replay.rows
    assert prices_of(rows, 1) == {"1": Decimal("2.00"), "2": Decimal("2.10")}
    assert prices_of(rows, 2) == {"1": Decimal("1.80"), "2": Decimal("2.10")}
    assert prices_of(rows, 3) == {"1": Decimal("1.80"), "2": Decimal("2.24")}
    assert prices_of(rows, 4) == {"1": Decimal("1.75"), "2": Decimal("2.24")}
    assert prices_of(rows, 5) == {}
    assert [r.probability for r in rows if isinstance(r, PriceRow) and r.version == 3] == [
        1 / 1.8,
        1 / 2.24,
    ]
    assert {r.ts - T0 for r in rows if isinstance(r, PriceRow) and r.version == 2} == {1_000}


def test_a_held_back_price_is_published_at_the_end_of_its_window() -> None:
    lines = [
        mcm(T0, {"id": M, "marketDefinition": definition(), "rc": [{"id": 1, "atb": [[2.0, 5]]}]}),
        atb(T0 + 2_500, (1, [[2.0, 0], [1.9, 5]])),  # the window is open: published at once
        atb(T0 + 2_600, (1, [[1.9, 0], [1.7, 5]])),  # held back until T0+3500
        mcm(T0 + 9_000, {"id": M, "rc": [{"id": 1, "ltp": 1.7}]}),  # the next line flushes it
    ]
    replay = run(lines)
    history = [(r.reason, r.ts - T0) for r in replay.market_rows()]
    assert history == [("betfair_status", 0), ("prices", 2_500), ("prices", 3_500)]
    assert prices_of(replay.rows, 3) == {"1": Decimal("1.70"), "2": Decimal("0.00")}


def test_nothing_is_priced_while_suspended_and_the_reopening_carries_the_prices() -> None:
    lines = [
        mcm(T0, {"id": M, "marketDefinition": definition(), "rc": [{"id": 1, "atb": [[2.0, 5]]}]}),
        mcm(T0 + 5_000, {"id": M, "marketDefinition": definition("SUSPENDED")}),
        atb(T0 + 6_000, (1, [[2.0, 0], [3.0, 5]])),
        atb(T0 + 8_000, (1, [[3.0, 0], [3.5, 5]]), (2, [[1.4, 5]])),
        mcm(T0 + 9_000, {"id": M, "marketDefinition": definition("OPEN", in_play=True)}),
    ]
    rows = run(lines).rows
    history = [(r.version, r.status, r.reason) for r in rows if isinstance(r, MarketStatusRow)]
    assert history == [
        (1, "OPEN", "betfair_status"),
        (2, "SUSPENDED", "betfair_status"),
        (3, "OPEN", "in_play"),
    ]
    assert prices_of(rows, 1) == {"1": Decimal("2.00"), "2": Decimal("0.00")}
    assert prices_of(rows, 2) == {}
    assert prices_of(rows, 3) == {"1": Decimal("3.50"), "2": Decimal("1.40")}
    probabilities = [r.probability for r in rows if isinstance(r, PriceRow) and r.version == 1]
    assert probabilities == [0.5, 0.0]


def test_an_image_replaces_the_cache_but_versions_run_on() -> None:
    lines = [
        mcm(
            T0,
            {
                "id": M,
                "marketDefinition": definition(),
                "rc": [{"id": 1, "atb": [[2.0, 5], [1.9, 3]], "ltp": 2.0}],
            },
        ),
        mcm(
            T0 + 5_000,
            {
                "id": M,
                "img": True,
                "marketDefinition": definition(),
                "rc": [{"id": 2, "atb": [[4.0, 1]]}],
            },
        ),
    ]
    replay = run(lines)
    history = [(r.version, r.status, r.reason) for r in replay.market_rows()]
    assert history == [(1, "OPEN", "betfair_status"), (2, "OPEN", "prices")]
    assert prices_of(replay.rows, 2) == {"1": Decimal("0.00"), "2": Decimal("4.00")}
    assert replay.processors["bf:" + M].last_traded() == {}  # the image dropped the old ltp


def test_removed_levels_names_and_removed_runners() -> None:
    names = {
        "runners": [
            {"id": 1, "status": "ACTIVE", "name": "Home"},
            {"id": 2, "status": "ACTIVE", "name": "Away"},
            {"id": 3, "status": "ACTIVE", "name": "Draw"},
        ]
    }
    lines = [
        mcm(
            T0,
            {
                "id": M,
                "marketDefinition": {**definition(), **names},
                "rc": [{"id": 1, "atb": [[2.0, 5], [1.9, 3]]}, {"id": 3, "atb": [[3.3, 2]]}],
            },
        ),
        mcm(T0 + 2_000, {"id": M, "rc": [{"id": 1, "atb": [[2.0, 0]], "ltp": 1.95}]}),
        mcm(
            T0 + 4_000,
            {
                "id": M,
                "marketDefinition": {
                    **definition(),
                    "runners": [
                        {"id": 1, "status": "ACTIVE"},
                        {"id": 2, "status": "ACTIVE"},
                        {"id": 3, "status": "REMOVED"},
                    ],
                },
            },
        ),
        mcm(
            T0 + 6_000,
            {
                "id": M,
                "marketDefinition": {
                    **definition("CLOSED"),
                    "runners": [
                        {"id": 1, "status": "LOSER"},
                        {"id": 2, "status": "WINNER"},
                        {"id": 3, "status": "REMOVED"},
                    ],
                },
            },
        ),
    ]
    replay = run(lines)
    rows = replay.rows
    history = [(r.version, r.status, r.reason, r.winner) for r in replay.market_rows()]
    assert history == [
        (1, "OPEN", "betfair_status", None),
        (2, "OPEN", "prices", None),
        (3, "OPEN", "prices", None),
        (4, "CLOSED", "betfair_status", None),
        (5, "SETTLED", "settled", "Away"),
    ]
    assert prices_of(rows, 1) == {
        "Home": Decimal("2.00"),
        "Away": Decimal("0.00"),
        "Draw": Decimal("3.30"),
    }
    assert prices_of(rows, 2) == {
        "Home": Decimal("1.90"),
        "Away": Decimal("0.00"),
        "Draw": Decimal("3.30"),
    }
    assert prices_of(rows, 3) == {"Home": Decimal("1.90"), "Away": Decimal("0.00")}
    assert replay.processors["bf:" + M].last_traded() == {"Home": Decimal("1.95")}


def test_a_delta_for_a_market_never_defined_is_rejected_as_unknown_market() -> None:
    """Its image lost (or rejected as too long), a market's deltas cannot be applied: each
    says so, and changes nothing; the market starts at its first definition."""
    delta = mcm(T0, {"id": M, "rc": [{"id": 1, "atb": [[2.0, 5]], "ltp": 2.02}]})
    replay = run([delta, mcm(T0 + 100, {"id": M, "marketDefinition": definition()})])
    assert replay.per_line[0] == [
        Reject(
            "test:1",
            "unknown_market",
            f"a change for market {M}, which no image or marketDefinition has defined",
            delta.decode(),
            T0,
            "betfair",
            M,
        )
    ]
    assert [(r.version, r.status, r.ts - T0) for r in replay.market_rows()] == [(1, "OPEN", 100)]
    assert prices_of(replay.rows, 1) == {"1": Decimal("0.00"), "2": Decimal("0.00")}
    events = [(r.seq, r.source) for r in replay.rows if isinstance(r, FeedEventRow)]
    assert events == [(1, "test:2")]  # the rejected delta is no feed event


def test_a_line_with_an_unknown_market_beside_known_ones_is_rejected_whole() -> None:
    """As any half-bad line: the markets the line would define or move stay as they were
    (in the flow, `split_by_market` gives each market its own line first)."""
    processor = BetfairProcessor()
    processor.process(RawLine("t:1", mcm(T0, {"id": M, "marketDefinition": definition()})))
    before = pickle.dumps(processor)
    line = mcm(
        T0 + 2_000,
        {"id": M, "rc": [{"id": 1, "atb": [[2.0, 5]]}]},
        {"id": "1.8", "marketDefinition": definition("SUSPENDED")},
        {"id": "1.8", "rc": [{"id": 1, "atb": [[3.0, 5]]}]},  # defined just before: known
        {"id": "1.9", "rc": [{"id": 1, "atb": [[3.0, 5]]}]},
        {"id": "1.7", "img": True, "rc": []},
    )
    (reject,) = processor.process(RawLine("t:2", line))
    assert reject == Reject(
        "t:2",
        "unknown_market",
        "changes for markets 1.9, 1.7, which no image or marketDefinition has defined",
        line.decode(),
        T0 + 2_000,
        "betfair",
        "1.9",
    )
    assert pickle.dumps(processor) == before
    parts = [processor.process(part) for part in split_by_market(RawLine("t:2", line))]
    assert [[type(r).__name__ for r in rows] for rows in parts] == [
        ["FeedEventRow", "MarketStatusRow", "PriceRow", "PriceRow"],
        ["FeedEventRow", "MarketStatusRow"],
        ["FeedEventRow"],
        ["Reject"],
        ["Reject"],
    ]


def test_an_image_without_a_definition_keeps_the_market_defined() -> None:
    """The image replaces the prices; the status stays what the last definition said, and
    the market goes on being published."""
    lines = [
        mcm(T0, {"id": M, "marketDefinition": definition(), "rc": [{"id": 1, "atb": [[2.0, 5]]}]}),
        mcm(T0 + 2_000, {"id": M, "img": True, "rc": [{"id": 2, "atb": [[4.0, 1]]}]}),
        mcm(T0 + 4_000, {"id": M, "marketDefinition": definition("SUSPENDED")}),
    ]
    replay = run(lines)
    history = [(r.version, r.status, r.reason) for r in replay.market_rows()]
    assert history == [
        (1, "OPEN", "betfair_status"),
        (2, "OPEN", "prices"),
        (3, "SUSPENDED", "betfair_status"),
    ]
    assert prices_of(replay.rows, 2) == {"1": Decimal("0.00"), "2": Decimal("4.00")}


def test_several_markets_in_one_line_are_each_handled() -> None:
    other = "1.2"
    line = mcm(
        T0,
        {"id": M, "marketDefinition": definition()},
        {"id": other, "marketDefinition": definition("SUSPENDED", marketType="OVER_UNDER_25")},
    )
    assert market_key(line) == "bf:" + M
    rows = run([line]).rows
    assert [(r.match_id, r.market, r.status) for r in rows if isinstance(r, MarketStatusRow)] == [
        (M, "match_odds", "OPEN"),
        (other, "over_under_25", "SUSPENDED"),
    ]
    split = split_by_market(RawLine("f:1", line))
    assert [market_key(p.data) for p in split] == ["bf:" + M, "bf:" + other]


def test_heartbeats_are_feed_events_not_rejects() -> None:
    line = msgspec.json.encode({"op": "mcm", "id": 2, "clk": "AAA", "pt": T0, "ct": "HEARTBEAT"})
    assert market_key(line) == "bf:"
    assert run([line]).rows == [
        FeedEventRow("betfair", "", 1, T0, "heartbeat", line.decode(), "test:1")
    ]


def test_routing_helpers() -> None:
    assert market_key(b'{"op":"ccm","pt":1,"cc":[{"marketId":"1.5"}]}') == "bf:1.5"
    assert market_key(b'{"op":"mcm","pt":1,"mc":[{"id":7}]}') == "bf:"
    assert market_key(b"garbage") == "bf:"
    assert is_betfair_line(b'{"op":"mcm","pt":1,"mc":[{"id":')
    assert not is_betfair_line(b'{"v":1,"provider":"sim","match_id":"m1"}')
    assert is_betfair_line(b' { "op" : "mcm"}')
    assert not is_betfair_line(b'{"v":1,"provider":"op"}')


def test_a_hold_never_reopens_a_market_the_exchange_suspended() -> None:
    def ccm(pt: int, status: str) -> bytes:
        info = {"fixtureStatus": "IN_RUNNING", "eventStatus": status}
        return msgspec.json.encode(
            {"op": "ccm", "pt": pt, "cc": [{"marketId": M, "fixtureInfo": info}]}
        )

    lines = [
        mcm(
            T0,
            {
                "id": M,
                "marketDefinition": definition(in_play=True),
                "rc": [{"id": 1, "atb": [[2.0, 5]]}],
            },
        ),
        ccm(T0 + 1_000, "POSSIBLE_WICKET"),
        mcm(T0 + 2_000, {"id": M, "marketDefinition": definition("SUSPENDED", in_play=True)}),
        ccm(T0 + 3_000, "MATCH_STABLE"),  # the exchange still holds it: nothing to show
        mcm(T0 + 4_000, {"id": M, "marketDefinition": definition(in_play=True)}),
        ccm(T0 + 5_000, "POSSIBLE_WICKET"),
        mcm(T0 + 6_000, {"id": M, "marketDefinition": definition("SUSPENDED", in_play=True)}),
        mcm(T0 + 7_000, {"id": M, "marketDefinition": definition(in_play=True)}),  # still held
        ccm(T0 + 8_000, "BALL_IN_PROGRESS"),
    ]
    history = [(r.status, r.reason, r.ts - T0) for r in run(lines).market_rows()]
    assert history == [
        ("OPEN", "in_play", 0),
        ("SUSPENDED", "sportsdata:POSSIBLE_WICKET", 1_000),
        ("OPEN", "betfair_status", 4_000),
        ("SUSPENDED", "sportsdata:POSSIBLE_WICKET", 5_000),
        ("OPEN", "sportsdata:BALL_IN_PROGRESS", 8_000),
    ]


# ---- rejects -------------------------------------------------------------------------------------

GOOD = mcm(T0, {"id": M, "marketDefinition": definition(), "rc": [{"id": 1, "atb": [[2.0, 5]]}]})


@pytest.mark.parametrize(
    ("data", "reason", "ts", "match_id"),
    [
        (GOOD[:57], "malformed_json", None, None),
        (b"\xff\xfe not json", "malformed_json", None, None),
        (b"[1, 2]", "not_an_object", None, None),
        (b'{"pt": 1}', "missing_field:op", 1, None),
        (b'{"op": 7, "pt": 1}', "invalid_field:op", 1, None),
        (b'{"op": "ocm", "pt": 1, "oc": []}', "unknown_op", 1, None),
        (b'{"op": "connection", "connectionId": "x"}', "unknown_op", None, None),
        (b'{"op": "mcm", "clk": "x", "pt": 5}', "missing_field:mc", 5, None),
        (b'{"op": "mcm", "mc": [{"id": "1.1"}]}', "missing_field:pt", None, "1.1"),
        (b'{"op": "mcm", "pt": "soon", "mc": []}', "invalid_field:pt", None, None),
        (b'{"op": "mcm", "pt": 5, "mc": {"id": "1.1"}}', "invalid_field:mc", 5, None),
        (b'{"op": "mcm", "pt": 5, "mc": [{"id": 11}]}', "invalid_field:id", 5, None),
        (b'{"op": "mcm", "pt": 5, "mc": [{"rc": []}]}', "missing_field:id", 5, None),
        (mcm(5, {"id": M, "marketDefinition": {"status": 3}}), "invalid_field:status", 5, M),
        (mcm(5, {"id": M, "marketDefinition": {"inPlay": True}}), "missing_field:status", 5, M),
        (
            mcm(5, {"id": M, "marketDefinition": {"status": "OPEN", "inPlay": "yes"}}),
            "invalid_field:inPlay",
            5,
            M,
        ),
        (mcm(5, {"id": M, "rc": [{"id": 1, "atb": [["2.0", 5]]}]}), "invalid_field:atb", 5, M),
        (mcm(5, {"id": M, "rc": [{"id": 1, "atb": [[2.0]]}]}), "invalid_field:atb", 5, M),
        (mcm(5, {"id": M, "rc": [{"id": 1, "atl": [[1e300, 5]]}]}), "invalid_field:atl", 5, M),
        (mcm(5, {"id": M, "rc": [{"id": 1, "ltp": -2}]}), "invalid_field:ltp", 5, M),
        (mcm(5, {"id": M, "rc": [{"id": "one"}]}), "invalid_field:id", 5, M),
        (b'{"op": "ccm", "pt": 5}', "missing_field:cc", 5, None),
        (
            b'{"op": "ccm", "pt": 5, "cc": [{"marketId": "1.1", "fixtureInfo": []}]}',
            "invalid_field:fixtureInfo",
            5,
            "1.1",
        ),
        (  # a sports-data change that names no market would change nothing, silently
            b'{"op": "ccm", "pt": 5, "cc": [{"fixtureInfo": {"eventStatus": "BALL_IN_PLAY"}}]}',
            "missing_field:marketId",
            5,
            None,
        ),
        (b'{"op": "ccm", "pt": 5, "cc": [{"marketId": ""}]}', "invalid_field:marketId", 5, ""),
    ],
)
def test_malformed_lines_become_rejects(
    data: bytes, reason: str, ts: int | None, match_id: str | None
) -> None:
    processor = BetfairProcessor()
    processor.process(RawLine("good:1", GOOD))
    before = pickle.dumps(processor)
    rows = processor.process(RawLine("bad:2", data))
    assert rows == [
        Reject(
            source="bad:2",
            reason=reason,
            detail=rows[0].detail,  # type: ignore[union-attr]
            raw=data.decode("utf-8", errors="replace"),
            ts=ts,
            provider="betfair",
            match_id=match_id,
        )
    ]
    assert rows[0].detail  # type: ignore[union-attr]
    assert pickle.dumps(processor) == before  # a rejected line changes nothing
    after = processor.process(RawLine("good:3", mcm(T0 + 1, {"id": M})))
    assert [(r.seq, r.type) for r in after if isinstance(r, FeedEventRow)] == [(2, "mcm")]


def test_a_half_bad_line_is_rejected_whole() -> None:
    """A line whose second runner is malformed changes neither the first runner nor the status."""
    processor = BetfairProcessor()
    processor.process(RawLine("good:1", GOOD))
    bad = mcm(
        T0 + 5_000,
        {
            "id": M,
            "marketDefinition": definition("SUSPENDED"),
            "rc": [{"id": 1, "atb": [[3.0, 1]]}, {"id": 2, "ltp": "x"}],
        },
    )
    (reject,) = processor.process(RawLine("bad:2", bad))
    assert isinstance(reject, Reject) and reject.reason == "invalid_field:ltp"
    mirror = processor.markets[M]
    assert mirror.book.status == "OPEN" and mirror.book.runners[(1, 0.0)].offer() == 2.0


def test_runner_keys_with_handicaps_are_labelled_apart() -> None:
    keys: list[RunnerKey] = [(5, 0.0), (5, -1.5)]
    processor = BetfairProcessor()
    processor.process(
        RawLine(
            "t:1",
            mcm(
                T0,
                {
                    "id": M,
                    "marketDefinition": {
                        "status": "OPEN",
                        "marketType": "ASIAN_HANDICAP",
                        "runners": [{"id": 5, "hc": hc, "status": "ACTIVE"} for _, hc in keys],
                    },
                },
            ),
        )
    )
    mirror = processor.markets[M]
    assert [mirror.label(k) for k in keys] == ["5", "5/-1.5"]
