"""Replay source: recorded feed files, one partition per file, resumable by line number."""

from __future__ import annotations

import bz2
import gzip
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import msgspec
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from operators.parse import RawLine

BATCH_LINES = 1000


class _Ts(msgspec.Struct):
    ts: object = None


_ts_decoder = msgspec.json.Decoder(_Ts)


def open_feed(path: Path) -> IO[bytes]:
    """Open a recorded feed, decompressing `.gz` and `.bz2` transparently."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    return path.open("rb")


def line_ts(data: bytes) -> int | None:
    """The line's event time, if it has a readable one (for pacing only)."""
    try:
        ts = _ts_decoder.decode(data).ts
    except msgspec.MsgspecError:
        return None
    return ts if isinstance(ts, int) else None


class Progress:
    """Lines read so far in this process, for the progress bar and the summary."""

    lines = 0
    bytes = 0


class _FilePartition(StatefulSourcePartition[RawLine, int]):
    def __init__(self, path: Path, skip: int, speed: float, batch_lines: int) -> None:
        self.path = path
        self.name = path.name
        self.lineno = skip
        self.speed = speed
        self.batch_lines = batch_lines
        self.file = open_feed(path)
        self.lines: Iterator[bytes] = iter(self.file)
        for _ in range(skip):
            next(self.lines, None)
        self.pending: bytes | None = None
        self.first_ts: int | None = None
        self.started = time.monotonic()
        self.wake_at: datetime | None = None

    def next_batch(self) -> list[RawLine]:
        """Called by Bytewax whenever it wants more input: up to `batch_lines` lines."""
        batch: list[RawLine] = []
        while len(batch) < self.batch_lines:
            data = self.pending if self.pending is not None else next(self.lines, None)
            self.pending = None
            if data is None:
                if not batch:
                    raise StopIteration
                break
            data = data.rstrip(b"\r\n")
            if not data:
                self.lineno += 1
                continue
            if self.speed > 0 and self._not_yet(data):
                self.pending = data + b"\n"
                break
            self.lineno += 1
            batch.append(RawLine(f"{self.name}:{self.lineno}", data))
        Progress.lines += len(batch)
        return batch

    def _not_yet(self, data: bytes) -> bool:
        """Pacing by event time: is this line due later than now at `speed`x?"""
        ts = line_ts(data)
        if ts is None:
            return False
        if self.first_ts is None:
            self.first_ts = ts
        due = self.started + (ts - self.first_ts) / 1000 / self.speed
        wait = due - time.monotonic()
        if wait <= 0:
            return False
        self.wake_at = datetime.now(UTC) + timedelta(seconds=wait)
        return True

    def next_awake(self) -> datetime | None:
        """Called by Bytewax to know when to ask again; None means right away."""
        wake, self.wake_at = self.wake_at, None
        return wake

    def snapshot(self) -> int:
        """Lines consumed so far, including a line held back by pacing."""
        return self.lineno

    def close(self) -> None:
        self.file.close()


class ReplaySource(FixedPartitionedSource[RawLine, int]):
    """Recorded feed files (`.jsonl`, `.gz`, `.bz2`), read in order, each by one worker.

    Out: `RawLine("<file name>:<line number>", bytes)`.
    """

    def __init__(
        self, paths: list[Path], speed: float = 0.0, batch_lines: int = BATCH_LINES
    ) -> None:
        self.paths = {f"{i}:{p.name}": p for i, p in enumerate(paths)}
        self.speed = speed
        self.batch_lines = batch_lines

    def list_parts(self) -> list[str]:
        return list(self.paths)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        return _FilePartition(self.paths[for_part], resume_state or 0, self.speed, self.batch_lines)
