"""Raw feed line -> typed event or reject record.

`parse_line` never raises: a failure becomes a `Reject` with a short `reason` code
(`malformed_json`, `missing_field:<name>`, ...; all listed in docs/feed-format.md) and a
`detail` in words. A line too long or too deep for its format's `Limits` is refused before
any decoder sees it. `route` keys a line to its match and wallet shards, and refuses lines
whose provider signature fails (operators/signing.py) into the rejects bucket.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import msgspec

from operators.events import TYPE_NAMES, Bet, Event, FeedEvent, MatchEnd
from operators.rows import Reject
from operators.settings import at_least
from operators.signing import UNKNOWN_PROVIDER, active_keyring, check

_decoder = msgspec.json.Decoder(Event)
_FIELD = re.compile(r"at `\$\.([A-Za-z0-9_]+)")
_MISSING = re.compile(r"missing required field `([A-Za-z0-9_]+)`")
_CHECKED = re.compile(r"^`([A-Za-z0-9_]+)`")  # messages of the structs' own __post_init__ checks

ENV_MAX_DEPTH = "ODDSFLOW_MAX_DEPTH"
MAX_DEPTH = 16  # native lines have 1 level, Betfair lines 4


@dataclass(frozen=True, slots=True)
class SizeLimit:
    """The most bytes one unit of a format may have (a line; a StatsBomb file)."""

    field: str  # of `Limits`
    env: str
    default: int
    unit: str


SIZE_LIMITS = {  # by format name (operators/providers.py)
    "native": SizeLimit("max_line_bytes", "ODDSFLOW_MAX_LINE_BYTES", 64 << 10, "line"),
    # one line can be an image of many markets with their full ladders
    "betfair": SizeLimit(
        "max_betfair_line_bytes", "ODDSFLOW_MAX_BETFAIR_LINE_BYTES", 8 << 20, "line"
    ),
    # one JSON document, decoded whole: a match's events file
    "statsbomb": SizeLimit("max_statsbomb_bytes", "ODDSFLOW_MAX_STATSBOMB_BYTES", 32 << 20, "file"),
    # point-by-point tennis CSV, read whole: a season's file
    "tennis-pbp": SizeLimit(
        "max_tennis_pbp_bytes", "ODDSFLOW_MAX_TENNIS_PBP_BYTES", 64 << 20, "file"
    ),
}


@dataclass(frozen=True, slots=True)
class Limits:
    """What input may be before anything decodes it: bytes per format (`SIZE_LIMITS`) and
    nesting depth."""

    max_line_bytes: int = SIZE_LIMITS["native"].default
    max_depth: int = MAX_DEPTH
    max_betfair_line_bytes: int = SIZE_LIMITS["betfair"].default
    max_statsbomb_bytes: int = SIZE_LIMITS["statsbomb"].default
    max_tennis_pbp_bytes: int = SIZE_LIMITS["tennis-pbp"].default

    def __post_init__(self) -> None:
        for name in ("max_line_bytes", "max_depth", *(s.field for s in SIZE_LIMITS.values())):
            at_least(self, name, 1)

    def max_bytes(self, fmt: str) -> int:
        """The most bytes of one line (one file, for StatsBomb) of format `fmt`."""
        return int(getattr(self, SIZE_LIMITS[fmt].field))

    def too_long(self, fmt: str) -> str:
        """The detail of a `line_too_long` reject of format `fmt`: the limit, by name."""
        size = SIZE_LIMITS[fmt]
        return f"over {self.max_bytes(fmt)} bytes, the {fmt} {size.unit} limit ({size.env})"

    def exceeded(self, data: bytes, fmt: str = "native") -> tuple[str, str] | None:
        """(reason, detail) when `data` is too long for a line of `fmt` or too deep, else
        None."""
        limit = self.max_line_bytes if fmt == "native" else self.max_bytes(fmt)  # hot: native
        if len(data) > limit:
            return "line_too_long", self.too_long(fmt)
        if self.max_depth >= 1 and data.find(b"[") < 0 and data.find(b"{", 1) < 0:
            return None  # one bracket at most (a native line): two memchr scans, no count
        if too_deep(data, self.max_depth):
            return "too_deep", f"nested deeper than {self.max_depth} levels"
        return None


LIMITS = Limits()  # this process's limits: read them as `parse.LIMITS` (`use_limits`)


def use_limits(limits: Limits) -> None:
    """Make `limits` this process's limits, for every line and file read from now on (the
    flows set the config's and the environment's, flows/config.py: no file or variable is
    read here)."""
    global LIMITS
    LIMITS = limits


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def too_deep(data: bytes, limit: int) -> bool:
    """Are JSON arrays/objects nested more than `limit` deep? A byte scan, no decoding: a
    line with at most `limit` opening brackets cannot be (one C-speed count, the usual case);
    otherwise strings are blanked out and the brackets counted."""
    if data.count(b"{") + data.count(b"[") <= limit:
        return False
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub(b"", data)):
        if bracket[0] in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


class RawLine(NamedTuple):
    """One input line as it arrived, with what is already known about it."""

    source: str  # where from: `file:line` or `topic/partition/offset`
    data: bytes
    # "provider\treason[\tdetail]": refused before parsing (by an adapter, or by `route` for
    # its signature); it becomes that reject, whatever the bytes
    rejected: str = ""
    signature: str = ""  # the feed signature that came with the line (hex), "" when none did
    # the line as `route` decoded it, so the parser does not decode it again; not pickled:
    # a line sent to another worker is decoded where it lands
    event: Event | None = None
    arrived: float = 0.0  # live lines: when the source took it from Kafka (epoch s), else 0

    def __reduce__(self) -> tuple[type[RawLine], tuple[object, ...]]:
        fields = (self.source, self.data, self.rejected, self.signature)
        if self.arrived:  # a live line; a replayed one pickles without the two last fields
            return RawLine, (*fields, None, self.arrived)
        return RawLine, fields


def refuse(raw: RawLine, provider: str, reason: str, detail: str) -> RawLine:
    """`raw` marked as refused before parsing: it becomes that reject, whatever its bytes."""
    return raw._replace(rejected=f"{provider}\t{reason}\t{detail}")


def parse_line(raw: RawLine, limits: Limits | None = None) -> Event | Reject:
    """Decode one native v1 line; the typed event, or the reason it cannot be one."""
    if raw.rejected:
        provider, reason, *detail = raw.rejected.split("\t", 2)
        text = detail[0] if detail else f"{provider} input refused by its adapter"
        return _reject(raw, reason, text)._replace(provider=provider or None)
    if raw.event is not None and limits is None:
        return raw.event  # `route` decoded it, within the same limits
    too_much = (limits or LIMITS).exceeded(raw.data)
    if too_much is not None:
        return _reject(raw, *too_much)
    try:
        return _decoder.decode(raw.data)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: test it first
        return _reject(raw, *_explain(raw.data, str(exc)))
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 in a string: the latter
        return _reject(raw, "malformed_json", str(exc))


def _explain(data: bytes, message: str) -> tuple[str, str]:
    """Turn msgspec's validation message into (reason code, detail)."""
    missing = _MISSING.search(message)
    if missing:
        return f"missing_field:{missing.group(1)}", message
    field = _FIELD.search(message) or _CHECKED.search(message)
    if field is None:
        return "not_an_object", message
    name = field.group(1)
    if name == "type":
        kind = _type_of(data)
        if kind is None:
            return "missing_field:type", message
        if kind not in TYPE_NAMES:
            return "unknown_type", f"unknown type {kind!r}"
    return f"invalid_field:{name}", message


def _type_of(data: bytes) -> str | None:
    """The line's `type` as text (a non-string shown as JSON), None when it has none."""
    try:
        found = _route.decode(data).type
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None
    if bytes(found) == b"null":
        return None
    return _text(found) or bytes(found).decode("utf-8", errors="replace")


def _reject(raw: RawLine, reason: str, detail: str) -> Reject:
    text = raw.data.decode("utf-8", errors="replace")
    return Reject(
        source=raw.source,
        reason=reason,
        detail=detail,
        raw=text,
        ts=None,
        provider=None,
        match_id=None,
    )


class _RouteRaw(msgspec.Struct):
    """The fields routing reads, kept raw: a strange value elsewhere in them (a number out
    of range, say) must not make routing read a line differently from the parser."""

    match_id: msgspec.Raw = msgspec.Raw(b"null")
    user_id: msgspec.Raw = msgspec.Raw(b"null")
    type: msgspec.Raw = msgspec.Raw(b"null")
    provider: msgspec.Raw = msgspec.Raw(b"null")


class _Route(msgspec.Struct):
    """The same fields as text (None when absent, null or not a string). Decoded straight
    when each is a string or null, as in nearly every line: one decode instead of five.
    Anything else fails that, and `_peek` reads them raw."""

    match_id: str | None = None
    user_id: str | None = None
    type: str | None = None
    provider: str | None = None


_route = msgspec.json.Decoder(_RouteRaw)
_route_text = msgspec.json.Decoder(_Route)
_text_decoder = msgspec.json.Decoder(str)
REJECTS_KEY = ""
MATCH_KEY_PREFIX = "m:"  # match keys never meet wallet ("$n") or Betfair ("bf:") keys


def _text(value: msgspec.Raw) -> str | None:
    if not bytes(value).startswith(b'"'):
        return None
    try:
        return _text_decoder.decode(value)
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return None


def _peek(raw: RawLine) -> _Route | None:
    try:
        return _route_text.decode(raw.data)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        pass  # a field that is not text (or not JSON at all): read it raw below
    try:
        found = _route.decode(raw.data)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None
    return _Route(
        _text(found.match_id), _text(found.user_id), _text(found.type), _text(found.provider)
    )


def has_match(raw: RawLine) -> bool:
    """Does routing send this line to a match (whose processor then reports its rejects)?"""
    peek = _peek(raw)
    return peek is not None and peek.match_id is not None and peek.type != "deposit"


def route(raw: RawLine) -> list[tuple[str, RawLine]]:
    """The keys a line is processed under: its match (feed lines, bets; `REJECTS_KEY` for
    lines too broken to tell, too big, or refused by their signature), and the wallet shards
    that need it: the bettor's for bets and deposits, every shard for `match_end`
    (settlements are applied in feed order). A line that decodes travels with its event,
    which the parser then takes instead of decoding it again."""
    data = raw.data
    if LIMITS.exceeded(data) is not None:
        return [(REJECTS_KEY, raw)]
    try:
        event: Event | None = _decoder.decode(data)
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return _route_peeked(raw, _peek(raw))
    line = _new_line(RawLine, (raw.source, data, raw.rejected, raw.signature, event, raw.arrived))
    # Valid feed lines and bets, nearly every line: keyed from the event, no second reading.
    if isinstance(event, FeedEvent):
        if active_keyring().active:
            refused = _refused(line, event.provider)
            if refused is not None:
                return [(REJECTS_KEY, refused)]
        key = MATCH_KEY_PREFIX + event.match_id
        if type(event) is MatchEnd:
            return [(key, line), *[(shard, line) for shard in WALLET_SHARD_KEYS]]
        return [(key, line)]
    if type(event) is Bet and not active_keyring().active:  # else its extra `provider` counts
        return [(MATCH_KEY_PREFIX + event.match_id, line), (wallet_key(event.user_id), line)]
    return _route_peeked(line, _peek(raw))


def _route_peeked(raw: RawLine, peek: _Route | None) -> list[tuple[str, RawLine]]:
    """`route` from the fields read as they are: deposits, invalid lines (their match
    reports them), bets checked by a keyring."""
    if peek is None:
        return [(REJECTS_KEY, raw)]
    if peek.provider is not None:
        refused = _refused(raw, peek.provider)
        if refused is not None:
            return [(REJECTS_KEY, refused)]
    user = peek.user_id
    if peek.match_id is None or peek.type == "deposit":
        return [(wallet_key(user), raw)] if user is not None else [(REJECTS_KEY, raw)]
    keys = [(MATCH_KEY_PREFIX + peek.match_id, raw)]
    if peek.type == "bet" and user is not None:
        keys.append((wallet_key(user), raw))
    elif peek.type == "match_end":
        keys.extend((shard, raw) for shard in WALLET_SHARD_KEYS)
    return keys


_new_line = tuple.__new__  # a RawLine from its fields in order, without NamedTuple's __new__


def _refused(raw: RawLine, provider: str) -> RawLine | None:
    """The line marked with why the keyring refuses it, or None when it may go on."""
    keyring = active_keyring()
    if not keyring.active:
        return None
    reason = check(keyring, provider, raw.data, raw.signature)
    if reason is None:
        return None
    if reason == UNKNOWN_PROVIDER:
        detail = f"provider {provider!r} is not in the keyring"
    elif raw.signature:
        detail = f"signature does not match the line ({provider!r} is signed)"
    else:
        detail = f"no signature ({provider!r} is signed)"
    return refuse(raw, provider, reason, detail)


@lru_cache(maxsize=1 << 16)  # a bettor's key is asked for at every bet, verdict and payout
def wallet_key(user_id: str) -> str:
    """The wallet shard of a user: stable across processes (not Python's `hash`)."""
    return f"${zlib.adler32(user_id.encode()) % WALLET_SHARDS}"


def is_wallet_key(key: str) -> bool:
    return key.startswith("$")


WALLET_SHARDS = 8
WALLET_SHARD_KEYS = tuple(f"${k}" for k in range(WALLET_SHARDS))
