"""Signed feeds: an HMAC-SHA256 over each feed line's exact bytes, with a secret per provider.

A provider with a secret in the keyring is *signed*: its lines must carry a valid signature
or are rejected (`bad_signature`) before anything reads them; a keyring may also refuse
every other provider (`unknown_provider`). Lines without a provider (deposits, bets) are not
signed. A signature travels in the Kafka header `oddsflow-sig`, or in a recorded file before
the line and a tab. Where secrets come from and how a key rotates: docs/security.md,
"Signed feeds". Everything but the loaders is pure; secrets never travel in the flow.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SIGNATURE_HEADER = "oddsflow-sig"
ENV_SECRET_PREFIX = "ODDSFLOW_SECRET_"
ENV_PREVIOUS_PREFIX = "ODDSFLOW_PREVIOUS_SECRET_"
ENV_SECRETS_FILE = "ODDSFLOW_SECRETS_FILE"
ENV_REJECT_UNKNOWN = "ODDSFLOW_REJECT_UNKNOWN_PROVIDERS"
MIN_SECRET_BYTES = 16
SIGNATURE_HEX = 64  # SHA-256

BAD_SIGNATURE = "bad_signature"
UNKNOWN_PROVIDER = "unknown_provider"

_HEX = re.compile(rb"[0-9a-f]{64}")
_NOT_ENV = re.compile(r"[^A-Z0-9]")
_TRUE = ("1", "true", "yes", "on")


class KeyringError(ValueError):
    """The secrets cannot be loaded; the message never holds a secret."""


def sign(data: bytes, secret: bytes) -> str:
    """The signature of a line: HMAC-SHA256 over its exact bytes, lowercase hex."""
    return hmac.new(secret, data, hashlib.sha256).hexdigest()


def secret_name(provider: str) -> str:
    """The keyring's name for a provider, also its environment variable's suffix."""
    return _NOT_ENV.sub("_", provider.upper())


Secret = str | bytes
# One secret, or several while a key rotates: the first signs, any of them verifies.
Secrets = Secret | Sequence[Secret]


@dataclass(frozen=True, repr=False)
class Keyring:
    """Which providers are signed, with their secrets (the signing one first); and whether
    other providers are refused. Keys are `secret_name(provider)`."""

    secrets: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)
    reject_unknown: bool = False

    @classmethod
    def of(cls, secrets: Mapping[str, Secrets], reject_unknown: bool = False) -> Keyring:
        """A keyring from provider names and their secret or secrets (text is UTF-8 encoded)."""
        ring = {secret_name(p): _as_bytes(s) for p, s in secrets.items()}
        empty = sorted(name for name, s in ring.items() if not s)
        if empty:
            raise KeyringError(f"no secret for {', '.join(empty)}")
        short = sorted(name for name, s in ring.items() if min(map(len, s)) < MIN_SECRET_BYTES)
        if short:
            raise KeyringError(
                f"secret for {', '.join(short)} is shorter than {MIN_SECRET_BYTES} bytes"
            )
        return cls(ring, reject_unknown)

    @property
    def active(self) -> bool:
        """Does this keyring refuse anything at all?"""
        return bool(self.secrets) or self.reject_unknown

    def secret_for(self, provider: str) -> bytes | None:
        """The secret a signer of `provider` uses: the first."""
        held = self.secrets.get(secret_name(provider))
        return held[0] if held else None

    def secrets_for(self, provider: str) -> tuple[bytes, ...]:
        """Every secret a line of `provider` may be signed with (none: not signed)."""
        return self.secrets.get(secret_name(provider), ())

    def is_signed(self, provider: str) -> bool:
        return secret_name(provider) in self.secrets

    def __repr__(self) -> str:
        return f"Keyring(signed={sorted(self.secrets)}, reject_unknown={self.reject_unknown})"

    __str__ = __repr__


def _as_bytes(secrets: Secrets) -> tuple[bytes, ...]:
    listed: Sequence[Secret] = [secrets] if isinstance(secrets, str | bytes) else secrets
    return tuple(s.encode() if isinstance(s, str) else bytes(s) for s in listed)


def check(keyring: Keyring, provider: str, data: bytes, signature: str) -> str | None:
    """Why a line of `provider` with these exact bytes and this signature (hex, "" when
    none came) must be refused, or None when it may go on."""
    secrets = keyring.secrets_for(provider)
    if not secrets:
        return UNKNOWN_PROVIDER if keyring.reject_unknown else None
    if not signature:
        return BAD_SIGNATURE
    given = signature.lower().encode("ascii", "replace")
    # Every secret is tried, each compared in constant time, whichever matches.
    matches = [hmac.compare_digest(sign(data, s).encode(), given) for s in secrets]
    return None if any(matches) else BAD_SIGNATURE


# --- signatures on recorded lines and Kafka messages ------------------------------------------


def signed_line(data: bytes, signature: str) -> bytes:
    """A recorded-file line carrying its signature: `<hex>\\t<data>`."""
    return signature.encode() + b"\t" + data


def split_signed(line: bytes) -> tuple[bytes, str]:
    """(the signed bytes, the signature) of a recorded line; (line, "") when unsigned."""
    if len(line) > SIGNATURE_HEX and line[SIGNATURE_HEX] == 9 and _HEX.match(line):  # 9: TAB
        return line[SIGNATURE_HEX + 1 :], line[:SIGNATURE_HEX].decode()
    return line, ""


# A Kafka message's headers, as confluent-kafka gives them.
MessageHeaders = Mapping[str, bytes | str | None] | Iterable[tuple[str, bytes | str | None]] | None


def header_value(headers: MessageHeaders, name: str) -> str:
    """The header `name` of a Kafka message as text, "" when it has none."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for key, value in pairs:
        if key == name and value is not None:
            return value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return ""


def header_signature(headers: MessageHeaders) -> str:
    """The `oddsflow-sig` header of a Kafka message, "" when it has none."""
    return header_value(headers, SIGNATURE_HEADER)


# --- loading (once per process) -----------------------------------------------------------------


def load_keyring(environ: Mapping[str, str] | None = None) -> Keyring:
    """The keyring from `ODDSFLOW_SECRET_*`, `ODDSFLOW_PREVIOUS_SECRET_*`,
    `ODDSFLOW_SECRETS_FILE` and `ODDSFLOW_REJECT_UNKNOWN_PROVIDERS` (for a provider the
    environment names, the environment wins over the file)."""
    env = os.environ if environ is None else environ
    secrets: dict[str, Secrets] = {}
    reject_unknown = False
    path = env.get(ENV_SECRETS_FILE)
    if path:
        secrets, reject_unknown = _read_secrets_file(Path(path))
    secrets |= _environment_secrets(env)
    if ENV_REJECT_UNKNOWN in env:
        reject_unknown = env[ENV_REJECT_UNKNOWN].strip().lower() in _TRUE
    return Keyring.of(secrets, reject_unknown)


def _environment_secrets(env: Mapping[str, str]) -> dict[str, Secrets]:
    """{provider name: [current, previous] or [current]} from the environment."""
    current = {
        n.removeprefix(ENV_SECRET_PREFIX): v
        for n, v in env.items()
        if n.startswith(ENV_SECRET_PREFIX) and v
    }
    previous = {
        n.removeprefix(ENV_PREVIOUS_PREFIX): v
        for n, v in env.items()
        if n.startswith(ENV_PREVIOUS_PREFIX) and v
    }
    orphans = sorted(set(previous) - set(current))
    if orphans:
        raise KeyringError(
            f"{ENV_PREVIOUS_PREFIX}{orphans[0]} is set without {ENV_SECRET_PREFIX}{orphans[0]}"
        )
    return {name: [s, previous[name]] if name in previous else [s] for name, s in current.items()}


def _read_secrets_file(path: Path) -> tuple[dict[str, Secrets], bool]:
    where = f"{ENV_SECRETS_FILE} {path}"
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyringError(f"{where}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyringError(f"{where} is readable by others; chmod 600 it")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KeyringError(f"{where} is not valid TOML: {exc}") from None
    providers = doc.get("providers", {})
    reject_unknown = doc.get("reject_unknown_providers", False)
    if not isinstance(providers, dict) or not isinstance(reject_unknown, bool):
        raise KeyringError(f"{where}: expected [providers] and a boolean reject_unknown_providers")
    bad = sorted(p for p, s in providers.items() if not _strings(s))
    if bad:
        raise KeyringError(
            f"{where}: the secret of {', '.join(bad)} is not a string or a list of strings"
        )
    return dict(providers), reject_unknown


def _strings(value: object) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(s, str) for s in value)
    return isinstance(value, str)


@functools.cache
def active_keyring() -> Keyring:
    """This process's keyring, loaded on first use (`reload_keyring` after a change)."""
    return load_keyring()


def reload_keyring() -> Keyring:
    active_keyring.cache_clear()
    return active_keyring()


def use_secrets_file(path: Path) -> Keyring:
    """`--secrets FILE`: load this file now (errors surface at once) and for every process
    started from here on (through the environment)."""
    os.environ[ENV_SECRETS_FILE] = str(Path(path).resolve())
    return reload_keyring()
