"""Wallets: the per-user half of the bet rules (the funds), in one keyed shard of users.

A bet line goes both to its match, which judges it against the market (`operators.bets`),
and to its user's shard, which queues the shard's lines in feed order and applies them
strictly in that order: a bet waits for its match's verdict, a `match_end` for its
settlement. So every funds check sees exactly the deposits, stakes and payouts before the
bet in the feed, however lines and messages arrive between workers. Balances are exact
`Decimal`s, never negative; every movement is a ledger row.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

from operators.bets import BetDecision, SettlementNotice, WalletMessage
from operators.events import Bet, Deposit, MatchEnd
from operators.ordering import EventTimeOrder, Ordered, PartitionMark
from operators.parse import RawLine, has_match, parse_line
from operators.rows import BetRow, LedgerRow, Reject, Row, WalletRow, new_row

ZERO = Decimal("0.00")
CENT = Decimal("0.01")


@dataclass(slots=True)
class Wallet:
    balance: Decimal = ZERO
    version: int = 0


@dataclass(slots=True)
class _Waiting:
    """A queued feed line: a deposit, a bet awaiting its verdict, a match_end."""

    source: str
    event: Deposit | Bet | MatchEnd


@dataclass(slots=True)
class WalletShard:
    """Every wallet of one shard, the feed-ordered queue, and the verdicts that arrived."""

    wallets: dict[str, Wallet] = field(default_factory=dict)
    queue: deque[_Waiting] = field(default_factory=deque)
    order: EventTimeOrder[_Waiting] = field(default_factory=EventTimeOrder)  # not queued yet
    verdicts: dict[str, BetDecision] = field(default_factory=dict)  # by bet line source
    notices: dict[str, SettlementNotice] = field(default_factory=dict)  # by match_end source
    open_bets: dict[str, dict[str, Bet]] = field(default_factory=dict)  # match -> bet_id -> bet
    decided: set[str] = field(default_factory=set)  # bet ids with a final decision

    def line(self, raw: RawLine) -> list[Row]:
        """A feed line routed here, from the one input stream: queue what concerns wallets;
        in order, apply what can be. Rejects of lines that also went to a match are that
        match's to report."""
        return self._take(raw, self.queue.append)

    def ordered(self, item: Ordered) -> list[Row]:
        """A feed line from one of several input partitions: it joins the queue in event-time
        order (`operators/ordering.py`), once no partition can send one before it."""
        return self._take(item.raw, lambda waiting: self.order.add(item, waiting))

    def _take(self, raw: RawLine, put: Callable[[_Waiting], None]) -> list[Row]:
        ev = parse_line(raw)
        if isinstance(ev, Reject):
            return [] if has_match(raw) else [ev]
        if isinstance(ev, (Deposit, Bet, MatchEnd)):
            put(_Waiting(raw.source, ev))
        return self._drain()

    def mark(self, mark: PartitionMark) -> list[Row]:
        """How far a partition has come: lines before it may join the queue."""
        self.order.mark(mark)
        return self._drain()

    def message(self, msg: WalletMessage) -> list[Row]:
        """A verdict or a settlement from a match."""
        if isinstance(msg, BetDecision):
            self.verdicts[msg.source] = msg
        else:
            self.notices[msg.source] = msg
        return self._drain()

    def finish(self) -> list[Row]:
        """End of input: bets whose verdict never came are rejected (`undecided`), a
        `match_end` whose settlement never came is passed over."""
        self.queue.extend(self.order.drain())
        out = self._drain()
        while self.queue:
            head = self.queue[0]
            if isinstance(head.event, Bet):
                self.verdicts[head.source] = BetDecision(
                    head.source, head.event, False, "undecided", head.event.ts
                )
            else:
                self.queue.popleft()
            out.extend(self._drain())
        return out

    def _drain(self) -> list[Row]:
        out: list[Row] = []
        self.queue.extend(self.order.ready())
        while self.queue:
            head = self.queue[0]
            ev = head.event
            if isinstance(ev, Deposit):
                self._move(ev.user_id, ev.amount, "deposit", head.source, ev.ts, out)
            elif isinstance(ev, Bet):
                verdict = self.verdicts.pop(head.source, None)
                if verdict is None:
                    return out
                self._decide(verdict, out)
            else:
                if ev.match_id in self.open_bets:
                    notice = self.notices.pop(head.source, None)
                    if notice is None:
                        return out
                    self._settle(notice, out)
            self.queue.popleft()
        return out

    def _decide(self, verdict: BetDecision, out: list[Row]) -> None:
        bet, ts = verdict.bet, verdict.ts
        if bet.bet_id in self.decided:  # one bet_id, one bet
            out.append(
                Reject(
                    verdict.source,
                    "duplicate",
                    f"bet_id {bet.bet_id} seen before",
                    "",
                    bet.ts,
                    None,
                    bet.match_id,
                )
            )
            return
        self.decided.add(bet.bet_id)
        reason = verdict.reason
        wallet = self.wallets.get(bet.user_id)
        if verdict.accepted and (wallet.balance if wallet else ZERO) < bet.stake:
            reason = "insufficient_funds"
        if reason:
            out.append(_bet_row(bet, "rejected", reason, ZERO, ts, 1))
            return
        self._move(bet.user_id, -bet.stake, "stake", bet.bet_id, ts, out)
        on_match = self.open_bets.get(bet.match_id)
        if on_match is None:
            on_match = self.open_bets[bet.match_id] = {}
        on_match[bet.bet_id] = bet
        out.append(_bet_row(bet, "accepted", "", ZERO, ts, 1))

    def _settle(self, notice: SettlementNotice, out: list[Row]) -> None:
        if notice.results is None:  # that match_end was rejected: the bets stay open
            return
        for bet_id, bet in sorted(self.open_bets.pop(notice.match_id, {}).items()):
            result = notice.results.get(bet_id, "void")
            payout = {"won": bet.stake * bet.price, "void": bet.stake}.get(result, ZERO)
            payout = payout.quantize(CENT, rounding=ROUND_DOWN)  # never pay a fraction of a cent
            if payout:
                self._move(bet.user_id, payout, "payout", bet_id, notice.ts, out)
            out.append(_bet_row(bet, result, "", payout, notice.ts, 2))

    def _move(
        self, user: str, amount: Decimal, kind: str, ref: str, ts: int, out: list[Row]
    ) -> None:
        wallet = self.wallets.get(user)
        if wallet is None:
            wallet = self.wallets[user] = Wallet()
        balance = wallet.balance + amount
        if balance < 0:  # the funds check makes this impossible; never write it
            raise AssertionError(f"wallet {user} would go negative: {balance}")
        wallet.balance, wallet.version = balance, wallet.version + 1
        version = wallet.version
        out.append(new_row(LedgerRow, (user, version, ts, kind, amount, balance, ref)))
        out.append(new_row(WalletRow, (user, balance, version, ts)))


def _bet_row(bet: Bet, status: str, reason: str, payout: Decimal, ts: int, version: int) -> BetRow:
    return new_row(  # BetRow's fields, in order
        BetRow,
        (
            bet.bet_id,
            bet.user_id,
            bet.match_id,
            bet.market,
            bet.selection,
            bet.stake,
            bet.price,
            status,
            reason,
            payout,
            ts,
            version,
        ),
    )
