"""A local single-node Apache Kafka 4.x broker: `oddsflow kafka up | down | status`.

The broker is the real thing, run from the jars Maven Central serves
(`org.apache.kafka:kafka_2.13`, version pinned in `kafka/pom.xml`), fetched once into
the git-ignored `.cache/kafka/libs`. One JVM is both KRaft controller and broker:

- PLAINTEXT clients on 127.0.0.1:9092, the controller on 127.0.0.1:9094, loopback only.
- `--secure` is a second, separate broker (its own state in `<state>/secure/`, its own
  ports, so both can run at once): SASL_SSL with SCRAM-SHA-512 on 127.0.0.1:9093, a
  local CA, least-privilege ACLs, and one client properties file per principal in
  `<state>/secure/clients/` (see tooling/kafka_secure.py and docs/security.md).
- `auto.create.topics.enable=false`: a typo in a topic name fails loudly instead of
  creating a stray topic, and topics get the partition count oddsflow chose
  (`connectors.kafka.ensure_topics` creates them on demand).
- State in `.kafka/` (or `$ODDSFLOW_KAFKA_HOME`): `data/` formatted on first start
  with a random cluster id, the generated `server.properties`, `logs/server.log`,
  and `broker.pid`.
- `--brokers 3` is a local three-node cluster instead (tooling/kafka_cluster.py, its own
  ports and state); `down` stops it as well as the single broker.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from connectors.kafka.admin import fetch_metadata
from connectors.kafka.settings import (
    DEFAULT_PREFIX,
    ENV_PREFIX,
    KafkaSettings,
    KafkaUnreachableError,
    TopicSetupError,
)
from tooling import kafka_secure
from tooling.kafka_secure import SecureFiles, SecuritySetupError

HOST = "127.0.0.1"
PORT = 9092
CONTROLLER_PORT = 9094
BOOTSTRAP = f"{HOST}:{PORT}"
SECURE_PORT = kafka_secure.CLIENT_PORT
SECURE_BOOTSTRAP = kafka_secure.BOOTSTRAP
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
HEAP = "-Xmx512m"

REPO = Path(__file__).resolve().parents[1]
POM = REPO / "kafka" / "pom.xml"
LIBS = REPO / ".cache" / "kafka" / "libs"
ENV_HOME = "ODDSFLOW_KAFKA_HOME"

# The JVM flags of Kafka's bin/kafka-run-class.sh, with a heap sized for a laptop.
JVM_FLAGS = (
    "-Xms256m",
    HEAP,
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
)


class BrokerError(RuntimeError):
    """The local broker could not be fetched, formatted, started or stopped."""


@dataclass(frozen=True)
class StatePaths:
    """Where one local broker keeps its state; `secure` is the SASL_SSL instance."""

    home: Path
    secure: bool = False

    @classmethod
    def from_env(cls, secure: bool = False) -> StatePaths:
        base = Path(os.environ.get(ENV_HOME) or REPO / ".kafka").resolve()
        return cls(base / "secure", True) if secure else cls(base)

    @property
    def bootstrap(self) -> str:
        return SECURE_BOOTSTRAP if self.secure else BOOTSTRAP

    @property
    def ports(self) -> tuple[int, ...]:
        if self.secure:
            return (SECURE_PORT, kafka_secure.INTERNAL_PORT, kafka_secure.CONTROLLER_PORT)
        return (PORT, CONTROLLER_PORT)

    @property
    def ready_port(self) -> int:
        """The port the readiness check talks to (the secure one: as the broker itself)."""
        return kafka_secure.INTERNAL_PORT if self.secure else PORT

    @property
    def files(self) -> SecureFiles:
        return SecureFiles(self.home)

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def server_log(self) -> Path:
        return self.logs / "server.log"

    @property
    def jvm_out(self) -> Path:
        return self.logs / "jvm.out"

    @property
    def server_properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.home / "log4j2.properties"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"


@dataclass(frozen=True)
class BrokerStatus:
    up: bool
    pid: int | None
    bootstrap: str
    topics: int | None
    secure: bool = False
    note: str = ""

    def describe(self) -> str:
        name = "kafka (secure)" if self.secure else "kafka"
        if not self.up:
            return f"{name}: down ({self.bootstrap}){' - ' + self.note if self.note else ''}"
        who = f"pid {self.pid}" if self.pid else "not started by oddsflow"
        how = "SASL_SSL (SCRAM-SHA-512) " if self.secure else ""
        return f"{name}: up ({who}) {how}bootstrap {self.bootstrap}, {self.topics} topics"


# --- commands ------------------------------------------------------------------------


def up(secure: bool = False) -> BrokerStatus:
    """Start the broker unless it is already running; return once it answers metadata.

    The secure broker is then given its users, ACLs and topics (every time: idempotent).
    """
    paths = StatePaths.from_env(secure)
    current = status(paths)
    if current.up:
        print(f"{current.describe()} - already up")
        ready = current
    elif current.pid is not None:  # started by another `up` that is still waiting
        print(f"kafka: pid {current.pid} is starting; waiting for it")
        topics = _wait_until_ready(paths, current.pid, time.monotonic() + START_TIMEOUT_S)
        ready = BrokerStatus(True, current.pid, paths.bootstrap, topics, secure=secure)
    else:
        ready = _start(paths)
    if secure:
        _secure_setup(paths)
    return ready


def _start(paths: StatePaths) -> BrokerStatus:
    _require_free_ports(paths.ports)
    libs = ensure_jars()
    if paths.secure:
        try:
            kafka_secure.ensure_tls(paths.files)
            kafka_secure.ensure_client_files(paths.files)
        except SecuritySetupError as exc:
            raise BrokerError(str(exc)) from None
    _write_config(paths)
    if not (paths.data / "meta.properties").exists():
        _format_storage(paths, libs)
    started = time.monotonic()
    pid = _launch(paths, libs)
    try:
        topics = _wait_until_ready(paths, pid, started + START_TIMEOUT_S)
    except BrokerError:
        _stop(pid)
        paths.pid_file.unlink(missing_ok=True)
        raise
    ready = BrokerStatus(True, pid, paths.bootstrap, topics, secure=paths.secure)
    took = time.monotonic() - started
    print(f"{ready.describe()} - started in {took:.1f} s (Kafka {kafka_version()})")
    return ready


def _secure_setup(paths: StatePaths) -> None:
    """Users, ACLs and topics for `$ODDSFLOW_KAFKA_PREFIX`; where the client files are."""
    prefix = os.environ.get(ENV_PREFIX, DEFAULT_PREFIX)
    try:
        kafka_secure.setup(paths.files, prefix)
    except (SecuritySetupError, KafkaUnreachableError, TopicSetupError) as exc:
        raise BrokerError(f"securing the broker failed: {exc}") from None
    print(f"ACLs and topics for prefix {prefix!r}; client settings (--kafka-config), 0600:")
    for line in kafka_secure.principals_summary(paths.files):
        print(line)


def down(secure: bool = False) -> bool:
    """Stop the broker named in the pid file (SIGTERM, then SIGKILL); True if one was running."""
    paths = StatePaths.from_env(secure)
    name = "kafka (secure)" if secure else "kafka"
    pid = _running_pid(paths)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        print(f"{name}: not running")
        return False
    print(f"{name}: stopping pid {pid}…")
    _stop(pid)
    paths.pid_file.unlink(missing_ok=True)
    print(f"{name}: down")
    return True


def status(paths: StatePaths | None = None, *, secure: bool = False) -> BrokerStatus:
    """Whether the local broker runs and answers, with its pid and topic count."""
    paths = paths or StatePaths.from_env(secure)
    pid = _running_pid(paths)
    if pid is None and not _port_open(paths.ready_port):
        return BrokerStatus(False, None, paths.bootstrap, None, secure=paths.secure)
    try:
        md = fetch_metadata(_ready_settings(paths), timeout=3.0)
    except (KafkaUnreachableError, ValueError) as exc:
        note = f"pid {pid} runs but does not answer yet" if pid else str(exc)
        return BrokerStatus(False, pid, paths.bootstrap, None, secure=paths.secure, note=note)
    topics = sum(1 for name in md.topics if not name.startswith("__"))
    return BrokerStatus(True, pid, paths.bootstrap, topics, secure=paths.secure)


def _ready_settings(paths: StatePaths) -> KafkaSettings:
    """Who asks whether the broker answers: anyone on the plain one, the broker's own
    certificate on the secure one (its SCRAM users do not exist before the first setup)."""
    if paths.secure:
        return kafka_secure.internal_settings(paths.files)
    return KafkaSettings(bootstrap=paths.bootstrap)


def main(argv: Sequence[str] | None = None) -> int:
    from tooling import kafka_cluster  # it builds on this module

    parser = argparse.ArgumentParser(
        prog="oddsflow kafka", description="Run a local Apache Kafka broker on " + BOOTSTRAP
    )
    sub = parser.add_subparsers(dest="command", required=True)
    secure_help = (
        f"the separate secure broker: SASL_SSL (SCRAM-SHA-512, local CA) on {SECURE_BOOTSTRAP}, "
        "ACLs, one client properties file per principal"
    )
    start = sub.add_parser("up", help="start the broker (fetches the jars with Maven once)")
    stop = sub.add_parser("down", help="stop the broker started by `up`")
    state = sub.add_parser(
        "status", help="up or down, pid, bootstrap, topic count (exit 1 when down)"
    )
    for command in (start, stop, state):
        command.add_argument("--secure", action="store_true", help=secure_help)
    for command in (start, state):
        command.add_argument(
            "--brokers",
            type=int,
            choices=(1, kafka_cluster.BROKERS),
            default=1,
            help=f"{kafka_cluster.BROKERS}: a local cluster on {kafka_cluster.BOOTSTRAP} "
            "(3 replicas, min.insync.replicas=2) instead of the single broker; `down` stops "
            "both",
        )
    args = parser.parse_args(argv)
    cluster = getattr(args, "brokers", 1) > 1
    try:
        if args.command == "up" and cluster:
            kafka_cluster.up()
        elif args.command == "up":
            up(secure=args.secure)
        elif args.command == "down":
            down(secure=args.secure)
            if not args.secure:
                kafka_cluster.down()
        elif cluster:
            state_now = kafka_cluster.status()
            print(state_now.describe())
            return 0 if state_now.up else 1
        else:
            current = status(secure=args.secure)
            print(current.describe())
            return 0 if current.up else 1
    except BrokerError as exc:
        print(f"oddsflow kafka {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


# --- jars ----------------------------------------------------------------------------


def kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    return match.group(1) if match else "?"


def ensure_jars() -> Path:
    """The broker's classpath directory, fetched with Maven the first time (or after a
    change to kafka/pom.xml)."""
    stamp = hashlib.sha256(POM.read_bytes()).hexdigest()
    marker = LIBS / ".pom-sha256"
    if marker.exists() and marker.read_text().strip() == stamp:
        return LIBS
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not on PATH; it fetches the Kafka jars once")
    staging = LIBS.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    print(f"fetching Kafka {kafka_version()} jars with Maven (once)…", flush=True)
    started = time.monotonic()
    goal = ["dependency:copy-dependencies", "-DincludeScope=runtime"]
    command = [mvn, "-B", "-f", str(POM), *goal, f"-DoutputDirectory={staging}"]
    log = LIBS.with_name("maven.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    if _run_with_progress(command, log) != 0:
        raise BrokerError(f"Maven could not fetch the Kafka jars; see {log}:\n{_tail(log, 15)}")
    shutil.rmtree(LIBS, ignore_errors=True)
    staging.rename(LIBS)
    marker.write_text(stamp + "\n")
    jars = list(LIBS.glob("*.jar"))
    size_mb = sum(j.stat().st_size for j in jars) / 1e6
    print(f"fetched {len(jars)} jars ({size_mb:.0f} MB) in {time.monotonic() - started:.0f} s")
    return LIBS


def _run_with_progress(command: list[str], log: Path) -> int:
    """Run Maven, keeping its output in `log`; count downloads on a terminal."""
    tty = sys.stdout.isatty()
    downloaded = 0
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if line.startswith("Downloaded from"):
                downloaded += 1
                if tty:
                    print(f"\r  {downloaded} files downloaded", end="", flush=True)
        if tty and downloaded:
            print()
        return proc.wait()


# --- configuration and storage ---------------------------------------------------------

_LOG4J = """\
# Generated by oddsflow (tooling/kafka_broker.py): everything goes to logs/server.log.
status = warn
appender.server.type = RollingFile
appender.server.name = server
appender.server.fileName = ${sys:kafka.logs.dir}/server.log
appender.server.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 20MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.server.ref = server
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def plaintext_listeners(port: int, controller_port: int) -> list[str]:
    """The server.properties listener lines of a plain-text node that is broker and controller."""
    listeners = f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}"
    return [
        f"listeners={listeners}",
        f"advertised.listeners={listeners}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    ]


def topic_properties(replication: int, min_insync: int) -> list[str]:
    """The server.properties topic lines: topics are created by oddsflow with their partition
    counts (ensure_topics), so producing to a missing topic is an error, not a silently
    created topic; a topic created without its own settings, and Kafka's own topics, get
    `replication` copies, `min_insync` of them in sync."""
    return [
        "auto.create.topics.enable=false",
        "num.partitions=4",
        f"default.replication.factor={replication}",
        f"min.insync.replicas={min_insync}",
        f"offsets.topic.replication.factor={replication}",
        "offsets.topic.num.partitions=8",
        f"transaction.state.log.replication.factor={replication}",
        f"transaction.state.log.min.isr={min_insync}",
        "transaction.state.log.num.partitions=4",
        f"share.coordinator.state.topic.replication.factor={replication}",
        f"share.coordinator.state.topic.min.isr={min_insync}",
        "group.initial.rebalance.delay.ms=0",
    ]


def _server_properties(paths: StatePaths) -> str:
    if paths.secure:
        listener_lines = kafka_secure.server_properties(paths.files)
        controller_port = kafka_secure.CONTROLLER_PORT
    else:
        listener_lines = plaintext_listeners(PORT, CONTROLLER_PORT)
        controller_port = CONTROLLER_PORT
    lines = [
        "# Generated by oddsflow (tooling/kafka_broker.py) on every `up`; edits are lost.",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers={HOST}:{controller_port}",
        *listener_lines,
        f"log.dirs={paths.data}",
        *topic_properties(replication=1, min_insync=1),
        # Two cores on the development machine.
        "num.network.threads=2",
        "num.io.threads=4",
        "log.retention.hours=72",
    ]
    return "\n".join(lines) + "\n"


def _write_config(paths: StatePaths) -> None:
    paths.logs.mkdir(parents=True, exist_ok=True)
    if paths.secure:  # the file holds the keystore password
        kafka_secure.write_private(paths.server_properties, _server_properties(paths))
    else:
        paths.server_properties.write_text(_server_properties(paths))
    paths.log4j.write_text(_LOG4J)


def _random_cluster_id() -> str:
    """A Kafka Uuid as `kafka-storage random-uuid` prints it (base64url, 22 chars)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that look like a CLI flag
            return text


def _format_storage(paths: StatePaths, libs: Path) -> None:
    cluster_id = _random_cluster_id()
    print(f"formatting {paths.data} (cluster id {cluster_id})")
    tool = [_java(), *_log_flags(paths), "-cp", f"{libs}/*", "kafka.tools.StorageTool"]
    format_args = ["format", "--standalone", "-t", cluster_id, "-c", str(paths.server_properties)]
    result = subprocess.run(tool + format_args, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise BrokerError(f"formatting the storage failed:\n{result.stdout}{result.stderr}")


# --- the process ---------------------------------------------------------------------


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = shutil.which("java", path=f"{java_home}/bin") if java_home else shutil.which("java")
    if java is None:
        raise BrokerError("java is not on PATH (Kafka 4.x needs Java 17 or newer)")
    return java


def _log_flags(paths: StatePaths) -> list[str]:
    return [f"-Dlog4j2.configurationFile={paths.log4j}", f"-Dkafka.logs.dir={paths.logs}"]


# Kept so the Popen objects are not collected (and do not warn) while the JVM runs.
_launched: list[subprocess.Popen[bytes]] = []


def _launch(paths: StatePaths, libs: Path, jvm_flags: Sequence[str] = JVM_FLAGS) -> int:
    classpath = ["-cp", f"{libs}/*"]
    command = [_java(), *jvm_flags, *_log_flags(paths), *classpath, "kafka.Kafka"]
    command.append(str(paths.server_properties))
    with paths.jvm_out.open("ab") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=paths.home,
            start_new_session=True,  # outlives this command; Ctrl-C here does not reach it
        )
    _launched.append(proc)
    paths.pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def _wait_until_ready(paths: StatePaths, pid: int, deadline: float) -> int:
    """Topic count once the broker answers a metadata request; BrokerError otherwise."""
    settings = _ready_settings(paths)
    while time.monotonic() < deadline:
        if not _alive(pid):
            logs = _tail(paths.server_log, 20) + _tail(paths.jvm_out, 10)
            raise BrokerError(f"the broker exited during startup; last lines of the logs:\n{logs}")
        if _port_open(paths.ready_port):
            try:
                md = fetch_metadata(settings, timeout=2.0)
                return sum(1 for name in md.topics if not name.startswith("__"))
            except KafkaUnreachableError:
                pass
        time.sleep(0.25)
    raise BrokerError(
        f"the broker did not answer on {settings.bootstrap} within {START_TIMEOUT_S:.0f} s; "
        f"last lines of {paths.server_log}:\n{_tail(paths.server_log, 20)}"
    )


def _running_pid(paths: StatePaths) -> int | None:
    """The pid in the pid file if that process is alive and is this state dir's broker."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if not _alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid  # no /proc: trust the pid file
    ours = b"kafka.Kafka" in cmdline and str(paths.server_properties).encode() in cmdline
    return pid if ours else None


def _alive(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)  # our own child: collect it if it exited
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _stop(pid: int) -> None:
    """SIGTERM (Kafka shuts down cleanly), then SIGKILL after STOP_TIMEOUT_S."""
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.2)
        if sig == signal.SIGTERM:
            print(f"kafka: pid {pid} ignored SIGTERM for {wait_s:.0f} s; sending SIGKILL")
    if _alive(pid):
        raise BrokerError(f"pid {pid} survived SIGKILL")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _require_free_ports(ports: Sequence[int]) -> None:
    busy = [p for p in ports if _port_open(p)]
    if busy:
        where = ", ".join(f"{HOST}:{p}" for p in busy)
        raise BrokerError(f"{where} already in use by another process; stop it first")


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"  | {line}\n" for line in text)
