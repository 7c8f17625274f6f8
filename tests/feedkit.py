"""Small builders for hand-written native feed scenarios, and a plain-Python runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from operators.engine import LocalEngine
from operators.parse import RawLine
from operators.rows import MarketStatusRow, Row
from operators.settings import DEFAULT_RULES, Rules

KICKOFF = 1_767_225_600_000


@dataclass
class Feed:
    """One match's feed lines with seq numbered in the order they are added."""

    match_id: str = "m1"
    provider: str = "sim"
    kickoff: int = KICKOFF
    seq: int = 0
    lines: list[bytes] = field(default_factory=list)

    def add(self, t: int, type: str, **fields: Any) -> bytes:
        """A line at `t` ms after kickoff; returns it (to repeat or reorder it)."""
        self.seq += 1
        obj = {
            "v": 1,
            "provider": self.provider,
            "match_id": self.match_id,
            "seq": self.seq,
            "ts": self.kickoff + t,
            "type": type,
            **fields,
        }
        line = msgspec.json.encode(obj)
        self.lines.append(line)
        return line

    def fixture(self, home_rate: float = 1.5, away_rate: float = 1.1) -> Feed:
        self.add(
            -600_000,
            "fixture",
            home="Home FC",
            away="Away FC",
            kickoff=self.kickoff,
            home_rate=home_rate,
            away_rate=away_rate,
        )
        return self

    def clocks(self, start: int, end: int, every: int = 4_000) -> Feed:
        """Heartbeats from `start` to `end` (inclusive) ms after kickoff."""
        for t in range(start, end + 1, every):
            self.add(t, "clock", minute=t // 60_000, second=(t // 1000) % 60)
        return self

    def kick_off(self) -> Feed:
        self.add(0, "period_start", period=1)
        return self


def run(lines: list[bytes], rules: Rules = DEFAULT_RULES) -> list[Row]:
    """Every output row, lines processed in order (what the flow computes)."""
    engine = LocalEngine(rules)
    out: list[Row] = []
    for i, data in enumerate(lines, 1):
        out.extend(engine.line(RawLine(f"test:{i}", data)))
    return out + engine.finish()


def history(rows: list[Row], market: str) -> list[tuple[int, str, str, int]]:
    """(version, status, reason, ts - kickoff) of one market, in emission order."""
    return [
        (r.version, r.status, r.reason, r.ts - KICKOFF)
        for r in rows
        if isinstance(r, MarketStatusRow) and r.market == market
    ]


def bet_line(
    kickoff: int,
    t: int,
    bet_id: str,
    user: str,
    market: str,
    selection: str,
    stake: str,
    price: str,
    match_id: str = "m1",
) -> bytes:
    """A bet-stream `bet` line at `t` ms after kickoff."""
    return msgspec.json.encode(
        {
            "v": 1,
            "ts": kickoff + t,
            "type": "bet",
            "bet_id": bet_id,
            "user_id": user,
            "match_id": match_id,
            "market": market,
            "selection": selection,
            "stake": stake,
            "price": price,
        }
    )


def deposit_line(kickoff: int, t: int, user: str, amount: str) -> bytes:
    return msgspec.json.encode(
        {"v": 1, "ts": kickoff + t, "type": "deposit", "user_id": user, "amount": amount}
    )
