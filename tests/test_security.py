"""The secure local broker (`oddsflow kafka up --secure`) for real: SASL_SSL with SCRAM, the
local CA, least-privilege ACLs per principal; the live flow and the command-line tools over
it; KafkaSettings' validation of security settings.

The session fixture starts the secure broker (a separate instance from the plain one the
other Kafka tests use) unless it runs, and stops it at the end if it started it. Each test
gets topics of its own prefix, created and granted by the broker's own identity, deleted
with their ACLs afterwards.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.kafka.admin import drop_topics, ensure_topics, fetch_metadata
from connectors.kafka.settings import (
    ALL_TOPICS,
    ENV_BOOTSTRAP,
    ENV_PREFIX,
    FEED,
    INPUT_TOPICS,
    OUTPUT_TOPICS,
    PRICES,
    KafkaConfigError,
    KafkaSettings,
    KafkaUnreachableError,
)
from connectors.kafka.sink import KafkaSinkPartition
from operators.signing import SIGNATURE_HEADER, Keyring, active_keyring, check
from tests.conftest import replay, table
from tooling import kafka_broker, kafka_secure
from tooling.kafka_secure import SecureFiles, client_settings, internal_settings
from tooling.kafka_tools import publish, publish_main, tail_main
from tooling.simulator import write_feed

REPO = Path(__file__).resolve().parents[1]
SECRET = "a provider secret for the tests"
REFUSED_S = 3.0  # how long a refused client keeps trying before we call it refused


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def secure_files() -> Iterator[SecureFiles]:
    """The running secure broker's security material, starting the broker if needed."""
    started = not kafka_broker.status(secure=True).up
    try:
        kafka_broker.up(secure=True)  # idempotent: users, ACLs and topics every time
    except kafka_broker.BrokerError as exc:
        reason = f"the secure Kafka broker does not start: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    yield kafka_broker.StatePaths.from_env(secure=True).files
    if started:
        kafka_broker.down(secure=True)


@pytest.fixture
def prefix(secure_files: SecureFiles, request: pytest.FixtureRequest) -> Iterator[str]:
    """A topic prefix of this test's own: topics created and ACLs granted for it."""
    name = f"sec-{uuid.uuid4().hex[:6]}-{request.node.name[:40]}.".replace("[", "-")
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)
    internal = internal_settings(secure_files, name)
    kafka_secure.grant(internal, name)
    ensure_topics(internal, ALL_TOPICS)
    yield name
    drop_topics(internal, ALL_TOPICS)
    kafka_secure.revoke(internal, name)


As = Callable[[str], KafkaSettings]


@pytest.fixture
def as_principal(secure_files: SecureFiles, prefix: str) -> As:
    """`as_principal("feed")`: that principal's client file, on this test's topics."""
    return lambda who: client_settings(secure_files, who, prefix)


def produce(settings: KafkaSettings, topic: str, values: list[bytes], **config: object) -> list:
    """Send `values`; the delivery error of each (None when delivered)."""
    producer = Producer({**settings.producer_config(), "delivery.timeout.ms": 8000, **config})
    reports: list = []
    for i, value in enumerate(values):
        producer.produce(
            settings.topic(topic), value, str(i), on_delivery=lambda e, m: reports.append(e)
        )
    producer.flush(15)
    return reports


def consume(settings: KafkaSettings, topic: str, expected: int, wait_s: float = 15.0) -> list:
    """Subscribe (as `oddsflow tail`'s group) and read up to `expected` messages: their
    values, or the first error."""
    consumer = Consumer(
        {**settings.consumer_config(f"oddsflow-tail-{uuid.uuid4().hex[:6]}"), "logger": _quiet()}
    )
    consumer.subscribe([settings.topic(topic)])
    got: list = []
    deadline = time.monotonic() + wait_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.3)
            if msg is None:
                continue
            if msg.error():
                return [msg.error()]
            got.append(msg.value())
    finally:
        consumer.close()
    return got


def _quiet() -> object:
    import logging

    log = logging.getLogger("tests.security.librdkafka")
    log.propagate = False
    log.addHandler(logging.NullHandler())
    return log


# --- the broker and its files ------------------------------------------------------------------


@pytest.mark.kafka
def test_secrets_are_private_and_never_printed(
    secure_files: SecureFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kafka_broker.main(["up", "--secure"]) == 0
    assert kafka_broker.main(["status", "--secure"]) == 0
    printed = capsys.readouterr()
    secrets = [kafka_secure._password(secure_files.client_file(p)) for p in kafka_secure.PRINCIPALS]
    secrets.append(secure_files.keystore_password.read_text().strip())
    home = secure_files.home
    logs = "".join(p.read_text(errors="replace") for p in (home / "logs").glob("*"))

    for secret in secrets:
        assert secret not in printed.out + printed.err
        assert secret not in logs
    assert "already up" in printed.out and "SASL_SSL" in printed.out
    private = [secure_files.client_file(p) for p in kafka_secure.PRINCIPALS]
    private += [home / "server.properties", secure_files.ca_key, secure_files.broker_key]
    private += [secure_files.keystore, secure_files.keystore_password]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (secure_files.clients, secure_files.tls):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    shown = repr(client_settings(secure_files, "flow")) + str(client_settings(secure_files, "flow"))
    assert not any(secret in shown for secret in secrets) and "'sasl.password': '***'" in shown
    # the plain broker's status is another instance's
    assert kafka_broker.status(secure=True).bootstrap == "127.0.0.1:9093"


# --- who gets in -------------------------------------------------------------------------------


def _other_ca(tmp: Path) -> Path:
    ca = tmp / "other-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(tmp / "other-ca.key"), "-out", str(ca), "-days", "2",
         "-subj", "/CN=someone else's CA"],
        check=True, capture_output=True,
    )  # fmt: skip
    return ca


@pytest.mark.kafka
def test_only_the_right_credentials_over_tls_get_in(
    secure_files: SecureFiles, tmp_path: Path
) -> None:
    flow = client_settings(secure_files, "flow")
    ca = str(secure_files.ca_cert)
    scram = {"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "flow"}
    password = flow.security["sasl.password"]
    attempts = {
        "no credentials (TLS only)": ({"security.protocol": "SSL", "ssl.ca.location": ca}, 9093),
        "wrong password": (
            {**flow.security, "sasl.password": password + "x"},
            9093,
        ),
        "plaintext to the TLS port": ({}, 9093),
        "SASL without TLS": (
            {"security.protocol": "SASL_PLAINTEXT", **scram, "sasl.password": password},
            9093,
        ),
        "another CA": ({**flow.security, "ssl.ca.location": str(_other_ca(tmp_path))}, 9093),
        "no certificate on the inter-broker port": (
            {"security.protocol": "SSL", "ssl.ca.location": ca},
            kafka_secure.INTERNAL_PORT,
        ),
        "no certificate on the controller port": (
            {"security.protocol": "SSL", "ssl.ca.location": ca},
            kafka_secure.CONTROLLER_PORT,
        ),
    }

    def refused(attempt: tuple[dict[str, str], int]) -> str:
        security, port = attempt
        settings = KafkaSettings(bootstrap=f"127.0.0.1:{port}", security=security)
        with pytest.raises(KafkaUnreachableError) as cause:
            fetch_metadata(settings, timeout=REFUSED_S)
        return str(cause.value)

    with ThreadPoolExecutor(len(attempts)) as pool:  # each waits REFUSED_S
        causes = dict(zip(attempts, pool.map(refused, attempts.values()), strict=True))

    assert "Authentication failed" in causes["wrong password"]
    assert password not in causes["wrong password"]
    assert "certificate verify failed" in causes["another CA"]
    assert "bad certificate" in causes["no certificate on the controller port"]
    assert fetch_metadata(flow, timeout=10).topics  # and the right ones do


# --- least privilege --------------------------------------------------------------------------


@pytest.mark.kafka
def test_feed_writes_only_inputs_and_reads_nothing(as_principal: As) -> None:
    feed, flow = as_principal("feed"), as_principal("flow")

    assert produce(feed, FEED, [b"a", b"b"]) == [None, None]
    assert produce(feed, "bets_in", [b"c"]) == [None]
    for topic in OUTPUT_TOPICS:
        [error] = produce(feed, topic, [b"x"], **{"enable.idempotence": False})
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, topic
    assert produce(flow, PRICES, [b"p"]) == [None]
    [refused] = consume(feed, PRICES, 1, wait_s=8)
    assert isinstance(refused, KafkaError)
    assert refused.code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    )


@pytest.mark.kafka
def test_reader_reads_outputs_only_and_writes_nothing(as_principal: As) -> None:
    feed, flow, reader = as_principal("feed"), as_principal("flow"), as_principal("reader")
    assert produce(feed, FEED, [b"line"]) == [None]
    assert produce(flow, PRICES, [b"price"]) == [None]

    assert consume(reader, PRICES, 1) == [b"price"]
    [refused] = consume(reader, FEED, 1, wait_s=8)
    assert isinstance(refused, KafkaError)
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    for topic in ALL_TOPICS:
        [error] = produce(reader, topic, [b"x"], **{"enable.idempotence": False})
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, topic
    visible = fetch_metadata(reader).topics
    assert reader.topic(FEED) not in visible and reader.topic(PRICES) in visible


@pytest.mark.kafka
def test_only_the_admin_creates_topics(as_principal: As) -> None:
    for who in ("feed", "flow", "reader"):
        settings = as_principal(who)
        admin = AdminClient(settings.admin_config())
        topic = settings.topic(f"stray-{who}")
        [future] = admin.create_topics([NewTopic(topic, 1, 1)]).values()
        with pytest.raises(Exception, match="AUTHORIZATION_FAILED"):
            future.result(timeout=15)
    admin_settings = as_principal("admin")
    assert ensure_topics(admin_settings, INPUT_TOPICS) == []  # sees them all


# --- the flow and the tools over SASL_SSL -----------------------------------------------------


@pytest.mark.kafka
def test_flow_principal_round_trip_with_the_kafka_sink(as_principal: As) -> None:
    flow, reader = as_principal("flow"), as_principal("reader")
    sink = KafkaSinkPartition(flow)
    sink.write_batch([(PRICES, f"m{i}", f"price {i}".encode()) for i in range(50)])
    sink.close()

    got = consume(reader, PRICES, 50)
    assert sorted(got) == sorted(f"price {i}".encode() for i in range(50))


@pytest.mark.kafka
def test_live_flow_over_sasl_ssl_with_the_flow_principal(
    secure_files: SecureFiles, as_principal: As, prefix: str, tmp_path: Path
) -> None:
    pytest.importorskip("flows.live")
    feed_file = tmp_path / "sim3.jsonl"
    # No bets: the feed is one topic, so each match's lines keep their order (bets on the
    # other topic may interleave differently than in the file; tests/test_live_flow.py).
    write_feed(feed_file, matches=3, seed=4, bets_per_match=0)
    expected = replay([feed_file], tmp_path / "replay.duckdb")
    db = tmp_path / "live.duckdb"
    env = {k: v for k, v in os.environ.items() if k != ENV_BOOTSTRAP}
    env[ENV_PREFIX] = prefix
    flow_file = str(secure_files.client_file("flow"))
    command = [sys.executable, "-m", "flows", "live", "--kafka-config", flow_file, "--db", str(db)]
    err = tmp_path / "live.err"
    with err.open("wb") as stderr:
        live = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        stats = publish(as_principal("feed"), feed_file)
        ended = "SELECT count(*) FROM matches WHERE status = 'ended'"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and live.poll() is None:
            if db.exists() and table(db, ended) == [(3,)]:
                break
            time.sleep(0.5)
        time.sleep(2.5)  # the last publication of the file
    finally:
        live.send_signal(signal.SIGINT)
        code = live.wait(60)
    assert code == 0, err.read_text()
    assert stats.lines > 1000
    for name in ("market_history", "prices", "matches"):
        sql = f"SELECT * FROM {name} ORDER BY ALL"
        assert table(db, sql) == table(expected, sql), name
    history = table(expected, "SELECT count(*) FROM market_history")[0][0]
    assert len(consume(as_principal("reader"), "markets", history, wait_s=30)) == history


@pytest.mark.kafka
def test_publish_signs_and_tail_reads_with_their_config_files(
    secure_files: SecureFiles,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feed_file = tmp_path / "feed.jsonl"
    lines = [
        b'{"v":1,"provider":"sim","match_id":"m1","seq":1,"ts":1,"type":"clock","minute":0,'
        b'"second":0}',
        b'{"v":1,"provider":"other","match_id":"m1","seq":1,"ts":2,"type":"clock","minute":0,'
        b'"second":1}',
        b'{"v":1,"ts":3,"type":"deposit","user_id":"u1","amount":"5.00"}',
    ]
    feed_file.write_bytes(b"\n".join(lines) + b"\n")
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[providers]\nsim = "{SECRET}"\n')
    secrets.chmod(0o600)
    monkeypatch.setenv(ENV_PREFIX, prefix)
    monkeypatch.delenv(ENV_BOOTSTRAP, raising=False)
    monkeypatch.delenv("ODDSFLOW_SECRETS_FILE", raising=False)
    feed_config = str(secure_files.client_file("feed"))

    code = publish_main(
        [str(feed_file), "--kafka-config", feed_config, "--sign", "--secrets", str(secrets)]
    )
    out = capsys.readouterr().out
    assert code == 0 and "1 signed" in out and SECRET not in out
    assert "ODDSFLOW_SECRETS_FILE" not in os.environ  # publish signs; the process's keyring
    assert not active_keyring().active  # stays as it was
    flow = client_settings(secure_files, "flow", prefix)
    signed = _read_with_headers(flow, FEED, 2)
    ring = Keyring.of({"sim": SECRET})
    by_provider = {value.split(b'"provider":"')[1][:5]: (value, sig) for value, sig in signed}
    value, signature = by_provider[b'sim",']
    assert check(ring, "sim", value, signature) is None
    assert by_provider[b"other"][1] == ""

    assert produce(flow, PRICES, [b'{"key":"m1"}']) == [None]
    reader_config = str(secure_files.client_file("reader"))
    tail = ["prices", "--kafka-config", reader_config, "--from-beginning", "--max", "1"]
    assert tail_main([*tail, "--timeout", "15"]) == 0
    assert capsys.readouterr().out == '0\t{"key":"m1"}\n'
    assert tail_main(["feed", "--kafka-config", reader_config, "--max", "1"]) == 1
    assert "no topic 'feed'" in capsys.readouterr().err  # not even visible to the reader


def _read_with_headers(settings: KafkaSettings, topic: str, expected: int) -> list:
    consumer = Consumer(
        {
            **settings.consumer_config(f"oddsflow-live-test-{uuid.uuid4().hex[:6]}"),
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(settings.topic(topic), p, OFFSET_BEGINNING) for p in range(4)])
    got: list = []
    deadline = time.monotonic() + 15
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.3)
            if msg is None or msg.error():
                continue
            headers = dict(msg.headers() or [])
            signature = headers.get(SIGNATURE_HEADER) or b""
            assert isinstance(signature, bytes)
            got.append((msg.value(), signature.decode()))
    finally:
        consumer.close()
    return got


# --- settings validation (no broker) -------------------------------------------------------


def _config(tmp_path: Path, text: str, name: str = "client.properties") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("security.protocol=SASL_TLS\n", "unknown security.protocol 'SASL_TLS'"),
        (
            "security.protocol=SASL_SSL\nsasl.mechanism=GSSAPI\n",
            "unsupported sasl.mechanism 'GSSAPI'",
        ),
        ("security.protocol=SASL_SSL\n", "needs sasl.mechanism"),
        (
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.password=hunter2\n",
            "needs sasl.username",
        ),
        (
            "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.username=u\n",
            "needs sasl.password",
        ),
        (
            "security.protocol=SSL\nssl.ca.location=/nonexistent/ca.pem\n",
            "ssl.ca.location: /nonexistent/ca.pem does not exist",
        ),
        ("sasl.username=u\nsasl.password=hunter2\n", "security.protocol is PLAINTEXT"),
        ("security.protocol=SASL_PLAINTEXT\nssl.ca.location=probe\n", "would ignore them"),
    ],
)
def test_security_settings_are_validated(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(KafkaConfigError) as bad:
        KafkaSettings.from_env_and_args(None, _config(tmp_path, text), environ={})
    assert problem in str(bad.value)
    assert "hunter2" not in str(bad.value)


def test_valid_security_settings_pass(tmp_path: Path) -> None:
    ca = _config(tmp_path, "not really a CA, but a readable file")
    config = tmp_path / "ok.properties"
    config.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\nsasl.username=u\n"
        f"sasl.password=hunter2\nssl.ca.location={ca}\n"
    )
    settings = KafkaSettings.from_env_and_args(None, config, environ={})

    assert settings.security["sasl.mechanism"] == "SCRAM-SHA-256"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    with pytest.raises(KafkaConfigError, match="does not exist"):
        KafkaSettings.from_env_and_args(None, tmp_path / "missing.properties", environ={})


@pytest.mark.parametrize("command", ["publish", "tail"])
def test_commands_fail_in_one_line_on_a_bad_config(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n")
    feed = _config(tmp_path, "{}", "feed.jsonl")
    main = publish_main if command == "publish" else tail_main
    target = str(feed) if command == "publish" else "prices"

    assert main([target, "--kafka-config", str(config)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"oddsflow {command}: sasl.mechanism PLAIN needs sasl.username and sasl.password"
    ]
