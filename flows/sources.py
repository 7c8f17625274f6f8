"""Replay source: recorded files, each a partition (or all merged into one by event time),
each routing its own lines (`operators.ordering.Router`), resumable by its position."""

from __future__ import annotations

import bz2
import gzip
import heapq
import io
import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, cast

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from operators import parse
from operators.ordering import Group, Router, line_ts, order_time
from operators.parse import RawLine
from operators.providers import FILE_FORMATS, sniff, too_long
from operators.signing import SIGNATURE_HEX, split_signed

BATCH_LINES = 1000
READ_BUFFER = 1 << 16
MAX_PACE_JUMP_MS = 60_000  # event time a paced replay waits for at most between two lines
FORMATS = ("auto", "native", "betfair", *FILE_FORMATS)


def open_feed(path: Path) -> IO[bytes]:
    """Open a recorded feed, decompressing `.gz` and `.bz2` transparently."""
    if path.suffix == ".gz":  # a C-level line reader over the decompressor's Python one
        return cast(IO[bytes], io.BufferedReader(gzip.open(path, "rb"), READ_BUFFER))
    if path.suffix == ".bz2":
        return cast(IO[bytes], io.BufferedReader(bz2.open(path, "rb"), READ_BUFFER))
    return path.open("rb")


def file_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    with open_feed(path) as f:
        return sniff(path, f.read(256))


def read_lines(path: Path, fmt: str = "auto") -> Iterator[RawLine]:
    """Every line of a recorded file as `RawLine("<name>:<line>", bytes)`, blank lines
    skipped; whole-file formats (StatsBomb) through their adapter. A signed line
    (`<signature>\t<line>`, operators/signing.py) comes with its signature. A line longer
    than the line limit of the file's format is cut there and comes refused as
    `line_too_long` (`operators.providers.too_long`)."""
    fmt = file_format(path, fmt)
    if fmt in FILE_FORMATS:
        yield from FILE_FORMATS[fmt](path)
        return
    name = path.name
    cut = read_limit(fmt)
    new_line = tuple.__new__  # a RawLine from its fields, without NamedTuple's slower __new__
    with open_feed(path) as f:
        for n, data in enumerate(bounded_lines(f, cut), 1):
            if len(data) == cut and not data.endswith(b"\n"):
                yield too_long(RawLine(f"{name}:{n}", data), fmt)
                continue
            data = data.rstrip(b"\r\n")
            if data:
                data, signature = split_signed(data)
                yield new_line(RawLine, (f"{name}:{n}", data, "", signature, None, 0.0))


def read_limit(fmt: str) -> int:
    """The most bytes read of one line of a file of format `fmt`: its format's line limit,
    a signature, its tab and the newline, and one more byte to tell an overlong line."""
    return parse.LIMITS.max_bytes(fmt) + SIGNATURE_HEX + 3


def bounded_lines(f: IO[bytes], limit: int) -> Iterator[bytes]:
    """The lines of `f`, each cut after `limit` bytes, so a hostile file cannot make one
    line fill the memory; a cut line is `limit` bytes long and does not end with a newline
    (the rest of it is skipped)."""
    readline = f.readline
    while line := readline(limit):
        if len(line) == limit and not line.endswith(b"\n"):
            while (rest := readline(limit)) and not rest.endswith(b"\n"):
                pass  # skip the rest of the overlong line
        yield line


def merged_lines(paths: list[Path], fmt: str = "auto") -> Iterator[RawLine]:
    """Several files as one stream in event-time order: by each file's order time (the
    largest time read so far in it, `operators/ordering.py`), then by the files' order."""

    def timed(path: Path) -> Iterator[tuple[int, RawLine]]:
        last = 0
        for raw in read_lines(path, fmt):
            last = order_time(last, line_ts(raw.data))
            yield last, raw

    for _, raw in heapq.merge(*(timed(p) for p in paths), key=lambda t: t[0]):
        yield raw


class Progress:
    """Lines read so far in this process, for the progress bar and the summary."""

    lines = 0


Position = tuple[int, int]  # lines emitted, order time of the last (`Router.position`)


def lines_before(position: Position) -> int:
    """The lines a partition emitted before its snapshot `position`: a resume skips them."""
    return position[0]


class _Partition(StatefulSourcePartition[Group, Position]):
    def __init__(
        self, lines: Iterator[RawLine], router: Router, speed: float, batch_lines: int
    ) -> None:
        self.router = router
        self.lines = itertools.islice(lines, router.n, None)
        self.ended = False
        self.speed = speed
        self.batch_lines = batch_lines
        self.pending: RawLine | None = None
        self.first_ts: int | None = None
        self.paced_ts = 0
        self.started = time.monotonic()
        self.wake_at: datetime | None = None

    def next_batch(self) -> list[Group]:
        """Called by Bytewax whenever it wants more input: up to `batch_lines` lines, routed
        (one item per key); after the last line, the partition's end (`Router.end`)."""
        batch: list[RawLine] = []
        while len(batch) < self.batch_lines:
            raw = self.pending if self.pending is not None else next(self.lines, None)
            self.pending = None
            if raw is None:
                if batch:
                    break
                if self.ended:
                    raise StopIteration
                self.ended = True
                return self.router.end()
            if self.speed > 0 and self._not_yet(raw):
                self.pending = raw
                break
            batch.append(raw)
        Progress.lines += len(batch)
        return self.router.route(batch) if batch else []

    def _not_yet(self, raw: RawLine) -> bool:
        """Pacing by event time: is this line due later than now at `speed`x?

        The paced clock follows the lines' `ts` but jumps at most `MAX_PACE_JUMP_MS` at a
        time, so one line with a far-future `ts` (which the flow rejects) cannot stall the
        replay; lines at or before the paced clock are due at once."""
        ts = line_ts(raw.data)
        if ts is None:
            return False
        if self.first_ts is None:
            self.first_ts = self.paced_ts = ts
        if ts > self.paced_ts:
            self.paced_ts = min(ts, self.paced_ts + MAX_PACE_JUMP_MS)
        due = self.started + (self.paced_ts - self.first_ts) / 1000 / self.speed
        wait = due - time.monotonic()
        if wait <= 0:
            return False
        self.wake_at = datetime.now(UTC) + timedelta(seconds=wait)
        return True

    def next_awake(self) -> datetime | None:
        """Called by Bytewax to know when to ask again; None means right away."""
        wake, self.wake_at = self.wake_at, None
        return wake

    def snapshot(self) -> Position:
        """Lines emitted so far (a line held back by pacing is not among them), and the
        order time of the last."""
        return self.router.position()


class ReplaySource(FixedPartitionedSource[Group, Position]):
    """Recorded feed files read in order: one partition per file, or with `merge` one
    partition of all files in event-time order (a feed and its bets, a Betfair market and
    its sports-data stream). Each partition is read by one worker and routes its own lines.

    Out: `(key, [item, ...])` per key and batch (`operators.ordering.Router`); lines are
    `RawLine("<file name>:<line number>", bytes)`.
    """

    def __init__(
        self,
        paths: list[Path],
        speed: float = 0.0,
        fmt: str = "auto",
        merge: bool = False,
        batch_lines: int = BATCH_LINES,
    ) -> None:
        self.paths = paths
        self.parts = ["merged"] if merge else [f"{i}:{p.name}" for i, p in enumerate(paths)]
        self.speed = speed
        self.fmt = fmt
        self.batch_lines = batch_lines

    def list_parts(self) -> list[str]:
        return list(self.parts)

    def build_part(
        self, step_id: str, for_part: str, resume_state: Position | int | None
    ) -> _Partition:
        index = self.parts.index(for_part)
        if for_part == "merged":
            lines = merged_lines(self.paths, self.fmt)
        else:
            lines = read_lines(self.paths[index], self.fmt)
        if isinstance(resume_state, int):  # a store of a version before positions
            resume_state = (resume_state, 0)
        router = Router(index, len(self.parts), resume_state or (0, 0))
        return _Partition(lines, router, self.speed, self.batch_lines)
