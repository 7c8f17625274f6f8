"""The in-play pricer and the Betfair ladder: properties over many match states, plus a few
hand-checked values. Plain function calls, no flow."""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from operators.ladder import (
    LADDER,
    MAX_PRICE,
    MIN_PRICE,
    ladder_floor,
    next_tick,
    offered_prices,
    on_ladder,
)
from operators.pricing import (
    MARKETS_OU,
    MATCH_PLAY,
    MAX_REDS,
    MarginMethod,
    PricingState,
    fair_probabilities,
    implied_probabilities,
    quote,
    quote_book,
    remaining_play,
    remaining_rates,
)

TOLERANCE = 1e-9
METHODS: tuple[MarginMethod, ...] = ("proportional", "shin")

rates = st.floats(min_value=0.0, max_value=5.0)
minutes = st.floats(min_value=0.0, max_value=130.0)
scores = st.integers(min_value=0, max_value=7)
reds = st.integers(min_value=0, max_value=MAX_REDS)
states = st.builds(
    PricingState,
    home_rate=rates,
    away_rate=rates,
    minute=minutes,
    home_score=scores,
    away_score=scores,
    home_red=reds,
    away_red=reds,
)
margins = st.floats(min_value=0.0, max_value=0.25)
methods = st.sampled_from(METHODS)


# --- fair probabilities -------------------------------------------------------------------


@given(states)
def test_every_market_is_a_distribution(s: PricingState) -> None:
    book = fair_probabilities(s)
    goal_market = f"goal_{s.home_score + s.away_score + 1}"
    assert list(book) == ["1x2", *MARKETS_OU, goal_market]
    assert list(book["1x2"]) == ["home", "draw", "away"]
    assert list(book[goal_market]) == ["home", "none", "away"]
    for market, selections in book.items():
        assert all(0.0 <= p <= 1.0 for p in selections.values()), market
        assert math.fsum(selections.values()) == pytest.approx(1.0, abs=TOLERANCE), market


@given(states)
def test_a_home_goal_raises_home_win_and_lowers_away_win(s: PricingState) -> None:
    before = fair_probabilities(s)["1x2"]
    after = fair_probabilities(replace(s, home_score=s.home_score + 1))["1x2"]
    assert after["home"] >= before["home"] - TOLERANCE
    assert after["away"] <= before["away"] + TOLERANCE


@given(states.filter(lambda s: s.home_red < MAX_REDS))
def test_a_home_red_card_lowers_home_win_and_raises_away_win(s: PricingState) -> None:
    before = fair_probabilities(s)["1x2"]
    after = fair_probabilities(replace(s, home_red=s.home_red + 1))["1x2"]
    assert after["home"] <= before["home"] + TOLERANCE
    assert after["away"] >= before["away"] - TOLERANCE


def test_goal_and_red_card_move_the_match_odds_strictly() -> None:
    s = PricingState(1.5, 1.2, minute=30)
    base = fair_probabilities(s)["1x2"]
    goal = fair_probabilities(replace(s, home_score=1))["1x2"]
    red = fair_probabilities(replace(s, home_red=1))["1x2"]
    assert goal["home"] > base["home"] + 0.1
    assert red["home"] < base["home"] - 0.05 and red["away"] > base["away"] + 0.05


# Pre-match rates up to 2 a side (4 a match; real leagues average ~2.7) leave ~0.2 goals
# for the last 5 minutes of play (1 + 4 added), so no goal at all is > 80 % likely.
@given(st.floats(0.0, 2.0), st.floats(0.0, 2.0))
def test_at_minute_89_and_nil_nil_a_draw_and_under_half_a_goal_are_near_certain(
    home_rate: float, away_rate: float
) -> None:
    book = fair_probabilities(PricingState(home_rate, away_rate, minute=89))
    assert book["1x2"]["draw"] > 0.8
    assert book["ou_0.5"]["under"] > 0.8


@given(states)
def test_over_probability_falls_as_the_line_rises(s: PricingState) -> None:
    book = fair_probabilities(s)
    overs = [book[market]["over"] for market in MARKETS_OU]
    assert all(a >= b for a, b in pairwise(overs))


@given(states, minutes, minutes)
def test_remaining_goals_decrease_with_the_minute(s: PricingState, m1: float, m2: float) -> None:
    early, late = sorted((m1, m2))
    home_early, away_early = remaining_rates(replace(s, minute=early))
    home_late, away_late = remaining_rates(replace(s, minute=late))
    assert home_late <= home_early and away_late <= away_early
    if early + 1e-6 < late < 94:  # strictly, until the late floor
        assert remaining_play(late) < remaining_play(early)


def test_remaining_play_over_the_match() -> None:
    assert remaining_play(0) == MATCH_PLAY == 96
    assert remaining_play(45) == 49  # half time: the first half and its added time are done
    assert remaining_play(45 - 1e-9) == pytest.approx(remaining_play(45 + 1e-9))
    assert remaining_play(90) == 4  # expected second-half added time
    assert remaining_play(94) == remaining_play(130) == 0.5  # floor, prices stay finite


def test_remaining_rates_with_red_cards() -> None:
    s = PricingState(1.5, 1.0, minute=0, home_red=1)
    assert remaining_rates(s) == pytest.approx((1.5 * 0.67, 1.0 * 1.2))
    assert remaining_rates(replace(s, home_red=MAX_REDS + 3)) == remaining_rates(
        replace(s, home_red=MAX_REDS)
    )


@given(states)
def test_match_odds_equal_a_brute_force_score_grid(s: PricingState) -> None:
    home_rate, away_rate = remaining_rates(s)
    top = 60
    home = [math.exp(-home_rate) * home_rate**k / math.factorial(k) for k in range(top)]
    away = [math.exp(-away_rate) * away_rate**k / math.factorial(k) for k in range(top)]
    lead = s.home_score - s.away_score
    win = draw = lose = 0.0
    for x, px in enumerate(home):
        for y, py in enumerate(away):
            diff = lead + x - y
            if diff > 0:
                win += px * py
            elif diff == 0:
                draw += px * py
            else:
                lose += px * py
    got = fair_probabilities(s)["1x2"]
    assert (got["home"], got["draw"], got["away"]) == pytest.approx(
        (win, draw, lose), abs=TOLERANCE
    )


@given(states)
def test_next_goal_is_the_first_of_two_poisson_processes(s: PricingState) -> None:
    home_rate, away_rate = remaining_rates(s)
    both = home_rate + away_rate
    got = fair_probabilities(s)[f"goal_{s.home_score + s.away_score + 1}"]
    assert got["none"] == pytest.approx(math.exp(-both))
    if both > 0:
        assert got["home"] == pytest.approx(home_rate / both * (1 - math.exp(-both)))


def test_decided_markets_keep_their_certain_outcome() -> None:
    s = PricingState(1.4, 1.1, minute=20, home_score=2, away_score=1)
    book = quote(s)
    assert book["ou_0.5"]["over"] == (1.0, MIN_PRICE)
    assert book["ou_2.5"]["under"] == (0.0, MAX_PRICE)
    assert "goal_4" in book and "goal_1" not in book


def test_a_match_with_no_goals_expected_is_priced() -> None:
    book = quote(PricingState(0.0, 0.0, minute=0), method="shin")
    assert book["1x2"]["draw"] == (1.0, MIN_PRICE)
    assert book["goal_1"]["none"] == (1.0, MIN_PRICE)
    assert book["goal_1"]["home"] == (0.0, MAX_PRICE)


@pytest.mark.parametrize(
    "fields",
    [
        {"home_rate": -0.1},
        {"away_rate": math.nan},
        {"minute": -1.0},
        {"minute": math.inf},
        {"home_score": -1},
        {"away_red": -1},
    ],
)
def test_impossible_states_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PricingState(**{"home_rate": 1.0, "away_rate": 1.0, "minute": 0.0, **fields})


# The pricer's exact output for a few states, from the version before the flat `Book`
# rewrite: prices, market_history and the replay golden files store these floats, so a
# refactor must keep every operation and its order (a sum regrouped moves the last bit).
EXACT = [
    (
        PricingState(1.5, 1.1, 37.0, 1, 0),
        {
            "1x2": {
                "home": 0.7467996288189942,
                "draw": 0.18417913073949072,
                "away": 0.06902124044151517,
            },
            "ou_0.5": {"over": 1.0, "under": 0.0},
            "ou_1.5": {"over": 0.7884681349416149, "under": 0.21153186505838506},
            "ou_2.5": {"over": 0.4598788447423561, "under": 0.5401211552576439},
            "ou_3.5": {"over": 0.20466688978736222, "under": 0.7953331102126378},
            "ou_4.5": {"over": 0.0725198724323482, "under": 0.9274801275676519},
            "goal_2": {
                "home": 0.4548854624663163,
                "none": 0.21153186505838503,
                "away": 0.3335826724752986,
            },
        },
    ),
    (
        PricingState(2.8, 2.4, 71.5, 2, 3, home_red=1),
        {
            "1x2": {
                "home": 0.04055751200329258,
                "draw": 0.16671279465994993,
                "away": 0.7927296933367576,
            },
            **{market: {"over": 1.0, "under": 0.0} for market in MARKETS_OU},
            "goal_6": {
                "home": 0.26506279781569303,
                "none": 0.3280177684374009,
                "away": 0.4069194337469061,
            },
        },
    ),
    (
        PricingState(0.9, 2.3, 93.0, away_red=2),
        {
            "1x2": {
                "home": 0.013266801868780948,
                "draw": 0.9761786073187692,
                "away": 0.010554590812449876,
            },
            "ou_0.5": {"over": 0.02396310968878356, "under": 0.9760368903112164},
            "ou_1.5": {"over": 0.00028943658479441, "under": 0.9997105634152056},
            "ou_2.5": {"over": 2.3353472295890784e-06, "under": 0.9999976646527704},
            "ou_3.5": {"over": 1.4143692670472175e-08, "under": 0.9999999858563073},
            "ou_4.5": {"over": 6.855517149075047e-11, "under": 0.9999999999314448},
            "goal_1": {
                "home": 0.013337595140441357,
                "none": 0.9760368903112164,
                "away": 0.010625514548342199,
            },
        },
    ),
]


@pytest.mark.parametrize(("s", "expected"), EXACT)
def test_fair_probabilities_are_exactly_the_stored_ones(
    s: PricingState, expected: dict[str, dict[str, float]]
) -> None:
    assert fair_probabilities(s) == expected  # == on floats: bit for bit


def test_a_trusted_state_is_the_checked_one() -> None:
    fields = (1.5, 1.1, 37.0, 1, 0, 2, 1)
    trusted = PricingState.trusted(*fields)
    assert trusted == PricingState(*fields)
    assert quote(trusted) == quote(PricingState(*fields))
    with pytest.raises(AttributeError):  # still frozen
        trusted.minute = 3.0  # type: ignore[misc]


# --- offered prices -----------------------------------------------------------------------


@given(states, margins, methods)
def test_every_price_is_on_the_ladder(s: PricingState, margin: float, method: MarginMethod) -> None:
    for market, selections in quote(s, margin, method).items():
        for probability, price in selections.values():
            assert on_ladder(price) and MIN_PRICE <= price <= MAX_PRICE, market
            assert 0.0 <= probability <= 1.0


def test_the_offered_prices_for_the_first_exact_state() -> None:
    s, _ = EXACT[0]
    offered = {m: {k: str(price) for k, (_, price) in sel.items()} for m, sel in quote(s).items()}
    assert offered == {
        "1x2": {"home": "1.27", "draw": "5.10", "away": "13.50"},
        "ou_0.5": {"over": "1.01", "under": "1000.00"},
        "ou_1.5": {"over": "1.20", "under": "4.50"},
        "ou_2.5": {"over": "2.06", "under": "1.76"},
        "ou_3.5": {"over": "4.60", "under": "1.19"},
        "ou_4.5": {"over": "13.00", "under": "1.02"},
        "goal_2": {"home": "2.08", "none": "4.50", "away": "2.84"},
    }


@given(states, margins, methods)
def test_the_book_holds_the_quote(s: PricingState, margin: float, method: MarginMethod) -> None:
    layout, fair, prices = quote_book(s, margin, method)
    assert len(fair) == len(prices) == layout[-1][3]
    book = {
        market: dict(
            zip(names, zip(fair[start:stop], prices[start:stop], strict=True), strict=True)
        )
        for market, names, start, stop in layout
    }
    assert book == quote(s, margin, method)
    assert list(book) == list(quote(s, margin, method))  # same markets, same order


def ladder_slack(price: Decimal) -> float:
    """How much rounding down to `price` can add to 1/price: the unrounded price was below
    the next tick, so 1/price exceeds the implied probability by less than this."""
    above = next_tick(price)
    return 0.0 if above is None else 1 / float(price) - 1 / float(above)


# The worst slack on the whole ladder is 1/1.01 - 1/1.02 ~ 0.0097 a selection, so a book never
# carries more than ~1 % extra overround per selection from rounding; the test uses each
# price's own slack, which is exact. A 1.01 price may be the floor clamping a shorter price
# (less overround), a 1000 price the cap on a longer one (more), so those books skip that side.
@given(states, margins, methods)
def test_the_book_overround_is_the_margin_plus_ladder_rounding(
    s: PricingState, margin: float, method: MarginMethod
) -> None:
    for market, selections in quote(s, margin, method).items():
        prices = [price for _, price in selections.values()]
        overround = math.fsum(1 / float(price) for price in prices)
        if MIN_PRICE not in prices:
            assert overround >= 1 + margin - TOLERANCE, market
        if MAX_PRICE not in prices:
            slack = math.fsum(ladder_slack(price) for price in prices)
            assert overround <= 1 + margin + slack + TOLERANCE, market
            assert overround <= 1 + margin + 0.0098 * len(prices), market


@given(states, margins, methods)
def test_a_likelier_selection_never_gets_a_longer_price(
    s: PricingState, margin: float, method: MarginMethod
) -> None:
    for selections in quote(s, margin, method).values():
        ranked = sorted(selections.values())
        assert all(a[1] >= b[1] for a, b in pairwise(ranked))


def test_proportional_and_shin_on_a_known_book() -> None:
    fair = (0.5, 0.3, 0.2)
    assert implied_probabilities(fair, 0.05) == pytest.approx((0.525, 0.315, 0.21))
    shin = implied_probabilities(fair, 0.05, "shin")
    assert math.fsum(shin) == pytest.approx(1.05, abs=TOLERANCE)
    loadings = [q / p for q, p in zip(shin, fair, strict=True)]
    assert loadings[0] < loadings[1] < loadings[2]  # Shin loads the longshots more


def shin_fair_from_implied(implied: tuple[float, ...]) -> list[float]:
    """The standard inverse of Shin's model (Jullien & Salanie 1994): the fair probabilities
    a book's implied probabilities come from, with z found by bisection so they sum to 1."""
    booksum = math.fsum(implied)

    def fair(z: float) -> list[float]:
        return [
            (math.sqrt(z * z + 4 * (1 - z) * q * q / booksum) - z) / (2 * (1 - z)) for q in implied
        ]

    low, high = 0.0, 0.999
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if math.fsum(fair(mid)) > 1 else (low, mid)
    return fair(low)


@given(
    st.lists(st.floats(0.02, 1.0), min_size=2, max_size=3),
    st.floats(0.005, 0.25),
)
def test_shin_prices_invert_back_to_the_fair_probabilities(
    weights: list[float], margin: float
) -> None:
    total = math.fsum(weights)
    fair = tuple(w / total for w in weights)
    assume(math.fsum(math.sqrt(p) for p in fair) > math.sqrt(1 + margin) + 1e-6)
    implied = implied_probabilities(fair, margin, "shin")
    assert math.fsum(implied) == pytest.approx(1 + margin, abs=TOLERANCE)
    assert shin_fair_from_implied(implied) == pytest.approx(fair, abs=1e-7)


def test_shin_falls_back_to_proportional_for_a_decided_market() -> None:
    assert implied_probabilities((1.0, 0.0), 0.05, "shin") == pytest.approx((1.05, 0.0))


def test_bad_margins_are_refused() -> None:
    s = PricingState(1.0, 1.0, minute=0)
    with pytest.raises(ValueError):
        quote(s, margin=-0.01)
    with pytest.raises(ValueError):
        quote(s, method="power")  # type: ignore[arg-type]


# --- the ladder ---------------------------------------------------------------------------


def test_the_ladder_has_the_betfair_increments() -> None:
    assert len(LADDER) == 350
    assert LADDER[0] == Decimal("1.01") and LADDER[-1] == Decimal("1000")
    steps = {
        (Decimal("1.01"), Decimal("2")): Decimal("0.01"),
        (Decimal("2"), Decimal("3")): Decimal("0.02"),
        (Decimal("3"), Decimal("4")): Decimal("0.05"),
        (Decimal("4"), Decimal("6")): Decimal("0.1"),
        (Decimal("6"), Decimal("10")): Decimal("0.2"),
        (Decimal("10"), Decimal("20")): Decimal("0.5"),
        (Decimal("20"), Decimal("30")): Decimal("1"),
        (Decimal("30"), Decimal("50")): Decimal("2"),
        (Decimal("50"), Decimal("100")): Decimal("5"),
        (Decimal("100"), Decimal("1000")): Decimal("10"),
    }
    for low, high in pairwise(LADDER):
        band = next(step for (a, b), step in steps.items() if a <= low < b)
        assert high - low == band


prices = st.floats(min_value=0.0, max_value=5000.0)


@given(prices)
def test_ladder_floor_is_the_largest_ladder_price_not_above(price: float) -> None:
    floor = ladder_floor(price)
    assert on_ladder(floor)
    if price < 1.01:
        assert floor == MIN_PRICE
        return
    assert float(floor) <= price * (1 + 1e-9)  # float noise: 1/(1/2.5) still offers 2.50
    above = next_tick(floor)
    assert above is None or float(above) > price


@given(st.decimals(min_value=0, max_value=5000, places=4))
def test_ladder_floor_of_a_decimal_is_exact(price: Decimal) -> None:
    floor = ladder_floor(price)
    assert on_ladder(floor)
    assert floor <= price or floor == MIN_PRICE
    above = next_tick(floor)
    assert above is None or above > price


@given(st.sampled_from(LADDER))
def test_ladder_prices_floor_to_themselves(price: Decimal) -> None:
    assert ladder_floor(price) == price
    assert ladder_floor(float(price)) == price
    assert ladder_floor(1 / (1 / float(price))) == price


@given(st.lists(st.floats(min_value=0.0, max_value=2.0), max_size=20))
def test_offered_prices_floor_the_inverse_and_cap_at_1000(implied: list[float]) -> None:
    expected = [MAX_PRICE if q * 1000 <= 1 else ladder_floor(1 / q) for q in implied]
    assert offered_prices(implied) == expected


def test_offered_prices_refuse_nan() -> None:
    with pytest.raises(ValueError):
        offered_prices([0.5, math.nan])


def test_ladder_edges() -> None:
    assert ladder_floor(math.inf) == MAX_PRICE
    assert ladder_floor(Decimal("1E+9")) == MAX_PRICE
    assert ladder_floor(-3.0) == MIN_PRICE
    assert str(ladder_floor(2.5)) == "2.50"
    assert on_ladder(Decimal("2.5")) and on_ladder(Decimal("1000"))
    assert not on_ladder(Decimal("2.51")) and not on_ladder(Decimal("NaN"))
    with pytest.raises(ValueError):
        ladder_floor(math.nan)


def test_shin_with_a_margin_lost_in_rounding_prices_a_near_certain_market() -> None:
    # Found by hypothesis: 1 + 5e-324 rounds to 1, the fair probabilities sum to just over
    # it, and Newton stepped below z = 0 (math domain error).
    s = PricingState(home_rate=0.9420080533154676, away_rate=2.220446049250313e-16, minute=0.0)
    book = quote(s, 5e-324, "shin")
    assert book["1x2"]["away"][1] == MAX_PRICE
    assert all(on_ladder(price) for sels in book.values() for _, price in sels.values())
