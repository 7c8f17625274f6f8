"""Event-time order across input partitions (operators/ordering.py), with plain calls: the
wallets' lines come out in the order of the partitions read as one stream, whatever order
the partitions' batches arrive in."""

from __future__ import annotations

import random

from operators.ordering import (
    END,
    MAX_ORDER_JUMP_MS,
    EventTimeOrder,
    Ordered,
    PartitionMark,
    Router,
    order_time,
)
from operators.parse import RawLine, wallet_key
from tests.feedkit import KICKOFF, bet_line, deposit_line


def place(ts: int, part: int, n: int) -> Ordered:
    return Ordered(ts, part, n, RawLine(f"p{part}:{n}", b""))


def test_an_item_waits_until_every_other_partition_has_passed_it() -> None:
    order: EventTimeOrder[str] = EventTimeOrder()
    order.add(place(10, 1, 0), "b")
    order.mark(PartitionMark(1, 2, 10))
    assert list(order.ready()) == []  # partition 0 not heard from: it could send anything
    order.mark(PartitionMark(0, 2, 10))
    assert list(order.ready()) == []  # partition 0 may still send a line at 10: it goes first
    order.add(place(10, 0, 0), "a")
    order.mark(PartitionMark(0, 2, 10))
    assert list(order.ready()) == ["a"]  # at 10, partition 0 before 1; "b" waits for 0's next
    order.mark(PartitionMark(0, 2, 11))
    assert list(order.ready()) == ["b"]


def test_the_release_order_is_the_same_for_any_interleaving_of_batches() -> None:
    rng = random.Random(5)
    times = [sorted(rng.randrange(0, 50) for _ in range(40)) for _ in range(3)]  # ties too
    expected = sorted((ts, p, n) for p, part in enumerate(times) for n, ts in enumerate(part))
    for trial in range(20):
        order: EventTimeOrder[tuple[int, int, int]] = EventTimeOrder()
        got: list[tuple[int, int, int]] = []
        sent = [0, 0, 0]
        turns = [p for p in range(3) for _ in range(7)]  # 6 batches of 7 and the end, each
        random.Random(trial).shuffle(turns)
        for p in turns:
            batch = times[p][sent[p] : sent[p] + 7]
            for ts in batch:
                order.add(place(ts, p, sent[p]), (ts, p, sent[p]))
                sent[p] += 1
            order.mark(PartitionMark(p, 3, batch[-1] if batch else END))
            got.extend(order.ready())
        assert got == expected, f"trial {trial}"


def test_a_partition_idle_for_now_lets_the_others_pass_until_its_next_line() -> None:
    """Live: an input partition with nothing to read says END; the shards go past it, and
    its next batch's mark holds them again (the latest mark of a partition counts)."""
    order: EventTimeOrder[str] = EventTimeOrder()
    order.mark(PartitionMark(0, 2, END))  # partition 0: nothing to read now
    order.add(place(10, 1, 0), "a")
    order.mark(PartitionMark(1, 2, 10))
    assert list(order.ready()) == ["a"]
    order.add(place(5, 0, 0), "late")  # partition 0 again: applied on arrival
    order.mark(PartitionMark(0, 2, 5))
    assert list(order.ready()) == ["late"]
    order.add(place(20, 1, 1), "b")
    order.mark(PartitionMark(1, 2, 20))
    assert list(order.ready()) == []  # partition 0 is at 5 now: it may send a line before 20
    order.mark(PartitionMark(0, 2, END))
    assert list(order.ready()) == ["b"]


def test_a_line_far_ahead_of_its_partition_keeps_the_order_time_before_it() -> None:
    assert order_time(0, 100) == 100
    assert order_time(100, 50) == 100  # an earlier time keeps its place
    assert order_time(100, None) == 100
    assert order_time(100, 100 + MAX_ORDER_JUMP_MS + 1) == 100  # rejected as ts_out_of_range
    assert order_time(100, 100 + MAX_ORDER_JUMP_MS) == 100 + MAX_ORDER_JUMP_MS


def test_the_router_places_wallet_lines_and_marks_every_shard_after_each_batch() -> None:
    router = Router(1, 3, (5, KICKOFF))
    deposit = RawLine("f:6", deposit_line(KICKOFF + 10, 0, "u1", "10.00"))
    bet = RawLine("f:7", bet_line(KICKOFF + 5, 1, "b1", "u1", "1x2", "home", "2.00", "1.90"))
    groups = dict(router.route([deposit, bet]))
    shard = groups[wallet_key("u1")]
    assert [(o.ts, o.part, o.n) for o in shard[:2]] == [(KICKOFF + 10, 1, 5), (KICKOFF + 10, 1, 6)]
    assert shard[-1] == PartitionMark(1, 3, KICKOFF + 10)
    assert all(
        items[-1] == PartitionMark(1, 3, KICKOFF + 10)
        for key, items in groups.items()
        if key.startswith("$")
    )
    assert router.position() == (7, KICKOFF + 10)
    assert all(items == [PartitionMark(1, 3, END)] for _, items in router.end())
