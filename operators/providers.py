"""The provider registry: which formats oddsflow reads and who processes their lines.

Line formats (files or Kafka, line by line) say how to recognise, key and process their
lines; file formats (StatsBomb's JSON, point-by-point tennis CSV) are whole files an adapter
turns into native lines first. Each format has its own size limit
(`operators.parse.SIZE_LIMITS`): a line or file over it becomes a `line_too_long` reject.
Adding a provider: one adapter module, one entry here, one size limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec

from operators import parse
from operators.adapters import betfair, statsbomb, tennis_pbp
from operators.parse import REJECTS_KEY, RawLine, refuse, route
from operators.rows import Row
from operators.settings import Rules


class Processor(Protocol):
    """Folds one key's lines into rows (plus wallet messages, for matches)."""

    def process(self, raw: RawLine) -> list: ...

    def process_lines(self, lines: Sequence[RawLine]) -> list: ...  # `process` of each, in turn


@dataclass(frozen=True)
class LineFormat:
    name: str  # also its size limit's, in `operators.parse.SIZE_LIMITS`
    provider: str  # named by the format's rejects before parsing ("": the line names its own)
    recognise: Callable[[bytes], bool]
    route: Callable[[RawLine], list[tuple[str, RawLine]]]
    processor: Callable[[Rules], Processor]


def _betfair_route(raw: RawLine) -> list[tuple[str, RawLine]]:
    return [(betfair.market_key(part.data), part) for part in betfair.split_by_market(raw)]


def _native_processor(rules: Rules) -> Processor:
    from operators.engine import MatchProcessor  # the engine imports this module

    return MatchProcessor(rules)


BETFAIR = LineFormat(
    "betfair",
    betfair.PROVIDER,
    betfair.is_betfair_line,
    _betfair_route,
    lambda rules: betfair.BetfairProcessor(),
)
NATIVE = LineFormat("native", "", lambda data: True, route, _native_processor)
LINE_FORMATS: tuple[LineFormat, ...] = (BETFAIR, NATIVE)  # the first that recognises a line


NATIVE_HEAD = b'{"v":'  # the native feed's own first field: the common case


def line_format(data: bytes) -> LineFormat:
    """The format a line is recognised as: by its first bytes, so a line too long or too
    broken to decode still has one."""
    if data.startswith(NATIVE_HEAD):
        return NATIVE
    return next(f for f in LINE_FORMATS if f.recognise(data))


def route_line(raw: RawLine) -> list[tuple[str, RawLine]]:
    """Every (key, line) a raw line is processed under, whatever its format. A line over its
    format's limits (or refused already, by the reader) goes to `REJECTS_KEY`, undecoded."""
    if raw.data.startswith(NATIVE_HEAD):  # `line_format`'s first case, without the lookups
        return route(raw)
    fmt = line_format(raw.data)
    if fmt is NATIVE:
        return route(raw)  # checks the native limits itself
    if not raw.rejected:
        too_much = parse.LIMITS.exceeded(raw.data, fmt.name)
        if too_much is None:
            return fmt.route(raw)
        raw = refuse(raw, fmt.provider, *too_much)
    return [(REJECTS_KEY, raw)]


def new_processor(raw: RawLine, rules: Rules) -> Processor:
    """The processor for a key, chosen by the format of its first line; a refused line's
    (`REJECTS_KEY`), the native one, which turns refused lines into their rejects."""
    if raw.rejected:
        return NATIVE.processor(rules)
    return line_format(raw.data).processor(rules)


def too_long(raw: RawLine, fmt: str) -> RawLine:
    """`raw` refused as longer than the line limit of format `fmt` (a reader cut it there)."""
    provider = next((f.provider for f in LINE_FORMATS if f.name == fmt), "")
    return refuse(raw, provider, "line_too_long", parse.LIMITS.too_long(fmt))


# ---- whole-file formats ------------------------------------------------------------------

STATSBOMB_KICKOFF_MS = 1_519_488_000_000  # StatsBomb files carry no date: 2018-02-24 16:00 UTC


def statsbomb_lines(path: Path) -> Iterator[RawLine]:
    """A StatsBomb events file (+ `<id>_lineups.json` beside it) as native lines; events
    its adapter refused (a file over the StatsBomb limit among them), as lines marked with
    the adapter's reason."""
    lineups = path.with_name(path.name.split("_events")[0] + "_lineups.json")
    converted = statsbomb.read_match(
        path, lineups if lineups.exists() else None, kickoff_ts=STATSBOMB_KICKOFF_MS
    )
    return adapted_lines(path, converted)


def tennis_pbp_lines(path: Path) -> Iterator[RawLine]:
    """A point-by-point tennis CSV (one match a row) as native tennis lines, every match
    merged in time order; rows its adapter refused, as lines marked with the reason."""
    return adapted_lines(path, tennis_pbp.file_lines(path))


def adapted_lines(path: Path, converted: Iterable[dict]) -> Iterator[RawLine]:
    """A file adapter's native line dicts as raw lines; its rejects (`"reject": True`) as
    lines refused with the adapter's reason."""
    for n, line in enumerate(converted, 1):
        if line.get("reject"):
            raw = str(line["raw"]).encode("utf-8", errors="replace")
            why = f"{line['provider']}\t{line['reason']}"
            if line.get("detail"):
                why += f"\t{line['detail']}"
            yield RawLine(line["source"], raw, why)
            continue
        try:
            data = msgspec.json.encode(line)
        except (UnicodeEncodeError, msgspec.EncodeError):  # text JSON cannot carry (a lone
            data = None  # surrogate in a player's name)
        if data is None:
            text = repr(line).encode("utf-8", errors="replace")
            yield RawLine(f"{path.name}:{n}", text, f"{line['provider']}\tinvalid_text")
        else:
            yield RawLine(f"{path.name}:{n}", data)


FILE_FORMATS: dict[str, Callable[[Path], Iterator[RawLine]]] = {
    "statsbomb": statsbomb_lines,
    "tennis-pbp": tennis_pbp_lines,
}


def sniff(path: Path, head: bytes) -> str:
    """The format of a file from its first bytes: `statsbomb` (a JSON array), `tennis-pbp`
    (a CSV whose header starts with `pbp_id`), `betfair` (Betfair stream lines) or `native`."""
    text = head.lstrip()
    if text.startswith(b"["):
        return "statsbomb"
    if text.startswith(b"pbp_id,"):
        return "tennis-pbp"
    return "betfair" if betfair.is_betfair_line(text) else "native"


__all__ = ["FILE_FORMATS", "LINE_FORMATS", "Row", "new_processor", "route_line", "sniff"]
