"""Shared fixtures: simulated feeds and replays into real DuckDB files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from bytewax.testing import run_main

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A file of the recorded real feeds in ../shared/data: required under CI."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing: CI needs ../shared/data beside the repo")
        pytest.skip(f"{path} is missing")
    return path


def replay(files: list[Path], db: Path, **flow_options: object) -> Path:
    """Run the replay flow in this process; the published DuckDB file."""
    from flows.replay import get_flow

    run_main(get_flow(files, db, **flow_options))  # type: ignore[arg-type]
    return db


def table(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="session")
def sim200(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated 200-match feed with bets and injected faults."""
    from tooling.simulator import write_feed

    path = tmp_path_factory.mktemp("sim") / "sim200.jsonl.gz"
    write_feed(path, matches=200, seed=11)
    return path


@pytest.fixture(scope="session")
def sim200_db(sim200: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replay([sim200], tmp_path_factory.mktemp("db") / "sim200.duckdb")


@pytest.fixture
def dump() -> Callable[[Path], dict[str, list[tuple]]]:
    """Every table of a DuckDB file, sorted, for whole-content comparisons."""
    from sinks.tables import tables

    def _dump(db: Path) -> dict[str, list[tuple]]:
        return {name: sorted(table(db, f"SELECT * FROM {name}"), key=repr) for name in tables()}

    return _dump
