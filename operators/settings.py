"""Rule settings of the market-sync engine: one typed, frozen object, the contract's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything the per-match logic needs to decide; times are event-time milliseconds."""

    heartbeat_timeout_ms: int = 10_000
    min_suspension_ms: int = 3_000
    margin: float = 0.05
    bet_delay_ms: int = 5_000
    max_kickoff_distance_ms: int = 86_400_000
    reprice_every_ms: int = 60_000
    min_stake: Decimal = Decimal("0.10")
    max_stake: Decimal = Decimal("1000.00")
    market_liability_limit: Decimal = Decimal("5000.00")
    red_card_limit_factor: Decimal = Decimal("0.5")


DEFAULT_RULES = Rules()
