"""The DuckDB schema (`schema.sql`), read once: table names, columns and Arrow types.

The one place the sink and the tests learn what the tables look like.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import duckdb
import pyarrow as pa

_ARROW: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
}


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # the primary key, for upserted tables
    arrow_types: tuple[pa.DataType, ...]  # one per column
    sql_types: tuple[str, ...]  # one per column, as DuckDB names them
    group: tuple[str, ...] = ()  # append-only tables: `-- key: (group) rising`
    rising: str = ""


def schema_sql() -> str:
    return resources.files("sinks").joinpath("schema.sql").read_text()


def views_sql() -> str:
    """The views of schema.sql (over its tables), on their own."""
    return "\n".join(_VIEW.findall(schema_sql()))


_VIEW = re.compile(r"^CREATE OR REPLACE VIEW .*?;$", re.S | re.M)


@cache
def tables() -> dict[str, Table]:
    """Every table of schema.sql, by name, in the order the file defines them."""
    con = duckdb.connect()
    con.execute(schema_sql())
    out: dict[str, Table] = {}
    for (name,) in con.execute(
        "SELECT table_name FROM duckdb_tables() ORDER BY estimated_size, table_oid"
    ).fetchall():
        cols = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
            "ORDER BY column_index",
            [name],
        ).fetchall()
        key = con.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [name],
        ).fetchone()
        group, rising = _append_key(name)
        out[name] = Table(
            name=name,
            columns=tuple(c for c, _ in cols),
            key=tuple(key[0]) if key else (),
            arrow_types=tuple(_arrow_type(t) for _, t in cols),
            sql_types=tuple(t for _, t in cols),
            group=group,
            rising=rising,
        )
    con.close()
    return out


_APPEND_KEY = re.compile(
    r"CREATE TABLE IF NOT EXISTS (\w+) \((?:(?!CREATE).)*?-- key: \(([\w, ]+)\) (\w+)", re.S
)


def _append_key(name: str) -> tuple[tuple[str, ...], str]:
    """The `-- key: (group) rising` comment of an append-only table in schema.sql."""
    for table, group, rising in _APPEND_KEY.findall(schema_sql()):
        if table == name:
            return tuple(g.strip() for g in group.split(",")), rising
    return (), ""


def _arrow_type(sql_type: str) -> pa.DataType:
    if sql_type.startswith("DECIMAL"):
        precision, scale = sql_type[len("DECIMAL(") : -1].split(",")
        return pa.decimal128(int(precision), int(scale))
    return _ARROW[sql_type]
