"""oddsflow monitoring: what the flow has published, redrawn as it publishes.

Run it with `oddsflow dashboard --db PATH`; the path comes in as `ODDSFLOW_DB`. Four pages:
Overview, Match, Markets and risk, Rejects (`?page=match` etc. opens one straight away).
Each page is one fragment that reruns every `REFRESH_S`: it opens the published file
read-only, asks its questions (dashboard/queries.py), closes it, then draws (charts.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboard import auth, charts, queries
from dashboard.queries import FileState, Missing

DB = queries.db_path_from_env()
REFRESH_S = 2.0
STALE_AFTER_S = 10.0
MARKET_STATUSES = ("OPEN", "SUSPENDED", "CLOSED", "SETTLED")
MATCH_STATUSES = ("scheduled", "live", "break", "ended")
PRICE = st.column_config.NumberColumn(format="%.2f", help="decimal odds", width=72)
MONEY = st.column_config.NumberColumn(format="%.2f")
TIME = st.column_config.DatetimeColumn("event time (UTC)", format="YYYY-MM-DD HH:mm:ss")
CLOCK = st.column_config.DatetimeColumn("time (UTC)", format="HH:mm:ss")

st.set_page_config(page_title="oddsflow monitor", page_icon="⚽", layout="wide")
auth.require_login()  # when a login is configured, nothing below runs before it succeeds


# ---- shared pieces ---------------------------------------------------------------------------


def published() -> FileState | None:
    """The published file when it holds data; else draw how to get some, and None."""
    state = queries.probe(DB) if DB is not None else None
    if state is not None and state.ready:
        return state
    st.title("oddsflow: no data yet")
    if state is None:
        st.error("No database given: start the dashboard with `oddsflow dashboard --db PATH`.")
        return None
    if state.problem:
        st.error(f"`{state.path}` cannot be read: {state.problem}.")
        if queries.is_writer_file(state.path):
            st.markdown("Open the published copy instead: the same path without `.writer`.")
    elif not state.exists:
        st.info(f"`{state.path}` does not exist yet.")
    else:
        st.info(f"`{state.path}` holds no feed line yet.")
    st.markdown("Produce data with a replay of a recorded feed (or a simulated one):")
    st.code(
        "oddsflow simulate --matches 6 --seed 7 --out out/feed.jsonl.gz\n"
        f"oddsflow replay out/feed.jsonl.gz --db {state.path} --speed 60",
        language="bash",
    )
    st.markdown(f"or run the live flow: `oddsflow live --kafka 127.0.0.1:9092 --db {state.path}`.")
    st.caption(f"This page looks again every {REFRESH_S:g} s and shows the data once it lands.")
    return None


def utc(ts: int | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ingest_rate(state: FileState, lines: int, window_s: float = 10.0) -> float | None:
    """Lines per wall-clock second over the publications of the last `window_s` seconds
    that this browser session saw (None until it has seen two)."""
    seen: list[tuple[float, int]] = st.session_state.setdefault("publications", [])
    if state.mtime is not None and (not seen or seen[-1][0] != state.mtime):
        seen.append((state.mtime, lines))
    recent = [s for s in seen if s[0] >= seen[-1][0] - window_s] if seen else []
    seen[:] = recent
    if len(recent) < 2:
        return None
    (t0, n0), (t1, n1) = recent[0], recent[-1]
    return (n1 - n0) / (t1 - t0)


def note_or(result: pl.DataFrame | Missing) -> pl.DataFrame | None:
    """A frame to draw, or None after showing why there is none."""
    if isinstance(result, Missing):
        st.info(result.note)
        return None
    return result


def count_of(frame: pl.DataFrame, status: str, column: str) -> int:
    return int(frame.filter(pl.col("status") == status)[column].sum())


def status_metrics(counts: pl.DataFrame, column: str, statuses: tuple[str, ...]) -> None:
    """One metric per status, known statuses first (in order), then any other."""
    others = tuple(s for s in counts["status"] if s not in statuses)
    for col, status in zip(st.columns(len(statuses) + len(others)), statuses + others, strict=True):
        col.metric(status, f"{count_of(counts, status, column):,}")


# ---- pages -----------------------------------------------------------------------------------


@st.fragment(run_every=REFRESH_S)
def overview() -> None:
    state = published()
    if state is None:
        return
    with queries.snapshot(state.path) as db:
        totals = queries.totals(db)
        rates = queries.line_rates(db)
        reasons = queries.reject_counts(db)
        matches = queries.match_list(db)
        match_states = queries.matches_by_status(db)
        market_states = queries.markets_by_status(db)
        latency = queries.latency(db)

    st.title("Overview")
    age = state.age_s() or 0.0
    st.caption(f"`{state.path}` · published {age:.0f} s ago · refreshed every {REFRESH_S:g} s")
    if age > STALE_AFTER_S:
        st.warning(
            f"The published file has not changed for {age:.0f} s: the flow has finished, "
            "stopped or stalled (a running flow republishes every few seconds).",
            icon="⚠️",
        )
    all_lines = totals.accepted + totals.rejected
    rate = 0.0 if age > STALE_AFTER_S else ingest_rate(state, all_lines)
    in_play = count_of(match_states, "live", "matches") + count_of(match_states, "break", "matches")
    cols = st.columns(6)
    cols[0].metric("Accepted lines", f"{totals.accepted:,}")
    cols[1].metric(
        "Rejected lines",
        f"{totals.rejected:,}",
        f"{totals.rejected / max(all_lines, 1):.2%} of all lines",
        delta_color="off",
        delta_arrow="off",
    )
    cols[2].metric(
        "Ingest rate",
        "—" if rate is None else f"{rate:,.0f} lines/s",
        help="Lines per wall-clock second over the file's publications of the last 10 s.",
    )
    cols[3].metric("Matches in play", f"{in_play} of {totals.matches}")
    cols[4].metric(
        "Markets open", f"{count_of(market_states, 'OPEN', 'markets')} of {totals.markets}"
    )
    cols[5].metric("File age", f"{age:.0f} s", help="Seconds since the flow last published.")
    st.markdown(f"Newest event time **{utc(totals.newest_ts)}** · first **{utc(totals.first_ts)}**")

    st.subheader("Lines per second over event time")
    st.caption(
        "Bucketed by event-time minute (each line's `ts`, UTC): the mean lines/s in that "
        "minute. Rejects are placed by their own or their raw line's `ts`; unreadable or "
        "out-of-range times are not drawn."
    )
    span = (totals.first_ts or 0, (totals.newest_ts or 0) + 60_000)
    left, right = st.columns(2)
    with left:
        st.markdown("**Accepted**")
        st.altair_chart(charts.line_rate(rates, "accepted", "#2e9e44", span), width="stretch")
    with right:
        st.markdown("**Rejected**")
        st.altair_chart(charts.line_rate(rates, "rejected", "#d62728", span), width="stretch")

    left, right = st.columns(2)
    with left:
        st.subheader("Rejected lines by reason")
        if reasons.is_empty():
            st.success("No line rejected.")
        else:
            st.altair_chart(charts.rejects_by_reason(reasons), width="stretch")
    with right:
        st.subheader("Markets by status, now")
        status_metrics(market_states, "markets", MARKET_STATUSES)
        st.subheader("Matches by status, now")
        status_metrics(match_states, "matches", MATCH_STATUSES)
    st.subheader("Matches")
    st.dataframe(
        matches.select("label", "status", "period", "minute", "score", "kickoff_time"),
        hide_index=True,
        column_config={
            "label": "match",
            "kickoff_time": st.column_config.DatetimeColumn(
                "kickoff (UTC)", format="YYYY-MM-DD HH:mm"
            ),
        },
    )
    if isinstance(latency, pl.DataFrame) and not latency.is_empty():
        st.subheader("Pipeline latency (live)")
        st.caption(
            "Per wall-clock minute: milliseconds from a line's arrival (taken from Kafka by "
            "the live flow) to its rows being handed to the sinks, for the lines handed over "
            "in that minute; with several workers, the slowest worker's percentiles."
        )
        st.altair_chart(charts.latency(latency), width="stretch")
        st.dataframe(
            latency.select("time", "lines", "workers", "p50_ms", "p95_ms", "p99_ms", "max_ms"),
            hide_index=True,
            column_config={
                "time": st.column_config.DatetimeColumn("minute (UTC)", format="HH:mm"),
            },
        )


def football_score(cols: Sequence[DeltaGenerator], match: dict[str, Any]) -> None:
    """A football match's score, state, clock and red cards, in the first four columns."""
    cols[0].metric("Score", f"{match['home_score']}-{match['away_score']}")
    cols[1].metric("Status", match["status"])
    cols[2].metric(
        "Minute",
        f"{match['minute']}'",
        f"period {match['period']}",
        delta_arrow="off",
        delta_color="off",
    )
    cols[3].metric("Red cards", f"{match['home_red']}-{match['away_red']}")


def tennis_score(
    cols: Sequence[DeltaGenerator], match: dict[str, Any], score: dict[str, Any]
) -> None:
    """A tennis match in its own terms: sets (and the finished sets' games), games of the
    set in play, points of the game in play, who serves; home first everywhere."""
    sets = score["set_scores"] or "no set finished"
    result = score["result"]
    status = match["status"] + (f" ({result.replace(':', ' ')})" if result else "")
    server = match["home"] if score["server"] == "home" else match["away"]
    cols[0].metric(
        "Sets",
        f"{score['home_sets']}-{score['away_sets']}",
        sets,
        delta_arrow="off",
        delta_color="off",
        help=f"Best of {score['best_of']}; the finished sets' games below, home first.",
    )
    cols[1].metric("Status", status)
    games = f"{score['home_games']}-{score['away_games']}"
    if result and score["set_scores"] and games == "0-0":  # over between sets: the last set's
        games = score["set_scores"].split()[-1]
    cols[2].metric(
        "Games",
        games,
        f"set {match['period']}, minute {match['minute']}",
        delta_arrow="off",
        delta_color="off",
    )
    cols[3].metric(
        "Points", score["points"], f"{server} serves", delta_arrow="off", delta_color="off"
    )


@st.fragment(run_every=REFRESH_S)
def match_view() -> None:
    state = published()
    if state is None:
        return
    with queries.snapshot(state.path) as db:
        matches = queries.match_list(db)
    st.title("Match")
    if matches.is_empty():
        st.info("No match yet: matches appear with their `fixture` line.")
        return
    labels = dict(zip(matches["match_id"], matches["label"], strict=True))
    live = matches.filter(pl.col("status").is_in(["live", "break"]))["match_id"]
    if st.session_state.get("match") not in labels:
        st.session_state["match"] = live[0] if len(live) else matches["match_id"][0]
    left, right = st.columns([3, 1])
    match_id = left.selectbox("Match", list(labels), format_func=labels.__getitem__, key="match")

    with queries.snapshot(state.path) as db:
        markets = queries.match_markets(db, match_id)
        market = right.selectbox("Market", markets, key="market")
        events = queries.match_events(db, match_id)
        bands = queries.status_bands(db, match_id, market)
        prices = queries.price_segments(db, match_id, market)
        suspended = queries.suspensions(db, match_id)
        tennis = queries.tennis_score(db, match_id)
    match = matches.row(by_predicate=pl.col("match_id") == match_id, named=True)
    held = suspended.filter(pl.col("market") == market)

    cols = st.columns(6)
    if tennis is None:
        football_score(cols, match)
    else:
        tennis_score(cols, match, tennis)
    cols[4].metric(
        "Suspensions",
        f"{suspended.height}",
        f"{queries.incidents(suspended).height} causes",
        delta_arrow="off",
        delta_color="off",
        help="Market suspensions of every market of the match (all markets go together).",
    )
    cols[5].metric(
        f"{market} suspended",
        f"{held['seconds'].sum():.0f} s",
        f"{held.height} times",
        delta_arrow="off",
        delta_color="off",
    )

    st.subheader(f"{match['home']} v {match['away']}: {market} on one time axis")
    st.caption(
        "Bands: the market's status. Lines: each selection's offered price (decimal odds) "
        "while it stood. Dashed rules: the match's incidents. Drag or scroll to zoom in."
    )
    st.altair_chart(charts.match_timeline(bands, prices, events, market), width="stretch")

    left, right = st.columns(2)
    with left:
        st.subheader("Timeline")
        st.dataframe(
            events.select("time", "kind", "label"),
            hide_index=True,
            height=36 * min(events.height + 1, 25),
            column_config={"time": CLOCK, "label": "what"},
        )
    with right:
        st.subheader("Suspensions by cause")
        st.caption("All markets of a match are suspended together: one row per cause.")
        st.dataframe(
            queries.incidents(suspended).drop("ts"),
            hide_index=True,
            column_config={
                "time": CLOCK,
                "still_suspended": "still",
                "longest_s": st.column_config.NumberColumn("longest (s)", format="%.1f"),
            },
        )
    with st.expander(f"Every suspension of every market ({suspended.height})"):
        st.dataframe(
            suspended.select("market", "time", "reason", "ended_by", "seconds"),
            hide_index=True,
            column_config={
                "time": CLOCK,
                "seconds": st.column_config.NumberColumn("seconds", format="%.1f"),
            },
        )


@st.fragment(run_every=REFRESH_S)
def markets_and_risk() -> None:
    state = published()
    if state is None:
        return
    with queries.snapshot(state.path) as db:
        matches = queries.match_list(db)
    st.title("Markets and risk")
    labels = {None: "All matches"} | dict(zip(matches["match_id"], matches["label"], strict=True))
    match_id = st.selectbox(
        "Match", list(labels), format_func=labels.__getitem__, key="board_match"
    )
    with queries.snapshot(state.path) as db:
        board = queries.market_board(db, match_id)
        bets = queries.bets_by_outcome(db)
        by_market = queries.exposure_by_market(db)
        wallets = queries.wallets(db)

    for col, status in zip(st.columns(4), MARKET_STATUSES, strict=True):
        col.metric(
            f"{status.title()} markets", f"{board.filter(pl.col('status') == status).height}"
        )
    st.subheader("Markets now, with their latest prices")
    prices = [c for c in board.columns if c in queries.SELECTION_ORDER]
    st.dataframe(
        board.drop("ts"),
        hide_index=True,
        column_order=[
            "fixture",
            "market",
            "status",
            *prices,
            "version",
            "reason",
            "winner",
            "time",
        ],
        column_config={**{c: PRICE for c in prices}, "time": TIME},
        height=36 * min(board.height + 1, 16),
    )

    st.subheader("Exposure")
    exposure = note_or(by_market)
    if exposure is not None:
        if match_id is not None:
            exposure = exposure.filter(pl.col("match_id") == match_id)
        if st.checkbox("Only markets not settled yet", key="unsettled"):
            exposure = exposure.filter(pl.col("status") != "SETTLED")
        by_match = queries.exposure_by_match(exposure)
        if exposure.is_empty():
            st.caption("No bet taken yet.")
        else:
            left, right = st.columns(2)
            with left:
                st.markdown("**By market** (worst-case liability, biggest first)")
                what = pl.col("match_id") + " " + pl.col("market")
                st.altair_chart(
                    charts.exposure(exposure.with_columns(what.alias("what")), "what"),
                    width="stretch",
                )
                st.dataframe(
                    exposure, hide_index=True, column_config={"stakes": MONEY, "exposure": MONEY}
                )
            with right:
                st.markdown("**By match** (sum of its markets' worst cases)")
                st.altair_chart(charts.exposure(by_match, "match_id"), width="stretch")
                st.dataframe(
                    by_match, hide_index=True, column_config={"stakes": MONEY, "exposure": MONEY}
                )

    st.subheader("Bets")
    outcomes = note_or(bets)
    if outcomes is not None:
        accepted = outcomes.filter(pl.col("status").str.to_lowercase() != "rejected")
        rejected = outcomes.filter(pl.col("status").str.to_lowercase() == "rejected")
        left, middle, right = st.columns(3)
        left.metric("Bets accepted", f"{int(accepted['bets'].sum()):,}")
        middle.metric("Bets rejected", f"{int(rejected['bets'].sum()):,}")
        right.metric("Stake accepted", f"{accepted['stake'].sum():,.2f}")
        if not outcomes.is_empty():
            st.altair_chart(charts.bets_by_outcome(outcomes), width="stretch")
    if isinstance(wallets, Missing):
        st.info(wallets.note)
    else:
        left, middle, _ = st.columns(3)
        left.metric("Wallets", f"{wallets.users:,}")
        middle.metric("Total balance", f"{wallets.balance:,.2f}")


@st.fragment(run_every=REFRESH_S)
def rejects() -> None:
    state = published()
    if state is None:
        return
    with queries.snapshot(state.path) as db:
        counts = queries.reject_counts(db)
    st.title("Rejects")
    by_code = counts.group_by("code").agg(pl.col("rejects").sum())
    code_counts = dict(by_code.sort("rejects", "code", descending=[True, False]).iter_rows())
    left, right = st.columns(2)
    codes = left.multiselect(
        "Reason code (the part before `:`)",
        list(code_counts),
        format_func=lambda c: f"{c} ({code_counts[c]})",
        key="codes",
    )
    shown = counts.filter(pl.col("code").is_in(codes)) if codes else counts
    reason_counts = dict(shown.select("reason", "rejects").iter_rows())
    reasons = right.multiselect(
        "Reason",
        list(reason_counts),
        format_func=lambda r: f"{r} ({reason_counts[r]})",
        key="reasons",
    )
    reasons = [r for r in reasons if r in reason_counts]
    with queries.snapshot(state.path) as db:
        latest = queries.latest_rejects(db, codes, reasons)

    if reasons:
        shown = shown.filter(pl.col("reason").is_in(reasons))
    cols = st.columns(3)
    cols[0].metric("Rejected lines", f"{int(counts['rejects'].sum()):,}")
    cols[1].metric("Shown by the filter", f"{int(shown['rejects'].sum()):,}")
    cols[2].metric("Reasons", f"{counts.height}")
    if counts.is_empty():
        st.success("No line rejected.")
        return
    st.altair_chart(charts.rejects_by_reason(shown), width="stretch")
    st.subheader(f"Latest rejects ({latest.height} shown, newest event time first)")
    st.dataframe(
        latest.select("time", "source", "reason", "detail", "provider", "match_id", "raw"),
        hide_index=True,
        column_config={"time": TIME, "raw": st.column_config.TextColumn("raw line", width="large")},
    )


# ---- navigation ------------------------------------------------------------------------------

PAGES = {
    "overview": (overview, "Overview", ":material/monitoring:"),
    "match": (match_view, "Match", ":material/sports_soccer:"),
    "markets": (markets_and_risk, "Markets and risk", ":material/account_balance:"),
    "rejects": (rejects, "Rejects", ":material/report:"),
}
start = st.query_params.get("page", "overview")
if start not in PAGES:
    start = "overview"
st.navigation(
    [
        st.Page(page, title=title, icon=icon, url_path=path, default=path == start)
        for path, (page, title, icon) in PAGES.items()
    ]
).run()
st.sidebar.caption(f"Refreshed every {REFRESH_S:g} s · {DB or 'no --db given'}")
