"""Rule settings of the market-sync engine: one typed, frozen object with their defaults.

A `Rules` checks its own values when made, so no rule runs with a value that cannot work,
whoever made it (flows/config.py from the config file, or a test). A bad value raises
`ValueError` whose message starts with the field's name in backquotes.
"""

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

    def __post_init__(self) -> None:
        for name in ("heartbeat_timeout_ms", "max_kickoff_distance_ms", "reprice_every_ms"):
            at_least(self, name, 1)
        for name in ("min_suspension_ms", "bet_delay_ms"):
            at_least(self, name, 0)
        if not 0.0 <= self.margin < 1.0:  # also refuses NaN
            raise ValueError(f"`margin` must be >= 0 and < 1, got {self.margin}")
        for name in ("min_stake", "max_stake", "market_liability_limit", "red_card_limit_factor"):
            value = getattr(self, name)
            if not (value.is_finite() and value > 0):  # NaN would fail every comparison
                raise ValueError(f"`{name}` must be a number > 0, got {value}")
        if self.max_stake < self.min_stake:
            raise ValueError(
                f"`max_stake` must be >= min_stake ({self.min_stake}), got {self.max_stake}"
            )
        if self.red_card_limit_factor > 1:
            raise ValueError(
                f"`red_card_limit_factor` must be <= 1, got {self.red_card_limit_factor}"
            )


def at_least(settings: object, name: str, low: int) -> None:
    """Raise `ValueError` unless the int field `name` of `settings` is at least `low`."""
    value = getattr(settings, name)
    if not value >= low:
        raise ValueError(f"`{name}` must be >= {low}, got {value}")


DEFAULT_RULES = Rules()
