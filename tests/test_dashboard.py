"""The dashboard over a real replay: every page under Streamlit's AppTest, numbers checked
against SQL on the same file, and the queries read from another process during a replay."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import queries
from dashboard.run import build_parser, main, streamlit_args
from sinks.tables import schema_sql, tables, views_sql

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
SAMPLE = ROOT / "data" / "sample.jsonl.gz"
CHART = "vega_lite_chart"


def oddsflow(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real command line, in a child process of this interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "flows", *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def feed(tmp: Path) -> Path:
    """The committed sample feed; a simulated one of the same shape if it is not there."""
    if SAMPLE.exists():
        return SAMPLE
    path = tmp / "feed.jsonl.gz"
    oddsflow("simulate", "--matches", "6", "--seed", "7", "--out", path)
    return path


def sql(db: Path, query: str, params: list[object] | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql(query, params=params or None).fetchall()
    finally:
        con.close()


def one(db: Path, query: str, params: list[object] | None = None) -> object:
    return sql(db, query, params)[0][0]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The published file of a real `oddsflow replay` of the sample feed."""
    tmp = tmp_path_factory.mktemp("dashboard")
    path = tmp / "sample.duckdb"
    oddsflow("replay", feed(tmp), "--db", path)
    assert one(path, "SELECT count(*) FROM feed_events") > 0
    return path


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path | None, str], AppTest]:
    """Run one page of the app over a database file (None: no ODDSFLOW_DB at all)."""

    def run(path: Path | None, name: str = "overview") -> AppTest:
        if path is None:
            monkeypatch.delenv(queries.DB_ENV, raising=False)
        else:
            monkeypatch.setenv(queries.DB_ENV, str(path))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params["page"] = name
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return run


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def texts(elements: object) -> str:
    return "\n".join(str(e.value) for e in elements)  # type: ignore[attr-defined]


# ---- Overview --------------------------------------------------------------------------------


def test_overview_counts_equal_the_tables(db: Path, page: Callable[..., AppTest]) -> None:
    at = page(db, "overview")
    got = metrics(at)
    accepted = one(db, "SELECT count(*) FROM feed_events")
    rejected = one(db, "SELECT count(*) FROM rejects")
    matches = one(db, "SELECT count(*) FROM matches")
    in_play = one(db, "SELECT count(*) FROM matches WHERE status IN ('live', 'break')")
    assert got["Accepted lines"] == f"{accepted:,}"
    assert got["Rejected lines"] == f"{rejected:,}"
    assert got["Matches in play"] == f"{in_play} of {matches}"
    for status, count in sql(db, "SELECT status, count(*) FROM market_status GROUP BY ALL"):
        assert got[status] == f"{count:,}"
    for status, count in sql(db, "SELECT status, count(*) FROM matches GROUP BY ALL"):
        assert got[status] == f"{count:,}"
    assert at.title[0].value == "Overview"
    assert len(at.get(CHART)) == 3  # accepted, rejected, rejects by reason
    table = at.dataframe[0].value
    assert len(table) == matches
    assert "event-time minute" in texts(at.caption)


def test_overview_rates_are_the_lines_per_event_minute(db: Path) -> None:
    with queries.snapshot(db) as snap:
        rates = queries.line_rates(snap)
    accepted = rates.filter(rates["outcome"] == "accepted")
    assert accepted["lines"].sum() == one(db, "SELECT count(*) FROM feed_events")
    assert (accepted["per_s"] * 60 - accepted["lines"]).abs().max() < 1e-9
    assert (rates["end_ts"] - rates["ts"]).unique().to_list() == [60_000]
    span = sql(db, "SELECT min(ts) // 60000 * 60000, max(ts) FROM feed_events")[0]
    assert rates["ts"].min() >= span[0] and rates["ts"].max() <= span[1]


def test_overview_warns_when_the_file_is_stale(
    db: Path, tmp_path: Path, page: Callable[..., AppTest]
) -> None:
    just_written = tmp_path / "fresh.duckdb"
    shutil.copyfile(db, just_written)  # the module's replay may be older than the threshold
    fresh = page(just_written, "overview")
    assert not fresh.warning
    old = tmp_path / "old.duckdb"
    shutil.copyfile(db, old)
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    at = page(old, "overview")
    assert "has not changed for 3600 s" in texts(at.warning)
    assert metrics(at)["File age"] == "3600 s"


# ---- Match view ------------------------------------------------------------------------------


def busiest_match(db: Path) -> str:
    """The match with the most market suspensions (ties: the first id)."""
    return str(
        one(
            db,
            "SELECT match_id FROM market_history WHERE status = 'SUSPENDED' "
            "GROUP BY ALL ORDER BY count(*) DESC, match_id LIMIT 1",
        )
    )


def test_match_view_suspensions_equal_market_history(
    db: Path, page: Callable[..., AppTest]
) -> None:
    at = page(db, "match")
    match_id = busiest_match(db)
    at.selectbox(key="match").set_value(match_id).run()
    assert not at.exception
    got = metrics(at)
    suspended = one(
        db,
        "SELECT count(*) FROM market_history WHERE match_id = ? AND status = 'SUSPENDED'",
        [match_id],
    )
    home, away, hs, as_, hr, ar, status = sql(
        db,
        "SELECT home, away, home_score, away_score, home_red, away_red, status FROM matches "
        "WHERE match_id = ?",
        [match_id],
    )[0]
    assert got["Suspensions"] == str(suspended)
    assert got["Score"] == f"{hs}-{as_}"
    assert got["Red cards"] == f"{hr}-{ar}"
    assert got["Status"] == status
    assert at.selectbox(key="match").value == match_id
    assert f"{home} v {away}" in texts(at.subheader)

    timeline, causes, every = (d.value for d in at.dataframe)
    incidents = one(
        db,
        "SELECT count(*) FROM feed_events WHERE match_id = ? AND type IN "
        "('goal', 'penalty', 'card', 'var', 'period_start', 'period_end', 'match_end')",
        [match_id],
    )
    assert len(timeline) == incidents
    assert len(every) == suspended
    assert causes["markets"].sum() == suspended
    holds = sql(
        db,
        """
        WITH h AS (
            SELECT status, ts, lead(ts) OVER (PARTITION BY market ORDER BY version) AS next_ts
            FROM market_history WHERE match_id = ?)
        SELECT sum(next_ts - ts) / 1000.0 FROM h WHERE status = 'SUSPENDED'
        """,
        [match_id],
    )[0][0]
    assert every["seconds"].sum() == pytest.approx(float(holds))
    assert len(at.get(CHART)) == 1


def test_match_view_follows_the_chosen_market(db: Path, page: Callable[..., AppTest]) -> None:
    at = page(db, "match")
    match_id = busiest_match(db)
    at.selectbox(key="match").set_value(match_id).run()
    at.selectbox(key="market").set_value("ou_2.5").run()
    assert not at.exception
    held = one(
        db,
        "SELECT count(*) FROM market_history WHERE match_id = ? AND market = 'ou_2.5' "
        "AND status = 'SUSPENDED'",
        [match_id],
    )
    suspended = next(m for m in at.metric if m.label == "ou_2.5 suspended")
    assert suspended.delta == f"{held} times"
    markets = [
        r[0] for r in sql(db, "SELECT market FROM market_status WHERE match_id = ?", [match_id])
    ]
    assert sorted(at.selectbox(key="market").options) == sorted(markets)


def test_match_chart_data_is_the_market_history(db: Path) -> None:
    match_id = busiest_match(db)
    with queries.snapshot(db) as snap:
        bands = queries.status_bands(snap, match_id, "1x2")
        prices = queries.price_segments(snap, match_id, "1x2")
    changes = sql(
        db,
        "SELECT status FROM market_history WHERE match_id = ? AND market = '1x2' ORDER BY version",
        [match_id],
    )
    collapsed = [s for i, (s,) in enumerate(changes) if i == 0 or changes[i - 1][0] != s]
    assert bands["status"].to_list() == collapsed
    assert (bands["end_ts"] >= bands["ts"]).all()
    assert prices.height == one(
        db, "SELECT count(*) FROM prices WHERE match_id = ? AND market = '1x2'", [match_id]
    )
    assert prices["price"].min() >= 1.01


# ---- Markets and risk ------------------------------------------------------------------------


def test_markets_page_shows_every_market_with_its_latest_prices(
    db: Path, page: Callable[..., AppTest]
) -> None:
    at = page(db, "markets")
    got = metrics(at)
    for status in ("OPEN", "SUSPENDED", "CLOSED", "SETTLED"):
        count = one(db, "SELECT count(*) FROM market_status WHERE status = ?", [status])
        assert got[f"{status.title()} markets"] == str(count)
    board = at.dataframe[0].value
    assert len(board) == one(db, "SELECT count(*) FROM market_status")
    match_id, market, selection, price = sql(
        db,
        "SELECT match_id, market, selection, price::DOUBLE FROM prices "
        "WHERE market = '1x2' ORDER BY version DESC, match_id, selection LIMIT 1",
    )[0]
    row = board[(board["match_id"] == match_id) & (board["market"] == market)]
    assert row[selection].iloc[0] == pytest.approx(price)
    notes = texts(at.info)
    tables = {
        t
        for (t,) in sql(
            db,
            "SELECT table_name FROM duckdb_tables() UNION "
            "SELECT view_name FROM duckdb_views() WHERE NOT internal",
        )
    }
    for table in ("bets", "wallets"):  # a note while the flow does not write the table yet
        assert (f"`{table}`" in notes) == (table not in tables)

    at.selectbox(key="board_match").set_value(match_id).run()
    assert not at.exception
    per_match = one(db, "SELECT count(*) FROM market_status WHERE match_id = ?", [match_id])
    assert len(at.dataframe[0].value) == per_match


BETS = [
    "bet_id",
    "user_id",
    "match_id",
    "market",
    "selection",
    "stake",
    "price",
    "status",
    "reason",
]


def insert(
    con: duckdb.DuckDBPyConnection, table: str, columns: list[str], rows: list[list]
) -> None:
    """Insert `rows` by column name; any other NOT NULL column of the table gets a filler."""
    others = [
        c
        for (c,) in con.sql(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND NOT is_nullable",
            params=[table],
        ).fetchall()
        if c not in columns
    ]
    names = ", ".join(columns + others)
    marks = ", ".join(["?"] * len(columns) + ["0"] * len(others))
    con.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)


@pytest.fixture
def db_with_bets(db: Path, tmp_path: Path) -> Path:
    """A copy of the replay with bets, wallets and latency rows (a replay writes no latency:
    these are two minutes of a live flow, the first with two workers)."""
    path = tmp_path / "with_bets.duckdb"
    shutil.copyfile(db, path)
    match_id = one(db, "SELECT min(match_id) FROM matches")
    con = duckdb.connect(str(path))
    # The published tables are views over the flow's segments: these become tables here.
    con.execute("DROP VIEW exposure; DROP VIEW bets; DROP VIEW wallets; DROP VIEW latency")
    latency = tables()["latency"]
    typed = ", ".join(f"{c} {t}" for c, t in zip(latency.columns, latency.sql_types, strict=True))
    con.execute(f"CREATE TABLE latency ({typed})")
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS bets (bet_id VARCHAR, user_id VARCHAR, match_id VARCHAR,
            market VARCHAR, selection VARCHAR, stake DECIMAL(18, 2), price DECIMAL(7, 2),
            status VARCHAR, reason VARCHAR, payout DECIMAL(18, 2));
        CREATE TABLE IF NOT EXISTS wallets (user_id VARCHAR, balance DECIMAL(18, 2));
        DELETE FROM bets; DELETE FROM wallets;
        """
    )
    con.execute(views_sql())  # `exposure`, over this `bets`
    insert(
        con,
        "bets",
        BETS,
        [
            ["b1", "u1", match_id, "1x2", "home", "10.00", "2.50", "accepted", ""],
            ["b2", "u2", match_id, "1x2", "home", "20.00", "3.00", "accepted", ""],
            ["b3", "u3", match_id, "1x2", "away", "50.00", "1.50", "accepted", ""],
            ["b4", "u1", match_id, "ou_2.5", "over", "5.00", "2.00", "accepted", ""],
            ["b5", "u2", match_id, "1x2", "draw", "99.00", "9.00", "rejected", "price_changed"],
            ["b6", "u3", match_id, "1x2", "draw", "1.00", "3.00", "rejected", "market_suspended"],
        ],
    )
    insert(con, "wallets", ["user_id", "balance"], [["u1", "15.50"], ["u2", "4.50"]])
    insert(
        con,
        "latency",
        list(latency.columns),
        [  # minute, worker, lines, p50, p95, p99, max
            [60_000, 0, 10, 2.0, 5.0, 8.0, 9.0],
            [60_000, 1, 30, 3.0, 4.0, 12.0, 20.0],
            [120_000, 0, 5, 1.0, 1.0, 1.0, 1.0],
        ],
    )
    con.close()
    return path


def test_markets_page_shows_exposure_and_bets_once_the_tables_exist(
    db_with_bets: Path, page: Callable[..., AppTest]
) -> None:
    at = page(db_with_bets, "markets")
    got = metrics(at)
    assert got["Bets accepted"] == "4"
    assert got["Bets rejected"] == "2"
    assert got["Stake accepted"] == "85.00"
    assert got["Wallets"] == "2"
    assert got["Total balance"] == "20.00"
    assert not at.info
    # 1x2: home pays 10*2.5 + 20*3 = 85 of the 80 staked -> worst case 5 on home (away: 75).
    # ou_2.5: over pays 10 of the 5 staked -> worst case 5 on over.
    by_market = at.dataframe[1].value
    assert by_market["market"].tolist() == ["1x2", "ou_2.5"]
    assert by_market["exposure"].tolist() == [pytest.approx(5.0), pytest.approx(5.0)]
    assert by_market["worst_selection"].tolist() == ["home", "over"]
    by_match = at.dataframe[2].value
    assert by_match["exposure"].tolist() == [pytest.approx(10.0)]
    assert len(at.get(CHART)) == 3  # by market, by match, bets by reason


def test_overview_shows_latency_per_minute_when_a_live_flow_wrote_it(
    db_with_bets: Path, page: Callable[..., AppTest]
) -> None:
    """Lines summed over the workers; the slowest worker's percentiles."""
    at = page(db_with_bets, "overview")
    assert "Pipeline latency (live)" in texts(at.subheader)
    table = at.dataframe[-1].value
    assert table["lines"].tolist() == [40, 5]
    assert table["workers"].tolist() == [2, 1]
    assert table["p50_ms"].tolist() == [pytest.approx(3.0), pytest.approx(1.0)]
    assert table["p99_ms"].tolist() == [pytest.approx(12.0), pytest.approx(1.0)]
    assert table["max_ms"].tolist() == [pytest.approx(20.0), pytest.approx(1.0)]


def test_overview_of_a_replay_has_no_latency_panel(db: Path, page: Callable[..., AppTest]) -> None:
    at = page(db, "overview")
    assert not any(t.startswith("Pipeline latency") for t in texts(at.subheader))


# ---- Rejects ---------------------------------------------------------------------------------


def test_rejects_page_counts_by_reason_equal_the_rejects_table(
    db: Path, page: Callable[..., AppTest]
) -> None:
    at = page(db, "rejects")
    total = one(db, "SELECT count(*) FROM rejects")
    assert metrics(at)["Rejected lines"] == f"{total:,}"
    by_code = dict(sql(db, "SELECT split_part(reason, ':', 1), count(*) FROM rejects GROUP BY 1"))
    codes = at.multiselect(key="codes")
    assert sorted(codes.options) == sorted(f"{c} ({n})" for c, n in by_code.items())
    by_reason = dict(sql(db, "SELECT reason, count(*) FROM rejects GROUP BY 1"))
    assert sorted(at.multiselect(key="reasons").options) == sorted(
        f"{r} ({n})" for r, n in by_reason.items()
    )
    assert len(at.dataframe[0].value) == min(total, 500)
    assert len(at.get(CHART)) == 1


def test_rejects_filter_on_the_code_before_the_colon(
    db: Path, page: Callable[..., AppTest]
) -> None:
    code, count = sql(
        db,
        "SELECT split_part(reason, ':', 1) AS code, count(*) FROM rejects WHERE reason LIKE '%:%' "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
    )[0]
    at = page(db, "rejects")
    at.multiselect(key="codes").set_value([code]).run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert len(shown) == count
    assert all(r.startswith(code + ":") for r in shown["reason"])
    assert metrics(at)["Shown by the filter"] == f"{count:,}"

    reason, exact = sql(
        db,
        "SELECT reason, count(*) FROM rejects WHERE split_part(reason, ':', 1) = ? "
        "GROUP BY 1 ORDER BY 2, 1 LIMIT 1",
        [code],
    )[0]
    at.multiselect(key="reasons").set_value([reason]).run()
    assert not at.exception
    assert at.dataframe[0].value["reason"].tolist() == [reason] * exact


def test_latest_rejects_come_newest_first(db: Path) -> None:
    with queries.snapshot(db) as snap:
        latest = queries.latest_rejects(snap, limit=1000)
    assert latest.height == one(db, "SELECT count(*) FROM rejects")
    timed = latest["ts"].drop_nulls()
    assert timed.to_list() == sorted(timed.to_list(), reverse=True)


# ---- No data yet -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["overview", "match", "markets", "rejects"])
def test_missing_database_explains_how_to_produce_data(
    tmp_path: Path, page: Callable[..., AppTest], name: str
) -> None:
    missing = tmp_path / "nothing-here.duckdb"
    at = page(missing, name)
    assert at.title[0].value == "oddsflow: no data yet"
    assert "does not exist yet" in texts(at.info)
    commands = texts(at.code)
    assert "oddsflow simulate" in commands
    assert f"oddsflow replay out/feed.jsonl.gz --db {missing}" in commands
    assert not at.metric and not at.get(CHART)


def test_empty_database_and_writer_file_and_no_path(
    tmp_path: Path, page: Callable[..., AppTest]
) -> None:
    empty = tmp_path / "empty.duckdb"
    con = duckdb.connect(str(empty))
    con.execute(schema_sql())
    con.close()
    assert "holds no feed line yet" in texts(page(empty, "overview").info)

    writer = tmp_path / "x.writer.duckdb"
    shutil.copyfile(empty, writer)
    at = page(writer, "overview")
    assert "writer file" in texts(at.error)

    assert "oddsflow dashboard --db PATH" in texts(page(None, "overview").error)


# ---- The command -----------------------------------------------------------------------------


def test_dashboard_command_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "--server.port 8601" in capsys.readouterr().out
    assert main(["--db", str(tmp_path / "x.writer.duckdb")]) == 2
    args = streamlit_args(["--server.port", "8601", "--server.address=0.0.0.0"])
    assert args[:2] == ["run", str(ROOT / "dashboard" / "server.py")]  # app.py and its routes
    assert "--browser.gatherUsageStats=false" in args
    assert not any(a.startswith("--server.address=127") for a in args)
    assert args[-3:] == ["--server.port", "8601", "--server.address=0.0.0.0"]
    parsed, extra = build_parser().parse_known_args(["--db", "x.duckdb", "--server.port", "1"])
    assert parsed.db == Path("x.duckdb") and extra == ["--server.port", "1"]


# ---- Reading while the flow writes -----------------------------------------------------------

POLLER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from dashboard import queries

    path, stop = Path(sys.argv[1]), Path(sys.argv[2])
    reads, errors, seen = 0, [], []
    while not stop.exists():
        try:
            state = queries.probe(path)
            if state.problem:
                errors.append(state.problem)
            elif state.ready:
                totals = queries.refresh_all(path)
                reads += 1
                seen.append(totals.accepted)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.1)
    print(json.dumps({"reads": reads, "errors": errors, "seen": sorted(set(seen))}))
    """
)


@pytest.fixture
def poller(tmp_path: Path) -> Iterator[Callable[[Path], dict]]:
    """A process that runs the dashboard's queries every 100 ms until told to stop."""
    stop = tmp_path / "stop"
    procs: list[subprocess.Popen[str]] = []

    def start(db: Path) -> Callable[[], dict]:
        proc = subprocess.Popen(
            [sys.executable, "-c", POLLER, str(db), str(stop)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        procs.append(proc)

        def finish() -> dict:
            stop.touch()
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            return json.loads(out)

        return finish

    yield start  # type: ignore[misc]
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_queries_from_another_process_during_a_replay_never_hit_a_lock(
    tmp_path: Path, poller: Callable[[Path], Callable[[], dict]]
) -> None:
    db = tmp_path / "live.duckdb"
    finish = poller(db)
    command = ["replay", str(feed(tmp_path)), "--db", str(db), "--speed", "1000"]
    replay = subprocess.run(
        [sys.executable, "-m", "flows", *command],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert replay.returncode == 0, replay.stderr
    time.sleep(0.5)
    result = finish()
    assert result["errors"] == []
    assert result["reads"] >= 20
    final = one(db, "SELECT count(*) FROM feed_events")
    assert len(result["seen"]) >= 3, "the poller did not see the file grow during the replay"
    assert result["seen"][-1] == final
