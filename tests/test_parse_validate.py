"""Parsing and validation rules, one by one, as plain function calls."""

from __future__ import annotations

import pytest

from operators.events import Clock, Deposit
from operators.markets import ALLOWED, IllegalTransition, Market
from operators.parse import REJECTS_KEY, WALLET_SHARD_KEYS, RawLine, parse_line, route, wallet_key
from operators.rows import TABLE_OF, FeedGapRow, MatchRow, Reject
from operators.validate import SeqTracker
from sinks.tables import tables
from tests.feedkit import Feed, run

CLOCK = b'{"v":1,"provider":"p","match_id":"m","seq":3,"ts":5,"type":"clock","minute":1,"second":2}'


def reason(data: bytes) -> str:
    result = parse_line(RawLine("t:1", data))
    assert isinstance(result, Reject), result
    return result.reason


def test_a_valid_line_becomes_its_typed_event() -> None:
    ev = parse_line(RawLine("t:1", CLOCK))
    assert ev == Clock(v=1, provider="p", match_id="m", seq=3, ts=5, minute=1, second=2)
    dep = parse_line(
        RawLine("t:2", b'{"v":1,"ts":1,"type":"deposit","user_id":"u","amount":"10.50"}')
    )
    assert isinstance(dep, Deposit) and str(dep.amount) == "10.50"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"v":1,"provider":"p"', "malformed_json"),
        (b"not json", "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"v":1,"provider":"p","match_id":"m","seq":1,"ts":5,"type":"throw_in"}', "unknown_type"),
        (b'{"v":1,"provider":"p","match_id":"m","seq":1,"ts":5}', "missing_field:type"),
        (CLOCK.replace(b'"seq":3', b'"seq":"3"'), "invalid_field:seq"),
        (CLOCK.replace(b'"seq":3,', b""), "missing_field:seq"),
        (CLOCK.replace(b'"minute":1', b'"minute":-1'), "invalid_field:minute"),
        (CLOCK.replace(b'"ts":5', b'"ts":-5'), "invalid_field:ts"),
        (CLOCK.replace(b'"v":1', b'"v":2'), "invalid_field:v"),
        (CLOCK.replace(b'"minute":1', b'"minute":1e400'), "invalid_field:minute"),
        (b'{"v":1,"ts":1,"type":"deposit","user_id":"u","amount":"abc"}', "invalid_field:amount"),
        (b'{"v":1,"ts":1,"type":"deposit","user_id":"u","amount":"NaN"}', "invalid_field:amount"),
        (b'{"v":1,"ts":1,"type":"deposit","user_id":"u","amount":"-5"}', "invalid_field:amount"),
        (
            b'{"v":1,"provider":"p","match_id":"m","seq":1,"ts":1,"type":"fixture","home":"a",'
            b'"away":"b","kickoff":1,"home_rate":NaN,"away_rate":1}',
            "malformed_json",
        ),
        (
            b'{"v":1,"provider":"p","match_id":"m","seq":1,"ts":1,"type":"goal","goal_id":"g",'
            b'"team":"middle","state":"possible"}',
            "invalid_field:team",
        ),
        (b"{" * 100_000, "line_too_long"),
    ],
)
def test_bad_lines_are_rejects_naming_the_problem(line: bytes, expected: str) -> None:
    assert reason(line) == expected


def test_a_reject_keeps_the_source_and_the_raw_line() -> None:
    bad = parse_line(RawLine("feed.jsonl:7", b'{"v":1,"seq"'))
    assert isinstance(bad, Reject)
    assert (bad.source, bad.raw) == ("feed.jsonl:7", '{"v":1,"seq"')
    assert "truncated" in bad.detail


def keys(data: bytes) -> list[str]:
    return [k for k, _ in route(RawLine("", data))]


def test_lines_are_routed_to_their_match_and_the_wallets_that_need_them() -> None:
    assert keys(CLOCK) == ["m:m"]  # match keys never collide with wallet or Betfair keys
    assert keys(b'{"type":"deposit","user_id":"u1"}') == [wallet_key("u1")]
    assert keys(b'{"type":"bet","user_id":"u1","match_id":"m"}') == ["m:m", wallet_key("u1")]
    assert keys(b'{"type":"match_end","match_id":"m"}') == ["m:m", *WALLET_SHARD_KEYS]
    assert keys(b'{"type":"deposit","user_id":"u1","match_id":"m"}') == [wallet_key("u1")]
    assert keys(b'{"type":"deposit","user_id":"u1","provider":1e310}') == [wallet_key("u1")]
    assert keys(b'{"match_id": 7}') == [REJECTS_KEY]
    assert keys(b"\xff\xfe") == [REJECTS_KEY]
    assert wallet_key("u1") == wallet_key("u1") and wallet_key("u1").startswith("$")


def test_seq_tracker_duplicate_gap_and_out_of_order() -> None:
    t = SeqTracker()
    assert t.check(1) is None and t.record(1) is None
    assert t.check(1) == "duplicate"
    assert t.record(4) == (2, 3)  # a gap: accepted, recorded
    assert t.check(3) == "out_of_order"  # skipped, arriving late
    assert t.check(4) == "duplicate"
    assert t.check(5) is None


def feed_reasons(f: Feed) -> list[str]:
    return [r.reason for r in run(f.lines) if isinstance(r, Reject)]


def test_a_line_for_a_match_without_fixture_is_rejected() -> None:
    f = Feed()
    f.add(0, "period_start", period=1)
    assert feed_reasons(f) == ["unknown_match"]


def test_ts_more_than_a_day_from_kickoff_is_rejected() -> None:
    f = Feed().fixture().kick_off()
    f.add(86_400_001, "clock", minute=1, second=0)
    assert feed_reasons(f) == ["ts_out_of_range"]


def test_a_goal_confirmed_that_was_never_possible_is_rejected() -> None:
    f = Feed().fixture().kick_off()
    f.add(1000, "goal", goal_id="g9", team="home", state="confirmed")
    assert feed_reasons(f) == ["unknown_goal"]


def test_a_gap_is_accepted_and_recorded() -> None:
    f = Feed().fixture().kick_off()
    f.seq += 2
    f.add(1000, "clock", minute=0, second=1)
    rows = run(f.lines)
    assert [r for r in rows if isinstance(r, FeedGapRow)] == [
        FeedGapRow("sim", "m1", 3, 4, f.kickoff + 1000)
    ]
    assert not [r for r in rows if isinstance(r, Reject)]


def test_lines_after_match_end_are_rejected_and_the_official_score_wins() -> None:
    f = Feed().fixture().kick_off()
    f.add(1000, "goal", goal_id="g1", team="away", state="possible")
    f.add(2000, "goal", goal_id="g1", team="away", state="confirmed")
    f.add(3000, "match_end", home_score=1, away_score=1)
    f.add(4000, "clock", minute=0, second=4)
    rows = run(f.lines)
    assert [r.reason for r in rows if isinstance(r, Reject)] == ["score_mismatch", "match_over"]
    last = [r for r in rows if isinstance(r, MatchRow)][-1]
    assert (last.home_score, last.away_score, last.status) == (1, 1, "ended")


def test_red_cards_are_counted_per_team() -> None:
    f = Feed().fixture().kick_off()
    f.add(1000, "card", team="home", player="a", color="yellow")
    f.add(2000, "card", team="home", player="a", color="second_yellow")
    f.add(3000, "card", team="away", player="b", color="red")
    last = [r for r in run(f.lines) if isinstance(r, MatchRow)][-1]
    assert (last.home_red, last.away_red) == (1, 1)


def test_every_row_type_matches_its_table() -> None:
    schema = tables()
    for kind, name in TABLE_OF.items():
        assert kind._fields == schema[name].columns, name


def test_illegal_transitions_are_impossible() -> None:
    out: list = []
    settled = Market("m", "1x2", status="SETTLED", version=5)
    for status in ("OPEN", "SUSPENDED", "CLOSED"):
        with pytest.raises(IllegalTransition):
            settled.move(status, "x", 0, out)
    closed = Market("m", "1x2", status="CLOSED", version=2)
    with pytest.raises(IllegalTransition):
        closed.move("OPEN", "x", 0, out)
    with pytest.raises(IllegalTransition):  # a price change on a closed market
        closed.move("CLOSED", "x", 0, out, prices={})
    assert out == [] and ALLOWED["SETTLED"] == frozenset()
