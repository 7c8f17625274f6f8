"""Hostile input through every line adapter and the validator (hypothesis).

Random bytes, truncated and mutated real lines (data/sample.jsonl.gz, the Betfair and
StatsBomb recordings in ../shared/data), huge numbers, deep nesting, wrong types, NaN and
Infinity tokens, very long strings, keys that look like other keys. For each target:

- nothing raises;
- a line the adapter refuses comes out as `Reject` rows with a reason, and only those; a
  line it takes leaves a trace (a row naming its source, its bet or its deposit);
- every row fits its DuckDB column (type, range, NULL), so the sink never fails on it;
- the valid lines after a hostile one give the same rows as without it: all of them when
  it was refused before being decoded (or is a Betfair line, which changes no state when
  refused); the other matches' rows when it was decoded, since the rules judge a decoded
  line and it may use up its `seq` or `bet_id`, by design.

CI runs about 21 000 cases; `HYPOTHESIS_PROFILE=long` runs 20 times as many. Inputs the
fuzz found that once broke the flow are kept as regression tests at the end.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import pickle
import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from operators.adapters import statsbomb
from operators.adapters.betfair import BetfairProcessor, is_betfair_line
from operators.engine import LocalEngine
from operators.events import Bet, Deposit
from operators.ordering import line_ts
from operators.parse import RawLine, parse_line
from operators.rows import TABLE_OF, BetRow, LedgerRow, Reject, Row, WalletRow
from sinks.tables import schema_sql
from tests.conftest import replay, shared_data

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample.jsonl.gz"
HOSTILE = "hostile:1"

settings.register_profile(
    "fuzz",
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("long", settings.get_profile("fuzz"))
_LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
_PROFILE = settings.get_profile("long" if _LONG else "fuzz")
pytestmark = [pytest.mark.timeout(12_000)] if _LONG else []


def fuzz(examples: int) -> Callable:
    """Hypothesis settings for a target: `examples` cases in CI, 20x in the long profile."""
    return settings(_PROFILE, max_examples=examples * (20 if _LONG else 1))


# ---- real lines --------------------------------------------------------------------------


class Pool:
    """Real lines (or events) to start hostile ones from, grouped by kind so that rare
    kinds (bets, match ends, market definitions) are drawn as often as heartbeats; short in
    hypothesis' reports."""

    def __init__(self, name: str, items: Sequence[Any], kind: Callable[[Any], str]) -> None:
        self.name = name
        self.items = items
        groups: dict[str, list[Any]] = {}
        for item in items:
            groups.setdefault(kind(item), []).append(item)
        self.groups = [groups[k] for k in sorted(groups)]

    def real(self) -> st.SearchStrategy[Any]:
        return st.sampled_from(self.groups).flatmap(st.sampled_from)

    def __repr__(self) -> str:
        return f"<{self.name}: {len(self.items)}>"


def native_kind(line: bytes) -> str:
    found = re.search(rb'"type":"(\w+)"', line)
    return found[1].decode() if found else "?"


def betfair_kind(line: bytes) -> str:
    words = (b'"ccm"', b"marketDefinition", b'"rc"', b"HEARTBEAT", b"incident", b"img")
    return "+".join(w.decode() for w in words if w in line) or "?"


def read_lines(path: Path, limit: int | None = None) -> list[bytes]:
    opener = bz2.open if path.suffix == ".bz2" else gzip.open
    with opener(path, "rb") as f:
        lines = [line.rstrip(b"\r\n") for line in f]
    return [line for line in lines if line][:limit]


@pytest.fixture(scope="module")
def native_lines() -> Pool:
    return Pool("data/sample.jsonl.gz", read_lines(SAMPLE), native_kind)


@pytest.fixture(scope="module")
def betfair_lines() -> Pool:
    """The exchange stream of a cricket match (start and end), its sports-data stream,
    and two other recordings."""
    market = read_lines(shared_data("betfair", "1.200806927.gz"))
    return Pool(
        "betfair recordings",
        [
            *market[:1500],
            *market[-300:],
            *read_lines(shared_data("betfair", "sportsdata-1.200806927.gz"), 600),
            *read_lines(shared_data("betfair", "1.197931750.gz")),
            *read_lines(shared_data("betfair", "1.166811431.bz2"), 300),
        ],
        betfair_kind,
    )


@pytest.fixture(scope="module")
def statsbomb_match() -> Pool:
    """The events (items) of a real match; its lineups in `LINEUPS`."""
    with gzip.open(shared_data("statsbomb", "15986_events.json.gz")) as f:
        return Pool("statsbomb 15986 events", json.load(f), lambda event: "all")


@pytest.fixture(scope="module")
def statsbomb_lineups() -> Pool:
    return Pool(
        "statsbomb 15986 lineups",
        json.loads(shared_data("statsbomb", "15986_lineups.json").read_text()),
        lambda team: "all",
    )


# ---- hostile lines -----------------------------------------------------------------------

# Raw JSON text spliced in where a value was: number edge cases, the non-standard NaN and
# Infinity tokens, wrong types, escapes that are not characters, nesting deeper than any
# decoder's recursion, strings past the line limit, and names of other keys.
TOKENS: list[bytes] = [
    b"NaN",
    b"-NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"-1e999",
    b"1e-999",
    b"-0",
    b"0.0",
    b"1.5",
    b"-1",
    b"0",
    b"01",
    b"+1",
    b".5",
    b"1.",
    b"0x10",
    b"1E400",
    b"9" * 400,
    b"18446744073709551616",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"2147483648",
    b"4503599627370497",
    b"1000000000000000000000",
    b"null",
    b"true",
    b"false",
    b"[]",
    b"{}",
    b'""',
    b'" "',
    b"[1,2]",
    b'{"a":1}',
    b'"\\ud800"',
    b'"\\udfff\\ud800"',
    b'"\\u0000"',
    b'"\\\\"',
    b'"a\\nb"',
    b"'a'",
    b'"NaN"',
    b'"Infinity"',
    b'"1e400"',
    b'"-5.00"',
    b'"100.001"',
    b'"0.001"',
    b'" 1.00"',
    b'"1e30"',
    b'"99999999999999.99"',
    b'"1.005"',
    b'"1_000"',
    b'"0x1"',
    b"[" * 3000 + b"]" * 3000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"[" * 200 + b"]" * 200,
    b'"' + b"x" * 70_000 + b'"',
    b'"' + b"x" * 300 + b'"',
    b'"' + "é€😀".encode() * 2000 + b'"',
    b'"\xff\xfe"',
    b'"\xed\xa0\x80"',
    b'"$0"',
    b'"$7"',
    b'"bf:1.200806927"',
    b'"bf:"',
    b'"sim-7-1"',
    b'"u0001"',
    b'"mcm"',
    b'"ccm"',
    b'"fixture"',
    b'"match_end"',
    b'"bet"',
    b'"deposit"',
]
KEYS = [
    "v",
    "ts",
    "type",
    "provider",
    "match_id",
    "seq",
    "user_id",
    "bet_id",
    "op",
    "pt",
    "mc",
    "cc",
    "id",
    "amount",
    "stake",
    "price",
    "market",
    "selection",
    "goal_id",
    "state",
    "team",
    "period",
    "minute",
    "second",
    "kickoff",
    "home_score",
]

# Money is a decimal string in the feed: any decimal, in any notation.
money = st.decimals(allow_nan=True, allow_infinity=True).map(str) | st.sampled_from(
    ["1e30", "-0", "0.001", "1.005", "99999999.99", "1E+2", "0", "1.01", "1000.00", "5000.01"]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**53, max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | money
    | st.sampled_from(["$3", "bf:", "", "sim-7-1", "u0001", "home", "1x2", "10.00", "2.5"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, path: tuple = ()) -> Iterable[tuple]:
    """Every path to a value inside decoded JSON."""
    yield path
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*path, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _paths(inner, (*path, i))


def _replaced(doc: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _replaced(doc[head], rest, new)}
    out = list(doc)
    out[head] = _replaced(doc[head], rest, new)
    return out


def _removed(doc: Any, path: tuple) -> Any:
    if len(path) == 1:
        if isinstance(doc, dict):
            return {k: v for k, v in doc.items() if k != path[0]}
        return [v for i, v in enumerate(doc) if i != path[0]]
    return _replaced(doc, path[:-1], _removed(_get(doc, path[:-1]), path[-1:]))


def _get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


_MARK = "\x00hostile-token\x00"


def _decoded(line: bytes) -> Any:
    """The line as JSON (a fault line of the sample that is not JSON: as a string)."""
    try:
        return json.loads(line)
    except ValueError:
        return line.decode("utf-8", errors="replace")


@st.composite
def spliced(draw: st.DrawFn, line: bytes) -> bytes:
    """A value somewhere in the line replaced by raw hostile JSON text, or a key added."""
    doc = _decoded(line)
    path = draw(st.sampled_from(list(_paths(doc))))
    token = draw(st.sampled_from(TOKENS))
    if path and draw(st.booleans()):
        doc = _replaced(doc, path, _MARK)
    elif isinstance(doc, dict):
        doc = {**doc, draw(st.sampled_from(KEYS)): _MARK}
    else:
        doc = _MARK
    text = json.dumps(doc, separators=(",", ":")).encode()
    return text.replace(json.dumps(_MARK).encode(), token)


@st.composite
def mutated(draw: st.DrawFn, line: bytes) -> bytes:
    """A value replaced by another JSON value of any type, or a field removed."""
    doc = _decoded(line)
    paths = [p for p in _paths(doc) if p]
    if not paths:
        return json.dumps(draw(json_values)).encode()
    path = draw(st.sampled_from(paths))
    doc = _removed(doc, path) if draw(st.booleans()) else _replaced(doc, path, draw(json_values))
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()


@st.composite
def byte_edits(draw: st.DrawFn, line: bytes) -> bytes:
    """A few bytes replaced, inserted or deleted."""
    data = bytearray(line)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.sampled_from([*b'{}[]":,\\0123456789-.eE \x00\xff\n', 0x80]))
        if op == "insert" or at == len(data):
            data.insert(at, byte)
        elif op == "replace":
            data[at] = byte
        else:
            del data[at]
    return bytes(data)


@st.composite
def wrapped(draw: st.DrawFn, line: bytes) -> bytes:
    """The whole line in a hostile envelope."""
    kind = draw(st.integers(0, 7))
    return [
        b"[" + line + b"]",
        line + b"garbage",
        b" \t" + line,
        line + b" " + line,
        b"\xef\xbb\xbf" + line,
        line.decode().encode("utf-16"),
        line[:-1] + b',"' + b"k" * 65_536 + b'":1}',
        line.replace(b":", b": ", 3),
    ][kind]


def hostile_lines(pool: Pool) -> st.SearchStrategy[bytes]:
    real = pool.real()
    return st.one_of(
        st.binary(max_size=200),
        st.text(alphabet=string.printable, max_size=200).map(str.encode),
        real.flatmap(lambda line: st.integers(0, len(line)).map(lambda n: line[:n])),
        real.flatmap(spliced),
        real.flatmap(spliced),
        real.flatmap(mutated),
        real.flatmap(mutated),
        real.flatmap(byte_edits),
        real.flatmap(wrapped),
    )


# ---- what the sink accepts ---------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    nullable: bool


def _columns() -> dict[str, list[Column]]:
    con = duckdb.connect()
    con.execute(schema_sql())
    found = con.execute(
        "SELECT table_name, column_name, data_type, is_nullable FROM duckdb_columns() "
        "ORDER BY table_name, column_index"
    ).fetchall()
    con.close()
    out: dict[str, list[Column]] = {}
    for table_name, name, sql_type, nullable in found:
        out.setdefault(table_name, []).append(Column(name, sql_type, nullable))
    return out


COLUMNS = _columns()
INT_BITS = {"BIGINT": 63, "INTEGER": 31}


def misfit(row: tuple[object, ...]) -> str | None:
    """Why the DuckDB sink could not store `row` as it is (None: it can)."""
    for column, value in zip(COLUMNS[TABLE_OF[type(row)]], row, strict=True):
        problem = _value_misfit(column, value)
        if problem:
            return f"{type(row).__name__}.{column.name} = {value!r:.80}: {problem}"
    return None


def _value_misfit(column: Column, value: object) -> str | None:
    if value is None:
        return None if column.nullable else "NULL in a NOT NULL column"
    kind = column.sql_type
    if kind in INT_BITS:
        bits = INT_BITS[kind]
        ok = type(value) is int and -(2**bits) <= value < 2**bits
        return None if ok else f"not a {kind}"
    if kind.startswith("DECIMAL"):
        precision, scale = map(int, kind[len("DECIMAL(") : -1].split(","))
        if not isinstance(value, Decimal) or not value.is_finite():
            return "not a finite Decimal"
        if abs(value) >= Decimal(10) ** (precision - scale):
            return f"too large for {kind}"
        if value != value.quantize(Decimal(1).scaleb(-scale)):
            return f"more than {scale} decimal places (the sink would cut them)"
        return None
    if kind == "DOUBLE":
        return None if isinstance(value, float) and value == value else "not a number"
    if kind == "VARCHAR":
        if not isinstance(value, str):
            return "not a string"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "not encodable as UTF-8"
        return None
    return f"unchecked type {kind}"


def assert_storable(rows: Iterable[object]) -> None:
    problems = [misfit(r) for r in rows if isinstance(r, tuple) and type(r) in TABLE_OF]
    assert [p for p in problems if p] == []


# ---- inputs the adapter passes on as text -------------------------------------------------


def unencodable(event: Any) -> str | None:
    """An event with text JSON cannot carry (a lone surrogate): the adapter converts it
    as it is; `providers.statsbomb_lines` turns such a line into an `invalid_text` reject
    (tested below), so the adapter-level checks here step around it."""
    try:
        json.dumps(event, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return "lone surrogate in a string: the converted line cannot be encoded"
    return None


# ---- parse_line ----------------------------------------------------------------------------

REASON = re.compile(r"[a-z_]+(:[A-Za-z0-9_.]+)?")  # a short code: malformed_json, invalid_field:ts


@fuzz(7000)
@given(data=st.data())
def test_parse_line_answers_every_line(native_lines: Pool, data: st.DataObject) -> None:
    line = data.draw(hostile_lines(native_lines))
    got = parse_line(RawLine(HOSTILE, line))
    if isinstance(got, Reject):
        assert REASON.fullmatch(got.reason), got
        assert got.source == HOSTILE and got.detail
        assert got.raw == line.decode("utf-8", errors="replace")
    assert line_ts(line) is None or type(line_ts(line)) is int


# ---- the native engine (and the Betfair lines it routes) ---------------------------------


class Checkpoint:
    """The engine after a prefix of the sample feed, the next lines, and what they give."""

    def __init__(self, at: int, engine: LocalEngine, suffix: Sequence[RawLine]) -> None:
        self.at = at
        self.engine = pickle.dumps(engine)
        self.suffix = tuple(suffix)
        self.rows = _engine_rows(self.restore(), self.suffix)  # per line, then `finish`

    def restore(self) -> LocalEngine:
        engine: LocalEngine = pickle.loads(self.engine)
        return engine

    def __repr__(self) -> str:
        return f"<engine after sample line {self.at}>"


def _engine_rows(engine: LocalEngine, suffix: Sequence[RawLine]) -> list[tuple[Row, ...]]:
    return [tuple(engine.line(raw)) for raw in suffix] + [tuple(engine.finish())]


@pytest.fixture(scope="module")
def checkpoints(native_lines: Pool) -> list[Checkpoint]:
    """Points of the sample: before the first fixture, pre-match, around goals, bets in
    play and the first match_end."""
    raws = [RawLine(f"sample:{n}", line) for n, line in enumerate(native_lines.items, 1)]

    def first(marker: bytes) -> int:
        return next(i for i, r in enumerate(raws) if marker in r.data)

    ats = sorted(
        {
            0,
            first(b'"type":"fixture"') + 1,
            first(b'"state":"possible"') - 3,
            first(b'"state":"confirmed"') - 10,
            first(b'"type":"bet"') + 400,
            first(b'"type":"match_end"') - 20,
            len(raws) // 2,
        }
    )
    engine = LocalEngine()
    out, done = [], 0
    for at in ats:
        for raw in raws[done:at]:
            engine.line(raw)
        done = at
        out.append(Checkpoint(at, engine, raws[at : at + 40]))
    return out


def _peek(line: bytes) -> dict[str, Any]:
    try:
        doc = msgspec.json.decode(line)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _accounted_for(line: bytes, rows: Sequence[object]) -> bool:
    """Does some row say what became of the hostile line?"""
    event = parse_line(RawLine(HOSTILE, line))
    for row in rows:
        source = getattr(row, "source", None)
        if isinstance(source, str) and source.split("#")[0] == HOSTILE:
            return True
        if isinstance(row, LedgerRow) and row.ref == HOSTILE and isinstance(event, Deposit):
            return True
        if isinstance(row, BetRow) and isinstance(event, Bet) and row.bet_id == event.bet_id:
            return True
    return False


BET_STREAM_ROWS = (BetRow, WalletRow, LedgerRow)


def _other_matches(rows: Iterable[tuple[object, ...]], touched: set[str]) -> list[list[object]]:
    """Per line, the rows about matches the hostile line does not name, bet-stream rows left
    out (a decoded bet or deposit may change balances, and a bet_id is used once)."""
    return [
        [
            r
            for r in line_rows
            if not isinstance(r, BET_STREAM_ROWS)
            and getattr(r, "match_id", None) not in touched
            and not (isinstance(r, Reject) and r.provider is None and r.reason == "duplicate")
        ]
        for line_rows in rows
    ]


@fuzz(4000)
@given(data=st.data())
def test_engine_hostile_line_between_valid_lines(
    checkpoints: list[Checkpoint],
    native_lines: Pool,
    betfair_lines: Pool,
    data: st.DataObject,
) -> None:
    point = data.draw(st.sampled_from(checkpoints))
    pool = data.draw(st.sampled_from([native_lines, native_lines, betfair_lines]))
    line = data.draw(hostile_lines(pool))
    engine = point.restore()
    rows = engine.line(RawLine(HOSTILE, line))
    after = _engine_rows(engine, point.suffix)
    assert_storable(rows)
    assert_storable(r for line_rows in after for r in line_rows)
    assert _accounted_for(line, [*rows, *(r for line_rows in after for r in line_rows)])

    betfair = is_betfair_line(line)
    refused = all(isinstance(r, Reject) for r in rows) and (
        betfair or isinstance(parse_line(RawLine(HOSTILE, line)), Reject)
    )
    if refused:
        rejects = [r for r in rows if isinstance(r, Reject)]
        assert rejects and all(r.reason and r.source.startswith(HOSTILE) for r in rejects)
        assert after == point.rows
    else:
        assert all(r.reason for r in rows if isinstance(r, Reject))
        peek = _peek(line)
        named = [peek.get("match_id"), *(getattr(r, "match_id", None) for r in rows)]
        touched = {m for m in named if isinstance(m, str)}
        assert _other_matches(after, touched) == _other_matches(point.rows, touched)


# ---- the Betfair processor ------------------------------------------------------------------


class BetfairPoint:
    """A processor part-way through a real market, the next lines, and what they give."""

    def __init__(self, at: int, processor: BetfairProcessor, suffix: Sequence[RawLine]) -> None:
        self.at = at
        self.processor = pickle.dumps(processor)
        self.suffix = tuple(suffix)
        again = self.restore()
        self.rows = tuple(tuple(again.process(r)) for r in self.suffix)

    def restore(self) -> BetfairProcessor:
        processor: BetfairProcessor = pickle.loads(self.processor)
        return processor

    def __repr__(self) -> str:
        return f"<betfair processor after line {self.at}>"


@pytest.fixture(scope="module")
def betfair_points() -> list[BetfairPoint]:
    """The cricket market's exchange and sports-data streams merged by publish time, at
    several points: pre-match, in play, around the sports-data holds, the close."""
    lines = read_lines(shared_data("betfair", "1.200806927.gz"))
    lines += read_lines(shared_data("betfair", "sportsdata-1.200806927.gz"))
    raws = sorted(
        (RawLine(f"bf:{n}", line) for n, line in enumerate(lines, 1)),
        key=lambda r: line_ts(r.data) or 0,
    )
    processor = BetfairProcessor()
    out, done = [], 0
    for at in (0, 1, 50, 2000, 6000, 12_000, len(raws) - 60):
        for raw in raws[done:at]:
            processor.process(raw)
        done = at
        out.append(BetfairPoint(at, processor, raws[at : at + 40]))
    return out


@fuzz(4000)
@given(data=st.data())
def test_betfair_hostile_line_between_valid_lines(
    betfair_points: list[BetfairPoint], betfair_lines: Pool, data: st.DataObject
) -> None:
    point = data.draw(st.sampled_from(betfair_points))
    line = data.draw(hostile_lines(betfair_lines))
    processor = point.restore()
    rows = processor.process(RawLine(HOSTILE, line))
    after = tuple(tuple(processor.process(r)) for r in point.suffix)
    assert rows, "every line gives a row: a reject, or its feed event"
    assert_storable(rows)
    assert_storable(r for line_rows in after for r in line_rows)
    rejects = [r for r in rows if isinstance(r, Reject)]
    if len(rejects) == len(rows):
        assert all(r.reason and r.provider == "betfair" and r.source == HOSTILE for r in rejects)
        assert after == point.rows  # a rejected line changes no state
    else:
        assert not any(isinstance(r, Reject) for r in rows)
        assert any(getattr(r, "source", None) == HOSTILE for r in rows)


# ---- the StatsBomb converter -----------------------------------------------------------------

KICKOFF = 1_519_488_000_000
MAPPED = {
    "Shot",
    "Own Goal Against",
    "Foul Committed",
    "Bad Behaviour",
    "Substitution",
    "Pass",
    "Half End",
    "Half Start",
    "Starting XI",
}


@pytest.fixture(scope="module")
def statsbomb_context(statsbomb_match: Pool, statsbomb_lineups: Pool) -> statsbomb.MatchContext:
    return statsbomb.build_context(
        statsbomb_match.items, statsbomb_lineups.items, match_id="15986", kickoff_ts=KICKOFF
    )


@pytest.fixture(scope="module")
def statsbomb_events(statsbomb_match: Pool) -> Pool:
    """The real match's events of every mapped kind (corners apart from other passes),
    and a few others."""

    def kind(event: dict) -> str:
        name = event["type"]["name"]
        if name == "Pass" and event["pass"].get("type", {}).get("name") == "Corner":
            return "Corner"
        return name if name in MAPPED else "other"

    return Pool("statsbomb events to mutate", statsbomb_match.items, kind)


hostile_values = json_values | st.sampled_from(
    [
        float("nan"),
        float("inf"),
        10**30,
        -(10**30),
        2**63,
        "x" * 70_000,
        "\ud800",
        "",
        "99:99:99.999",
        "00:00:00",
        "1:2:3",
        "12:00:00.1234567",
        [[[[[[[[[[[]]]]]]]]]]],
        True,
    ]
)


@st.composite
def hostile_events(draw: st.DrawFn, events: Pool) -> Any:
    """A real event with a value anywhere in it replaced or removed, or any JSON value."""
    if draw(st.integers(0, 9)) == 0:
        return draw(hostile_values)
    event = draw(events.real())
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(event) if p]
        path = draw(st.sampled_from(paths))
        if draw(st.integers(0, 3)) == 0:
            event = _removed(event, path)
        else:
            event = _replaced(event, path, draw(hostile_values))
    return event


def _check_native(line: dict[str, Any]) -> None:
    """A converted line: encodable, and a valid native line for the validator (or one too
    long for it: a huge name, which it rejects)."""
    event = parse_line(RawLine("statsbomb", msgspec.json.encode(line)))
    assert not isinstance(event, Reject) or event.reason == "line_too_long", event


@fuzz(6000)
@given(data=st.data())
def test_statsbomb_event_converts_or_is_rejected(
    statsbomb_context: statsbomb.MatchContext, statsbomb_events: Pool, data: st.DataObject
) -> None:
    event = data.draw(hostile_events(statsbomb_events))
    assume(unencodable(event) is None)
    got = statsbomb.convert_event(event, statsbomb_context, source="fuzz")
    if got.reject is not None:
        assert not got.lines
        assert isinstance(got.reject["reason"], str) and got.reject["reason"]
        json.dumps(got.reject)
    for line in got.lines:
        _check_native({"seq": 1, **line})


@fuzz(60)
@given(data=st.data())
def test_statsbomb_match_with_hostile_events(
    statsbomb_match: Pool,
    statsbomb_lineups: Pool,
    statsbomb_events: Pool,
    data: st.DataObject,
) -> None:
    events = list(statsbomb_match.items)
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, len(events) - 1))
        events[at] = data.draw(hostile_events(statsbomb_events))
        assume(unencodable(events[at]) is None)
    out = list(
        statsbomb.to_native(events, statsbomb_lineups.items, match_id="15986", kickoff_ts=KICKOFF)
    )
    lines = [line for line in out if not line.get("reject")]
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert all(line["reason"] for line in out if line.get("reject"))
    for line in lines:
        _check_native(line)


# ---- the whole flow: a replay through a file of hostile lines --------------------------------

# One of each kind of hostile line, each refused before it can change anything.
CORPUS: list[bytes] = [
    b"\x00\xff\xfe binary garbage",
    b'{"v":1,"provider":"sim\xff","match_id":"sim-7-1","seq":1,"ts":1,"type":"clock"}',
    b'{"v":1,"match_id":"sim-7-1","x":' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"v":1,"provider":"sim","match_id":"sim-7-1","seq":99999999999999999999999,"ts":1,'
    b'"type":"clock","minute":1,"second":1}',
    b'{"v":1,"provider":"sim","match_id":"sim-7-9","seq":1,"ts":100000000000000000000000,'
    b'"type":"fixture","home":"a","away":"b","kickoff":1,"home_rate":1,"away_rate":1}',
    b'{"v":1,"provider":"sim","match_id":"sim-7-1","seq":7,"ts":NaN,"type":"clock"}',
    b'{"v":1,"provider":"sim","match_id":"sim-7-1","seq":7,"ts":Infinity,"type":"clock"}',
    b'{"v":1,"ts":1767223805160,"type":"deposit","user_id":"u0001","amount":"NaN"}',
    b'{"v":1,"ts":1767223805160,"type":"bet","bet_id":"b","user_id":"u0001",'
    b'"match_id":"sim-7-1","market":"1x2","selection":"home","stake":"Infinity","price":"2"}',
    b'{"v":1,"provider":"' + b"x" * 70_000 + b'","match_id":"sim-7-1"}',
    b'{"op":"mcm","pt":1e999,"mc":[{"id":"1.2"}]}',
    b'{"op":"mcm","pt":' + b"9" * 400 + b',"mc":[{"id":"1.2"}]}',
    b'{"op":"mcm","pt":1,"mc":[{"id":"1.2","rc":[{"id":1,"atb":[[NaN,1]]}]}]}',
    b'{"op":"ccm","pt":"soon","cc":[{"marketId":"1.2"}]}',
    b"[1,2,3]",
    b'{"v":1,"type":"goal"}',
    b'"just a string"',
    b'{"v":1,"provider":"sim","match_id":"sim-7-1","seq":7,"ts":1,"type":"clock",'
    b'"minute":"12","second":[]}',
]


def test_a_replay_survives_hostile_lines(
    tmp_path: Path, native_lines: Pool, dump: Callable[[Path], dict]
) -> None:
    """The sample feed with the corpus spread through it: the flow runs to the end, each
    hostile line is one reject with a reason, and every other row is as without them."""
    lines = list(native_lines.items)
    step = len(lines) // (len(CORPUS) + 1)
    spots = {step * (i + 1) + i: hostile for i, hostile in enumerate(CORPUS)}
    for at in sorted(spots):
        lines.insert(at, spots[at])
    (tmp_path / "clean").mkdir()
    (tmp_path / "hostile").mkdir()
    clean, hostile = tmp_path / "clean" / "feed.jsonl", tmp_path / "hostile" / "feed.jsonl"
    # Blank lines keep the clean file's line numbers (the rows' sources) equal.
    clean.write_bytes(
        b"".join(b"\n" if i in spots else line + b"\n" for i, line in enumerate(lines))
    )
    hostile.write_bytes(b"".join(line + b"\n" for line in lines))

    expected = dump(replay([clean], tmp_path / "clean.duckdb"))
    got = dump(replay([hostile], tmp_path / "hostile.duckdb"))
    assert {n: rows for n, rows in got.items() if n != "rejects"} == {
        n: rows for n, rows in expected.items() if n != "rejects"
    }
    added = sorted(set(got["rejects"]) - set(expected["rejects"]), key=lambda r: r[0])
    assert set(expected["rejects"]) <= set(got["rejects"])
    sources = [f"feed.jsonl:{at + 1}" for at in sorted(spots)]
    assert sorted(r[0] for r in added) == sorted(sources)
    assert all(REASON.fullmatch(r[1]) for r in added), added


# ---- regressions: inputs the fuzz found that once broke the flow -----------------------------


def _engine_after_sample(native_lines: Pool, extra: bytes, at: int = 5) -> list[Row]:
    """All rows of the sample feed through one engine, `extra` as line `at`."""
    engine, rows = LocalEngine(), []
    for n, line in enumerate(native_lines.items):
        if n == at:
            rows += engine.line(RawLine(HOSTILE, extra))
        rows += engine.line(RawLine(f"sample:{n + 1}", line))
    return rows + engine.finish()


def test_regression_deposit_with_a_match_id_is_lost(native_lines: Pool) -> None:
    line = b'{"v":1,"ts":1767223805161,"type":"deposit","user_id":"u0081","amount":"10.00",'
    line += b'"match_id":"sim-7-1"}'
    assert _accounted_for(line, _engine_after_sample(native_lines, line))


def test_regression_dollar_match_id_stalls_two_wallet_shards(native_lines: Pool) -> None:
    line = b'{"v":1,"ts":1767223805161,"type":"bet","bet_id":"evil","user_id":"u0081",'
    line += b'"match_id":"$3","market":"1x2","selection":"home","stake":"10.00","price":"2.00"}'
    engine = LocalEngine()
    engine.line(RawLine(HOSTILE, line))
    for n, sample in enumerate(native_lines.items):
        engine.line(RawLine(f"sample:{n + 1}", sample))
    assert engine.finish() == [], "wallet movements held back until the end of input"


def test_regression_native_line_hijacks_a_betfair_market_key() -> None:
    engine = LocalEngine()
    engine.line(RawLine(HOSTILE, b'{"v":1,"provider":"p","match_id":"bf:1.197931750","seq":1}'))
    rows = [
        row
        for n, line in enumerate(read_lines(shared_data("betfair", "1.197931750.gz")))
        for row in engine.line(RawLine(f"bf:{n}", line))
    ]
    assert not any(isinstance(r, Reject) for r in rows)


def test_regression_huge_deposit_overflows_the_balance_column(native_lines: Pool) -> None:
    line = b'{"v":1,"ts":1767223805161,"type":"deposit","user_id":"u0081","amount":999999999999}'
    assert_storable(_engine_after_sample(native_lines, line))


def test_regression_rejected_bet_keeps_a_price_its_column_cannot_hold(native_lines: Pool) -> None:
    line = b'{"v":1,"ts":1767223805161,"type":"bet","bet_id":"b","user_id":"u0081",'
    line += b'"match_id":"sim-7-1","market":"1x2","selection":"home","stake":"10.00",'
    line += b'"price":"1000000.00"}'
    assert_storable(_engine_after_sample(native_lines, line))


def test_regression_line_routing_cannot_read_is_processed_as_valid(native_lines: Pool) -> None:
    line = b'{"v":1,"ts":1767223805161,"type":"deposit","user_id":"u0081","amount":"10.00",'
    line += b'"provider":1e310}'
    assert _accounted_for(line, _engine_after_sample(native_lines, line))


def test_regression_statsbomb_file_with_a_lone_surrogate(tmp_path: Path) -> None:
    from operators.providers import statsbomb_lines

    with gzip.open(shared_data("statsbomb", "15986_events.json.gz")) as f:
        events = json.load(f)
    foul = next(e for e in events if e["type"]["name"] == "Foul Committed")
    foul["player"]["name"] = "\ud800"
    path = tmp_path / "15986_events.json"
    path.write_text(json.dumps(events))
    assert list(statsbomb_lines(path))


def test_regression_statsbomb_timestamp_hours_into_a_period(
    statsbomb_match: Pool, statsbomb_lineups: Pool
) -> None:
    """One `Half End` at 99:99:99.999 stretched the first half to 100 hours: 72 000 clock
    lines, every one refused for its minute. Now the event alone is rejected."""
    events = list(statsbomb_match.items)
    at = next(i for i, e in enumerate(events) if e["type"]["name"] == "Half End")
    events[at] = {**events[at], "timestamp": "99:99:99.999"}
    out = list(
        statsbomb.to_native(events, statsbomb_lineups.items, match_id="15986", kickoff_ts=KICKOFF)
    )
    assert [r["reason"] for r in out if r.get("reject")] == ["bad_field:timestamp"]
    lines = [r for r in out if not r.get("reject")]
    assert len(lines) < 2000
    for line in lines:
        _check_native(line)


def test_regression_one_far_future_ts_stalls_a_paced_replay(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from flows.sources import ReplaySource

    kickoff = 1_767_225_600_000
    lines = [
        f'{{"v":1,"provider":"p","match_id":"m","seq":1,"ts":{kickoff},"type":"fixture",'
        f'"home":"a","away":"b","kickoff":{kickoff},"home_rate":1,"away_rate":1}}',
        f'{{"v":1,"provider":"evil","match_id":"m","seq":1,"ts":{kickoff + 10**12},'
        '"type":"clock","minute":1,"second":0}',
        f'{{"v":1,"provider":"p","match_id":"m","seq":2,"ts":{kickoff + 1000},'
        '"type":"clock","minute":1,"second":0}',
    ]
    path = tmp_path / "paced.jsonl"
    path.write_text("\n".join(lines) + "\n")
    partition = ReplaySource([path], speed=1000).build_part("read", "0:paced.jsonl", None)
    partition.next_batch()
    wake = partition.next_awake()
    assert wake is None or wake < datetime.now(UTC) + timedelta(seconds=60)
