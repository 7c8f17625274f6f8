"""The secure local broker's security material: TLS, SCRAM users, ACLs, client files.

`oddsflow kafka up --secure` (tooling/kafka_broker.py) runs a second, separate broker whose
state lives in `.kafka/secure/` (git-ignored). Everything secret is generated here, written
with mode 0600 (directories 0700), and never printed or put on a command line:

- `tls/`: a local CA (`ca.pem`, `ca.key`) and the broker's EC key and certificate (CN
  `oddsflow-broker`, SAN `IP:127.0.0.1`, `DNS:localhost`), as a PKCS12 keystore for the
  broker and as PEM for this tool's own mutual-TLS connection. Made with openssl; the
  keystore password goes to openssl through the environment.
- `clients/<principal>.properties`: one librdkafka file per principal (`--kafka-config`),
  SASL_SSL with SCRAM-SHA-512 on 127.0.0.1:9093, trusting only the local CA.

Listeners (no plaintext anywhere):

| listener | port | protocol | who |
| --- | --- | --- | --- |
| CLIENTS | 9093 | SASL_SSL, SCRAM-SHA-512 | every client, by user name |
| INTERNAL | 9096 | SSL, client certificate required | inter-broker, and this tool's setup |
| CONTROLLER | 9095 | SSL, client certificate required | KRaft controller |

The two certificate listeners authenticate `User:oddsflow-broker` (the certificate's CN);
only a holder of the CA key can mint such a certificate. The SCRAM users are created
through the INTERNAL listener after the broker starts (upserted on every `up`, so a
deleted client file just gets a new password).

Principals and their ACLs (KRaft's `StandardAuthorizer`, deny by default), for the topic
prefix `$ODDSFLOW_KAFKA_PREFIX` (default `oddsflow.`):

| principal | may |
| --- | --- |
| `feed` | write `feed`, `bets_in` |
| `flow` | read `feed`, `bets_in`; write the output topics; groups `oddsflow-live*` |
| `reader` | read the output topics; groups `oddsflow-tail*`, `oddsflow-reader*` |
| `admin` | everything (super user), as is `oddsflow-broker` |

Nobody but the super users may create topics: `up --secure` creates them.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from connectors.kafka.admin import ensure_topics, fetch_metadata
from connectors.kafka.settings import (
    ALL_TOPICS,
    INPUT_TOPICS,
    OUTPUT_TOPICS,
    ClientConfig,
    KafkaSettings,
    KafkaUnreachableError,
    silent_logger,
)

LITERAL = ResourcePatternType.LITERAL
PREFIXED = ResourcePatternType.PREFIXED
READ = AclOperation.READ

HOST = "127.0.0.1"
CLIENT_PORT = 9093
CONTROLLER_PORT = 9095
INTERNAL_PORT = 9096
BOOTSTRAP = f"{HOST}:{CLIENT_PORT}"

MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
BROKER_PRINCIPAL = "oddsflow-broker"
PRINCIPALS = ("admin", "feed", "flow", "reader")
SUPER_USERS = (BROKER_PRINCIPAL, "admin")
# Consumer group prefixes per principal: `oddsflow live` uses `oddsflow-live`, `oddsflow
# tail` `oddsflow-tail-<pid>`.
GROUPS = {"flow": ("oddsflow-live",), "reader": ("oddsflow-tail", "oddsflow-reader")}
CERT_DAYS = 825
CA_DAYS = 3650
TLS_PROTOCOLS = "TLSv1.3"


# librdkafka's own log lines from the setup's admin clients go nowhere.
_quiet = silent_logger("oddsflow.kafka.secure")


class SecuritySetupError(RuntimeError):
    """TLS material, users or ACLs could not be created."""


@dataclass(frozen=True)
class SecureFiles:
    """Where the secure broker keeps its security material (under its state home)."""

    home: Path

    @property
    def tls(self) -> Path:
        return self.home / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.tls / "ca.key"

    @property
    def broker_key(self) -> Path:
        return self.tls / "broker.key"

    @property
    def broker_cert(self) -> Path:
        return self.tls / "broker.pem"

    @property
    def keystore(self) -> Path:
        return self.tls / "broker.p12"

    @property
    def keystore_password(self) -> Path:
        return self.tls / "keystore.password"

    @property
    def clients(self) -> Path:
        return self.home / "clients"

    def client_file(self, principal: str) -> Path:
        return self.clients / f"{principal}.properties"


# --- files -------------------------------------------------------------------------------


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read (created 0600, never wider)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def ensure_tls(files: SecureFiles) -> None:
    """Create the local CA and the broker's certificate and keystore unless they exist."""
    if all(p.exists() for p in (files.ca_cert, files.broker_cert, files.keystore)):
        return
    files.tls.mkdir(mode=0o700, parents=True, exist_ok=True)
    files.tls.chmod(0o700)
    password = secrets.token_hex(24)
    write_private(files.keystore_password, password + "\n")
    ext = files.tls / "broker.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyAgreement\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    csr = files.tls / "broker.csr"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [
        ["req", "-x509", *ec, "-keyout", files.ca_key, "-out", files.ca_cert,
         "-days", str(CA_DAYS), "-subj", "/CN=oddsflow local CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", "-new", *ec, "-keyout", files.broker_key, "-out", csr,
         "-subj", f"/CN={BROKER_PRINCIPAL}"],
        ["x509", "-req", "-in", csr, "-CA", files.ca_cert, "-CAkey", files.ca_key,
         "-CAcreateserial", "-days", str(CERT_DAYS), "-extfile", ext, "-out", files.broker_cert],
        ["pkcs12", "-export", "-inkey", files.broker_key, "-in", files.broker_cert,
         "-certfile", files.ca_cert, "-name", "broker", "-out", files.keystore,
         "-passout", "env:ODDSFLOW_KEYSTORE_PASSWORD"],
    ]  # fmt: skip
    old_umask = os.umask(0o077)  # keys are born 0600
    try:
        for step in steps:
            _openssl([str(arg) for arg in step], password)
    finally:
        os.umask(old_umask)
    csr.unlink(missing_ok=True)
    ext.unlink(missing_ok=True)
    files.ca_cert.chmod(0o644)  # public: clients need it


def _openssl(args: list[str], password: str) -> None:
    env = {**os.environ, "ODDSFLOW_KEYSTORE_PASSWORD": password}
    try:
        result = subprocess.run(
            ["openssl", *args], capture_output=True, text=True, env=env, timeout=60
        )
    except FileNotFoundError as exc:
        raise SecuritySetupError("openssl is not on PATH; it makes the local CA") from exc
    if result.returncode != 0:
        raise SecuritySetupError(f"openssl {args[0]} failed: {result.stderr.strip()[-500:]}")


def ensure_client_files(files: SecureFiles) -> dict[str, Path]:
    """One librdkafka properties file per principal, with a generated password; an
    existing file keeps its password."""
    out = {}
    for principal in PRINCIPALS:
        path = files.client_file(principal)
        if not path.exists():
            write_private(path, client_properties(files, principal, secrets.token_urlsafe(32)))
        out[principal] = path
    return out


def client_properties(files: SecureFiles, principal: str, password: str) -> str:
    return (
        f"# oddsflow secure local broker: the `{principal}` principal "
        "(generated by `oddsflow kafka up --secure`; keep it 0600)\n"
        f"bootstrap.servers={BOOTSTRAP}\n"
        "security.protocol=SASL_SSL\n"
        f"sasl.mechanism={MECHANISM}\n"
        f"sasl.username={principal}\n"
        f"sasl.password={password}\n"
        f"ssl.ca.location={files.ca_cert}\n"
    )


def client_settings(files: SecureFiles, principal: str, prefix: str | None = None) -> KafkaSettings:
    """The settings in a principal's client file (the environment's bootstrap ignored)."""
    settings = KafkaSettings.from_env_and_args(None, files.client_file(principal), environ={})
    return settings if prefix is None else _with_prefix(settings, prefix)


def internal_settings(files: SecureFiles, prefix: str | None = None) -> KafkaSettings:
    """The broker's own identity over mutual TLS on the INTERNAL listener (super user)."""
    settings = KafkaSettings(
        bootstrap=f"{HOST}:{INTERNAL_PORT}",
        security={
            "security.protocol": "SSL",
            "ssl.ca.location": str(files.ca_cert),
            "ssl.certificate.location": str(files.broker_cert),
            "ssl.key.location": str(files.broker_key),
        },
    )
    return settings if prefix is None else _with_prefix(settings, prefix)


def _with_prefix(settings: KafkaSettings, prefix: str) -> KafkaSettings:
    from dataclasses import replace

    return replace(settings, topic_prefix=prefix)


# --- broker configuration ------------------------------------------------------------------


def server_properties(files: SecureFiles) -> list[str]:
    """The listener and security lines of the secure broker's server.properties."""
    keystore_password = files.keystore_password.read_text().strip()
    jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    listeners = (
        f"CLIENTS://{HOST}:{CLIENT_PORT},INTERNAL://{HOST}:{INTERNAL_PORT},"
        f"CONTROLLER://{HOST}:{CONTROLLER_PORT}"
    )
    return [
        f"listeners={listeners}",
        f"advertised.listeners={listeners}",
        "listener.security.protocol.map=CLIENTS:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=INTERNAL",
        f"sasl.enabled.mechanisms={MECHANISM}",
        f"listener.name.clients.{MECHANISM.lower()}.sasl.jaas.config={jaas}",
        "listener.name.internal.ssl.client.auth=required",
        "listener.name.controller.ssl.client.auth=required",
        "ssl.client.auth=none",
        f"ssl.enabled.protocols={TLS_PROTOCOLS}",
        f"ssl.protocol={TLS_PROTOCOLS}",
        "ssl.endpoint.identification.algorithm=https",
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.location={files.keystore}",
        f"ssl.keystore.password={keystore_password}",
        f"ssl.key.password={keystore_password}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={files.ca_cert}",
        # CN=oddsflow-broker -> User:oddsflow-broker on the certificate listeners.
        "ssl.principal.mapping.rules=RULE:^CN=([a-zA-Z0-9.-]+)$/$1/,DEFAULT",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=" + ";".join(f"User:{u}" for u in SUPER_USERS),
        "allow.everyone.if.no.acl.found=false",
    ]


# --- users, ACLs, topics ---------------------------------------------------------------------


def setup(files: SecureFiles, prefix: str, timeout: float = 60.0) -> None:
    """After the broker answers: upsert the SCRAM users from the client files, grant the
    ACLs for `prefix`, create the topics, and wait until the `admin` user can log in."""
    internal = internal_settings(files, prefix)
    upsert_users(internal, {p: _password(files.client_file(p)) for p in PRINCIPALS})
    grant(internal, prefix)
    ensure_topics(internal, ALL_TOPICS)
    _wait_for_login(client_settings(files, "admin"), time.monotonic() + timeout)


def _password(path: Path) -> str:
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "sasl.password":
            return value.strip()
    raise SecuritySetupError(f"{path} has no sasl.password; delete it to get a new one")


def upsert_users(settings: KafkaSettings, passwords: dict[str, str]) -> None:
    admin = _admin(settings)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    changes: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(u, info, pw.encode()) for u, pw in passwords.items()
    ]
    for user, future in admin.alter_user_scram_credentials(changes).items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            raise SecuritySetupError(f"cannot create SCRAM user {user!r}: {exc}") from None


def _admin(settings: KafkaSettings) -> AdminClient:
    config: ClientConfig = {**settings.admin_config(), "logger": _quiet}
    return AdminClient(config)


def acl_bindings(prefix: str) -> list[AclBinding]:
    """Every ACL the secure broker holds for topics named `prefix` + name."""

    def topic(principal: str, name: str, op: AclOperation) -> AclBinding:
        return _binding(ResourceType.TOPIC, prefix + name, LITERAL, principal, op)

    bindings = [topic("feed", t, AclOperation.WRITE) for t in INPUT_TOPICS]
    bindings += [topic("flow", t, AclOperation.READ) for t in INPUT_TOPICS]
    bindings += [topic("flow", t, AclOperation.WRITE) for t in OUTPUT_TOPICS]
    bindings += [topic("reader", t, AclOperation.READ) for t in OUTPUT_TOPICS]
    for principal, groups in GROUPS.items():
        for group in groups:
            bindings.append(_binding(ResourceType.GROUP, group, PREFIXED, principal, READ))
    return bindings


def _binding(
    kind: ResourceType,
    name: str,
    pattern: ResourcePatternType,
    principal: str,
    operation: AclOperation,
) -> AclBinding:
    return AclBinding(
        kind, name, pattern, f"User:{principal}", "*", operation, AclPermissionType.ALLOW
    )


def grant(settings: KafkaSettings, prefix: str) -> None:
    """Create the ACLs for `prefix` (creating an existing ACL changes nothing)."""
    admin = _admin(settings)
    for binding, future in admin.create_acls(acl_bindings(prefix), request_timeout=30).items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            raise SecuritySetupError(f"cannot create ACL {binding}: {exc}") from None


def revoke(settings: KafkaSettings, prefix: str) -> None:
    """Delete the topic ACLs for `prefix` (the group ACLs stay: they are shared)."""
    admin = _admin(settings)
    filters = [
        AclBindingFilter(
            b.restype,
            b.name,
            b.resource_pattern_type,
            b.principal,
            b.host,
            b.operation,
            b.permission_type,
        )
        for b in acl_bindings(prefix)
        if b.restype == ResourceType.TOPIC
    ]
    for future in admin.delete_acls(filters, request_timeout=30).values():
        future.result(timeout=30)


def _wait_for_login(settings: KafkaSettings, deadline: float) -> None:
    """SCRAM credentials reach the listener through the metadata log: a moment later."""
    while True:
        try:
            fetch_metadata(settings, timeout=3.0)
            return
        except KafkaUnreachableError as exc:
            if time.monotonic() > deadline:
                raise SecuritySetupError(f"the admin user cannot log in: {exc}") from None
        time.sleep(0.2)


def principals_summary(files: SecureFiles) -> Iterator[str]:
    for principal in PRINCIPALS:
        yield f"  {principal:<7} {files.client_file(principal)}"
