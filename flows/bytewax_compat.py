"""Every place oddsflow leans on Bytewax 0.21.1's internals or works around what it lacks.

Each workaround says what Bytewax 0.21.1 does and why we work around it; re-check each one
on a Bytewax upgrade (`tests/test_bytewax_compat.py` pins the version and tests each):

- `PerWorkerSink`, `learn_worker_index`, `this_worker`: a stateful sink whose every worker
  writes what it holds (Bytewax has none).
- `Snapshot`, `Snapshots`, `resume_state`: state snapshots pickled only when needed
  (Bytewax asks for a snapshot of every key at every epoch, recovery or not).
- `init_recovery`, `drop_uncommitted_snapshots`, `resume_point`: SQL on Bytewax's recovery
  tables (a killed run's uncommitted snapshots are kept and later read; where a run will
  resume is not said).
- `run_flow`, `await_earlier_members`: one way to run a flow alone or as a cluster member
  (`cli_main` vs `run_main`/`cluster_main`, and timely's one-second connect retries).
- `FlowFailure`: sinks must not raise in `close` while Bytewax unwinds from a failed step.
"""

from __future__ import annotations

import pickle
import sqlite3
import threading
import time
import weakref
from abc import abstractmethod
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

if TYPE_CHECKING:
    from bytewax.recovery import RecoveryConfig

BYTEWAX_VERSION = "0.21.1"  # the version every workaround below was checked against

X = TypeVar("X")
S = TypeVar("S")

# --- per-worker sinks --------------------------------------------------------------------

KNOWN_PARTS = 256  # partitions listed; a resumed run keeps the sink state of this many
_INDEX: dict[int, tuple[int, int]] = {}  # thread id -> (worker index, worker count)


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
            "flows.bytewax_compat.learn_worker_index(flow) before its outputs"
        ) from None


class _Nothing(StatelessSourcePartition[None]):
    def next_batch(self) -> list[None]:
        raise StopIteration


class WorkerIndex(DynamicSource[None]):
    """Emits nothing; records the index of each worker it is built on.

    Bytewax 0.21.1 tells a sink partition nothing of the worker it runs on, but builds every
    dynamic source on every worker, with the worker's index, before it asks the sinks for
    their partitions. The index is kept by thread id: pyo3 gives a worker thread a fresh
    Python thread state (so a fresh `threading.local`) at every call."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Nothing:
        _INDEX[threading.get_ident()] = (worker_index, worker_count)
        return _Nothing()


def learn_worker_index(flow: Dataflow) -> None:
    """Add the step that tells each worker its index; before any per-worker sink."""
    op.input("worker_index", flow, WorkerIndex())


class PerWorkerSink(FixedPartitionedSink[X, S], Generic[X, S]):
    """A sink with one partition per worker, each written by its own worker: no row changes
    worker (or process) on its way out.

    Bytewax 0.21.1 has no such stateful sink: a `FixedPartitionedSink` routes each item to
    the worker that is primary for the item's partition. If every worker lists its own
    partition (`w0000`, `w0001`, ...) it is that partition's only candidate, hence its
    primary; and `part_fn` names the partition of the worker it runs on, so every item
    stays where it is. A run resumed with fewer workers still owns the partitions of the
    workers it lost: each worker also lists those of the old partitions that fall to it
    (`part % workers`), so their snapshots are built and handed over, up to `KNOWN_PARTS`.

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


# --- lazy snapshots ----------------------------------------------------------------------


class Snapshot:
    """A key's state as `snapshot` hands it to Bytewax, pickled only when needed.

    Bytewax 0.21.1 asks every stateful step for a snapshot of every key it touched at every
    epoch, with or without a recovery store. This wrapper is pickled when Bytewax pickles it
    (a flow with recovery does, at once) or when the state is about to change while Bytewax
    may still hold it (`Snapshots.changing`); a flow without recovery drops it unpickled.
    It unpickles as the state's pickle (bytes), which `resume_state` reads."""

    __slots__ = ("__weakref__", "data", "state")

    def __init__(self, state: object) -> None:
        self.state = state
        self.data: bytes | None = None

    def freeze(self) -> bytes:
        if self.data is None:
            self.data = pickle.dumps(self.state)
            self.state = None
        return self.data

    def __reduce__(self) -> tuple[type[bytes], tuple[bytes]]:
        return bytes, (self.freeze(),)


class Snapshots:
    """The last `Snapshot` of one state: `changing` freezes it if anyone still holds it, so
    every snapshot stays the state as it was when taken. Call `changing` before mutating."""

    def __init__(self) -> None:
        self.last: weakref.ref[Snapshot] | None = None

    def take(self, state: object) -> Snapshot:
        snap = Snapshot(state)
        self.last = weakref.ref(snap)
        return snap

    def changing(self) -> None:
        if self.last is not None:
            snap = self.last()
            if snap is not None:
                snap.freeze()
            self.last = None


def resume_state(resume: Snapshot | bytes | object) -> object:
    """The state a snapshot holds (None: a new key): a `Snapshot` handed back in the same
    process, its pickle from a recovery store, or (stored by an older version that
    snapshotted the state itself) the state."""
    if isinstance(resume, Snapshot):
        return pickle.loads(resume.freeze())
    if isinstance(resume, bytes):
        return pickle.loads(resume)
    return resume


# --- the recovery store ------------------------------------------------------------------


def init_recovery(db_dir: Path, partitions: int) -> None:
    """Create the Bytewax recovery store (`part-*.sqlite3`) unless it exists: one partition
    per worker of the first run (a later run may have more or fewer workers); if it
    exists, drop what a killed run left uncommitted (`drop_uncommitted_snapshots`)."""
    from bytewax.recovery import init_db_dir

    if not any(db_dir.glob("part-*.sqlite3")):
        db_dir.mkdir(parents=True, exist_ok=True)
        init_db_dir(db_dir, partitions)
    else:
        drop_uncommitted_snapshots(db_dir)


def drop_uncommitted_snapshots(db_dir: Path) -> int:
    """Delete the snapshots a killed run wrote after the last epoch the whole store
    committed; how many.

    Bytewax 0.21.1 resumes from that epoch and numbers the epochs after it again, but keeps
    the dead run's later snapshots (its `snaps` table): a key the new run does not touch in
    such an epoch keeps the dead run's state there, and the next resume takes it. That
    state holds lines the source's resume offsets say are unread, so they came twice (a bet
    rejected as `duplicate` after its acceptance). Run before every process of the cluster
    starts."""
    parts = sorted(db_dir.glob("part-*.sqlite3"))
    connections = [sqlite3.connect(part) for part in parts]
    try:
        committed = min(
            (
                con.execute("SELECT coalesce(min(commit_epoch), 0) FROM commits").fetchone()[0]
                for con in connections
            ),
            default=0,
        )
        dropped = 0
        for con in connections:
            with con:
                cursor = con.execute("DELETE FROM snaps WHERE snap_epoch > ?", (committed,))
                dropped += cursor.rowcount
        return dropped
    finally:
        for con in connections:
            con.close()


def resume_point(db_dir: Path, step_id: str) -> tuple[int, dict[str, object]] | None:
    """Where a run started now on the store `db_dir` resumes: the epoch, and the state of
    each key of `step_id` as snapshotted last before it (by key; a key without one starts
    afresh). None for a store no run wrote to, or whose last run died before every worker
    wrote its frontier (not known then).

    Bytewax 0.21.1 says nothing of it. It resumes from the least frontier of the last
    execution's workers (`fronts`), with each key's last snapshot before that epoch. The
    frontier can trail the outputs by seconds: a run that starts on a backlog reads much of
    it in its first epochs, and their outputs come out long before they close."""
    parts = [
        sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=5)
        for part in sorted(db_dir.glob("part-*.sqlite3"))
    ]
    try:
        executions = [
            row for con in parts for row in con.execute("SELECT ex_num, worker_count FROM exs")
        ]
        if not executions:
            return None
        ex_num, workers = max(executions)
        fronts = [
            front
            for con in parts
            for (front,) in con.execute(
                "SELECT worker_frontier FROM fronts WHERE ex_num = ?", (ex_num,)
            )
        ]
        if len(fronts) < workers:
            return None
        epoch = min(fronts)
        latest: dict[str, tuple[int, bytes | None]] = {}
        for con in parts:
            for key, snap_epoch, change in con.execute(
                "SELECT state_key, snap_epoch, ser_change FROM snaps "
                "WHERE step_id = ? AND snap_epoch < ?",
                (step_id, epoch),
            ):
                if key not in latest or snap_epoch > latest[key][0]:
                    latest[key] = (snap_epoch, change)
        states: dict[str, object] = {}
        for key, (_, change) in latest.items():
            state = resume_state(pickle.loads(change)) if change else None
            if state is not None:  # None: the key's state was discarded
                states[key] = state
        return epoch, states
    finally:
        for con in parts:
            con.close()


# --- running a flow ----------------------------------------------------------------------


def run_flow(
    flow: Dataflow,
    *,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    epoch: timedelta,
    recovery: RecoveryConfig | None = None,
    bytewax_signals: bool = True,
) -> None:
    """Run `flow` here: alone, or as member `process_id` of the cluster at `addresses`.

    `bytewax_signals`: Bytewax's own Ctrl-C and SIGTERM handling (`cli_main`, as `python -m
    bytewax.run`): a signal stops the flow where it is. Without it the caller handles the
    signals (the live flow ends its input, then finishes what it read): one worker runs in
    this thread (`run_main`), because Bytewax 0.21.1's `cluster_main`, needed for several,
    keeps this thread taking the interpreter lock every millisecond to look for signals,
    which stalls the worker thread. Either way a member of a cluster on this machine first
    waits for the members before it (`await_earlier_members`).
    """
    from bytewax.run import cli_main
    from bytewax.testing import cluster_main, run_main

    if addresses:
        await_earlier_members(addresses, process_id or 0)
    if bytewax_signals:
        cli_main(
            flow,
            workers_per_process=workers,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=epoch,
            recovery_config=recovery,
        )
    elif workers == 1 and addresses is None:
        run_main(flow, epoch_interval=epoch, recovery_config=recovery)
    else:
        cluster_main(
            flow,
            addresses,
            process_id or 0,
            epoch_interval=epoch,
            worker_count_per_proc=workers,
            recovery_config=recovery,
        )


LOOPBACK = ("127.0.0.1", "localhost")
LISTEN = "0A"  # the state of a listening socket in /proc/net/tcp


def await_earlier_members(addresses: list[str], process_id: int, timeout_s: float = 30.0) -> None:
    """Before a member of a cluster on this machine joins it: wait until every member before
    it listens on its address.

    Bytewax 0.21.1's cluster start (timely's) has process i connect to each process before
    it, and a refused connection sleeps a whole second before it tries again. Members
    started together reach that point at different times (their imports and flow building),
    so without this wait a cluster often paid a second or two for nothing. A listening
    socket shows in /proc/net/tcp without a connection to it (a connection would be taken
    for a member's). Members on other hosts, or no /proc: no wait."""
    earlier = [a.rsplit(":", 1) for a in addresses[:process_id]]
    if not earlier or any(host not in LOOPBACK for host, _ in earlier):
        return
    ports = {int(port) for _, port in earlier}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ports <= _listening_ports():
                return
        except OSError:
            return
        time.sleep(0.005)


def _listening_ports() -> set[int]:
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == LISTEN:
                out.add(int(fields[1].rsplit(":", 1)[1], 16))
    return out


# --- failing cleanly ---------------------------------------------------------------------


class FlowFailure:
    """Whether a step of one flow raised: one per flow, handed to the steps that need it.

    When a step raises, Bytewax 0.21.1 unwinds every worker and calls each sink partition's
    `close`; an exception raised there aborts the process ("panic in a destructor during
    cleanup") before the first error is printed. So a step that fails says so (`failed`),
    and a sink whose `close` could raise (waiting for deliveries that cannot come) checks
    `has_failed` and skips that wait. Shared by all workers of the process: thread-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def failed(self) -> None:
        self._event.set()

    @property
    def has_failed(self) -> bool:
        return self._event.is_set()
