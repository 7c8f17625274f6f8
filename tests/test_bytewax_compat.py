"""Each workaround of `flows.bytewax_compat`, tested on its own, and the Bytewax version
they were checked against: on an upgrade, re-check every one (its docstring says what
Bytewax 0.21.1 does), then move the pin."""

from __future__ import annotations

import pickle
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from bytewax.outputs import StatefulSinkPartition
from bytewax.testing import TestingSink, TestingSource

from flows import bytewax_compat
from flows.bytewax_compat import (
    BYTEWAX_VERSION,
    FlowFailure,
    PerWorkerSink,
    Snapshot,
    Snapshots,
    await_earlier_members,
    drop_uncommitted_snapshots,
    init_recovery,
    learn_worker_index,
    resume_point,
    resume_state,
    run_flow,
    this_worker,
)

REPO = Path(__file__).resolve().parents[1]


def test_bytewax_is_the_version_the_workarounds_were_checked_against() -> None:
    installed = metadata.version("bytewax")  # Bytewax 0.21.1 has no `bytewax.__version__`
    assert installed == BYTEWAX_VERSION == "0.21.1", (
        f"Bytewax {installed}: re-check each workaround in flows/bytewax_compat.py "
        "(what its docstring says Bytewax 0.21.1 does may have changed), then update "
        "BYTEWAX_VERSION and this test"
    )


# --- lazy snapshots ----------------------------------------------------------------------


def test_a_snapshot_is_pickled_only_when_bytewax_pickles_it() -> None:
    state = {"n": 1}
    snap = Snapshots().take(state)
    assert snap.data is None and snap.state is state
    stored = pickle.loads(pickle.dumps(snap))  # what a recovery store holds
    assert stored == pickle.dumps(state)
    assert resume_state(stored) == state


def test_a_held_snapshot_is_frozen_before_its_state_changes() -> None:
    state = {"n": 1}
    snapshots = Snapshots()
    held = snapshots.take(state)
    snapshots.changing()
    state["n"] = 2
    assert resume_state(held) == {"n": 1}


def test_a_dropped_snapshot_is_never_pickled() -> None:
    snapshots = Snapshots()
    snapshots.take({"n": 1})  # Bytewax without a recovery store drops it
    snapshots.changing()  # nothing to freeze: no pickling
    assert snapshots.last is None


def test_resume_state_reads_every_form_a_state_comes_back_in() -> None:
    assert resume_state(None) is None
    assert resume_state(Snapshot([1])) == [1]
    assert resume_state(pickle.dumps([2])) == [2]
    assert resume_state([3]) == [3]  # stored by a version that snapshotted the state itself


# --- per-worker sinks --------------------------------------------------------------------


class _Tagged(StatelessSourcePartition[tuple[str, int]]):
    def __init__(self, worker: int) -> None:
        self.items = [("k", worker)] * 20

    def next_batch(self) -> list[tuple[str, int]]:
        if not self.items:
            raise StopIteration
        batch, self.items = self.items[:5], self.items[5:]
        return batch


class _ByWorker(DynamicSource[tuple[str, int]]):
    """Each worker emits items tagged with its index, all under one key."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Tagged:
        return _Tagged(worker_index)


class _Recording(StatefulSinkPartition[int, None]):
    def __init__(self, written: list[tuple[int, int]]) -> None:
        self.written = written

    def write_batch(self, values: list[int]) -> None:
        self.written.extend((this_worker()[0], v) for v in values)

    def snapshot(self) -> None:
        return None


class _RecordingSink(PerWorkerSink[int, None]):
    def __init__(self) -> None:
        self.written: list[tuple[int, int]] = []

    def build_worker_part(self, index: int, resume_state: None) -> _Recording:
        return _Recording(self.written)


def test_a_per_worker_sink_writes_every_item_on_the_worker_that_holds_it() -> None:
    flow = Dataflow("per_worker")
    learn_worker_index(flow)
    sink = _RecordingSink()
    op.output("out", op.input("in", flow, _ByWorker()), sink)

    run_flow(flow, workers=3, addresses=None, epoch=timedelta(seconds=1), bytewax_signals=False)

    # A plain FixedPartitionedSink would send all of them (one key) to one worker.
    assert sorted(sink.written) == sorted((w, w) for w in range(3) for _ in range(20))


def test_this_worker_says_what_is_missing_outside_a_flow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bytewax_compat, "_INDEX", {})  # (thread ids are reused)
    with pytest.raises(RuntimeError, match="learn_worker_index"):
        this_worker()


# --- the recovery store ------------------------------------------------------------------


def test_init_recovery_creates_the_store_once(tmp_path: Path) -> None:
    store = tmp_path / "store"
    init_recovery(store, 2)
    assert sorted(p.name for p in store.iterdir()) == ["part-0.sqlite3", "part-1.sqlite3"]
    init_recovery(store, 4)  # a later run with more workers keeps the store
    assert len(list(store.iterdir())) == 2


def test_snapshots_after_the_last_epoch_every_part_committed_are_dropped(
    tmp_path: Path,
) -> None:
    init_recovery(tmp_path, 2)
    for part, committed, epochs in ((0, 3, (2, 3, 4)), (1, 5, (4, 5, 6))):
        with sqlite3.connect(tmp_path / f"part-{part}.sqlite3") as con:
            con.execute(
                "INSERT INTO commits (part_index, commit_epoch) VALUES (?, ?)", (part, committed)
            )
            con.executemany(
                "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) "
                "VALUES (?, ?, ?, ?)",
                [("step", f"k{part}", e, b"") for e in epochs],
            )
        con.close()

    # The whole store committed epoch 3: 4 in part 0 goes, and 4, 5 and 6 in part 1.
    assert drop_uncommitted_snapshots(tmp_path) == 4

    kept = []
    for part in (0, 1):
        con = sqlite3.connect(tmp_path / f"part-{part}.sqlite3")
        kept += [row[0] for row in con.execute("SELECT snap_epoch FROM snaps")]
        con.close()
    assert sorted(kept) == [2, 3]


class _Counter(FixedPartitionedSource[int, int]):
    """Two partitions counting up to `end`, a few ms apart (so epochs pass); one fails at
    `fail_at`. Keeps the resume state Bytewax hands each partition."""

    def __init__(self, end: int, fail_at: int | None = None) -> None:
        self.end, self.fail_at = end, fail_at
        self.resumed: dict[str, int | None] = {}

    def list_parts(self) -> list[str]:
        return ["a", "b"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Counting:
        self.resumed[for_part] = resume_state
        fail_at = self.fail_at if for_part == "b" else None
        return _Counting(resume_state or 0, self.end, fail_at)


class _Counting(StatefulSourcePartition[int, int]):
    def __init__(self, at: int, end: int, fail_at: int | None) -> None:
        self.at, self.end, self.fail_at = at, end, fail_at

    def next_batch(self) -> list[int]:
        if self.at == self.end:
            raise StopIteration
        if self.at == self.fail_at:
            raise RuntimeError("killed")
        self.at += 1
        return [self.at]

    def next_awake(self) -> datetime:
        return datetime.now(UTC) + timedelta(milliseconds=5)

    def snapshot(self) -> int:
        return self.at


def test_resume_point_is_where_bytewax_resumes(tmp_path: Path) -> None:
    """The states `resume_point` reads from a failed run's store are the ones Bytewax hands
    the sources of the next run; a store no run wrote to has none."""
    from bytewax.recovery import RecoveryConfig

    init_recovery(tmp_path, 1)
    assert resume_point(tmp_path, "count.read") is None
    recovery = RecoveryConfig(str(tmp_path))

    def run(source: _Counter) -> None:
        flow = Dataflow("count")
        op.output("out", op.input("read", flow, source), TestingSink([]))
        run_flow(flow, epoch=timedelta(milliseconds=20), recovery=recovery)

    with pytest.raises(RuntimeError, match="next_batch"):  # its "killed"
        run(_Counter(400, fail_at=300))
    point = resume_point(tmp_path, "count.read")
    assert point is not None
    epoch, states = point
    resumed = _Counter(400)
    run(resumed)
    assert epoch > 1 and states == resumed.resumed
    assert 0 < states["b"] <= 300  # type: ignore[operator]


# --- running a flow ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "bytewax_signals"), [(1, True), (1, False), (2, True), (2, False)]
)
def test_run_flow_runs_a_flow_alone_with_either_signal_handling(
    workers: int, bytewax_signals: bool
) -> None:
    out: list[int] = []
    flow = Dataflow("run")
    op.output("out", op.input("in", flow, TestingSource(range(10))), TestingSink(out))

    run_flow(flow, workers=workers, epoch=timedelta(seconds=1), bytewax_signals=bytewax_signals)

    assert sorted(out) == list(range(10))


def test_a_cluster_member_waits_for_the_members_before_it_to_listen() -> None:
    with socket.socket() as first:
        first.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{first.getsockname()[1]}"
        started = time.monotonic()
        await_earlier_members([address, "127.0.0.1:1"], 1, timeout_s=0.3)
        assert time.monotonic() - started >= 0.3  # bound, not listening: waited it out
        first.listen()
        started = time.monotonic()
        await_earlier_members([address, "127.0.0.1:1"], 1, timeout_s=5)
        assert time.monotonic() - started < 1
    started = time.monotonic()
    await_earlier_members(["10.0.0.1:1", "10.0.0.2:1"], 1, timeout_s=5)  # not this machine
    await_earlier_members(["127.0.0.1:1"], 0, timeout_s=5)  # the first member
    assert time.monotonic() - started < 1


# --- failing cleanly ---------------------------------------------------------------------

_FAILING_FLOW = """
import sys
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main
from flows.bytewax_compat import FlowFailure

failure = FlowFailure()
checked = sys.argv[1] == "checked"

class Failing(StatelessSourcePartition):
    def next_batch(self):
        failure.failed()
        raise RuntimeError("the source failed")

class Source(DynamicSource):
    def build(self, step_id, worker_index, worker_count):
        return Failing()

class Closing(StatelessSinkPartition):
    def write_batch(self, items):
        pass

    def close(self):
        if not (checked and failure.has_failed):
            raise RuntimeError("deliveries still queued")

class Sink(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        return Closing()

flow = Dataflow("failing")
op.output("out", op.input("in", flow, Source()), Sink())
run_main(flow)
"""


@pytest.mark.parametrize("checked", [True, False])
def test_a_sink_that_checks_the_flow_failure_lets_the_first_error_through(
    checked: bool, tmp_path: Path
) -> None:
    """Unchecked: Bytewax 0.21.1 aborts the process when `close` raises while it unwinds,
    and the source's error is lost (if this changes, `FlowFailure` may go)."""
    script = tmp_path / "flow.py"
    script.write_text(textwrap.dedent(_FAILING_FLOW))
    done = subprocess.run(
        [sys.executable, str(script), "checked" if checked else "unchecked"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    if checked:
        assert done.returncode == 1
        assert "the source failed" in done.stderr
        assert "panic in a destructor" not in done.stderr
    else:
        assert done.returncode < 0  # SIGABRT
        assert "panic in a destructor during cleanup" in done.stderr


def test_a_flow_failure_is_one_flows() -> None:
    first, second = FlowFailure(), FlowFailure()
    first.failed()
    assert first.has_failed and not second.has_failed
