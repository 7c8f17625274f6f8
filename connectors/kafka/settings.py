"""Kafka settings, topic names and security properties: one source of truth for every client.

Everything a Kafka client of oddsflow needs lives in one frozen `KafkaSettings`, which
turns itself into librdkafka dicts for a producer, a consumer or an admin client. Topic
names are defined here once (what each carries: docs/topics.md); `settings.topic(name)`
adds the configurable prefix. The admin calls are in `connectors.kafka.admin`.

Where the settings come from, lowest priority first: the defaults below, a librdkafka
`.properties` file (`--kafka-config FILE`), the environment (`ODDSFLOW_KAFKA`,
`ODDSFLOW_KAFKA_PREFIX`), then the command line (`--kafka BOOTSTRAP`). Settings read that
way are validated (`KafkaSettings.validate`): a security setting that cannot work is a
`KafkaConfigError` naming the property, never its value when that could be a secret.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def silent_logger(name: str) -> logging.Logger:
    """A logger for a librdkafka client's own log lines (`logger=`) that drops them: the
    client's `error_cb` or the caller reports the trouble that matters, once."""
    log = logging.getLogger(name)
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_PREFIX = "oddsflow."
DEFAULT_DELIVERY_TIMEOUT_MS = 30_000  # how long the producer retries one message
ENV_BOOTSTRAP = "ODDSFLOW_KAFKA"
ENV_PREFIX = "ODDSFLOW_KAFKA_PREFIX"

# Input topics: values are native JSON lines.
FEED = "feed"  # keyed by match_id
BETS_IN = "bets_in"  # bets keyed by match_id (as their match's feed lines), deposits by user_id
# Output topics: keyed by match_id, bets and wallets by user_id.
PRICES = "prices"
MARKETS = "markets"
MATCHES = "matches"
BETS = "bets"
WALLETS = "wallets"
REJECTS = "rejects"

INPUT_TOPICS = (FEED, BETS_IN)
OUTPUT_TOPICS = (PRICES, MARKETS, MATCHES, BETS, WALLETS, REJECTS)
ALL_TOPICS = INPUT_TOPICS + OUTPUT_TOPICS

# Header of an input message: the line's position in the file `oddsflow publish` sent
# (decimal ASCII, from 0). The live flow's merge orders lines that share a Kafka
# millisecond by it, so a file sent at full speed is read in the file's order.
POSITION_HEADER = "oddsflow-pos"

# Every topic is keyed, so a key's messages stay in order on one partition. Four
# partitions let up to four bytewax workers each own a share of matches and users,
# and stay cheap on a one-node development broker.
DEFAULT_PARTITIONS = 4

# librdkafka properties that belong to `security` rather than `client_overrides`.
_SECURITY_PREFIXES = ("security.protocol", "sasl.", "ssl.")
# Any property whose name contains one of these is shown as *** by repr().
_SECRET_WORDS = ("password", "secret", "key", "jaas", "token", "oauthbearer.config")
# `client_overrides` keys with one of these prefixes apply to that client kind only.
_ROLES = ("producer", "consumer", "admin")

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Files librdkafka reads; `ssl.ca.location` may also be a directory or librdkafka's `probe`.
_SSL_FILES = ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location")

ClientConfig = dict[str, Any]
_log = logging.getLogger("oddsflow.kafka")

# Java .properties: the key ends at the first `=`, `:` or blank; blanks around it are not
# part of the key or the value.
_PROPERTY_LINE = re.compile(r"(?P<key>[^=:\s]+)\s*[=:]?\s*(?P<value>.*)")


class KafkaUnreachableError(RuntimeError):
    """The bootstrap servers did not answer a metadata request in time."""


class KafkaConfigError(ValueError):
    """Kafka settings that cannot work; the message names the property and the problem."""


class TopicSetupError(RuntimeError):
    """Creating a topic failed for a reason other than "it already exists"."""


@dataclass(frozen=True, repr=False)
class KafkaSettings:
    """How oddsflow talks to Kafka: one immutable value, passed to every client.

    `security` holds librdkafka's `security.protocol`, `sasl.*` and `ssl.*` properties.
    `client_overrides` holds any other librdkafka property for every client; a key
    prefixed with `producer.`, `consumer.` or `admin.` applies to that kind only
    (`producer.linger.ms=20`). `delivery_timeout_ms` is how long the producer keeps
    retrying a message before reporting it failed.
    """

    bootstrap: str = DEFAULT_BOOTSTRAP
    topic_prefix: str = DEFAULT_PREFIX
    security: dict[str, str] = field(default_factory=dict)
    client_overrides: dict[str, str] = field(default_factory=dict)
    delivery_timeout_ms: int = DEFAULT_DELIVERY_TIMEOUT_MS

    def __post_init__(self) -> None:
        # Copies, so a caller mutating its dict later cannot change a frozen value.
        object.__setattr__(self, "security", dict(self.security))
        object.__setattr__(self, "client_overrides", dict(self.client_overrides))

    @classmethod
    def from_env_and_args(
        cls,
        bootstrap: str | None = None,
        config_file: Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> KafkaSettings:
        """Settings from `--kafka` / `--kafka-config`, the environment and defaults (the
        commands read them through flows/config.py, which adds the config file)."""
        env = os.environ if environ is None else environ
        return cls.from_properties(
            bootstrap or env.get(ENV_BOOTSTRAP),
            env.get(ENV_PREFIX, DEFAULT_PREFIX),
            config_file,
        )

    @classmethod
    def from_properties(
        cls, bootstrap: str | None, topic_prefix: str, config_file: Path | None
    ) -> KafkaSettings:
        """Validated settings with the security and client properties of `config_file` (a
        librdkafka `.properties` file); `bootstrap` None: the file's `bootstrap.servers`,
        else the default."""
        from_file = _read_config_file(config_file) if config_file is not None else {}
        file_bootstrap = from_file.pop("bootstrap.servers", None)
        timeout = from_file.pop("delivery.timeout.ms", None)
        timeout = from_file.pop("producer.delivery.timeout.ms", timeout)
        security = {k: v for k, v in from_file.items() if k.startswith(_SECURITY_PREFIXES)}
        overrides = {k: v for k, v in from_file.items() if k not in security}
        try:
            timeout_ms = int(timeout) if timeout else DEFAULT_DELIVERY_TIMEOUT_MS
        except ValueError:
            raise KafkaConfigError("delivery.timeout.ms must be an integer") from None
        settings = cls(
            bootstrap=bootstrap or file_bootstrap or DEFAULT_BOOTSTRAP,
            topic_prefix=topic_prefix,
            security=security,
            client_overrides=overrides,
            delivery_timeout_ms=timeout_ms,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise `KafkaConfigError` unless the security settings can work: a known
        `security.protocol`; with SASL, a `sasl.mechanism` among PLAIN and SCRAM and both
        `sasl.username` and `sasl.password`; no `sasl.*` or `ssl.*` settings that the
        protocol would silently ignore; every `ssl.*` file present and readable."""
        problem = security_problem(self.security)
        if problem:
            raise KafkaConfigError(problem)
        verify = self.client_overrides.get("enable.ssl.certificate.verification", "true")
        if verify.lower() in ("false", "0"):
            _log.warning("Kafka: the broker's certificate is not checked (--kafka-config)")

    def topic(self, name: str) -> str:
        """The full topic name: `topic("prices")` -> `"oddsflow.prices"`."""
        return self.topic_prefix + name

    def producer_config(self) -> ClientConfig:
        """Idempotent, acks=all producer; 1 ms of linger: latency first (messages still
        batch while a request is in flight). A key's partition is CRC32(key) modulo the
        partitions (librdkafka's default for keys), and an empty key's is always the same
        one (the default picks one at random): a file published twice lands the same way."""
        return {
            **self._common("producer"),
            "partitioner": "consistent",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 1,
            "batch.num.messages": 10_000,
            "delivery.timeout.ms": self.delivery_timeout_ms,
            **self._overrides("producer"),
        }

    def consumer_config(self, group_id: str) -> ClientConfig:
        """A consumer in `group_id` that starts from the earliest offset when it has none."""
        return {
            **self._common("consumer"),
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            **self._overrides("consumer"),
        }

    def admin_config(self) -> ClientConfig:
        return {**self._common("admin"), **self._overrides("admin")}

    def _common(self, role: str) -> ClientConfig:
        return {
            "bootstrap.servers": self.bootstrap,
            "client.id": f"oddsflow-{role}",
            **self.security,
        }

    def _overrides(self, role: str) -> ClientConfig:
        out: ClientConfig = {}
        for key, value in self.client_overrides.items():
            head, _, rest = key.partition(".")
            if head not in _ROLES:
                out[key] = value
            elif head == role:
                out[rest] = value
        return out

    def __repr__(self) -> str:
        return (
            f"KafkaSettings(bootstrap={self.bootstrap!r}, topic_prefix={self.topic_prefix!r}, "
            f"security={masked(self.security)!r}, "
            f"client_overrides={masked(self.client_overrides)!r}, "
            f"delivery_timeout_ms={self.delivery_timeout_ms!r})"
        )

    __str__ = __repr__


def security_problem(security: Mapping[str, str]) -> str | None:
    """What is wrong with these librdkafka security properties, or None."""
    protocol = security.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in SECURITY_PROTOCOLS:
        return (
            f"unknown security.protocol {security['security.protocol']!r} "
            f"(expected one of {', '.join(SECURITY_PROTOCOLS)})"
        )
    uses_sasl, uses_tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
    given = sorted(security)
    stray = [k for k in given if k.startswith("sasl.")] if not uses_sasl else []
    stray += [k for k in given if k.startswith("ssl.")] if not uses_tls else []
    if stray:
        return (
            f"{', '.join(stray)} given, but security.protocol is {protocol}, which would "
            "ignore them (SASL_SSL uses both)"
        )
    if uses_sasl:
        mechanism = security.get("sasl.mechanism") or security.get("sasl.mechanisms")
        if mechanism is None:
            return (
                f"security.protocol {protocol} needs sasl.mechanism ({', '.join(SASL_MECHANISMS)})"
            )
        if mechanism.upper() not in SASL_MECHANISMS:
            known = ", ".join(SASL_MECHANISMS)
            return f"unsupported sasl.mechanism {mechanism!r} (expected one of {known})"
        missing = [k for k in ("sasl.username", "sasl.password") if not security.get(k)]
        if missing:
            return f"sasl.mechanism {mechanism} needs {' and '.join(missing)}"
        if protocol == "SASL_PLAINTEXT" and mechanism.upper() == "PLAIN":
            _log.warning("Kafka: SASL PLAIN without TLS sends the password in clear text")
    for key in _SSL_FILES:
        location = security.get(key)
        if location is None or (key == "ssl.ca.location" and location == "probe"):
            continue
        if not Path(location).exists():
            return f"{key}: {location} does not exist"
        if not os.access(location, os.R_OK):
            return f"{key}: {location} is not readable"
    return None


def _read_config_file(path: Path) -> dict[str, str]:
    try:
        return read_properties(path)
    except FileNotFoundError:
        raise KafkaConfigError(f"--kafka-config: {path} does not exist") from None
    except OSError as exc:
        raise KafkaConfigError(f"--kafka-config: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KafkaConfigError(f"--kafka-config: {path} is not UTF-8 text") from None


def masked(props: Mapping[str, str]) -> dict[str, str]:
    """`props` with the value of every property that may hold a secret shown as ***."""
    return {
        k: "***" if any(word in k.lower() for word in _SECRET_WORDS) else v
        for k, v in props.items()
    }


def read_properties(path: Path) -> dict[str, str]:
    """Read a librdkafka / Java `.properties` file into a dict.

    Supports `key=value`, `key: value` and `key value`, `#` and `!` comments, and lines
    continued with a trailing backslash (enough for client config files; no unicode
    escapes).
    """
    props: dict[str, str] = {}
    pending = ""
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#!":
            continue
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        match = _PROPERTY_LINE.match(line)
        if match:
            props[match["key"]] = match["value"]
    return props
