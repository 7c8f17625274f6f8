"""Altair chart builders: one function per chart, frames from `dashboard.queries` in.

Event times arrive as epoch milliseconds (`ts`) and are drawn on a UTC time scale, so the
axes read the same whatever the viewer's time zone; prices are decimal odds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import altair as alt
import polars as pl

from dashboard.queries import SELECTION_ORDER

STATUS_COLORS = {
    "OPEN": "#2e9e44",
    "SUSPENDED": "#f28e2b",
    "CLOSED": "#8c8c8c",
    "SETTLED": "#4c78a8",
}
BET_COLORS = {  # rejected in red; won (the book pays) in orange
    "accepted": "#4c78a8",
    "won": "#f28e2b",
    "lost": "#2e9e44",
    "void": "#8c8c8c",
    "rejected": "#d62728",
}
EVENT_COLORS = {
    "goal": "#1f3b73",
    "penalty": "#7b4ea3",
    "red card": "#d62728",
    "yellow card": "#c9a400",
    "var": "#e377c2",
    "period": "#555555",
    "challenge": "#e377c2",
    "medical timeout": "#d62728",
    "suspension": "#1f77b4",
}
TIME_FORMAT = "%H:%M"
ODDS_TICKS = [1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000]
TOOLTIP_TIME: Final = "utcyearmonthdatehoursminutesseconds"


def _time_axis(
    field: str = "ts", title: str = "event time (UTC)", domain: tuple[int, int] | None = None
) -> alt.X:
    scale = alt.Scale(type="utc")
    if domain is not None:
        scale = alt.Scale(type="utc", domain=[_datetime(t) for t in domain])
    return alt.X(
        f"{field}:T",
        title=title,
        scale=scale,
        axis=alt.Axis(format=TIME_FORMAT, labelOverlap=True),
    )


def _datetime(ts: int) -> alt.DateTime:
    """Epoch ms as a Vega-Lite UTC date-time (a scale domain takes no bare numbers)."""
    t = datetime.fromtimestamp(ts / 1000, UTC)
    return alt.DateTime(
        year=t.year,
        month=t.month,
        date=t.day,
        hours=t.hour,
        minutes=t.minute,
        seconds=t.second,
        milliseconds=t.microsecond // 1000,
        utc=True,
    )


def _when(field: str = "ts", title: str = "event time (UTC)") -> alt.Tooltip:
    return alt.Tooltip(f"{field}:T", timeUnit=TOOLTIP_TIME, title=title)


def _scale(colors: dict[str, str], present: list[str]) -> alt.Scale:
    """A fixed color per known value; unknown values get the remaining default colors."""
    known = [v for v in colors if v in present]
    extra = [v for v in present if v not in colors]
    return alt.Scale(
        domain=known + extra, range=[colors[v] for v in known] + ["#bab0ac"] * len(extra)
    )


def line_rate(
    rates: pl.DataFrame, outcome: str, color: str, span: tuple[int, int] | None = None
) -> alt.Chart:
    """Lines per second of one outcome (accepted / rejected), per event-time minute, over
    `span` (epoch ms) so that both outcomes share one time axis."""
    data = rates.filter(pl.col("outcome") == outcome)
    return (
        alt.Chart(data, height=220)
        .mark_rect(color=color)
        .encode(
            x=_time_axis(domain=span),
            x2="end_ts:T",
            y=alt.Y("per_s:Q", title="lines/s"),
            y2=alt.datum(0),
            tooltip=[
                _when("ts", "minute starting (UTC)"),
                alt.Tooltip("lines:Q", title="lines in the minute"),
                alt.Tooltip("per_s:Q", title="lines/s", format=".2f"),
            ],
        )
    )


def rejects_by_reason(counts: pl.DataFrame) -> alt.Chart:
    """Horizontal bars, biggest first, colored by reason code (the part before `:`)."""
    return (
        alt.Chart(counts, height=alt.Step(22))
        .mark_bar()
        .encode(
            x=alt.X("rejects:Q", title="rejected lines", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("reason:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260)),
            color=alt.Color("code:N", title="reason code", legend=None),
            tooltip=["reason:N", "code:N", alt.Tooltip("rejects:Q", title="lines")],
        )
    )


def match_timeline(
    bands: pl.DataFrame, prices: pl.DataFrame, events: pl.DataFrame, market: str
) -> alt.LayerChart:
    """One time axis: the market's status as colored bands, each selection's offered price
    as a line while it stood, and the match's incidents as labelled vertical rules."""
    statuses = bands["status"].unique().to_list()
    band = (
        alt.Chart(bands)
        .mark_rect()
        .encode(
            x=_time_axis(),
            x2="end_ts:T",
            # OPEN is the normal state: a faint wash; any other status stands out.
            opacity=alt.condition(alt.datum.status == "OPEN", alt.value(0.07), alt.value(0.45)),
            color=alt.Color(
                "status:N",
                scale=_scale(STATUS_COLORS, statuses),
                legend=alt.Legend(title=f"{market} status", orient="bottom"),
            ),
            tooltip=[
                alt.Tooltip("status:N"),
                alt.Tooltip("reason:N", title="because"),
                _when("ts", "from (UTC)"),
                _when("end_ts", "until (UTC)"),
            ],
        )
    )
    price = (
        alt.Chart(prices)
        .mark_rule(strokeWidth=2.5)
        .encode(
            x=_time_axis(),
            x2="end_ts:T",
            y=alt.Y(
                "price:Q",
                title="price (decimal odds, log scale)",
                scale=alt.Scale(type="log"),
                axis=alt.Axis(values=ODDS_TICKS, format="~g"),
            ),
            color=alt.Color(
                "selection:N",
                sort=list(SELECTION_ORDER),
                legend=alt.Legend(title="selection", orient="bottom"),
            ),
            tooltip=[
                "selection:N",
                alt.Tooltip("price:Q", title="price (decimal odds)", format=".2f"),
                alt.Tooltip("probability:Q", title="fair probability", format=".1%"),
                alt.Tooltip("version:Q", title="market version"),
                _when("ts", "offered from (UTC)"),
                _when("end_ts", "until (UTC)"),
            ],
        )
    )
    kinds = _scale(EVENT_COLORS, events["kind"].unique().to_list())
    rules = (
        alt.Chart(events)
        .mark_rule(strokeDash=[4, 3], strokeWidth=1.2)
        .encode(
            x=_time_axis(),
            color=alt.Color(
                "kind:N", scale=kinds, legend=alt.Legend(title="incident", orient="bottom")
            ),
            tooltip=[alt.Tooltip("label:N", title="incident"), _when()],
        )
    )
    labels = (
        alt.Chart(events.filter(pl.col("labelled")))
        .mark_text(angle=270, align="right", baseline="bottom", dy=-3, fontSize=10)
        .encode(
            x=_time_axis(),
            y=alt.value(6),
            text="short:N",
            color=alt.Color("kind:N", scale=kinds, legend=None),
        )
    )
    return (
        alt.layer(band, price, rules, labels, height=420)
        .resolve_scale(color="independent")
        .interactive(bind_y=False)
    )


def exposure(frame: pl.DataFrame, label: str, top: int = 15) -> alt.Chart:
    """The biggest worst-case liabilities, one bar each."""
    data = frame.head(top)
    return (
        alt.Chart(data, height=alt.Step(22))
        .mark_bar(color="#d62728")
        .encode(
            x=alt.X("exposure:Q", title="worst-case liability (stake currency)"),
            y=alt.Y(f"{label}:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260)),
            tooltip=[
                f"{label}:N",
                alt.Tooltip("exposure:Q", format=",.2f"),
                alt.Tooltip("stakes:Q", format=",.2f"),
            ],
        )
    )


def bets_by_outcome(frame: pl.DataFrame) -> alt.Chart:
    """Bets per reason, colored by status (accepted, rejected, settled ...)."""
    return (
        alt.Chart(frame, height=alt.Step(22))
        .mark_bar()
        .encode(
            x=alt.X("bets:Q", title="bets", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("reason:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260)),
            color=alt.Color(
                "status:N", title="status", scale=_scale(BET_COLORS, frame["status"].to_list())
            ),
            tooltip=["status:N", "reason:N", "bets:Q", alt.Tooltip("stake:Q", format=",.2f")],
        )
    )


def latency(frame: pl.DataFrame) -> alt.VConcatChart:
    """Per wall-clock minute: p50 and p99 of the slowest worker, in milliseconds (with p95
    and max in the tooltip), and the lines handed over below it, on one time axis."""
    when = _time_axis(title="wall-clock minute (UTC)")
    tooltip = [
        _when("ts", "minute starting (UTC)"),
        alt.Tooltip("lines:Q", format=","),
        *(alt.Tooltip(f"{c}:Q", format=",.1f") for c in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
    ]
    percentiles = (
        alt.Chart(frame, height=220)
        .transform_fold(["p50_ms", "p99_ms"], as_=["percentile", "ms"])
        .mark_line(point=True)
        .encode(
            x=when,
            y=alt.Y("ms:Q", title="arrival to sinks (ms)"),
            color=alt.Color("percentile:N", title=None),
            tooltip=tooltip,
        )
    )
    lines = (
        alt.Chart(frame, height=120)
        .mark_bar(color="#4c78a8")
        .encode(x=when, y=alt.Y("lines:Q", title="lines"), tooltip=tooltip)
    )
    return alt.vconcat(percentiles, lines)
