"""Betfair Exchange Stream API lines -> oddsflow rows, for exchange-mirrored markets.

oddsflow prices nothing here: one `BetfairProcessor` per key (`market_key`) folds the
stream's lines, in arrival order and by event time (`pt`) only, into the native engine's
rows (operators/rows.py). It mirrors each market's status, in-play flag and best back
prices as versions (new prices at most once per `price_every_ms` of event time), plus one
rule of its own fed by the sports-data stream (`ccm`): some event statuses (`suspend_on`)
hold an OPEN market suspended. A line that cannot be applied is a `Reject`, never an exception.
The lines read, the rows made and every reason: docs/feed-format.md, its Betfair section.

That rule compares two streams, so a replay must merge the exchange and sports-data
recordings by `pt` before keying (live, arrival order is the truth). In a multi-market
stream, flat-map the lines through `split_by_market` first, so that each market has one
processor and one version sequence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated

import msgspec

from operators.markets import CLOSED, OPEN, SETTLED, SUSPENDED
from operators.parse import RawLine
from operators.rows import FeedEventRow, MarketStatusRow, PriceRow, Reject, Row

PROVIDER = "betfair"
SPORTS_PROVIDER = "betfair-sports"
KEY_PREFIX = "bf:"
PRICE_EVERY_MS = 1_000
SUSPEND_ON = frozenset({"POSSIBLE_WICKET", "UMPIRE_REVIEW", "MATCH_COMPLETE"})
TERMINAL_HOLD = "MATCH_COMPLETE"
CENT = Decimal("0.01")
NO_PRICE = Decimal("0.00")

RunnerKey = tuple[int, float]  # (selection id, handicap), as the exchange keys runners

# ---- wire format: what a valid line looks like (msgspec validates while decoding) --------

Price = Annotated[float, msgspec.Meta(ge=0.0, le=99_999.0)]  # fits prices' DECIMAL(7, 2)
Size = Annotated[float, msgspec.Meta(ge=0.0, le=1e12)]
Level = tuple[Price, Size]
DepthLevel = tuple[Annotated[int, msgspec.Meta(ge=0)], Price, Size]
Number = str | int | float


class _RunnerDefinition(msgspec.Struct):
    id: int
    status: str = "ACTIVE"
    hc: float = 0.0
    name: str | None = None


class _MarketDefinition(msgspec.Struct):
    status: str
    inPlay: bool = False
    betDelay: int = 0
    marketType: str | None = None
    runners: list[_RunnerDefinition] = []


class _RunnerChange(msgspec.Struct):
    id: int
    hc: float = 0.0
    ltp: Price | None = None
    atb: list[Level] | None = None
    atl: list[Level] | None = None
    trd: list[Level] | None = None
    batb: list[DepthLevel] | None = None
    batl: list[DepthLevel] | None = None
    bdatb: list[DepthLevel] | None = None
    bdatl: list[DepthLevel] | None = None


class _MarketChange(msgspec.Struct):
    id: str
    img: bool = False
    marketDefinition: _MarketDefinition | None = None
    rc: list[_RunnerChange] | None = None


class _FixtureInfo(msgspec.Struct):
    fixtureStatus: str | None = None
    eventStatus: str | None = None


class _Incident(msgspec.Struct, omit_defaults=True):
    incidentType: str
    overs: Number | None = None
    actualTime: int | None = None
    qualifierType: str | None = None
    value: Number | None = None
    innings: int | None = None
    participantRef: str | None = None


class _IncidentList(msgspec.Struct):
    incidentList: list[_Incident] = []


class _CricketChange(msgspec.Struct):
    marketId: Annotated[str, msgspec.Meta(min_length=1)]  # without one, a change is nobody's
    fixtureInfo: _FixtureInfo | None = None
    incidentListWrapper: _IncidentList | None = None


class _Line(msgspec.Struct):
    op: str
    pt: Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)] | None = None
    ct: str | None = None
    mc: list[_MarketChange] | None = None
    cc: list[_CricketChange] | None = None


_decode_line = msgspec.json.Decoder(_Line).decode
_encode = msgspec.json.encode


# ---- routing -------------------------------------------------------------------------------


class _KeyMarket(msgspec.Struct):
    id: object = None


class _KeyCricket(msgspec.Struct):
    marketId: object = None


class _KeyLine(msgspec.Struct):
    mc: list[_KeyMarket] | None = None
    cc: list[_KeyCricket] | None = None


_decode_key = msgspec.json.Decoder(_KeyLine).decode


def market_key(data: bytes) -> str:
    """The processing key of a Betfair stream line: "bf:" + the first market id in `mc`
    (`cc[].marketId` for sports data), or "bf:" for lines without one (heartbeats, and
    lines too broken to tell, which that key's processor rejects)."""
    try:
        line = _decode_key(data)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return KEY_PREFIX
    if line.mc:
        first: object = line.mc[0].id
    elif line.cc:
        first = line.cc[0].marketId
    else:
        return KEY_PREFIX
    return KEY_PREFIX + first if isinstance(first, str) else KEY_PREFIX


_BETFAIR_START = re.compile(rb'\s*\{\s*"op"\s*:')


def is_betfair_line(data: bytes) -> bool:
    """Does this line come from a Betfair stream (rather than the native feed)? Betfair
    writes `op` first, and native lines have no `op`: a prefix test, so even a truncated
    Betfair line is routed to the Betfair processor (which rejects it)."""
    return _BETFAIR_START.match(data) is not None


def split_by_market(raw: RawLine) -> list[RawLine]:
    """One line per market for a line about several (`mc` or `cc` with more than one entry):
    the same line with only that entry, source `<source>#<n>`. Other lines pass unchanged."""
    try:
        keys = _decode_key(raw.data)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return [raw]
    if len(keys.mc or ()) < 2 and len(keys.cc or ()) < 2:
        return [raw]  # the usual case: no full decode
    line = msgspec.json.decode(raw.data)
    for name in ("mc", "cc"):
        entries = line.get(name)
        if isinstance(entries, list) and len(entries) > 1:
            return [
                RawLine(f"{raw.source}#{n}", _encode({**line, name: [entry]}))
                for n, entry in enumerate(entries, 1)
            ]
    return [raw]


# ---- the exchange's cache of one market ----------------------------------------------------


@dataclass(slots=True)
class RunnerBook:
    """One runner as the exchange shows it: definition fields, last traded price, ladders."""

    selection_id: int
    handicap: float = 0.0
    name: str | None = None
    status: str = "ACTIVE"
    ltp: float | None = None
    best_back: float | None = None  # highest atb price, kept up to date with atb
    atb: dict[float, float] = field(default_factory=dict)  # price -> size
    atl: dict[float, float] = field(default_factory=dict)
    trd: dict[float, float] = field(default_factory=dict)
    batb: dict[int, tuple[float, float]] = field(default_factory=dict)  # level -> price, size
    batl: dict[int, tuple[float, float]] = field(default_factory=dict)
    bdatb: dict[int, tuple[float, float]] = field(default_factory=dict)
    bdatl: dict[int, tuple[float, float]] = field(default_factory=dict)

    def offer(self) -> float | None:
        """The best price a backer gets now: full depth first, then the depth-limited views."""
        if self.atb:
            return self.best_back
        for ladder in (self.bdatb, self.batb):
            if ladder:
                return ladder[min(ladder)][0]
        return None

    def update(self, rc: _RunnerChange) -> bool:
        """Apply one runner delta; True if the back side changed."""
        if rc.ltp is not None:
            self.ltp = rc.ltp
        if rc.atl is not None:
            _levels(self.atl, rc.atl)
        if rc.trd is not None:
            if rc.trd:
                _levels(self.trd, rc.trd)
            else:
                self.trd.clear()
        if rc.batl is not None:
            _depth(self.batl, rc.batl)
        if rc.bdatl is not None:
            _depth(self.bdatl, rc.bdatl)
        back = False
        if rc.atb is not None:
            self._back(rc.atb)
            back = True
        if rc.batb is not None:
            _depth(self.batb, rc.batb)
            back = True
        if rc.bdatb is not None:
            _depth(self.bdatb, rc.bdatb)
            back = True
        return back

    def _back(self, levels: list[tuple[float, float]]) -> None:
        atb, best = self.atb, self.best_back
        stale = False
        for price, size in levels:
            if size:
                atb[price] = size
                if best is None or price > best:
                    best = price
            elif atb.pop(price, None) is not None and price == best:
                stale = True
        if stale:
            best = max(atb) if atb else None
        self.best_back = best


def _levels(ladder: dict[float, float], levels: list[tuple[float, float]]) -> None:
    for price, size in levels:
        if size:
            ladder[price] = size
        else:
            ladder.pop(price, None)


def _depth(ladder: dict[int, tuple[float, float]], levels: list[tuple[int, float, float]]) -> None:
    for level, price, size in levels:
        if size:
            ladder[level] = (price, size)
        else:
            ladder.pop(level, None)


@dataclass(slots=True)
class MarketBook:
    """The exchange's cache of one market: replaced whole by an `img`."""

    status: str | None = None  # None until the first marketDefinition
    in_play: bool = False
    bet_delay: int = 0
    market_type: str | None = None
    runners: dict[RunnerKey, RunnerBook] = field(default_factory=dict)

    def define(self, definition: _MarketDefinition) -> None:
        self.status = definition.status
        self.in_play = definition.inPlay
        self.bet_delay = definition.betDelay
        if definition.marketType is not None:
            self.market_type = definition.marketType
        for rd in definition.runners:
            runner = self._runner(rd.id, rd.hc)
            runner.status = rd.status
            if rd.name is not None:
                runner.name = rd.name

    def without_prices(self) -> MarketBook:
        """A new cache with this one's definition (status, runners and their names) and
        no prices: what an image without a `marketDefinition` starts from."""
        book = MarketBook(self.status, self.in_play, self.bet_delay, self.market_type)
        for key, runner in self.runners.items():
            book.runners[key] = RunnerBook(key[0], key[1], runner.name, runner.status)
        return book

    def update(self, changes: list[_RunnerChange]) -> bool:
        """Apply runner deltas; True if a back side changed."""
        back = False
        for rc in changes:
            if self._runner(rc.id, rc.hc).update(rc):
                back = True
        return back

    def offers(self) -> dict[RunnerKey, float | None]:
        """Best back price of every ACTIVE runner."""
        return {key: r.offer() for key, r in self.runners.items() if r.status == "ACTIVE"}

    def winners(self) -> list[RunnerKey]:
        return [key for key, r in self.runners.items() if r.status == "WINNER"]

    def _runner(self, selection_id: int, handicap: float) -> RunnerBook:
        key = (selection_id, handicap)
        runner = self.runners.get(key)
        if runner is None:
            runner = self.runners[key] = RunnerBook(selection_id, handicap)
        return runner


@dataclass(slots=True)
class MarketMirror:
    """One market: the exchange's cache, and what oddsflow has published of it."""

    market_id: str
    book: MarketBook = field(default_factory=MarketBook)
    name: str | None = None  # oddsflow's market name, fixed at the first row
    version: int = 0
    shown: str | None = None  # last published status
    shown_in_play: bool = False
    shown_offers: dict[RunnerKey, float | None] = field(default_factory=dict)
    priced_at: int | None = None  # ts of the last published prices
    pending: bool = False  # a price change waits for the end of the throttle window
    labels: dict[RunnerKey, str] = field(default_factory=dict)

    def label(self, key: RunnerKey, keep: bool = True) -> str:
        """The runner's selection name, fixed the first time it is published: its name if
        the stream has named it by then, else its id (`<id>/<handicap>` for a handicap)."""
        label = self.labels.get(key)
        if label is None:
            runner = self.book.runners.get(key)
            label = runner.name if runner is not None and runner.name else _id_label(key)
            if keep:
                self.labels[key] = label
        return label

    def publish(
        self, status: str, reason: str, ts: int, out: list[Row], winner: str | None = None
    ) -> None:
        """One new version: the status row, and the prices with it when OPEN."""
        if self.name is None:
            self.name = (self.book.market_type or "market").lower()
        self.version += 1
        self.shown, self.shown_in_play = status, self.book.in_play
        out.append(
            MarketStatusRow(self.market_id, self.name, status, self.version, reason, ts, winner)
        )
        if status != OPEN:
            return
        offers = self.book.offers()
        for key, price in offers.items():
            out.append(
                PriceRow(
                    self.market_id,
                    self.name,
                    self.version,
                    self.label(key),
                    1.0 / price if price else 0.0,
                    _money(price),
                    ts,
                )
            )
        self.shown_offers, self.priced_at, self.pending = offers, ts, False


def _id_label(key: RunnerKey) -> str:
    selection_id, handicap = key
    return f"{selection_id}/{handicap:g}" if handicap else str(selection_id)


def _money(price: float | None) -> Decimal:
    return Decimal(repr(price)).quantize(CENT) if price else NO_PRICE


# ---- sports data -----------------------------------------------------------------------------


@dataclass(slots=True)
class SportsState:
    """What the sports-data stream has said about one market's fixture."""

    fixture_status: str | None = None
    event_status: str | None = None
    hold: str | None = None  # the eventStatus holding the market suspended
    incidents: dict[tuple[str, str, int | None], tuple[str | None, str]] = field(
        default_factory=dict
    )  # (incidentType, overs, actualTime) -> (qualifierType, value)


# ---- the processor ---------------------------------------------------------------------------


@dataclass(slots=True)
class BetfairProcessor:
    """State of one Betfair market stream (cached market definition, runner ladders, version)."""

    price_every_ms: int = PRICE_EVERY_MS
    suspend_on: frozenset[str] = SUSPEND_ON
    markets: dict[str, MarketMirror] = field(default_factory=dict)
    sports: dict[str, SportsState] = field(default_factory=dict)
    lines: int = 0  # valid exchange lines: the `seq` of provider betfair
    sports_seq: int = 0  # rows of provider betfair-sports

    def process_lines(self, lines: Sequence[RawLine]) -> list[Row]:
        return [row for raw in lines for row in self.process(raw)]

    def process(self, raw: RawLine) -> list[Row]:
        """One line in arrival order -> the rows it causes (a reject, never an exception)."""
        try:
            line = _decode_line(raw.data)
        except msgspec.ValidationError as exc:  # a subclass of DecodeError: test it first
            return [_reject(raw, _explain(str(exc)), str(exc))]
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            return [_reject(raw, "malformed_json", str(exc))]
        if line.op not in ("mcm", "ccm"):
            return [_reject(raw, "unknown_op", f"op {line.op!r} is neither mcm nor ccm")]
        if line.pt is None:
            return [_reject(raw, "missing_field:pt", "a change message needs its publish time")]
        if line.op == "mcm":
            return self._mcm(raw, line, line.pt)
        return self._ccm(raw, line, line.pt)

    def last_traded(self, market_id: str | None = None) -> dict[str, Decimal]:
        """Last traded price per selection of a market (default: the first one seen)."""
        mirror = self._mirror(market_id)
        if mirror is None:
            return {}
        return {
            mirror.label(key, keep=False): _money(r.ltp)
            for key, r in mirror.book.runners.items()
            if r.ltp is not None
        }

    def _mirror(self, market_id: str | None) -> MarketMirror | None:
        if market_id is None:
            return next(iter(self.markets.values()), None)
        return self.markets.get(market_id)

    # ---- exchange ---------------------------------------------------------------------------

    def _mcm(self, raw: RawLine, line: _Line, pt: int) -> list[Row]:
        heartbeat = line.ct == "HEARTBEAT"
        if line.mc is None and not heartbeat:
            return [
                _reject(raw, "missing_field:mc", "an mcm line that is not a heartbeat needs mc")
            ]
        changes = line.mc or []
        unknown = self._undefined(changes)
        if unknown:
            return [_unknown_market(raw, unknown, pt)]
        self.lines += 1
        first = changes[0].id if changes else ""
        kind = "heartbeat" if heartbeat else "mcm"
        out: list[Row] = [
            FeedEventRow(PROVIDER, first, self.lines, pt, kind, _text(raw), raw.source)
        ]
        for mirror in self.markets.values():
            self._flush(mirror, pt, out)
        for change in changes:
            self._change(change, pt, out)
        return out

    def _undefined(self, changes: list[_MarketChange]) -> list[str]:
        """The markets of `changes` that no definition has created, nor the change itself
        (or one before it in the line) brings."""
        defined: set[str] = set()
        unknown = []
        for change in changes:
            if change.marketDefinition is not None:
                defined.add(change.id)
            elif change.id not in self.markets and change.id not in defined:
                unknown.append(change.id)
        return unknown

    def _change(self, change: _MarketChange, pt: int, out: list[Row]) -> None:
        mirror = self.markets.get(change.id)
        if mirror is None:
            mirror = self.markets[change.id] = MarketMirror(change.id)
        if change.img:
            defined = change.marketDefinition is not None
            mirror.book = MarketBook() if defined else mirror.book.without_prices()
        book = mirror.book
        touched = change.img
        if change.marketDefinition is not None:
            book.define(change.marketDefinition)
            touched = True
        if change.rc and book.update(change.rc):
            touched = True
        self._sync(mirror, pt, "betfair_status", out, prices=touched)

    def _flush(self, mirror: MarketMirror, pt: int, out: list[Row]) -> None:
        """Before a line at `pt`: publish prices whose throttle window ended before it."""
        if not mirror.pending or mirror.priced_at is None:
            return
        due = mirror.priced_at + self.price_every_ms
        if pt <= due:
            return
        mirror.pending = False
        if self._status(mirror) == OPEN and mirror.book.offers() != mirror.shown_offers:
            mirror.publish(OPEN, "prices", due, out)

    def _status(self, mirror: MarketMirror) -> str | None:
        """What oddsflow shows: the exchange's status, settled, or held by sports data."""
        status = mirror.book.status
        if status is None:
            return None
        if status == CLOSED:
            return SETTLED if mirror.book.winners() else CLOSED
        if status == OPEN:
            sports = self.sports.get(mirror.market_id)
            return SUSPENDED if sports is not None and sports.hold else OPEN
        return SUSPENDED  # SUSPENDED, INACTIVE, anything new

    def _sync(
        self, mirror: MarketMirror, ts: int, cause: str, out: list[Row], prices: bool = False
    ) -> None:
        """Publish what changed: status / in-play at once. A best back change while OPEN
        publishes at once when the last prices are `price_every_ms` old, else when that
        window ends (`_flush`), so the same file always makes the same versions."""
        status = self._status(mirror)
        if status is None or mirror.shown == SETTLED:
            return
        in_play = mirror.book.in_play
        if status != mirror.shown or in_play != mirror.shown_in_play:
            reason = cause
            if in_play != mirror.shown_in_play:
                reason = "in_play" if in_play else "not_in_play"
            if status == SETTLED:
                if mirror.shown != CLOSED:
                    mirror.publish(CLOSED, reason, ts, out)
                winners = ",".join(mirror.label(k) for k in mirror.book.winners())
                mirror.publish(SETTLED, "settled", ts, out, winner=winners)
            else:
                mirror.publish(status, reason, ts, out)
        elif prices and status == OPEN and mirror.book.offers() != mirror.shown_offers:
            last = mirror.priced_at
            if last is None or ts - last >= self.price_every_ms:
                mirror.publish(OPEN, "prices", ts, out)
            else:
                mirror.pending = True

    # ---- sports data --------------------------------------------------------------------------

    def _ccm(self, raw: RawLine, line: _Line, pt: int) -> list[Row]:
        if line.cc is None:
            return [_reject(raw, "missing_field:cc", "a ccm line needs cc")]
        first = line.cc[0].marketId if line.cc else ""
        out: list[Row] = [self._sports_row(first, pt, "ccm", _text(raw), raw.source)]
        for change in line.cc:
            self._cricket(change.marketId, change, pt, raw.source, out)
        return out

    def _cricket(
        self, market_id: str, change: _CricketChange, pt: int, source: str, out: list[Row]
    ) -> None:
        state = self.sports.get(market_id)
        if state is None:
            state = self.sports[market_id] = SportsState()
        info = change.fixtureInfo
        if info is not None and (info.fixtureStatus or info.eventStatus):
            fixture = info.fixtureStatus or state.fixture_status
            event = info.eventStatus or state.event_status
            if (fixture, event) != (state.fixture_status, state.event_status):
                state.fixture_status, state.event_status = fixture, event
                payload = _encode({"fixtureStatus": fixture, "eventStatus": event}).decode()
                out.append(self._sports_row(market_id, pt, "fixture_status", payload, source))
                self._hold(market_id, state, event, pt, out)
        if change.incidentListWrapper is not None:
            self._incidents(
                market_id, state, change.incidentListWrapper.incidentList, pt, source, out
            )

    def _incidents(
        self,
        market_id: str,
        state: SportsState,
        incidents: Iterable[_Incident],
        pt: int,
        source: str,
        out: list[Row],
    ) -> None:
        """New and corrected incidents, oldest first (the feed lists the newest first).
        Incidents carry no id and are re-sent in every line: one is known by its
        (`incidentType`, `overs`, `actualTime`)."""
        for incident in reversed(list(incidents)):
            key = (incident.incidentType, str(incident.overs), incident.actualTime)
            content = (incident.qualifierType, str(incident.value))
            known = state.incidents.get(key)
            if known == content:
                continue
            state.incidents[key] = content
            kind = "incident" if known is None else "incident_update"
            out.append(self._sports_row(market_id, pt, kind, _encode(incident).decode(), source))

    def _hold(
        self, market_id: str, state: SportsState, event: str | None, pt: int, out: list[Row]
    ) -> None:
        """The sports-data rule: hold an OPEN market suspended on `suspend_on` statuses,
        until the event status moves on (MATCH_COMPLETE never ends). A hold only changes
        what is shown when it changes the status: it never reopens what the exchange
        suspended."""
        if state.hold == TERMINAL_HOLD:
            return
        hold = event if event in self.suspend_on else None
        if hold == state.hold:
            return
        state.hold = hold
        mirror = self.markets.get(market_id)
        if mirror is not None:
            self._sync(mirror, pt, f"sportsdata:{event}", out)

    def _sports_row(self, match_id: str, ts: int, kind: str, payload: str, source: str) -> Row:
        self.sports_seq += 1
        return FeedEventRow(SPORTS_PROVIDER, match_id, self.sports_seq, ts, kind, payload, source)


# ---- rejects -----------------------------------------------------------------------------------


class _Peek(msgspec.Struct):
    pt: object = None
    mc: object = None
    cc: object = None


_decode_peek = msgspec.json.Decoder(_Peek).decode


def _unknown_market(raw: RawLine, market_ids: list[str], pt: int) -> Reject:
    what = "a change for market" if len(market_ids) == 1 else "changes for markets"
    detail = f"{what} {', '.join(market_ids)}, which no image or marketDefinition has defined"
    return Reject(raw.source, "unknown_market", detail, _text(raw), pt, PROVIDER, market_ids[0])


def _explain(message: str) -> str:
    """msgspec's validation message -> a reason code naming the innermost field."""
    if "missing required field `" in message:
        return "missing_field:" + message.split("missing required field `", 1)[1].split("`", 1)[0]
    path = message.rsplit(" - at `$", 1)[1] if " - at `$" in message else ""
    names = [part.split("[", 1)[0] for part in path.rstrip("`").split(".")[1:]]
    names = [name for name in names if name]
    return f"invalid_field:{names[-1]}" if names else "not_an_object"


def _reject(raw: RawLine, reason: str, detail: str) -> Reject:
    ts, match_id = _peek(raw.data)
    return Reject(
        source=raw.source,
        reason=reason,
        detail=detail,
        raw=_text(raw),
        ts=ts,
        provider=PROVIDER,
        match_id=match_id,
    )


def _peek(data: bytes) -> tuple[int | None, str | None]:
    """The publish time and first market id of a rejected line, when it has readable ones."""
    try:
        peek = _decode_peek(data)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None, None
    ts = peek.pt if type(peek.pt) is int and 0 <= peek.pt < 2**53 else None
    return ts, _first_id(peek.mc, "id") or _first_id(peek.cc, "marketId")


def _first_id(entries: object, name: str) -> str | None:
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        value = entries[0].get(name)
        return value if isinstance(value, str) else None
    return None


def _text(raw: RawLine) -> str:
    return raw.data.decode("utf-8", errors="replace")
