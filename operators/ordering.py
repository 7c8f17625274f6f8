"""Event-time order across input partitions, for what needs one: a wallet's deposits, bets
and settlements come from several partitions (bets and match ends with their match,
deposits with their user) and must be applied in the same order at any scale, that of the
input read as one stream (`oddsflow replay --merge`).

Lines go by order time (`order_time`), then partition index (the files in the order given),
then place in the partition. `Router` gives every line routed to a wallet shard its place
(`Ordered`) and, after every batch, tells every shard how far its partition has come
(`PartitionMark`); `EventTimeOrder` releases a shard's lines once no partition can still
send one before them. A match's lines need none of this while they all come from one
partition (a file split by match, a topic keyed by match): they keep its order.

Plain Python: no Bytewax here.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterator
from typing import Generic, NamedTuple, TypeVar

import msgspec

from operators.parse import WALLET_SHARD_KEYS, RawLine
from operators.providers import route_line

END = sys.maxsize  # the order time of a partition that has ended
MAX_ORDER_JUMP_MS = 86_400_000  # a day: how far a line's time may move its partition's on


def order_time(order: int, ts: int | None) -> int:
    """A partition's order time after a line with time `ts` (None: none readable): the
    largest time read so far. A line with no time, an earlier one, or one more than
    `MAX_ORDER_JUMP_MS` ahead (rejected as `ts_out_of_range`; it would hold the rest of its
    partition back) keeps its place after the line before it."""
    if ts is None or ts <= order or (order and ts - order > MAX_ORDER_JUMP_MS):
        return order
    return ts


T = TypeVar("T")


class _Time(msgspec.Struct):
    ts: object = None
    pt: object = None  # Betfair's publish time


_time_decoder = msgspec.json.Decoder(_Time)


def line_ts(data: bytes) -> int | None:
    """The line's event time (`ts`, or Betfair's `pt`), if it has a readable one."""
    try:
        line = _time_decoder.decode(data)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None
    for value in (line.ts, line.pt):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


class Ordered(NamedTuple):
    """A line routed to a wallet shard, with its place in the order: (ts, part, n)."""

    ts: int
    part: int
    n: int
    raw: RawLine


class PartitionMark(NamedTuple):
    """Partition `part` of `parts` has sent every line up to order time `ts` (END: all)."""

    part: int
    parts: int
    ts: int


Group = tuple[str, list]  # (match key, [RawLine]) or (shard key, [Ordered | PartitionMark])


class Router:
    """One input partition's lines -> `(key, [item, ...])` groups, one per key and batch:
    raw lines for matches, `Ordered` lines and a closing `PartitionMark` for every wallet
    shard. Resumable from `position()`."""

    def __init__(self, part: int, parts: int, position: tuple[int, int] = (0, 0)) -> None:
        self.part = part
        self.parts = parts
        self.n, self.ts = position  # lines routed, order time of the last one

    def position(self) -> tuple[int, int]:
        return self.n, self.ts

    def route(self, lines: list[RawLine]) -> list[Group]:
        groups: dict[str, list] = {}
        part, n, order = self.part, self.n, self.ts
        for raw in lines:
            routed = route_line(raw)
            if not routed:
                n += 1
                continue
            event = routed[0][1].event  # decoded by `route` (native lines): every event has a ts
            order = order_time(order, event.ts if event is not None else line_ts(raw.data))
            for key, item in routed:
                group = groups.get(key)
                if group is None:
                    group = groups[key] = []
                wallet = key[:1] == "$"  # is_wallet_key, inlined: this runs for every line
                group.append(Ordered(order, part, n, item) if wallet else item)
            n += 1
        self.n, self.ts = n, order
        mark = PartitionMark(part, self.parts, order)
        for shard in WALLET_SHARD_KEYS:
            groups.setdefault(shard, []).append(mark)
        return list(groups.items())

    def end(self) -> list[Group]:
        """The partition has ended (or, live, has nothing to read for now): every shard may
        go past it."""
        mark = PartitionMark(self.part, self.parts, END)
        return [(shard, [mark]) for shard in WALLET_SHARD_KEYS]


class EventTimeOrder(Generic[T]):
    """Items of several partitions, released in (ts, part, n) order: an item goes once
    every other partition has sent a mark past it (each partition's items come in order)."""

    def __init__(self) -> None:
        self.heap: list[tuple[int, int, int, T]] = []
        self.marks: dict[int, int] = {}
        self.parts = 0  # unknown until the first mark

    def add(self, place: Ordered, item: T) -> None:
        """`item` at the place of the line `place`."""
        heapq.heappush(self.heap, (place.ts, place.part, place.n, item))

    def mark(self, mark: PartitionMark) -> None:
        """A partition's marks come in order: the latest holds (a live partition that was
        idle, END, comes back with its next line's order time)."""
        self.parts = mark.parts
        self.marks[mark.part] = mark.ts

    def ready(self) -> Iterator[T]:
        """Pop the items no partition can still send one before, in order."""
        heap = self.heap
        if not heap:
            return
        if not self.parts or len(self.marks) < self.parts:
            return  # a partition not heard from yet could send anything
        lowest = sorted((ts, part) for part, ts in self.marks.items())[:2]
        while heap:
            ts, part, _, _ = heap[0]
            others = [m for m in lowest if m[1] != part][:1]
            if others and others[0] <= (ts, part):
                break
            yield heapq.heappop(heap)[3]

    def drain(self) -> Iterator[T]:
        """Every item still held, in order (the input has ended)."""
        while self.heap:
            yield heapq.heappop(self.heap)[3]
