"""What the dashboard reads from the published DuckDB file: one function per question.

A page opens the published file read-only for one batch of questions (`snapshot`) and
closes it after, because the flow replaces the file every few seconds; viewers of the same
publication share answers (dashboard/shared_results.py). The writer's own file is never
opened. Each function takes a `Snapshot` and returns a Polars frame (event times as `ts`,
epoch ms UTC; tables get a UTC `time` column), or `Missing` for a table an older file lacks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from dashboard import shared_results

DB_ENV = "ODDSFLOW_DB"
SELECTION_ORDER = ("home", "draw", "away", "over", "under", "none")
MARKET_ORDER = (
    "CASE WHEN market = '1x2' THEN 0 WHEN market LIKE 'ou_%' THEN 1 ELSE 2 END, "
    "TRY_CAST(regexp_extract(market, '[0-9.]+$') AS DOUBLE), market"
)
# Every snapshot's first question, so also how many batches of questions were asked.
TABLES_SQL = (
    "SELECT table_name FROM duckdb_tables() UNION "
    "SELECT view_name FROM duckdb_views() WHERE NOT internal"
)
# A reject's event time: its own, else the `ts` of its raw line when that line is JSON.
REJECT_TS = "coalesce(ts, CASE WHEN json_valid(raw) THEN TRY_CAST(raw->>'ts' AS BIGINT) END)"


def db_path_from_env() -> Path | None:
    value = os.environ.get(DB_ENV)
    return Path(value) if value else None


def is_writer_file(path: Path) -> bool:
    """A flow's private read-write file (`<name>.writer.duckdb`, written by oddsflow before
    the per-worker segments): never to be opened here."""
    return path.stem.endswith(".writer")


# ---- the file -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileState:
    """The published file as the file system sees it, and whether it holds data."""

    path: Path
    exists: bool
    size: int = 0
    mtime: float | None = None
    lines: int = 0  # feed events + rejects: 0 means nothing to show yet
    problem: str | None = None  # why it cannot be read, in words

    @property
    def ready(self) -> bool:
        return self.exists and self.problem is None and self.lines > 0

    def age_s(self, now: float | None = None) -> float | None:
        """Seconds since the flow last replaced the file."""
        if self.mtime is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.mtime)


def probe(path: Path) -> FileState:
    """Does the published file exist, open, and hold any line yet? Never raises."""
    if is_writer_file(path):
        return FileState(path, path.exists(), problem="this is the flow's writer file")
    try:
        stat = path.stat()
    except FileNotFoundError:
        return FileState(path, exists=False)
    try:
        with snapshot(path) as db:
            lines = sum(db.count(t) for t in ("feed_events", "rejects") if db.has(t))
    except (duckdb.Error, OSError) as exc:
        return FileState(path, True, stat.st_size, stat.st_mtime, problem=str(exc))
    return FileState(path, True, stat.st_size, stat.st_mtime, lines=lines)


class Snapshot:
    """The published file as one publication, for one batch of questions: a read-only
    connection opened on the first question that no other viewer has asked of it yet."""

    def __init__(self, path: Path) -> None:
        self.path = path
        sharing = shared_results.sharing_enabled()
        self.identity = shared_results.identity(path) if sharing else None
        self._con: duckdb.DuckDBPyConnection | None = None
        self.tables = frozenset(  # tables and views, e.g. the schema's `exposure` view
            name for (name,) in self.rows(TABLES_SQL)
        )

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            with shared_results.TIMINGS.duckdb("connect"):
                self._con = duckdb.connect(str(self.path), read_only=True)
            if shared_results.identity(self.path) != self.identity:
                self.identity = None  # replaced meanwhile: this reads another publication
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()

    def has(self, table: str) -> bool:
        return table in self.tables

    def frame(self, sql: str, params: list[object] | None = None) -> pl.DataFrame:
        return self._answer(
            "frame", sql, params, lambda con: con.sql(sql, params=params or None).pl()
        )

    def rows(self, sql: str, params: list[object] | None = None) -> list[tuple]:
        found = self._answer(
            "rows", sql, params, lambda con: con.sql(sql, params=params or None).fetchall()
        )
        return list(found)  # a copy: the shared list stays as it was

    def value(self, sql: str, params: list[object] | None = None) -> object:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def count(self, table: str) -> int:
        return int(self.value(f"SELECT count(*) FROM {table}") or 0)  # type: ignore[call-overload]

    def _answer(
        self,
        kind: str,
        sql: str,
        params: list[object] | None,
        run: Callable[[duckdb.DuckDBPyConnection], Any],
    ) -> Any:
        """The answer another viewer got from this publication, else run here (timed)."""

        def timed() -> Any:
            con = self.con  # connecting is timed on its own
            with shared_results.TIMINGS.duckdb(sql):
                return run(con)

        if self.identity is None:
            return timed()
        key = (str(self.path), self.identity, kind, sql, repr(params or None))
        value, shared = shared_results.SHARED.get(key, timed)
        if shared:
            shared_results.TIMINGS.shared_answer(sql)
        return value


@contextmanager
def snapshot(path: Path) -> Iterator[Snapshot]:
    """The published file read-only; its connection, if any, closed when the block ends."""
    db = Snapshot(path)
    try:
        yield db
    finally:
        db.close()


@dataclass(frozen=True)
class Missing:
    """A table the page would show is not in this database (yet)."""

    table: str

    @property
    def note(self) -> str:
        return f"No `{self.table}` table in this database yet: it appears once the flow writes it."


def with_time(frame: pl.DataFrame, ts: str = "ts", name: str = "time") -> pl.DataFrame:
    """Add `name`, the epoch-ms column `ts` as a UTC datetime (for tables)."""
    return frame.with_columns(
        pl.from_epoch(pl.col(ts), time_unit="ms").dt.replace_time_zone("UTC").alias(name)
    )


# ---- overview ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    accepted: int  # feed_events rows
    rejected: int  # rejects rows
    matches: int
    markets: int
    first_ts: int | None  # event-time span of the accepted lines
    newest_ts: int | None


def totals(db: Snapshot) -> Totals:
    span = db.rows("SELECT min(ts), max(ts) FROM feed_events")[0]
    return Totals(
        accepted=db.count("feed_events"),
        rejected=db.count("rejects") if db.has("rejects") else 0,
        matches=db.count("matches") if db.has("matches") else 0,
        markets=db.count("market_status") if db.has("market_status") else 0,
        first_ts=span[0],
        newest_ts=span[1],
    )


def line_rates(db: Snapshot) -> pl.DataFrame:
    """Lines per second by event-time minute: `ts` to `end_ts` (the minute), `outcome`,
    `lines`, `per_s`.

    Rejects are placed by their own event time, else by their raw line's `ts`; those without
    a readable time, or far outside the accepted lines' span (`ts_out_of_range`), are left out.
    """
    return db.frame(
        f"""
        WITH span AS (SELECT min(ts) AS lo, max(ts) AS hi FROM feed_events),
        lines AS (
            SELECT ts, 'accepted' AS outcome FROM feed_events
            UNION ALL
            SELECT {REJECT_TS} AS ts, 'rejected' AS outcome FROM rejects
        )
        SELECT (ts // 60000) * 60000 AS ts, (ts // 60000) * 60000 + 60000 AS end_ts, outcome,
               count(*) AS lines, count(*) / 60.0 AS per_s
        FROM lines, span
        WHERE ts BETWEEN lo AND hi
        GROUP BY ALL ORDER BY ts, outcome
        """
    )


def reject_counts(db: Snapshot) -> pl.DataFrame:
    """Rejects per reason: `code` (the reason before any `:`), `reason`, `rejects`."""
    return db.frame(
        """
        SELECT split_part(reason, ':', 1) AS code, reason, count(*) AS rejects
        FROM rejects GROUP BY ALL ORDER BY rejects DESC, reason
        """
    )


def match_list(db: Snapshot) -> pl.DataFrame:
    """Every match, by kickoff: ids, teams, the `label` to pick it by, score, state."""
    frame = db.frame(
        """
        SELECT match_id, home || ' v ' || away || ' (' || match_id || ')' AS label,
               home, away, status, period, minute, home_score, away_score, home_red, away_red,
               home_score || '-' || away_score AS score, kickoff, ts
        FROM matches ORDER BY kickoff, match_id
        """
    )
    return with_time(frame, "kickoff", "kickoff_time")


def matches_by_status(db: Snapshot) -> pl.DataFrame:
    return db.frame("SELECT status, count(*) AS matches FROM matches GROUP BY ALL ORDER BY 2 DESC")


def markets_by_status(db: Snapshot) -> pl.DataFrame:
    return db.frame(
        "SELECT status, count(*) AS markets FROM market_status GROUP BY ALL ORDER BY 2 DESC"
    )


def latency(db: Snapshot) -> pl.DataFrame | Missing:
    """Per wall-clock minute of a live flow (`latency` table): the lines its workers handed
    to the sinks, and the milliseconds from a line's arrival to then: p50 / p95 / p99 / max
    of the slowest worker (each worker's percentiles are over its own lines; those of
    several workers cannot be merged from them). `ts`: the minute's start (epoch ms)."""
    if not db.has("latency"):
        return Missing("latency")
    frame = db.frame(
        """
        SELECT minute AS ts, sum(lines)::BIGINT AS lines, count(*) AS workers,
               max(p50_ms) AS p50_ms, max(p95_ms) AS p95_ms, max(p99_ms) AS p99_ms,
               max(max_ms) AS max_ms
        FROM latency GROUP BY minute ORDER BY minute
        """
    )
    return with_time(frame)


# ---- one match -------------------------------------------------------------------------------


def match_events(db: Snapshot, match_id: str) -> pl.DataFrame:
    """The match's incidents and period changes: `ts`, `kind`, `label`, and for the chart
    `short` and `labelled` (worth a label there), `time`."""
    frame = db.frame(
        """
        WITH e AS (
            SELECT ts, type, payload::JSON AS p FROM feed_events
            WHERE match_id = ?
              AND type IN ('goal', 'penalty', 'card', 'var', 'period_start', 'period_end',
                           'match_end', 'set_end', 'challenge', 'medical_timeout',
                           'suspension', 'retirement', 'walkover')
        )
        SELECT ts,
            CASE WHEN type LIKE 'period_%' THEN 'period'
                 WHEN type IN ('match_end', 'set_end', 'retirement', 'walkover') THEN 'period'
                 WHEN type = 'card' AND p->>'color' = 'yellow' THEN 'yellow card'
                 WHEN type = 'card' THEN 'red card'
                 WHEN type = 'medical_timeout' THEN 'medical timeout' ELSE type END AS kind,
            CASE type
                WHEN 'goal' THEN 'Goal ' || (p->>'state') || ' (' || (p->>'team') || ')'
                WHEN 'penalty' THEN 'Penalty ' || (p->>'state') || ' (' || (p->>'team') || ')'
                WHEN 'card' THEN replace(p->>'color', '_', ' ') || ' card: '
                    || coalesce(p->>'player', '?') || ' (' || (p->>'team') || ')'
                WHEN 'var' THEN 'VAR ' || (p->>'state')
                    || CASE WHEN coalesce(p->>'reason', '') <> '' THEN ': ' || (p->>'reason')
                            ELSE '' END
                WHEN 'period_start' THEN 'Period ' || (p->>'period') || ' starts'
                WHEN 'period_end' THEN 'Period ' || (p->>'period') || ' ends'
                WHEN 'set_end' THEN 'Set to ' || (p->>'winner') || ' ' || (p->>'home_games')
                    || '-' || (p->>'away_games') || ' (sets ' || (p->>'home_sets') || '-'
                    || (p->>'away_sets') || ')'
                WHEN 'challenge' THEN 'Challenge ' || (p->>'state') || ' (' || (p->>'player') || ')'
                WHEN 'medical_timeout' THEN 'Medical timeout ' || (p->>'state')
                    || ' (' || (p->>'player') || ')'
                WHEN 'suspension' THEN 'Play suspended: ' || (p->>'state')
                    || CASE WHEN coalesce(p->>'reason', '') <> '' THEN ' (' || (p->>'reason') || ')'
                            ELSE '' END
                WHEN 'retirement' THEN 'Retirement (' || (p->>'player') || ')'
                WHEN 'walkover' THEN 'Walkover (' || (p->>'player') || ')'
                ELSE 'Match end ' || (p->>'home_score') || '-' || (p->>'away_score')
            END AS label,
            CASE type
                WHEN 'goal' THEN 'Goal ' || (p->>'team')
                    || CASE p->>'state' WHEN 'confirmed' THEN '' ELSE ' ' || (p->>'state') END
                WHEN 'penalty' THEN 'Pen. ' || (p->>'team')
                WHEN 'card' THEN 'Red ' || (p->>'team')
                WHEN 'var' THEN 'VAR'
                WHEN 'period_start' THEN CASE p->>'period' WHEN '1' THEN 'KO'
                    ELSE 'P' || (p->>'period') || ' start' END
                WHEN 'period_end' THEN CASE p->>'period' WHEN '1' THEN 'HT'
                    ELSE 'P' || (p->>'period') || ' end' END
                WHEN 'set_end' THEN (p->>'home_games') || '-' || (p->>'away_games')
                WHEN 'challenge' THEN 'Chal.'
                WHEN 'medical_timeout' THEN 'MTO'
                WHEN 'suspension' THEN 'Susp.'
                WHEN 'retirement' THEN 'Ret. ' || (p->>'player')
                WHEN 'walkover' THEN 'W/O ' || (p->>'player')
                ELSE 'FT ' || (p->>'home_score') || '-' || (p->>'away_score')
            END AS short,
            -- worth a label on the chart (the rest has a rule and a tooltip)
            NOT ((type = 'goal' AND p->>'state' = 'possible')
                 OR (type = 'penalty' AND p->>'state' <> 'awarded')
                 OR (type = 'card' AND p->>'color' = 'yellow')
                 OR (type IN ('var', 'challenge', 'medical_timeout', 'suspension')
                     AND p->>'state' = 'end')) AS labelled
        FROM e ORDER BY ts
        """,
        [match_id],
    )
    return with_time(frame)


def tennis_score(db: Snapshot, match_id: str) -> dict[str, object] | None:
    """The tennis match's whole score (`tennis_scores`), None for a football match."""
    if not db.has("tennis_scores"):
        return None
    frame = db.frame("SELECT * FROM tennis_scores WHERE match_id = ?", [match_id])
    return frame.row(0, named=True) if frame.height else None


def match_markets(db: Snapshot, match_id: str) -> list[str]:
    frame = db.frame(
        f"SELECT market FROM market_status WHERE match_id = ? ORDER BY {MARKET_ORDER}", [match_id]
    )
    return frame["market"].to_list()


def _match_end_ts(db: Snapshot, match_id: str) -> int:
    """The match's newest event time: where a still-running interval ends on the chart."""
    value = db.value(
        "SELECT max(ts) FROM (SELECT ts FROM feed_events WHERE match_id = $1 "
        "UNION ALL SELECT ts FROM market_history WHERE match_id = $1)",
        [match_id],
    )
    return int(value or 0)  # type: ignore[call-overload]


def status_bands(db: Snapshot, match_id: str, market: str) -> pl.DataFrame:
    """The market's status over time: `status`, `reason` (of the change), `ts`, `end_ts`."""
    return db.frame(
        """
        WITH h AS (
            SELECT version, status, reason, ts,
                   lag(status) OVER (ORDER BY version) IS DISTINCT FROM status AS starts
            FROM market_history WHERE match_id = $1 AND market = $2
        ), g AS (
            SELECT *, sum(starts::INT) OVER (ORDER BY version) AS band FROM h
        ), b AS (
            SELECT band, first(status ORDER BY version) AS status,
                   first(reason ORDER BY version) AS reason, min(ts) AS ts
            FROM g GROUP BY band
        )
        SELECT status, reason, ts,
               CASE WHEN status = 'SETTLED' THEN ts
                    ELSE coalesce(lead(ts) OVER (ORDER BY band), $3) END AS end_ts
        FROM b ORDER BY band
        """,
        [match_id, market, _match_end_ts(db, match_id)],
    )


def price_segments(db: Snapshot, match_id: str, market: str) -> pl.DataFrame:
    """Each offered price while it stood: `selection`, `price` (decimal odds), `probability`,
    `version`, from `ts` to `end_ts` (the market's next change)."""
    return db.frame(
        """
        WITH h AS (
            SELECT version, ts, coalesce(lead(ts) OVER (ORDER BY version), $3) AS end_ts
            FROM market_history WHERE match_id = $1 AND market = $2
        )
        SELECT p.selection, p.price::DOUBLE AS price, p.probability, p.version, p.ts, h.end_ts
        FROM prices p JOIN h USING (version)
        WHERE p.match_id = $1 AND p.market = $2
        ORDER BY p.ts, p.selection
        """,
        [match_id, market, _match_end_ts(db, match_id)],
    )


def suspensions(db: Snapshot, match_id: str) -> pl.DataFrame:
    """Every suspension of every market of the match: from a SUSPENDED version to the next
    version (OPEN or CLOSED): `market`, `reason`, `ts`, `ended_by`, `end_ts`, `seconds` (so
    far, for a market still suspended)."""
    frame = db.frame(
        """
        WITH h AS (
            SELECT market, status, reason, ts,
                   lead(status) OVER w AS ended_by, lead(ts) OVER w AS end_ts
            FROM market_history WHERE match_id = $1
            WINDOW w AS (PARTITION BY market ORDER BY version)
        )
        SELECT market, reason, ts, ended_by, end_ts,
               (coalesce(end_ts, $2) - ts) / 1000.0 AS seconds
        FROM h WHERE status = 'SUSPENDED' ORDER BY ts, market
        """,
        [match_id, _match_end_ts(db, match_id)],
    )
    return with_time(frame)


def incidents(suspended: pl.DataFrame) -> pl.DataFrame:
    """Suspensions grouped by what caused them (same time, same reason): how many markets,
    how each ended, and the longest hold in seconds."""
    return (
        suspended.group_by("ts", "time", "reason")
        .agg(
            pl.len().alias("markets"),
            (pl.col("ended_by") == "OPEN").sum().alias("reopened"),
            (pl.col("ended_by") == "CLOSED").sum().alias("closed"),
            pl.col("ended_by").is_null().sum().alias("still_suspended"),
            pl.col("seconds").max().alias("longest_s"),
        )
        .sort("ts")
    )


# ---- markets and risk ------------------------------------------------------------------------


def market_board(db: Snapshot, match_id: str | None = None) -> pl.DataFrame:
    """Every market's current status with its latest offered prices, one column per selection."""
    frame = db.frame(
        f"""
        WITH latest AS (
            SELECT match_id, market, max(version) AS version FROM prices GROUP BY ALL
        )
        SELECT m.home || ' v ' || m.away AS fixture, s.match_id, s.market, s.status,
               s.version, s.reason, s.ts, s.winner, p.selection, p.price::DOUBLE AS price
        FROM market_status s
        LEFT JOIN matches m USING (match_id)
        LEFT JOIN latest l USING (match_id, market)
        LEFT JOIN prices p
            ON p.match_id = s.match_id AND p.market = s.market AND p.version = l.version
        WHERE $1::VARCHAR IS NULL OR s.match_id = $1
        ORDER BY m.kickoff, s.match_id, {MARKET_ORDER.replace("market", "s.market")}
        """,
        [match_id],
    )
    index = ["fixture", "match_id", "market", "status", "version", "reason", "ts", "winner"]
    wide = frame.pivot(on="selection", index=index, values="price", maintain_order=True)
    present = [s for s in SELECTION_ORDER if s in wide.columns]
    others = sorted(c for c in wide.columns if c not in index and c not in present)
    return with_time(wide.select(*index, *present, *[c for c in others if c != "null"]))


def bets_by_outcome(db: Snapshot) -> pl.DataFrame | Missing:
    """Bets per `status` and `reason` (accepted, rejected: price_changed, ...): count, stake."""
    if not db.has("bets"):
        return Missing("bets")
    return db.frame(
        """
        SELECT status, coalesce(nullif(reason, ''), status) AS reason, count(*) AS bets,
               sum(stake::DECIMAL(18, 2))::DOUBLE AS stake
        FROM bets GROUP BY ALL ORDER BY bets DESC, status, reason
        """
    )


def exposure_by_market(db: Snapshot) -> pl.DataFrame | Missing:
    """Worst-case liability of each market (the `exposure` view, docs/tables.md: the largest
    net payout if any one selection wins), with the market's status, biggest first."""
    if not db.has("exposure"):
        return Missing("exposure")
    return db.frame(
        """
        SELECT e.match_id, e.market, s.status, e.stakes::DOUBLE AS stakes,
               e.liability::DOUBLE AS exposure, e.worst_selection
        FROM exposure e LEFT JOIN market_status s USING (match_id, market)
        ORDER BY exposure DESC, e.match_id, e.market
        """
    )


def exposure_by_match(by_market: pl.DataFrame) -> pl.DataFrame:
    """Per match: the sum of its markets' worst cases (markets of a match are not exclusive)."""
    return (
        by_market.group_by("match_id")
        .agg(pl.col("exposure").sum(), pl.col("stakes").sum(), pl.len().alias("markets"))
        .sort("exposure", "match_id", descending=[True, False])
    )


@dataclass(frozen=True)
class Wallets:
    users: int
    balance: float


def wallets(db: Snapshot) -> Wallets | Missing:
    if not db.has("wallets"):
        return Missing("wallets")
    (row,) = db.rows(
        "SELECT count(*), coalesce(sum(balance::DECIMAL(18, 2)), 0)::DOUBLE FROM wallets"
    )
    return Wallets(users=int(row[0]), balance=float(row[1]))


# ---- rejects ---------------------------------------------------------------------------------


def latest_rejects(
    db: Snapshot,
    codes: list[str] | None = None,
    reasons: list[str] | None = None,
    limit: int = 500,
) -> pl.DataFrame:
    """The newest rejects first (by event time, else by line number), optionally only those
    whose reason or reason code (the part before `:`) is listed."""
    frame = db.frame(
        f"""
        SELECT {REJECT_TS} AS ts, source, reason, split_part(reason, ':', 1) AS code, detail,
               provider, match_id, raw
        FROM rejects
        WHERE ($1::VARCHAR[] IS NULL OR split_part(reason, ':', 1) IN (SELECT unnest($1)))
          AND ($2::VARCHAR[] IS NULL OR reason IN (SELECT unnest($2)))
        ORDER BY 1 DESC NULLS LAST,
                 TRY_CAST(regexp_extract(source, '[0-9]+$') AS BIGINT) DESC, source
        LIMIT $3
        """,
        [codes or None, reasons or None, limit],
    )
    return with_time(frame)


def refresh_all(path: Path) -> Totals | None:
    """Every query one refresh of each page runs (two matches' views): what an open
    dashboard asks of the file, for load tests and benchmarks. None while there is no data."""
    state = probe(path)
    if state.problem or not state.ready:
        return None
    with snapshot(path) as db:
        found = totals(db)
        line_rates(db)
        reject_counts(db)
        matches = match_list(db)
        market_board(db)
        latest_rejects(db)
        exposure_by_market(db)
        for match_id in matches["match_id"][:2]:
            suspensions(db, match_id)
            price_segments(db, match_id, "1x2")
    return found
