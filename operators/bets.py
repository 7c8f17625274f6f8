"""Bet decisions at the market: the per-match half of the bet rules (the wallet's half, the
funds, is `operators.wallets`).

A bet is judged against its market as it is at the bet's `ts`: status, offered price, stake
limits, the market's worst-case liability. In play it is then held for the bet delay and
rejected if, within that window, the market suspends, closes, or offers less than the bet's
price (the market events say so). The liability counts every bet passed here, some of which
may still fail for funds: conservative, since this side never sees balances. Event time only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from operators.events import Bet
from operators.market_events import PRICED, MarketEvent, MarketSettled
from operators.markets import CLOSED, SETTLED, SUSPENDED, MarketBook
from operators.parse import wallet_key
from operators.settings import Rules

_NOTHING = (Decimal(0), Decimal(0))


class BetDecision(NamedTuple):
    """Match -> wallet: the market's verdict on one bet line (`source` identifies it)."""

    source: str
    bet: Bet
    accepted: bool
    reason: str
    ts: int


class SettlementNotice(NamedTuple):
    """Match -> wallet shard: a `match_end` line was handled; `results` (bet_id -> won /
    lost / void) when it settled the match, None when the line was rejected."""

    shard: str
    source: str
    match_id: str
    results: dict[str, str] | None
    ts: int


WalletMessage = BetDecision | SettlementNotice


class MessageSink(Protocol):
    """Where the match side puts its messages for wallets."""

    def append(self, item: WalletMessage, /) -> None: ...


def wallet_shard_of(msg: WalletMessage) -> str:
    """The wallet shard key a message from a match goes to."""
    return wallet_key(msg.bet.user_id) if isinstance(msg, BetDecision) else msg.shard


@dataclass(slots=True)
class _Pending:
    source: str
    bet: Bet
    due: int


@dataclass(slots=True)
class MatchBets:
    """Bets on one match: seen ids, bets passed to wallets, bets in their delay, liability."""

    rules: Rules
    seen: set[str] = field(default_factory=set)
    passed: dict[str, Bet] = field(default_factory=dict)  # bet_id -> bet passed at market
    pending: list[_Pending] = field(default_factory=list)
    # market -> selection -> (what the book pays if it wins, stakes taken on it)
    book: dict[str, dict[str, tuple[Decimal, Decimal]]] = field(default_factory=dict)
    red_cards: int = 0

    def judge(
        self,
        source: str,
        bet: Bet,
        markets: MarketBook[Any] | None,
        in_play: bool,
        out: MessageSink,
    ) -> None:
        """A bet line at `bet.ts` (the markets already advanced to it)."""
        if bet.bet_id in self.seen:
            out.append(BetDecision(source, bet, False, "duplicate", bet.ts))
            return
        self.seen.add(bet.bet_id)
        reason = self._check(bet, markets)
        if reason:
            out.append(BetDecision(source, bet, False, reason, bet.ts))
            return
        self._take(bet)
        delay = self.rules.bet_delay_ms if in_play else 0
        if delay:
            self.pending.append(_Pending(source, bet, bet.ts + delay))
        else:
            self._accept(source, bet, bet.ts, out)

    def _check(self, bet: Bet, markets: MarketBook[Any] | None) -> str:
        market = markets.markets.get(bet.market) if markets else None
        if market is None or (market.prices and bet.selection not in market.prices):
            return "unknown_market"
        if market.status in (CLOSED, SETTLED):
            return "market_closed"
        if market.status == SUSPENDED:
            return "market_suspended"
        if market.prices[bet.selection][1] < bet.price:
            return "price_changed"
        if not self.rules.min_stake <= bet.stake <= self.rules.max_stake:
            return "stake_limit"
        if self._liability_with(bet) > self._limit():
            return "liability_limit"
        return ""

    def review(self, events: Sequence[object], now: int, out: MessageSink) -> None:
        """After a line at `now` whose items (market events among them) are `events`: settle
        the fate of bets in their delay window."""
        if not self.pending:
            return
        still: list[_Pending] = []
        for p in self.pending:
            reason = _spoiled(p, events)
            if reason:
                self._give_back(p.bet)
                out.append(BetDecision(p.source, p.bet, False, reason, p.bet.ts))
            elif now >= p.due:
                self._accept(p.source, p.bet, p.due, out)
            else:
                still.append(p)
        self.pending = still

    def red_card(self) -> None:
        self.red_cards += 1

    def settle(
        self, source: str, match_id: str, events: Sequence[object], ts: int, out: MessageSink
    ) -> None:
        """`match_end`: one notice per wallet shard with bets here, with every bet's result
        (the winners from the `events` that settled the markets)."""
        winners = {e.market: e.winner for e in events if isinstance(e, MarketSettled)}
        by_shard: dict[str, dict[str, str]] = {}
        for bet_id, bet in self.passed.items():
            won = winners.get(bet.market)
            result = "void" if won in (None, "void") else "won" if won == bet.selection else "lost"
            by_shard.setdefault(wallet_key(bet.user_id), {})[bet_id] = result
        for shard in sorted(by_shard):
            out.append(SettlementNotice(shard, source, match_id, by_shard[shard], ts))

    def notice_rejected_end(self, source: str, match_id: str, ts: int, out: MessageSink) -> None:
        """A `match_end` line that was rejected: wallets waiting on it may go on."""
        for shard in sorted({wallet_key(b.user_id) for b in self.passed.values()}):
            out.append(SettlementNotice(shard, source, match_id, None, ts))

    # ---- liability -----------------------------------------------------------------

    def _limit(self) -> Decimal:
        factor = self.rules.red_card_limit_factor if self.red_cards else Decimal(1)
        return self.rules.market_liability_limit * factor

    def _liability_with(self, bet: Bet) -> Decimal:
        """The market's liability if `bet` were taken (the book itself unchanged)."""
        sides = self.book.get(bet.market, {})
        taken = _added(sides.get(bet.selection, _NOTHING), bet, 1)
        return liability({**sides, bet.selection: taken})

    def _take(self, bet: Bet) -> None:
        self._move(bet, 1)

    def _give_back(self, bet: Bet) -> None:
        self._move(bet, -1)

    def _move(self, bet: Bet, sign: int) -> None:
        """Add (1) or remove (-1) a bet's payout and stake on its selection."""
        sides = self.book.get(bet.market)
        if sides is None:
            sides = self.book[bet.market] = {}
        sides[bet.selection] = _added(sides.get(bet.selection, _NOTHING), bet, sign)

    def _accept(self, source: str, bet: Bet, ts: int, out: MessageSink) -> None:
        self.passed[bet.bet_id] = bet
        out.append(BetDecision(source, bet, True, "", ts))


def _added(side: tuple[Decimal, Decimal], bet: Bet, sign: int) -> tuple[Decimal, Decimal]:
    """A selection's (paid if it wins, stakes taken) with `bet` added (1) or removed (-1)."""
    pays, stakes = side
    return pays + sign * bet.stake * (bet.price - 1), stakes + sign * bet.stake


def liability(sides: dict[str, tuple[Decimal, Decimal]]) -> Decimal:
    """Worst case over a market's selections (selection -> (paid if it wins, stakes taken)):
    paid to winners minus stakes kept."""
    total = sum((stakes for _, stakes in sides.values()), Decimal(0))
    return max((pays - (total - stakes) for pays, stakes in sides.values()), default=Decimal(0))


def _spoiled(p: _Pending, events: Sequence[object]) -> str:
    """Did the bet's market suspend, close or drop below its price within the window?"""
    bet = p.bet
    for e in events:
        if not isinstance(e, MarketEvent) or e.market != bet.market:
            continue
        if not bet.ts <= e.ts <= p.due:
            continue
        if not isinstance(e, PRICED):
            return "bet_delay_suspension"
        offered = e.prices.get(bet.selection)
        if offered is not None and offered[1] < bet.price:
            return "price_changed"
    return ""
