"""Bet scenarios (the market's and the wallet's rules) with the expected outcome written out."""

from __future__ import annotations

import heapq
import random
from dataclasses import replace
from decimal import Decimal

import msgspec

from operators.bets import MatchBets, liability
from operators.events import Bet
from operators.rows import BetRow, PriceRow, Reject, Row, WalletRow
from operators.settings import DEFAULT_RULES, Rules
from tests.feedkit import KICKOFF, Feed, bet_line, deposit_line, run

K = KICKOFF


def in_play(until: int = 28_000) -> Feed:
    """A match in play with heartbeats up to `until` ms; add the next lines after it."""
    return Feed().fixture().kick_off().clocks(4_000, until)


def then(f: Feed, start: int, end: int = 100_000) -> Feed:
    return f.clocks(start, end)


def merged(feed: Feed, extra: list[bytes]) -> list[bytes]:
    """Feed lines and bet-stream lines in ts order (bet lines after feed lines at equal ts)."""
    import json

    def ts(line: bytes) -> int:
        return int(json.loads(line)["ts"])

    return list(heapq.merge(feed.lines, sorted(extra, key=ts), key=ts))


def bets(rows: list[Row]) -> dict[str, tuple[str, str, Decimal]]:
    """bet_id -> (status, reason, payout) of its latest version."""
    latest: dict[str, BetRow] = {}
    for r in rows:
        if isinstance(r, BetRow) and r.version >= latest.get(r.bet_id, r).version:
            latest[r.bet_id] = r
    return {b: (r.status, r.reason, r.payout) for b, r in latest.items()}


def balance(rows: list[Row], user: str) -> Decimal:
    return [r for r in rows if isinstance(r, WalletRow) and r.user_id == user][-1].balance


def offered(rows: list[Row], market: str, selection: str, before: int) -> Decimal:
    """The price on offer just before `before` ms after kickoff."""
    prices = [
        r
        for r in rows
        if isinstance(r, PriceRow)
        and r.market == market
        and r.selection == selection
        and r.ts < K + before
    ]
    return prices[-1].price


def test_a_bet_one_second_before_a_goal_possible_is_caught_by_the_delay() -> None:
    f = in_play()
    f.add(30_000, "goal", goal_id="g1", team="home", state="possible")
    f.add(33_000, "goal", goal_id="g1", team="home", state="confirmed")
    then(f, 34_000)
    extra = [
        deposit_line(K, -300_000, "u1", "100.00"),
        bet_line(K, 29_000, "b1", "u1", "1x2", "home", "10.00", "1.01"),
    ]
    rows = run(merged(f, extra))
    assert bets(rows) == {"b1": ("rejected", "bet_delay_suspension", Decimal("0"))}
    assert balance(rows, "u1") == Decimal("100.00")


def test_a_lowered_price_rejects_and_a_raised_one_accepts_at_the_bettors_price() -> None:
    f = in_play()
    f.add(30_000, "card", team="home", player="X", color="red")  # home lengthens, away shortens
    then(f, 32_000)
    plain = run(f.lines)
    home_before, away_before = (offered(plain, "1x2", s, 30_000) for s in ("home", "away"))
    assert offered(plain, "1x2", "home", 60_000) > home_before
    assert offered(plain, "1x2", "away", 60_000) < away_before
    extra = [
        deposit_line(K, -300_000, "u1", "100.00"),
        bet_line(K, 40_000, "lowered", "u1", "1x2", "away", "10.00", str(away_before)),
        bet_line(K, 41_000, "raised", "u1", "1x2", "home", "10.00", str(home_before)),
    ]
    rows = run(merged(f, extra))
    assert bets(rows) == {
        "lowered": ("rejected", "price_changed", Decimal("0")),
        "raised": ("accepted", "", Decimal("0")),
    }
    accepted = [r for r in rows if isinstance(r, BetRow) and r.bet_id == "raised"][-1]
    assert accepted.price == home_before  # accepted at the price the bettor asked
    assert balance(rows, "u1") == Decimal("90.00")


def test_a_bet_over_the_balance_is_rejected_for_funds() -> None:
    f = Feed().fixture()
    extra = [
        deposit_line(K, -500_000, "u1", "25.00"),
        bet_line(K, -400_000, "b1", "u1", "1x2", "draw", "20.00", "1.01"),
        bet_line(K, -300_000, "b2", "u1", "1x2", "draw", "10.00", "1.01"),
    ]
    rows = run(merged(f, extra))
    assert bets(rows) == {
        "b1": ("accepted", "", Decimal("0")),
        "b2": ("rejected", "insufficient_funds", Decimal("0")),
    }
    assert balance(rows, "u1") == Decimal("5.00")


def test_a_red_card_halves_the_liability_limit() -> None:
    rules = replace(DEFAULT_RULES, market_liability_limit=Decimal("5000.00"))
    stake_bets = [
        bet_line(K, t, f"b{i}", "u1", "1x2", "draw", "1000.00", "2.00")
        for i, t in enumerate((-500_000, -400_000, 40_000, 50_000, 60_000))
    ]
    without = run(
        merged(then(in_play(), 32_000), [deposit_line(K, -550_000, "u1", "9000.00"), *stake_bets]),
        rules,
    )
    assert {s for s, _, _ in bets(without).values()} == {"accepted"}  # 5 x 1000 at 2.00 = 5000
    f = in_play()
    f.add(30_000, "card", team="away", player="Y", color="second_yellow")
    then(f, 32_000)
    rows = run(merged(f, [deposit_line(K, -550_000, "u1", "9000.00"), *stake_bets]), rules)
    assert [bets(rows)[f"b{i}"][:2] for i in range(5)] == [
        ("accepted", ""),
        ("accepted", ""),
        ("rejected", "liability_limit"),
        ("rejected", "liability_limit"),
        ("rejected", "liability_limit"),
    ]


def test_the_same_bet_id_twice_is_one_bet() -> None:
    f = Feed().fixture()
    extra = [
        deposit_line(K, -500_000, "u1", "50.00"),
        bet_line(K, -400_000, "b1", "u1", "1x2", "home", "10.00", "1.01"),
        bet_line(K, -399_000, "b1", "u1", "1x2", "home", "10.00", "1.01"),
    ]
    rows = run(merged(f, extra))
    assert bets(rows) == {"b1": ("accepted", "", Decimal("0"))}
    assert [r.reason for r in rows if isinstance(r, Reject)] == ["duplicate"]
    assert balance(rows, "u1") == Decimal("40.00")


def test_a_bet_on_ou_0_5_after_it_closed_is_rejected() -> None:
    f = in_play()
    f.add(30_000, "goal", goal_id="g1", team="away", state="possible")
    f.add(32_000, "goal", goal_id="g1", team="away", state="confirmed")
    then(f, 34_000)
    extra = [
        deposit_line(K, -500_000, "u1", "50.00"),
        bet_line(K, 50_000, "b1", "u1", "ou_0.5", "over", "10.00", "1.01"),
    ]
    rows = run(merged(f, extra))
    assert bets(rows) == {"b1": ("rejected", "market_closed", Decimal("0"))}


def test_settlement_reflects_a_goal_disallowed_after_confirmation() -> None:
    f = in_play()
    f.add(30_000, "goal", goal_id="g1", team="home", state="possible")
    f.add(32_000, "goal", goal_id="g1", team="home", state="confirmed")
    f.clocks(34_000, 58_000)
    f.add(60_000, "goal", goal_id="g1", team="home", state="disallowed")
    f.clocks(62_000, 126_000)
    f.add(130_000, "match_end", home_score=0, away_score=0)
    extra = [
        deposit_line(K, -500_000, "u1", "100.00"),
        bet_line(K, -400_000, "home", "u1", "1x2", "home", "10.00", "1.50"),
        bet_line(K, -399_000, "draw", "u1", "1x2", "draw", "10.00", "3.00"),
        bet_line(K, -398_000, "over", "u1", "ou_0.5", "over", "10.00", "1.01"),
        bet_line(K, -397_000, "none", "u1", "goal_1", "none", "10.00", "2.00"),
    ]
    rows = run(merged(f, extra))
    assert bets(rows) == {
        "home": ("lost", "", Decimal("0")),
        "draw": ("won", "", Decimal("30.00")),
        "over": ("lost", "", Decimal("0")),
        "none": ("won", "", Decimal("20.00")),
    }
    assert balance(rows, "u1") == Decimal("110.00")  # 100 - 40 staked + 30 + 20


def test_stakes_outside_the_limits_and_unknown_markets_are_rejected() -> None:
    rules: Rules = DEFAULT_RULES
    f = Feed().fixture()
    extra = [
        deposit_line(K, -500_000, "u1", "5000.00"),
        bet_line(K, -400_000, "small", "u1", "1x2", "home", "0.05", "1.01"),
        bet_line(K, -399_000, "big", "u1", "1x2", "home", "1000.01", "1.01"),
        bet_line(K, -398_000, "odd", "u1", "ou_9.5", "over", "10.00", "1.01"),
        bet_line(K, -397_000, "sel", "u1", "1x2", "nobody", "10.00", "1.01"),
    ]
    rows = run(merged(f, extra), rules)
    assert {b: r[:2] for b, r in bets(rows).items()} == {
        "small": ("rejected", "stake_limit"),
        "big": ("rejected", "stake_limit"),
        "odd": ("rejected", "unknown_market"),
        "sel": ("rejected", "unknown_market"),
    }


def test_the_what_if_liability_equals_the_liability_of_the_book_with_the_bet_in() -> None:
    """The liability check of a bet is `liability` of the market's book with the bet in,
    the book itself unchanged, for books of 0 to 3 selections."""
    rng = random.Random(1)
    for _ in range(5_000):
        bets = MatchBets(DEFAULT_RULES)
        sides = {
            name: (Decimal(rng.randint(0, 10**5)) / 100, Decimal(rng.randint(0, 10**5)) / 100)
            for name in rng.sample(["home", "draw", "away"], rng.randint(0, 3))
        }
        bets.book = {"1x2": sides}
        selection = rng.choice(["home", "draw", "away"])
        bet = msgspec.convert(
            {
                "v": 1, "ts": 1, "bet_id": "b", "user_id": "u", "match_id": "m",
                "market": "1x2", "selection": selection,
                "stake": str(Decimal(rng.randint(1, 50_000)) / 100),
                "price": rng.choice(["1.01", "2.50", "7.20", "1000.00"]),
            },
            Bet,
        )  # fmt: skip
        pays, stakes = sides.get(selection, (Decimal(0), Decimal(0)))
        taken = (pays + bet.stake * (bet.price - 1), stakes + bet.stake)
        assert bets._liability_with(bet) == liability({**sides, selection: taken})
