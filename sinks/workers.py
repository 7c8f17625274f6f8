"""Sinks whose every worker writes the rows it holds itself: no row changes worker (or
process) on its way out. Bytewax 0.21 has no such stateful sink, so this module works
around it, in one place.

- A `FixedPartitionedSink` routes each item to the worker that is primary for the item's
  partition. If every worker lists its own partition (`w0000`, `w0001`, ...) and nothing
  else, it is that partition's only candidate, hence its primary; and if `part_fn` names
  the partition of the worker it runs on, every item stays where it is.
- A worker learns its index from `WorkerIndex`, a `DynamicSource` that emits nothing: Bytewax
  builds it on every worker, with the worker's index, before it asks the sinks for their
  partitions. The index is kept by thread id, because pyo3 gives a worker thread a fresh
  Python thread state (and so a fresh `threading.local`) at every call.
- A run resumed with fewer workers still owns the partitions of the workers it lost: each
  worker also lists those of the old partitions that fall to it (`part % workers`), so their
  snapshots are built and handed over, up to `KNOWN_PARTS` partitions.

`tests/test_workers.py` pins this to the Bytewax version it was written against.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from typing import Generic, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

KNOWN_PARTS = 256  # partitions listed; a resumed run keeps the sink state of this many
_INDEX: dict[int, tuple[int, int]] = {}  # thread id -> (worker index, worker count)

X = TypeVar("X")
S = TypeVar("S")


def part_name(index: int) -> str:
    return f"w{index:04d}"


def part_index(name: str) -> int:
    return int(name[1:])


def this_worker() -> tuple[int, int]:
    """The (index, count) of the worker running this thread (see `WorkerIndex`)."""
    try:
        return _INDEX[threading.get_ident()]
    except KeyError:
        raise RuntimeError(
            "this worker's index is unknown: a flow with a per-worker sink needs "
            "sinks.workers.learn_worker_index(flow) before its outputs"
        ) from None


class _Nothing(StatelessSourcePartition[None]):
    def next_batch(self) -> list[None]:
        raise StopIteration


class WorkerIndex(DynamicSource[None]):
    """Emits nothing; records the index of each worker it is built on."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Nothing:
        _INDEX[threading.get_ident()] = (worker_index, worker_count)
        return _Nothing()


def learn_worker_index(flow: Dataflow) -> None:
    """Add the step that tells each worker its index; before any per-worker sink."""
    op.input("worker_index", flow, WorkerIndex())


class PerWorkerSink(FixedPartitionedSink[X, S], Generic[X, S]):
    """A sink with one partition per worker, each written by its own worker.

    Subclasses give `build_worker_part(index, resume_state)`; `index` is the partition's,
    which is the worker's own except for the partitions of workers a resumed run lost."""

    def list_parts(self) -> list[str]:
        """Called on each worker: its own partition, and those of lost workers."""
        index, count = this_worker()
        return [part_name(p) for p in range(index, max(KNOWN_PARTS, count), count)]

    def part_fn(self, item_key: str) -> int:
        """The partition of the worker the item is on: the index into every worker's parts
        in name order, which is the worker index."""
        return this_worker()[0]

    def build_part(
        self, step_id: str, for_part: str, resume_state: S | None
    ) -> StatefulSinkPartition[X, S]:
        return self.build_worker_part(part_index(for_part), resume_state)

    @abstractmethod
    def build_worker_part(self, index: int, resume_state: S | None) -> StatefulSinkPartition[X, S]:
        """Called once per partition this worker is primary for."""
