"""Signed feeds and input limits: the pure signing functions, the keyring loaders, the line
limits, and a real replay in which 1 % of a signed provider's lines are tampered with and
1 % come unsigned."""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flows import config
from flows.sources import bounded_lines, open_feed, read_lines
from operators import signing
from operators.engine import LocalEngine
from operators.parse import REJECTS_KEY, Limits, RawLine, parse_line, route, too_deep
from operators.rows import Reject
from operators.signing import (
    BAD_SIGNATURE,
    UNKNOWN_PROVIDER,
    Keyring,
    KeyringError,
    check,
    header_signature,
    load_keyring,
    sign,
    signed_line,
    split_signed,
)
from tests.conftest import replay, table
from tooling.kafka_tools import signature_for
from tooling.simulator import write_feed

SECRET = "correct horse battery staple"
GOAL = b'{"v":1,"provider":"sim","match_id":"m1","seq":7,"ts":1000,"type":"goal"}'


@pytest.fixture
def keyring_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Keyring]]:
    """`use(**env)`: this process's keyring from these environment variables; restored after."""
    for name in list(os.environ):
        if name.startswith(("ODDSFLOW_SECRET", signing.ENV_PREVIOUS_PREFIX)) or (
            name == signing.ENV_REJECT_UNKNOWN
        ):
            monkeypatch.delenv(name)

    def use(**env: str) -> Keyring:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return signing.reload_keyring()

    yield use
    monkeypatch.undo()
    signing.reload_keyring()


# --- the pure part --------------------------------------------------------------------------


def test_sign_is_hmac_sha256_hex() -> None:
    # RFC 4231, test case 2.
    key, data = b"Jefe", b"what do ya want for nothing?"
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert sign(data, key) == expected


def test_check_accepts_only_the_exact_bytes_with_their_signature() -> None:
    ring = Keyring.of({"sim": SECRET})
    good = sign(GOAL, SECRET.encode())

    assert check(ring, "sim", GOAL, good) is None
    assert check(ring, "sim", GOAL, good.upper()) is None
    assert check(ring, "sim", GOAL.replace(b"1000", b"1001"), good) == BAD_SIGNATURE
    assert check(ring, "sim", GOAL + b" ", good) == BAD_SIGNATURE
    assert check(ring, "sim", GOAL, "") == BAD_SIGNATURE
    assert check(ring, "sim", GOAL, good[:-1]) == BAD_SIGNATURE
    assert check(ring, "sim", GOAL, "é" * 64) == BAD_SIGNATURE  # never raises
    assert check(ring, "scout-a", GOAL, "") is None  # not signed, others welcome
    strict = Keyring.of({"sim": SECRET}, reject_unknown=True)
    assert check(strict, "scout-a", GOAL, good) == UNKNOWN_PROVIDER
    assert check(strict, "sim", GOAL, good) is None


OLD_SECRET = "the secret before the rotation"


def test_during_a_rotation_either_secret_verifies_and_the_first_signs() -> None:
    old, new = sign(GOAL, OLD_SECRET.encode()), sign(GOAL, SECRET.encode())
    rotating = Keyring.of({"sim": [SECRET, OLD_SECRET]})
    rotated = Keyring.of({"sim": SECRET})

    assert check(rotating, "sim", GOAL, old) is None
    assert check(rotating, "sim", GOAL, new) is None
    assert check(rotating, "sim", GOAL.replace(b"1000", b"1001"), old) == BAD_SIGNATURE
    assert check(rotated, "sim", GOAL, new) is None
    assert check(rotated, "sim", GOAL, old) == BAD_SIGNATURE
    assert rotating.secret_for("sim") == SECRET.encode()  # signers switch with the order
    assert signature_for(GOAL, rotating) == new  # what `oddsflow publish --sign` puts on
    assert rotating.secrets_for("sim") == (SECRET.encode(), OLD_SECRET.encode())
    assert OLD_SECRET not in repr(rotating)
    with pytest.raises(KeyringError, match="SIM"):
        Keyring.of({"sim": [SECRET, "tiny-secret"]})
    with pytest.raises(KeyringError, match="no secret for SIM"):
        Keyring.of({"sim": []})


def test_provider_names_map_to_environment_names() -> None:
    ring = Keyring.of({"scout-a": SECRET})

    assert signing.secret_name("scout-a") == "SCOUT_A"
    assert ring.is_signed("scout-a") and ring.is_signed("SCOUT_A")
    assert not ring.is_signed("scout-b")


def test_keyring_never_shows_its_secrets() -> None:
    ring = Keyring.of({"sim": SECRET})

    assert SECRET not in repr(ring) and SECRET not in str(ring)
    assert "SIM" in repr(ring)
    with pytest.raises(KeyringError) as short:
        Keyring.of({"sim": "tiny-secret"})
    assert "tiny-secret" not in str(short.value) and "SIM" in str(short.value)


def test_recorded_line_keeps_the_signed_bytes_recoverable() -> None:
    signature = sign(GOAL, SECRET.encode())
    line = signed_line(GOAL, signature)

    assert line == signature.encode() + b"\t" + GOAL
    assert split_signed(line) == (GOAL, signature)
    assert split_signed(GOAL) == (GOAL, "")
    not_hex = b"z" * 64 + b"\t" + GOAL
    assert split_signed(not_hex) == (not_hex, "")


def test_header_signature() -> None:
    assert header_signature([("a", b"1"), ("oddsflow-sig", b"abc")]) == "abc"
    assert header_signature([("oddsflow-sig", None)]) == ""
    assert header_signature(None) == ""


# --- loading -------------------------------------------------------------------------------


def test_keyring_from_environment_and_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        'reject_unknown_providers = true\n[providers]\nsim = "from the file, long enough"\n'
        '"scout-a" = "scout secret, long enough"\n'
    )
    secrets.chmod(0o600)
    env = {"ODDSFLOW_SECRETS_FILE": str(secrets), "ODDSFLOW_SECRET_SIM": SECRET}

    ring = load_keyring(env)

    assert ring.secret_for("sim") == SECRET.encode()  # the environment wins
    assert ring.secret_for("scout-a") == b"scout secret, long enough"
    assert ring.reject_unknown
    off = load_keyring({**env, "ODDSFLOW_REJECT_UNKNOWN_PROVIDERS": "0"})
    assert not off.reject_unknown
    assert not load_keyring({}).active


def test_two_secrets_from_the_file_or_the_environment(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        f'[providers]\nsim = ["{SECRET}", "{OLD_SECRET}"]\n"scout-a" = ["scout secret, long"]\n'
    )
    secrets.chmod(0o600)

    from_file = load_keyring({"ODDSFLOW_SECRETS_FILE": str(secrets)})
    assert from_file.secrets_for("sim") == (SECRET.encode(), OLD_SECRET.encode())
    assert from_file.secrets_for("scout-a") == (b"scout secret, long",)
    from_env = load_keyring(
        {"ODDSFLOW_SECRET_SIM": SECRET, "ODDSFLOW_PREVIOUS_SECRET_SIM": OLD_SECRET}
    )
    assert from_env.secrets_for("sim") == (SECRET.encode(), OLD_SECRET.encode())
    overridden = load_keyring(
        {"ODDSFLOW_SECRETS_FILE": str(secrets), "ODDSFLOW_SECRET_SIM": SECRET}
    )
    assert overridden.secrets_for("sim") == (SECRET.encode(),)  # the environment names sim
    with pytest.raises(KeyringError, match="ODDSFLOW_PREVIOUS_SECRET_SIM is set without") as e:
        load_keyring({"ODDSFLOW_PREVIOUS_SECRET_SIM": OLD_SECRET})
    assert OLD_SECRET not in str(e.value)
    secrets.write_text('[providers]\nsim = ["a secret long enough", 7]\n')
    with pytest.raises(KeyringError, match="not a string or a list of strings"):
        load_keyring({"ODDSFLOW_SECRETS_FILE": str(secrets)})


def test_a_secrets_file_others_can_read_is_refused(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[providers]\nsim = "a secret nobody else should read"\n')
    secrets.chmod(0o644)

    with pytest.raises(KeyringError, match="chmod 600") as refused:
        load_keyring({"ODDSFLOW_SECRETS_FILE": str(secrets)})
    assert "nobody else" not in str(refused.value)
    with pytest.raises(KeyringError, match="No such file"):
        load_keyring({"ODDSFLOW_SECRETS_FILE": str(tmp_path / "missing.toml")})


# --- input limits -------------------------------------------------------------------------


def test_nesting_depth_is_found_by_a_byte_scan() -> None:
    assert not too_deep(GOAL, 16)
    assert not too_deep(b"[" * 16 + b"]" * 16, 16)
    assert too_deep(b"[" * 17 + b"]" * 17, 16)
    assert too_deep(b'{"a":' + b"[" * 17, 16)  # unclosed counts too
    assert not too_deep(b"[" + b"{}," * 40 + b"{}]", 16)  # many, but flat
    assert not too_deep(b'{"a":"' + b"[" * 40 + b'"}', 16)  # inside a string
    assert not too_deep(b'{"a":"\\"' + b"[" * 40 + b'"}', 16)  # escaped quote in the string
    assert too_deep(b'{"a":"x",' + b'"b":' * 0 + b"[" * 20 + b"]" * 20 + b"}", 16)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"v":1,"x":' + b"[" * 5000 + b"]" * 5000 + b"}", "too_deep"),
        (b'{"op":"mcm","mc":' + b"[" * 5000 + b"]" * 5000 + b"}", "too_deep"),  # Betfair-like
        (b'{"v":1,"pad":"' + b"x" * 70_000 + b'"}', "line_too_long"),
    ],
)
def test_hostile_lines_are_rejected_before_any_decoder(line: bytes, reason: str) -> None:
    # 5000 levels would exhaust msgspec's recursion limit: the flow would die on it.
    raw = RawLine("f:1", line)
    rows = LocalEngine().line(raw)

    assert route(raw) == [(REJECTS_KEY, raw)]
    assert [(r.source, r.reason) for r in rows if isinstance(r, Reject)] == [("f:1", reason)]
    tight = parse_line(RawLine("f:1", GOAL), Limits(max_line_bytes=20))
    assert isinstance(tight, Reject) and tight.reason == "line_too_long"


def test_limits_from_environment() -> None:
    limits = config.from_env({"ODDSFLOW_MAX_LINE_BYTES": "1024", "ODDSFLOW_MAX_DEPTH": "4"}).limits

    assert (limits.max_line_bytes, limits.max_depth) == (1024, 4)
    assert config.from_env({}).limits == Limits()
    assert limits.exceeded(b"[[[[[]]]]]") == ("too_deep", "nested deeper than 4 levels")


def test_file_lines_are_cut_so_one_line_cannot_fill_the_memory() -> None:
    data = b"a\n" + b"x" * 200 + b"\nb\n" + b"y" * 10
    assert [len(line) for line in bounded_lines(io.BytesIO(data), 50)] == [2, 50, 2, 10]


# --- the keyring in routing and the engine ----------------------------------------------------


def test_forged_lines_never_reach_their_match(keyring_env: Callable[..., Keyring]) -> None:
    keyring_env(ODDSFLOW_SECRET_SIM=SECRET, ODDSFLOW_REJECT_UNKNOWN_PROVIDERS="1")
    fixture = (
        b'{"v":1,"provider":"sim","match_id":"m1","seq":1,"ts":0,"type":"fixture",'
        b'"home":"A","away":"B","kickoff":0,"home_rate":1.4,"away_rate":1.1}'
    )
    good = RawLine("f:1", fixture, signature=sign(fixture, SECRET.encode()))
    forged = RawLine("f:2", fixture.replace(b"m1", b"m2"), signature=good.signature)
    unsigned = RawLine("f:3", fixture.replace(b"m1", b"m3"))
    stranger = RawLine("f:4", fixture.replace(b'"sim"', b'"rogue"'))
    bet = RawLine("f:5", b'{"v":1,"ts":5,"type":"deposit","user_id":"u1","amount":"10.00"}')
    engine = LocalEngine()

    rejects = {}
    for raw in (good, forged, unsigned, stranger, bet):
        for row in engine.line(raw):
            if isinstance(row, Reject):
                rejects[row.source] = (row.reason, row.provider, row.detail)

    assert rejects == {
        "f:2": (BAD_SIGNATURE, "sim", "signature does not match the line ('sim' is signed)"),
        "f:3": (BAD_SIGNATURE, "sim", "no signature ('sim' is signed)"),
        "f:4": (UNKNOWN_PROVIDER, "rogue", "provider 'rogue' is not in the keyring"),
    }
    assert set(engine.matches) == {"m:m1", REJECTS_KEY}  # no state for m2, m3 or the stranger


# --- a signed replay ---------------------------------------------------------------------------


def _tamper(line: dict) -> dict:
    """A plausible forgery: the score or the clock moved, everything else as signed."""
    changed = dict(line)
    if line["type"] == "goal":
        changed["team"] = "away" if line["team"] == "home" else "home"
    elif line["type"] == "match_end":
        changed["home_score"] = line["home_score"] + 1
    elif line["type"] == "clock":
        changed["minute"] = line["minute"] + 10
    else:
        changed["ts"] = line["ts"] + 1
    return changed


def _signed_feeds(source: Path, out: Path, secret: bytes) -> tuple[Path, Path, dict[str, str]]:
    """(the feed signed with 1 % of its provider lines tampered and 1 % unsigned, the same
    feed with those lines blanked out, {source: expected reason})."""
    rng = random.Random(5)
    with open_feed(source) as f:
        lines = [raw.rstrip(b"\n") for raw in f]
    signed_at = [i for i, line in enumerate(lines) if b'"provider":"sim"' in line]
    scores = [i for i in signed_at if b'"type":"goal"' in lines[i] or b"match_end" in lines[i]]
    count = len(signed_at) // 100
    tampered = set(rng.sample(scores, count // 4))
    tampered |= set(rng.sample([i for i in signed_at if i not in tampered], count - len(tampered)))
    unsigned = set(rng.sample([i for i in signed_at if i not in tampered], count))
    feed, clean = [], []
    for i, line in enumerate(lines):
        signature = sign(line, secret)
        if i in tampered:
            forged = json.dumps(_tamper(json.loads(line)), separators=(",", ":")).encode()
            feed.append(signed_line(forged, signature))
        elif i in unsigned:
            feed.append(line)
        else:
            feed.append(signed_line(line, signature) if i in signed_at else line)
        clean.append(b"" if i in tampered | unsigned else feed[-1])
    name = out / "signed.jsonl"
    name.write_bytes(b"\n".join(feed) + b"\n")
    blanked = out / "clean" / "signed.jsonl"  # same name: same `source` of every line
    blanked.parent.mkdir()
    blanked.write_bytes(b"\n".join(clean) + b"\n")
    expected = {f"signed.jsonl:{i + 1}": BAD_SIGNATURE for i in tampered | unsigned}
    return name, blanked, expected


STATE_TABLES = {
    "market_history": "SELECT * FROM market_history ORDER BY ALL",
    "prices": "SELECT * FROM prices ORDER BY ALL",
    "matches": "SELECT * FROM matches ORDER BY ALL",
    "market_status": "SELECT * FROM market_status ORDER BY ALL",
    "bets": "SELECT * FROM bets ORDER BY ALL",
    "wallets": "SELECT * FROM wallets ORDER BY ALL",
}


def test_tampered_and_unsigned_lines_are_rejected_and_change_nothing(
    tmp_path: Path, keyring_env: Callable[..., Keyring]
) -> None:
    simulated = tmp_path / "sim.jsonl.gz"
    write_feed(simulated, matches=12, seed=23)
    feed, clean, expected = _signed_feeds(simulated, tmp_path, SECRET.encode())
    keyring_env(ODDSFLOW_SECRET_SIM=SECRET)
    assert {raw.signature != "" for raw in read_lines(feed)} == {True, False}

    signed_db = replay([feed], tmp_path / "signed.duckdb")
    clean_db = replay([clean], tmp_path / "clean.duckdb")

    refused = dict(
        table(signed_db, "SELECT source, reason FROM rejects WHERE reason = 'bad_signature'")
    )
    assert len(expected) > 100
    assert refused == expected
    assert not table(clean_db, "SELECT * FROM rejects WHERE reason = 'bad_signature'")
    for name, sql in STATE_TABLES.items():
        assert table(signed_db, sql) == table(clean_db, sql), name
    other_rejects = (
        "SELECT source, reason FROM rejects WHERE reason <> 'bad_signature' ORDER BY ALL"
    )
    assert table(signed_db, other_rejects) == table(clean_db, other_rejects)
    keyring_env(ODDSFLOW_SECRET_SIM="")  # no keyring: the forgeries would have counted
    trusting_db = replay([feed], tmp_path / "trusting.duckdb")
    assert table(trusting_db, STATE_TABLES["matches"]) != table(clean_db, STATE_TABLES["matches"])


def test_a_key_rotates_through_the_replay_flow(
    tmp_path: Path, keyring_env: Callable[..., Keyring]
) -> None:
    """Lines signed before the switch (old secret) and after it (new secret) in one feed:
    all accepted while both secrets are held, the old ones refused once the old is dropped."""
    simulated = tmp_path / "sim.jsonl.gz"
    write_feed(simulated, matches=2, seed=5)
    with open_feed(simulated) as f:
        lines = [raw.rstrip(b"\n") for raw in f]
    signed_at = [i for i, line in enumerate(lines) if b'"provider":"sim"' in line]
    switch = signed_at[len(signed_at) // 2]  # the signer moves to the new secret here
    feed = tmp_path / "rotating.jsonl"
    feed.write_bytes(
        b"\n".join(
            signed_line(line, sign(line, (OLD_SECRET if i < switch else SECRET).encode()))
            if i in signed_at
            else line
            for i, line in enumerate(lines)
        )
        + b"\n"
    )
    refused = "SELECT source FROM rejects WHERE reason = 'bad_signature' ORDER BY ALL"

    keyring_env(ODDSFLOW_SECRET_SIM=SECRET, ODDSFLOW_PREVIOUS_SECRET_SIM=OLD_SECRET)
    during = replay([feed], tmp_path / "during.duckdb")
    keyring_env(ODDSFLOW_PREVIOUS_SECRET_SIM="")
    after = replay([feed], tmp_path / "after.duckdb")

    assert table(during, refused) == []
    old_lines = {f"rotating.jsonl:{i + 1}" for i in signed_at if i < switch and _json(lines[i])}
    assert len(old_lines) > 100  # (a line too broken to name its provider is malformed_json)
    assert {source for (source,) in table(after, refused)} == old_lines


def _json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True
