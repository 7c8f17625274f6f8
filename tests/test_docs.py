"""The docs under docs/ say what the code does: checked here against the code itself.

- docs/tables.md lists exactly the tables, views and columns of sinks/schema.sql;
- docs/architecture.md draws the replay and live flows as `bytewax.visualize.to_mermaid`
  draws them (`python -m tests.test_docs --write` redraws them after a change of a flow);
- every example line of docs/feed-format.md is accepted by the engine, or refused with the
  reason the doc gives, and its signed example verifies;
- docs/topics.md names every topic of the code, and its example messages are those the
  serde writes for the feed examples;
- no tracked text file points outside the repository: to a contract or a style file kept
  elsewhere, or into the shared folder beside it other than the recordings the tests read
  (`../shared/data`).
"""

from __future__ import annotations

import functools
import gc
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from bytewax.dataflow import Dataflow

from connectors.kafka.serde import to_messages
from connectors.kafka.settings import ALL_TOPICS, OUTPUT_TOPICS, POSITION_HEADER, KafkaSettings
from operators import parse
from operators.engine import LocalEngine
from operators.parse import Limits, RawLine
from operators.rows import BetRow, Reject, Row
from operators.settings import Rules
from operators.signing import Keyring, check, split_signed
from sinks.tables import schema_sql

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ARCHITECTURE = DOCS / "architecture.md"
FENCE = re.compile(r"^```(\w[\w-]*)\n(.*?)^```$", re.S | re.M)


def fenced(path: Path, lang: str) -> list[str]:
    """The bodies of the ```lang blocks of a markdown file, in order."""
    return [body for kind, body in FENCE.findall(path.read_text()) if kind == lang]


# ---- (a) tables --------------------------------------------------------------------------


def schema_columns() -> dict[str, list[tuple[str, str]]]:
    """Every table and view of schema.sql -> [(column, type)], as DuckDB reads them."""
    con = duckdb.connect()
    con.execute(schema_sql())
    names = [n for (n,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
    names += [
        n
        for (n,) in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
    ]
    out = {}
    for name in names:
        cols = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
            "ORDER BY column_index",
            [name],
        ).fetchall()
        out[name] = [(c, t) for c, t in cols]
    con.close()
    return out


_HEADING = re.compile(r"^#+ .*?`(\w+)`")
_COLUMN = re.compile(r"^\| `(\w+)` \| ([A-Z0-9(), ]+?) \|")


def doc_columns(text: str) -> dict[str, list[tuple[str, str]]]:
    """The tables of docs/tables.md: a heading naming the table in backquotes, then a
    markdown table whose rows start `| `column` | TYPE |`."""
    out: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            current = out.setdefault(heading.group(1), [])
            continue
        column = _COLUMN.match(line)
        if column and current is not None:
            current.append((column.group(1), column.group(2).strip()))
    return {name: cols for name, cols in out.items() if cols}


def test_tables_doc_lists_every_table_and_column() -> None:
    schema = schema_columns()
    doc = doc_columns((DOCS / "tables.md").read_text())
    assert sorted(schema) == sorted(doc), (
        f"tables in schema.sql but not in docs/tables.md: {sorted(set(schema) - set(doc))}; "
        f"in the doc only: {sorted(set(doc) - set(schema))}"
    )
    for name, columns in schema.items():
        missing = [c for c in columns if c not in doc[name]]
        extra = [c for c in doc[name] if c not in columns]
        assert doc[name] == columns, (
            f"docs/tables.md, table {name}: columns of schema.sql missing {missing}, "
            f"columns only in the doc {extra} (else the order differs)"
        )


# ---- (b) the dataflow diagrams -------------------------------------------------------------


def built_flows() -> list[Dataflow]:
    """The replay flow (with its optional Kafka output) and the live flow, built with dummy
    paths and default settings (building connects to nothing)."""
    from flows import live, replay

    saved = parse.LIMITS, gc.get_threshold(), sys.getswitchinterval()
    try:
        settings, rules, limits = KafkaSettings(), Rules(), Limits()
        return [
            replay.get_flow(
                ["feed.jsonl.gz"],
                "out.duckdb",
                rules=rules,
                publish_every_s=2.0,
                kafka=settings,
                limits=limits,
            ),
            live.get_flow(settings, "out.duckdb", rules=rules, publish_every_s=2.0, limits=limits),
        ]
    finally:  # building a flow tunes the interpreter for it: not for the tests that follow
        parse.use_limits(saved[0])
        gc.set_threshold(*saved[1])
        sys.setswitchinterval(saved[2])


def flow_diagrams() -> list[str]:
    """`to_mermaid` of each flow, as the mermaid blocks of docs/architecture.md hold it."""
    from bytewax.visualize import to_mermaid

    return [to_mermaid(flow).strip() + "\n" for flow in built_flows()]


def write_diagrams() -> None:
    """Redraw the mermaid blocks of docs/architecture.md from the flows, in order."""
    diagrams = iter(flow_diagrams())
    text = FENCE.sub(
        lambda m: f"```mermaid\n{next(diagrams)}```" if m.group(1) == "mermaid" else m.group(0),
        ARCHITECTURE.read_text(),
    )
    ARCHITECTURE.write_text(text)


def test_architecture_diagrams_are_the_flows() -> None:
    assert fenced(ARCHITECTURE, "mermaid") == flow_diagrams(), (
        "docs/architecture.md draws other flows than the code's: "
        "`python -m tests.test_docs --write` redraws them"
    )


def test_architecture_names_the_steps_of_market_sync() -> None:
    (sync,) = [step for step in built_flows()[0].substeps if step.step_name == "sync"]
    inside = "\n".join(fenced(ARCHITECTURE, "text"))
    missing = [s.step_name for s in sync.substeps if s.step_name not in inside]
    assert not missing, f"docs/architecture.md: market_sync's steps {missing} are not drawn"


# ---- (c) feed examples -----------------------------------------------------------------------

FEED_FORMAT = DOCS / "feed-format.md"
# A row of a refusals table: | `reason` | `{example line}` | ... (a line that is not an
# object starts with `[`)
_REFUSAL = re.compile(r"^\| `([\w:]+)` \| `([{[].*?)` \|", re.M)


def accepted_examples() -> list[bytes]:
    """The lines of every ```jsonl block, in the doc's order: one feed, replayed as one."""
    return [line.encode() for block in fenced(FEED_FORMAT, "jsonl") for line in block.splitlines()]


def replay(lines: list[bytes]) -> Iterator[tuple[int, Row]]:
    """(index of the line, row) for every row of the lines through one engine; rows of the
    end of input under the index len(lines)."""
    engine = LocalEngine()
    for n, data in enumerate(lines):
        for row in engine.line(RawLine(f"feed-format.md:{n}", data)):
            yield n, row
    for row in engine.finish():
        yield len(lines), row


def refusal(row: Row) -> str | None:
    """The reason a row refuses a line or a bet, None when it does not."""
    if isinstance(row, Reject):
        return row.reason
    if isinstance(row, BetRow) and row.status == "rejected":
        return row.reason
    return None


def test_feed_examples_are_accepted() -> None:
    lines = accepted_examples()
    assert len(lines) > 50
    refused = [(lines[n], refusal(row)) for n, row in replay(lines) if refusal(row)]
    assert not refused, f"docs/feed-format.md examples refused: {refused}"
    bets = {row.bet_id for _, row in replay(lines) if isinstance(row, BetRow)}
    assert len(bets) == sum(b'"type":"bet"' in line for line in lines)


def refusal_examples() -> list[tuple[str, str]]:
    return _REFUSAL.findall(FEED_FORMAT.read_text())


@pytest.mark.parametrize(("reason", "line"), refusal_examples())
def test_feed_refusal_examples(reason: str, line: str) -> None:
    """Each example after the accepted ones: refused, with the reason its row gives."""
    lines = accepted_examples()
    given = [refusal(row) for n, row in replay([*lines, line.encode()]) if n >= len(lines)]
    assert reason in given, f"{line}: refused as {given}, the doc says {reason}"


def test_feed_refusal_examples_cover_the_simulators_faults() -> None:
    from tooling.simulator import FAULT_KINDS

    documented = {reason.split(":")[0] for reason, _ in refusal_examples()}
    assert {kind.split(":")[0] for kind in FAULT_KINDS} <= documented


def test_signed_example_verifies() -> None:
    (block,) = fenced(FEED_FORMAT, "signed")
    secret, line = block.splitlines()
    data, signature = split_signed(line.encode())
    keyring = Keyring.of({"sim": secret.removeprefix("secret: ")})
    assert signature and check(keyring, "sim", data, signature) is None
    assert check(keyring, "sim", data + b" ", signature) == "bad_signature"


# ---- (d) topics ----------------------------------------------------------------------------


TOPICS = DOCS / "topics.md"
_EXAMPLE = re.compile(r"^### `(\w+)`\n\n```json\n(.*?)\n```", re.S | re.M)


@functools.cache
def kafka_messages() -> tuple[tuple[str, str], ...]:
    """(topic, value) of every message of the feed-format examples: the accepted lines,
    then each refused one after them."""
    runs = [accepted_examples()]
    runs += [[*runs[0], line.encode()] for _, line in refusal_examples()]
    return tuple(
        dict.fromkeys(
            (topic, value.decode())
            for lines in runs
            for topic, _, value in to_messages(("", [row for _, row in replay(lines)]))
        )
    )


def test_topics_doc_names_every_topic() -> None:
    text = TOPICS.read_text()
    missing = [t for t in (*ALL_TOPICS, POSITION_HEADER) if f"`{t}`" not in text]
    assert not missing, f"docs/topics.md does not name {missing}"


def test_topic_examples_are_the_serdes() -> None:
    examples = _EXAMPLE.findall(TOPICS.read_text())
    assert sorted(topic for topic, _ in examples) == sorted(OUTPUT_TOPICS)
    produced = kafka_messages()
    for topic, value in examples:
        assert (topic, value) in produced, f"docs/topics.md, {topic}: no such message {value}"


# ---- (e) nothing outside the repository ------------------------------------------------------

_TEXT = re.compile(r"(\.py|\.md|\.toml|\.sql|^Makefile|^\.ci/.*)$")
# Spelt in pieces, so that this file does not name them itself.
_OUTSIDE = re.compile("|".join(("CONT" + "RACT", r"STYLE\.md", r"\.\./sha" + "red(?!/data)")))


def outside_references() -> list[str]:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for name in files:
        if not _TEXT.search(name) or not (ROOT / name).is_file():
            continue
        for n, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1):
            if _OUTSIDE.search(line):
                found.append(f"{name}:{n}: {line.strip()}")
    return found


def test_no_references_outside_the_repository() -> None:
    found = outside_references()
    assert not found, "references outside the repository:\n" + "\n".join(found)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_docs --write  (redraws docs/architecture.md)")
    write_diagrams()
