"""Raw feed line -> typed event or reject record.

`parse_line` never raises: every failure becomes a `Reject` whose `reason` is a short code
(`malformed_json`, `unknown_type`, `missing_field:<name>`, `invalid_field:<name>`, ...) and
whose `detail` names the field and the problem in words.
"""

from __future__ import annotations

import re
import zlib
from typing import NamedTuple

import msgspec

from operators.events import TYPE_NAMES, Event
from operators.rows import Reject

_decoder = msgspec.json.Decoder(Event)
_FIELD = re.compile(r"at `\$\.([A-Za-z0-9_]+)")
_MISSING = re.compile(r"missing required field `([A-Za-z0-9_]+)`")
_CHECKED = re.compile(r"^`([A-Za-z0-9_]+)`")  # messages of the structs' own __post_init__ checks

MAX_LINE_BYTES = 65_536


class RawLine(NamedTuple):
    """One line as it arrived: where from (`file:line`, `topic/partition/offset`) and its
    bytes. `rejected` ("provider\treason") marks input an adapter already refused while
    converting a provider's file to lines: it becomes that reject, whatever the bytes."""

    source: str
    data: bytes
    rejected: str = ""


def parse_line(raw: RawLine) -> Event | Reject:
    """Decode one native v1 line; the typed event, or the reason it cannot be one."""
    if raw.rejected:
        provider, reason = raw.rejected.split("\t", 1)
        return _reject(raw, reason, f"{provider} input refused by its adapter")._replace(
            provider=provider
        )
    if len(raw.data) > MAX_LINE_BYTES:
        return _reject(raw, "line_too_long", f"{len(raw.data)} bytes > {MAX_LINE_BYTES}")
    try:
        return _decoder.decode(raw.data)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: test it first
        return _reject(raw, *_explain(raw.data, str(exc)))
    except msgspec.DecodeError as exc:
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
    peek = _peek(RawLine("", data))
    if peek is None or peek.type is None:
        return None
    return peek.type if isinstance(peek.type, str) else repr(peek.type)


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


class _Route(msgspec.Struct):
    match_id: object = None
    user_id: object = None
    type: object = None


_route = msgspec.json.Decoder(_Route)
REJECTS_KEY = ""


def _peek(raw: RawLine) -> _Route | None:
    try:
        return _route.decode(raw.data)
    except msgspec.MsgspecError:
        return None


def has_match(raw: RawLine) -> bool:
    peek = _peek(raw)
    return peek is not None and isinstance(peek.match_id, str)


def route(raw: RawLine) -> list[tuple[str, RawLine]]:
    """The keys a line is processed under: its match (feed lines, bets; `REJECTS_KEY` for
    lines too broken to tell), and the wallet shards that need it: the bettor's for bets and
    deposits, every shard for `match_end` (settlements are applied in feed order)."""
    peek = _peek(raw)
    if peek is None:
        return [(REJECTS_KEY, raw)]
    user = peek.user_id if isinstance(peek.user_id, str) else None
    if not isinstance(peek.match_id, str):
        return [(wallet_key(user), raw)] if user is not None else [(REJECTS_KEY, raw)]
    keys = [(peek.match_id, raw)]
    if peek.type == "bet" and user is not None:
        keys.append((wallet_key(user), raw))
    elif peek.type == "match_end":
        keys.extend((shard, raw) for shard in WALLET_SHARD_KEYS)
    return keys


def wallet_key(user_id: str) -> str:
    """The wallet shard of a user: stable across processes (not Python's `hash`)."""
    return f"${zlib.adler32(user_id.encode()) % WALLET_SHARDS}"


def is_wallet_key(key: str) -> bool:
    return key.startswith("$")


WALLET_SHARDS = 8
WALLET_SHARD_KEYS = tuple(f"${k}" for k in range(WALLET_SHARDS))
