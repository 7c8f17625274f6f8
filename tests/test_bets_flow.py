"""Bets and wallets over a whole replay: >= 100 users and >= 10 000 bets, real DuckDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from bytewax.run import cli_main

from flows.replay import get_flow
from tests.conftest import replay, table
from tooling.simulator import write_feed


@pytest.fixture(scope="module")
def bet_feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bets") / "bets.jsonl.gz"
    write_feed(path, matches=200, seed=21, users=120, bets_per_match=55)
    return path


@pytest.fixture(scope="module")
def bet_db(bet_feed: Path) -> Path:
    return replay([bet_feed], bet_feed.with_suffix(".duckdb"))


def one(db: Path, sql: str) -> object:
    return table(db, sql)[0][0]


def test_the_feed_is_big_enough(bet_db: Path) -> None:
    assert one(bet_db, "SELECT count(*) FROM bets") >= 10_000
    assert one(bet_db, "SELECT count(*) FROM wallets") >= 100
    reasons = {r for (r,) in table(bet_db, "SELECT DISTINCT reason FROM bets")}
    assert reasons >= {
        "",
        "market_suspended",
        "market_closed",
        "price_changed",
        "bet_delay_suspension",
        "insufficient_funds",
        "stake_limit",
        "liability_limit",
        "unknown_market",
    }
    assert (
        one(
            bet_db,
            "SELECT count(*) FROM rejects WHERE reason = 'duplicate' "
            "AND raw LIKE '%\"type\":\"bet\"%' OR (reason = 'duplicate' AND raw = '')",
        )
        > 0
    )


def test_balances_equal_deposits_minus_stakes_plus_payouts_to_the_cent(bet_db: Path) -> None:
    wallets = one(bet_db, "SELECT sum(balance) FROM wallets")
    deposits = one(bet_db, "SELECT sum(amount) FROM wallet_ledger WHERE kind = 'deposit'")
    stakes = one(bet_db, "SELECT sum(stake) FROM bets WHERE status <> 'rejected'")
    payouts = one(bet_db, "SELECT sum(payout) FROM bets")
    assert isinstance(wallets, Decimal)
    assert wallets == deposits - stakes + payouts  # type: ignore[operator]
    per_user = table(
        bet_db,
        """
        SELECT w.user_id, w.balance, l.total FROM wallets w JOIN (
            SELECT user_id, sum(amount) AS total FROM wallet_ledger GROUP BY ALL) l USING (user_id)
        WHERE w.balance <> l.total""",
    )
    assert per_user == []


def test_no_balance_is_ever_negative(bet_db: Path) -> None:
    assert one(bet_db, "SELECT min(balance) FROM wallet_ledger") >= 0  # type: ignore[operator]
    gaps = one(
        bet_db,
        """
        SELECT count(*) FROM (SELECT user_id, version,
            lag(version) OVER (PARTITION BY user_id ORDER BY version) AS prev FROM wallet_ledger)
        WHERE prev IS NOT NULL AND version <> prev + 1""",
    )
    assert gaps == 0  # every balance the wallet ever had is in the ledger


def test_every_accepted_bet_is_settled_with_the_market_winner(bet_db: Path) -> None:
    wrong = table(
        bet_db,
        """
        SELECT b.bet_id, b.status, b.payout, m.winner FROM bets b
        JOIN market_status m USING (match_id, market)
        WHERE b.status <> 'rejected' AND NOT (
            (m.winner = b.selection AND b.status = 'won'
                AND b.payout = floor(b.stake * b.price * 100) / 100)
            OR (m.winner = 'void' AND b.status = 'void' AND b.payout = b.stake)
            OR (m.winner NOT IN (b.selection, 'void') AND b.status = 'lost' AND b.payout = 0))""",
    )
    assert wrong == []
    assert one(bet_db, "SELECT count(*) FROM bets WHERE status = 'accepted'") == 0
    assert one(bet_db, "SELECT count(*) FROM bets WHERE status = 'won'") > 100


def test_reported_exposure_equals_a_recomputation_from_bets(bet_db: Path) -> None:
    rows = table(
        bet_db, "SELECT bet_id, match_id, market, selection, stake, price, status FROM bets"
    )
    book: dict[tuple[str, str], dict[str, list[Decimal]]] = {}
    for _, match_id, market, selection, stake, price, status in rows:
        if status == "rejected":
            continue
        sides = book.setdefault((match_id, market), {})
        pays, stakes = sides.get(selection, [Decimal(0), Decimal(0)])
        sides[selection] = [pays + stake * (price - 1), stakes + stake]
    expected = {}
    for key, sides in book.items():
        total = sum(s for _, s in sides.values())
        expected[key] = max(p - (total - s) for p, s in sides.values())
    reported = {
        (m, k): v for m, k, v in table(bet_db, "SELECT match_id, market, liability FROM exposure")
    }
    assert reported == expected
    assert len(reported) > 1000


def test_two_workers_give_identical_bets_and_wallets(
    bet_feed: Path, bet_db: Path, tmp_path: Path, dump: Callable[[Path], dict]
) -> None:
    two = tmp_path / "two.duckdb"
    cli_main(get_flow([bet_feed], two), workers_per_process=2, epoch_interval=timedelta(seconds=1))
    first, second = dump(bet_db), dump(two)
    for name in ("bets", "wallets", "wallet_ledger", "market_history", "prices"):
        assert second[name] == first[name], name
