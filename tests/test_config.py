"""The config file (flows/config.py): precedence, the rules reaching replays (one process
and a local cluster), one-line errors, `config show`, and the example file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pytest

from connectors.kafka.settings import FEED, KafkaSettings
from flows import config
from flows.cli import build_parser
from operators.settings import Rules
from tests.conftest import table
from tests.feedkit import KICKOFF, Feed

if TYPE_CHECKING:
    from tests.kafka_fixtures import ReadTopics

pytest_plugins = ("tests.kafka_fixtures",)  # kafka_settings, read_topics

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "oddsflow.example.toml"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ODDSFLOW_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODDSFLOW_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def oddsflow(*args: object, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m flows ARGS` in `cwd`, with only the ODDSFLOW_* variables in `env`."""
    return subprocess.run(
        [sys.executable, "-m", "flows", *map(str, args)],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def shown(output: str) -> tuple[dict[str, dict[str, object]], dict[str, str]]:
    """`config show`'s output: the values (it is TOML), and where each key came from."""
    values = msgspec.toml.decode(output)
    origin, section = {}, ""
    for line in output.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif " = " in line and not line.startswith("#"):
            name, _, rest = line.partition(" = ")
            origin[f"{section}.{name}"] = rest.rsplit("  # ", 1)[1]
    return values, origin


# --- precedence ---------------------------------------------------------------------------


def test_the_file_the_environment_then_the_options_win(tmp_path: Path) -> None:
    (tmp_path / "oddsflow.toml").write_text(
        "[rules]\nmin_suspension_ms = 4000\nmargin = 0.06\nbet_delay_ms = 2000\n"
        '[kafka]\nbootstrap = "file:9092"\n[limits]\nmax_depth = 8\n'
    )
    done = oddsflow(
        "--set",
        "rules.margin=0.08",
        "config",
        "show",
        cwd=tmp_path,  # ./oddsflow.toml is read without --config
        ODDSFLOW_RULES_MARGIN="0.07",
        ODDSFLOW_RULES_BET_DELAY_MS="2500",
        ODDSFLOW_KAFKA="env:9092",  # the names read before the config file keep working
        ODDSFLOW_MAX_LINE_BYTES="1024",
    )
    assert done.returncode == 0, done.stderr
    values, origin = shown(done.stdout)
    file = "oddsflow.toml"
    assert (
        values["rules"]["min_suspension_ms"] == 4000 and origin["rules.min_suspension_ms"] == file
    )
    assert values["rules"]["margin"] == 0.08 and origin["rules.margin"] == "--set"
    assert values["rules"]["bet_delay_ms"] == 2500
    assert origin["rules.bet_delay_ms"] == "ODDSFLOW_RULES_BET_DELAY_MS"
    assert (
        values["kafka"]["bootstrap"] == "env:9092" and origin["kafka.bootstrap"] == "ODDSFLOW_KAFKA"
    )
    assert values["limits"] == {
        "max_line_bytes": 1024,
        "max_depth": 8,
        "max_betfair_line_bytes": 8 << 20,
        "max_statsbomb_bytes": 32 << 20,
        "max_tennis_pbp_bytes": 64 << 20,
    }
    assert origin["limits.max_line_bytes"] == "ODDSFLOW_MAX_LINE_BYTES"
    assert origin["rules.heartbeat_timeout_ms"] == "default"
    assert values["rules"]["min_stake"] == "0.10"  # decimals keep their digits


def test_a_commands_own_options_win_over_the_environment_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./oddsflow.toml
    path = tmp_path / "live.toml"
    path.write_text('[kafka]\nbootstrap = "file:9092"\n[live]\nsnapshot_s = 5.0\npublish_s = 3.0\n')
    command = "live --db x.duckdb --kafka flag:9092 --snapshot-s 0.25 --kafka-config c.properties"
    args = build_parser().parse_args(command.split())
    env = {
        "ODDSFLOW_KAFKA": "env:9092",
        "ODDSFLOW_LIVE_SNAPSHOT_S": "2",
        "ODDSFLOW_LIVE_PUBLISH_S": "4",
    }
    settings, origin = config.resolve(path, env, config.flags_of(args, "live"))
    assert settings.kafka.bootstrap == "flag:9092" and origin["kafka.bootstrap"] == "--kafka"
    assert settings.live.snapshot_s == 0.25 and origin["live.snapshot_s"] == "--snapshot-s"
    assert settings.kafka.properties == "c.properties"  # the option's, from the cwd
    assert settings.live.publish_s == 4.0 and origin["live.publish_s"] == "ODDSFLOW_LIVE_PUBLISH_S"
    assert settings.replay == config.Settings().replay  # --snapshot-s of live is live's
    without = config.load(
        path, env, config.flags_of(build_parser().parse_args(["live", "--db", "x"]), "live")
    )
    assert (without.kafka.bootstrap, without.live.snapshot_s) == ("env:9092", 2.0)
    assert config.load(path, {}).kafka.bootstrap == "file:9092"
    assert config.load(None, {}) == config.Settings()


# --- the rules reach the flow -------------------------------------------------------------


def penalty_feed(path: Path, matches: int = 4) -> Path:
    """Matches whose penalty is awarded at 30 s and missed at 31 s, heartbeats to 40 s:
    the markets reopen once the incident is over and the minimum suspension has passed."""
    lines = []
    for n in range(matches):
        f = Feed(match_id=f"m{n}").fixture().kick_off().clocks(4_000, 26_000)
        f.add(30_000, "penalty", team="away", state="awarded")
        f.add(31_000, "penalty", team="away", state="missed")
        f.clocks(32_000, 40_000)
        lines.extend(f.lines)
    path.write_bytes(b"".join(line + b"\n" for line in sorted(lines, key=_ts)))
    return path


def _ts(line: bytes) -> int:
    return int(msgspec.json.decode(line)["ts"])


def reopenings(db: Path) -> set[tuple[str, int]]:
    """(match, ms after kickoff) of every 1x2 reopening after the penalty."""
    rows = table(
        db, "SELECT match_id, ts FROM market_history WHERE market = '1x2' AND reason = 'reopen'"
    )
    return {(match, ts - KICKOFF) for match, ts in rows}


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_longer_min_suspension_in_the_file_holds_the_markets_longer(
    tmp_path: Path, processes: str
) -> None:
    feed = penalty_feed(tmp_path / "penalties.jsonl")
    cfg = tmp_path / "hold.toml"
    cfg.write_text("[rules]\nmin_suspension_ms = 6000\n")
    default = oddsflow("replay", feed, "--db", tmp_path / "default.duckdb", cwd=tmp_path)
    held = oddsflow(
        "--config", cfg, "replay", feed, "--db", tmp_path / "held.duckdb",
        "--processes", processes, cwd=tmp_path,
    )  # fmt: skip
    assert default.returncode == 0 and held.returncode == 0, default.stderr + held.stderr
    matches = [f"m{n}" for n in range(4)]
    # Resolved at 31 s: reopened when the minimum from 30 s is over, 3 s by default.
    assert reopenings(tmp_path / "default.duckdb") == {(m, 33_000) for m in matches}
    assert reopenings(tmp_path / "held.duckdb") == {(m, 36_000) for m in matches}


def test_input_limits_from_the_file_reach_every_member_of_a_cluster(tmp_path: Path) -> None:
    feed = penalty_feed(tmp_path / "penalties.jsonl")
    longest = max(len(line) for line in feed.read_bytes().splitlines())
    cfg = tmp_path / "tight.toml"
    cfg.write_text(f"[limits]\nmax_line_bytes = {longest - 1}\n")
    done = oddsflow(
        "--config", cfg, "replay", feed, "--db", tmp_path / "out.duckdb", "--processes", "2",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rejects = table(tmp_path / "out.duckdb", "SELECT DISTINCT reason, detail FROM rejects")
    detail = f"over {longest - 1} bytes, the native line limit (ODDSFLOW_MAX_LINE_BYTES)"
    assert ("line_too_long", detail) in rejects


def test_simulate_prices_its_bets_at_the_configured_margin(tmp_path: Path) -> None:
    """A feed simulated at another margin: its bets are at the prices of an engine with that
    margin, so only a replay with the same setting accepts them as the default ones are."""
    runs = {}
    for name, options in (("default", []), ("thin", ["--set", "rules.margin=0.02"])):
        feed = tmp_path / f"{name}.jsonl"
        made = oddsflow(
            *options, "simulate", "--matches", 2, "--seed", 5, "--out", feed, cwd=tmp_path
        )
        assert made.returncode == 0, made.stderr
        for engine, engine_options in (("default", []), ("thin", options)):
            db = tmp_path / f"{name}-{engine}.duckdb"
            done = oddsflow(*engine_options, "replay", feed, "--db", db, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            runs[name, engine] = dict(table(db, "SELECT status, count(*) FROM bets GROUP BY 1"))
    assert runs["thin", "thin"] == runs["default", "default"]
    assert runs["thin", "default"] != runs["thin", "thin"]


@pytest.mark.kafka
def test_publish_sends_to_the_broker_and_prefix_of_the_config_file(
    kafka_settings: KafkaSettings, read_topics: ReadTopics, tmp_path: Path
) -> None:
    feed = penalty_feed(tmp_path / "penalties.jsonl", matches=1)
    lines = feed.read_bytes().splitlines()
    (tmp_path / "kafka.toml").write_text(
        f'[kafka]\nbootstrap = "{kafka_settings.bootstrap}"\n'
        f'topic_prefix = "{kafka_settings.topic_prefix}"\n'
    )
    done = oddsflow("--config", "kafka.toml", "publish", feed, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    received = read_topics(kafka_settings, [FEED], len(lines))
    assert {r.topic for r in received} == {kafka_settings.topic(FEED)}
    assert sorted(r.value for r in received) == sorted(lines)


# --- errors -------------------------------------------------------------------------------

ERRORS = {
    "unknown key": (
        "[rules]\nmin_suspension = 5000\n",
        "rules.min_suspension: unknown key; did you mean rules.min_suspension_ms?",
    ),
    "unknown section": ("[rulez]\nmargin = 0.1\n", "rulez: unknown key; did you mean rules?"),
    "bad type": (
        '[rules]\nmin_suspension_ms = "5s"\n',
        'rules.min_suspension_ms: expected int, got str ("5s")',
    ),
    "bad value": (
        "[rules]\nmin_suspension_ms = -5\n",
        "rules.min_suspension_ms: must be >= 0, got -5",
    ),
    "a check across keys": (
        '[rules]\nmin_stake = "2000"\n',
        "rules.max_stake: must be >= min_stake (2000), got 1000.00",
    ),
    "bad margin": ("[rules]\nmargin = 1.5\n", "rules.margin: must be >= 0 and < 1, got 1.5"),
    "bad decimal": (
        '[rules]\nmax_stake = "lots"\n',
        'rules.max_stake: invalid decimal string ("lots")',
    ),
    "bad TOML": (
        "[rules\nmargin = 0.1\n",
        "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 7)",
    ),
    "a secret": (
        '[secrets]\nsim = "s3cret"\n',
        "secrets: unknown key (secrets never go in the config file",
    ),
}


@pytest.mark.parametrize("case", ERRORS)
def test_a_bad_file_is_one_line_naming_the_key_and_the_file(tmp_path: Path, case: str) -> None:
    text, problem = ERRORS[case]
    (tmp_path / "bad.toml").write_text(text)
    done = oddsflow(
        "--config", "bad.toml", "replay", "none.jsonl", "--db", "x.duckdb", cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"oddsflow: bad.toml: {problem}")
    assert len(done.stderr.splitlines()) == 1 and "s3cret" not in done.stderr


def test_a_missing_file_a_bad_variable_and_a_bad_option_are_one_line_each(tmp_path: Path) -> None:
    missing = oddsflow("--config", "nope.toml", "config", "show", cwd=tmp_path)
    variable = oddsflow("config", "show", cwd=tmp_path, ODDSFLOW_MAX_DEPTH="deep")
    option = oddsflow("--set", "rules.bet_delay=1", "config", "show", cwd=tmp_path)
    assert [r.returncode for r in (missing, variable, option)] == [2, 2, 2]
    assert missing.stderr == "oddsflow: --config: nope.toml: no such file\n"
    assert variable.stderr == (
        "oddsflow: ODDSFLOW_MAX_DEPTH: limits.max_depth: expected int, got 'deep'\n"
    )
    assert option.stderr == (
        "oddsflow: --set: rules.bet_delay: unknown key; did you mean rules.bet_delay_ms?\n"
    )


# --- show, the example ----------------------------------------------------------------------


def test_config_show_masks_the_kafka_secrets(tmp_path: Path) -> None:
    props = tmp_path / "client.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.username=oddsflow\nsasl.password=hunter2\n"
        "sasl.oauthbearer.config=clientSecret=hunter3\n"
    )
    (tmp_path / "prod.toml").write_text('[kafka]\nproperties = "client.properties"\n')
    done = oddsflow(
        "config", "show", "--config", "prod.toml", cwd=tmp_path, ODDSFLOW_SECRET_SIM="topsecret"
    )
    assert done.returncode == 0, done.stderr
    assert "hunter" not in done.stdout and "topsecret" not in done.stdout
    assert "#   sasl.password = ***" in done.stdout
    assert "#   sasl.username = oddsflow" in done.stdout
    values, origin = shown(done.stdout)
    assert values["kafka"]["properties"] == str(props)  # relative to the config file
    assert origin["kafka.properties"] == "prod.toml"


def test_the_example_file_lists_every_key_at_its_default() -> None:
    settings, origin = config.resolve(EXAMPLE, environ={})
    assert settings == config.Settings()
    assert sorted(origin) == sorted(config.KEYS)  # every key, none left to its default
    text = EXAMPLE.read_text()
    for var, key in config.ENV.items():  # each key's variable named beside it
        if not key.startswith("rules."):  # the [rules] ones by their pattern
            assert var in text, var
    assert re.search(r"ODDSFLOW_RULES_<KEY>", text)


def test_the_structs_refuse_values_that_cannot_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./oddsflow.toml
    with pytest.raises(ValueError, match="`max_stake` must be >= min_stake"):
        Rules(min_stake=Decimal("5"), max_stake=Decimal("1"))
    with pytest.raises(ValueError, match="`min_stake` must be a number > 0, got NaN"):
        Rules(min_stake=Decimal("NaN"))
    with pytest.raises(
        config.ConfigError, match=re.escape("cli: kafka.topic_prefix: may hold only")
    ):
        config.load(None, {}, {"kafka.topic_prefix": ("cli", "a b")})
