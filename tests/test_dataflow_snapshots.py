"""Snapshots of the dataflow's keyed state: what Bytewax gets at each epoch end.

A snapshot is pickled only when someone needs it (a flow with recovery pickles it at once);
it always resumes to the state as it was when taken, even after the state changed.
"""

from __future__ import annotations

import pickle

from flows.market_sync import WalletInput, _MatchLogic, _WalletLogic
from operators.ordering import Router
from operators.parse import RawLine, wallet_key
from operators.settings import DEFAULT_RULES
from operators.wallets import WalletShard
from tests.feedkit import KICKOFF, Feed, bet_line, deposit_line


def match_logic(lines: list[bytes]) -> _MatchLogic:
    logic = _MatchLogic(DEFAULT_RULES, None, None)
    logic.on_batch([[RawLine(f"t:{i}", line) for i, line in enumerate(lines)]])
    return logic


def for_wallet(*lines: RawLine, user: str = "u1") -> list[WalletInput]:
    """What the wallet shard of `user` gets of these lines from one input partition."""
    return dict(Router(0, 1).route(list(lines)))[wallet_key(user)]


def test_taking_a_snapshot_pickles_nothing_until_bytewax_pickles_it() -> None:
    logic = match_logic(Feed().fixture().kick_off().lines)
    snap = logic.snapshot()
    assert snap.data is None  # a flow without recovery drops it like this
    stored = pickle.loads(pickle.dumps(snap))  # what a recovery store holds
    assert isinstance(stored, bytes)
    resumed = _MatchLogic(DEFAULT_RULES, None, stored)
    assert resumed.proc is not None and resumed.proc.match.status == "live"  # type: ignore[union-attr]


def test_a_held_match_snapshot_keeps_the_state_it_was_taken_at() -> None:
    f = Feed().fixture().kick_off()
    logic = match_logic(f.lines)
    snap = logic.snapshot()
    logic.on_batch([[RawLine("t:9", f.add(1_000, "card", team="home", player="x", color="red"))]])
    for resume in (snap, pickle.loads(pickle.dumps(snap))):
        resumed = _MatchLogic(DEFAULT_RULES, None, resume)
        assert resumed.proc.match.home_red == 0  # type: ignore[union-attr]
    assert logic.proc.match.home_red == 1  # type: ignore[union-attr]


def test_a_held_wallet_snapshot_keeps_the_balances_it_was_taken_at() -> None:
    logic = _WalletLogic(True, None)
    logic.on_batch([for_wallet(RawLine("t:1", deposit_line(KICKOFF, 0, "u1", "10.00")))])
    snap = logic.snapshot()
    logic.on_batch([for_wallet(RawLine("t:2", deposit_line(KICKOFF, 1, "u1", "5.00")))])
    for resume in (snap, pickle.loads(pickle.dumps(snap))):
        shard = _WalletLogic(True, resume).shard
        assert isinstance(shard, WalletShard)
        assert str(shard.wallets["u1"].balance) == "10.00"
    assert str(logic.shard.wallets["u1"].balance) == "15.00"


def test_a_wallet_shard_stored_by_an_earlier_version_resumes_as_is() -> None:
    logic = _WalletLogic(True, None)
    logic.on_batch([for_wallet(RawLine("t:1", deposit_line(KICKOFF, 0, "u1", "10.00")))])
    resumed = _WalletLogic(True, logic.shard)  # what a store written before lazy snapshots holds
    assert str(resumed.shard.wallets["u1"].balance) == "10.00"


def test_a_bet_awaiting_its_verdict_is_rejected_at_the_end_of_a_finite_input_only() -> None:
    """A replay's input ends with the feed: a bet whose verdict never came is `undecided`.
    A live flow's input ends when the flow is stopped: the bet stays pending for the
    restart (its state is in the snapshot)."""
    lines = [
        RawLine("t:1", deposit_line(KICKOFF, 0, "u1", "10.00")),
        RawLine("t:2", bet_line(KICKOFF, 1, "b1", "u1", "1x2", "home", "2.00", "1.90")),
    ]
    for finite in (True, False):
        logic = _WalletLogic(finite, None)
        logic.on_batch([for_wallet(*lines)])
        rows, _ = logic.on_eof()
        undecided = [r for batch in rows for r in batch if getattr(r, "reason", "") == "undecided"]
        assert len(undecided) == (1 if finite else 0)
        assert len(logic.shard.queue) == (0 if finite else 1)
