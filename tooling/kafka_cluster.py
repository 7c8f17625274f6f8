"""A local three-node Apache Kafka cluster: `oddsflow kafka up --brokers 3 | status | down`.

Three JVMs from the same jars as the single broker (`tooling/kafka_broker.py`), each a
combined KRaft controller and broker, loopback only, apart from the single broker's ports
and state so both run at once:

- node N (1-3): PLAINTEXT clients on 127.0.0.1:1909(N+1), its controller on
  127.0.0.1:1919(N+1); the three controllers are the quorum's static voters, so any two
  elect the active controller and the cluster lives through the loss of one node.
- state in `<state>/cluster/node-N/` (`.kafka/` or `$ODDSFLOW_KAFKA_HOME`, as the single
  broker's): `data/` formatted with one shared cluster id on first start,
  `server.properties`, `logs/server.log`, `broker.pid`.
- every topic created without a replication factor (`ensure_topics` leaves it to the
  brokers) gets 3 replicas and `min.insync.replicas=2`: an `acks=all` write is on two
  nodes before it is acknowledged, and one node may be down without stopping producers.
- a dead node is fenced after `broker.session.timeout.ms` (6 s): its partitions' leaders
  move to the followers in sync, which is how long producers and consumers of those
  partitions wait (librdkafka retries meanwhile). Started again, it catches up from the
  leaders and rejoins the in-sync sets.
- 384 MB of heap per JVM: three fit beside the tests on a 2-core, 24 GB machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from connectors.kafka.admin import ensure_topics, quiet_admin
from connectors.kafka.settings import (
    ALL_TOPICS,
    DEFAULT_PREFIX,
    ENV_PREFIX,
    INPUT_TOPICS,
    KafkaSettings,
    KafkaUnreachableError,
    TopicSetupError,
)
from tooling import kafka_broker
from tooling.kafka_broker import HOST, REPO, BrokerError, StatePaths

BROKERS = 3
FIRST_PORT = 19092
FIRST_CONTROLLER_PORT = 19192
NODES = tuple(range(1, BROKERS + 1))
BOOTSTRAP = ",".join(f"{HOST}:{FIRST_PORT + n - 1}" for n in NODES)
REPLICATION = 3
MIN_INSYNC = 2
SESSION_TIMEOUT_MS = 6_000  # a silent node is fenced (its leaderships move) after this
START_TIMEOUT_S = 90.0  # three JVMs starting at once on two cores
IN_SYNC_TIMEOUT_S = 120.0
SHOWN = 8  # under-replicated partitions listed by `status`

JVM_FLAGS = ("-Xms128m", "-Xmx384m", *kafka_broker.JVM_FLAGS[2:])


@dataclass(frozen=True)
class NodePaths(StatePaths):
    """Where node `node` of the local cluster keeps its state, and its ports."""

    node: int = 1

    @classmethod
    def of(cls, node: int) -> NodePaths:
        base = Path(os.environ.get(kafka_broker.ENV_HOME) or REPO / ".kafka").resolve()
        return cls(base / "cluster" / f"node-{node}", node=node)

    @property
    def port(self) -> int:
        return FIRST_PORT + self.node - 1

    @property
    def controller_port(self) -> int:
        return FIRST_CONTROLLER_PORT + self.node - 1

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.controller_port)

    @property
    def ready_port(self) -> int:
        return self.port

    @property
    def quorum_state(self) -> Path:
        return self.data / "__cluster_metadata-0" / "quorum-state"


@dataclass(frozen=True)
class NodeStatus:
    node: int
    pid: int | None
    up: bool
    bootstrap: str

    def describe(self) -> str:
        state = f"up (pid {self.pid})" if self.up else "down"
        if not self.up and self.pid is not None:
            state = f"starting (pid {self.pid})"
        return f"node {self.node}: {state} {self.bootstrap}"


@dataclass(frozen=True)
class ClusterStatus:
    nodes: tuple[NodeStatus, ...]
    controller: int | None  # the quorum leader (the active controller), if known
    under_replicated: tuple[str, ...]  # "topic/partition isr [..] of [..]"

    @property
    def up(self) -> bool:
        return all(n.up for n in self.nodes)

    def describe(self) -> str:
        running = sum(n.up for n in self.nodes)
        lines = [f"kafka cluster: {running} of {len(self.nodes)} nodes up, bootstrap {BOOTSTRAP}"]
        lines += [f"  {n.describe()}" for n in self.nodes]
        if not running:
            return "\n".join(lines)
        lines.append(f"  active controller: node {self.controller or '?'}")
        urp = self.under_replicated
        lines.append(f"  under-replicated partitions: {len(urp) if urp else 'none'}")
        lines += [f"    {p}" for p in urp[:SHOWN]]
        if len(urp) > SHOWN:
            lines.append(f"    … and {len(urp) - SHOWN} more")
        return "\n".join(lines)


def settings(prefix: str | None = None) -> KafkaSettings:
    """Settings for the local cluster, with every node in the bootstrap list."""
    return KafkaSettings(
        bootstrap=BOOTSTRAP, topic_prefix=prefix or os.environ.get(ENV_PREFIX, DEFAULT_PREFIX)
    )


# --- commands ------------------------------------------------------------------------


def up() -> ClusterStatus:
    """Start the nodes that do not run; create oddsflow's topics (3 replicas,
    `min.insync.replicas=2`); return once every partition has its full in-sync set."""
    started = time.monotonic()
    libs = kafka_broker.ensure_jars()
    _format_new_nodes(libs)
    launched = [start_node(n, wait=False, libs=libs) for n in NODES]
    try:
        for node, pid in zip(NODES, launched, strict=True):
            if pid is not None:
                _wait_until_ready(NodePaths.of(node), pid, started + START_TIMEOUT_S)
    except BrokerError:  # leave no half-started cluster behind
        for node, pid in zip(NODES, launched, strict=True):
            if pid is not None:
                kafka_broker._stop(pid)
                NodePaths.of(node).pid_file.unlink(missing_ok=True)
        raise
    ours = settings()
    try:
        ensure_topics(
            ours,
            ALL_TOPICS,
            replication=REPLICATION,
            config={"min.insync.replicas": str(MIN_INSYNC)},
        )
    except (KafkaUnreachableError, TopicSetupError, KafkaException) as exc:
        raise BrokerError(f"creating the topics failed: {exc}") from None
    wait_in_sync(ours)
    current = status()
    how = "started" if any(launched) else "already up"
    print(f"{current.describe()}\n{how}; in sync after {time.monotonic() - started:.1f} s")
    return current


def down() -> bool:
    """Stop every node of the cluster (SIGTERM to all, then SIGKILL to those left after
    kafka_broker.STOP_TIMEOUT_S); True if one was running."""
    running = {n: kafka_broker._running_pid(NodePaths.of(n)) for n in NODES}
    pids = {n: pid for n, pid in running.items() if pid is not None}
    for node in NODES:
        if node not in pids:
            NodePaths.of(node).pid_file.unlink(missing_ok=True)
    if not pids:
        return False
    print(f"kafka cluster: stopping nodes {', '.join(map(str, pids))}…")
    for pid in pids.values():  # all at once: a quorum is left while each shuts down
        os.kill(pid, signal.SIGTERM)
    for node, pid in pids.items():
        kafka_broker._stop(pid)  # waits; SIGKILL if SIGTERM was ignored
        NodePaths.of(node).pid_file.unlink(missing_ok=True)
    print("kafka cluster: down")
    return True


def status() -> ClusterStatus:
    """Each node, the active controller and the under-replicated partitions."""
    nodes = tuple(_node_status(NodePaths.of(n)) for n in NODES)
    urp: tuple[str, ...] = ()
    if any(n.up for n in nodes):
        try:
            urp = tuple(under_replicated(settings()))
        except KafkaException:
            urp = ("(the cluster did not answer)",)
    return ClusterStatus(nodes, active_controller(), urp)


def kill(node: int) -> int:
    """SIGKILL node `node`, as a crash would; its pid."""
    paths = NodePaths.of(node)
    pid = kafka_broker._running_pid(paths)
    if pid is None:
        raise BrokerError(f"node {node} is not running")
    os.kill(pid, signal.SIGKILL)
    while kafka_broker._alive(pid):
        time.sleep(0.05)
    return pid


def start_node(
    node: int, wait: bool = True, libs: Path | None = None, timeout_s: float = START_TIMEOUT_S
) -> int | None:
    """Start node `node` unless it runs (its storage must be formatted: `up`); its new
    pid, or None if it was running. `wait`: return once it answers metadata (within
    `timeout_s`)."""
    paths = NodePaths.of(node)
    if kafka_broker._running_pid(paths) is not None:
        return None
    kafka_broker._require_free_ports(paths.ports)
    libs = libs or kafka_broker.ensure_jars()
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.server_properties.write_text(server_properties(paths))
    paths.log4j.write_text(kafka_broker._LOG4J)
    pid = kafka_broker._launch(paths, libs, JVM_FLAGS)
    if wait:
        _wait_until_ready(paths, pid, time.monotonic() + timeout_s)
    return pid


# --- what the cluster looks like -------------------------------------------------------


def describe_partitions(
    settings: KafkaSettings, topics: Iterable[str] | None = None, timeout: float = 10.0
) -> dict[tuple[str, int], tuple[int, list[int], list[int]]]:
    """Per (full topic name, partition): (leader node id or -1, replicas, in-sync set);
    None: every topic, Kafka's own included. From a metadata request, which any live node
    answers (the AdminClient's `describe_topics` waits for the node clients are told is
    the controller, which may be the one just killed)."""
    md = quiet_admin(settings).list_topics(timeout=timeout)
    wanted = set(topics) if topics is not None else None
    out: dict[tuple[str, int], tuple[int, list[int], list[int]]] = {}
    for name, meta in md.topics.items():
        if meta.error is not None or (wanted is not None and name not in wanted):
            continue
        for p, part in meta.partitions.items():
            out[(name, p)] = (part.leader, list(part.replicas), list(part.isrs))
    return out


def leader_of(settings: KafkaSettings, topic: str, partition: int) -> int:
    """The node leading partition `partition` of the full topic name `topic`."""
    leader, _, _ = describe_partitions(settings, [topic])[(topic, partition)]
    return leader


def busiest_input_partition(settings: KafkaSettings) -> tuple[str, int]:
    """The input topic partition holding the most messages (full topic name, index): the
    one whose leader's death the soak and the test want the flow to ride through."""
    consumer = Consumer(settings.consumer_config(f"oddsflow-ends-{uuid.uuid4().hex}"))
    try:
        sizes = {}
        for name in INPUT_TOPICS:
            topic = settings.topic(name)
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                sizes[(topic, p)] = high - low
    finally:
        consumer.close()
    return max(sizes, key=lambda tp: sizes[tp])


def under_replicated(settings: KafkaSettings) -> list[str]:
    """The partitions (of every topic, Kafka's own included) whose in-sync set is
    smaller than their replica set, as "topic/partition isr [..] of [..]"."""
    parts = describe_partitions(settings)
    return [
        f"{topic}/{p} isr {sorted(isr)} of {sorted(replicas)}"
        for (topic, p), (_, replicas, isr) in sorted(parts.items())
        if len(isr) < len(replicas)
    ]


def wait_in_sync(settings: KafkaSettings, timeout: float = IN_SYNC_TIMEOUT_S) -> None:
    """Return once no partition is under-replicated; BrokerError after `timeout`."""
    deadline = time.monotonic() + timeout
    urp: list[str] = []
    while time.monotonic() < deadline:
        try:
            urp = under_replicated(settings)
            if not urp:
                return
        except KafkaException as exc:
            urp = [str(exc)]
        time.sleep(0.5)
    listed = "\n  ".join(urp[:10])
    raise BrokerError(f"partitions still under-replicated after {timeout:.0f} s:\n  {listed}")


def active_controller() -> int | None:
    """The node leading the controller quorum, by the newest epoch any node recorded in
    its `quorum-state` file (brokers do not tell clients who the KRaft leader is)."""
    best: tuple[int, int] | None = None
    for node in NODES:
        try:
            state = json.loads(NodePaths.of(node).quorum_state.read_text())
        except (OSError, ValueError):
            continue
        epoch, leader = state.get("leaderEpoch", -1), state.get("leaderId", -1)
        if leader >= 0 and (best is None or epoch > best[0]):
            best = (epoch, leader)
    return best[1] if best else None


# --- configuration and start-up ----------------------------------------------------------


def server_properties(paths: NodePaths) -> str:
    voters = ",".join(f"{n}@{HOST}:{FIRST_CONTROLLER_PORT + n - 1}" for n in NODES)
    lines = [
        "# Generated by oddsflow (tooling/kafka_cluster.py) on every start; edits are lost.",
        "process.roles=broker,controller",
        f"node.id={paths.node}",
        f"controller.quorum.voters={voters}",
        *kafka_broker.plaintext_listeners(paths.port, paths.controller_port),
        f"log.dirs={paths.data}",
        *kafka_broker.topic_properties(REPLICATION, MIN_INSYNC),
        "unclean.leader.election.enable=false",  # only an in-sync replica becomes leader
        # A killed node is fenced, and its leaderships move, after the session timeout.
        "broker.heartbeat.interval.ms=1000",
        f"broker.session.timeout.ms={SESSION_TIMEOUT_MS}",
        "replica.lag.time.max.ms=10000",
        # Three JVMs on two cores.
        "num.network.threads=2",
        "num.io.threads=2",
        "num.replica.fetchers=1",
        "background.threads=2",
        "log.retention.hours=72",
    ]
    return "\n".join(lines) + "\n"


def _format_new_nodes(libs: Path) -> None:
    """Format the storage of every node that has none, with the cluster id of the nodes
    that have one (a new id if none has)."""
    paths = [NodePaths.of(n) for n in NODES]
    fresh = [p for p in paths if not (p.data / "meta.properties").exists()]
    if not fresh:
        return
    ids = {_cluster_id(p) for p in paths if p not in fresh}
    cluster_id = ids.pop() if ids else kafka_broker._random_cluster_id()
    for node in fresh:
        node.logs.mkdir(parents=True, exist_ok=True)
        node.server_properties.write_text(server_properties(node))
        node.log4j.write_text(kafka_broker._LOG4J)
        print(f"formatting {node.data} (cluster id {cluster_id})")
        tool = [kafka_broker._java(), *kafka_broker._log_flags(node), "-cp", f"{libs}/*"]
        command = [*tool, "kafka.tools.StorageTool", "format", "-t", cluster_id]
        command += ["-c", str(node.server_properties)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise BrokerError(f"formatting {node.data} failed:\n{result.stdout}{result.stderr}")


def _cluster_id(paths: NodePaths) -> str:
    for line in (paths.data / "meta.properties").read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    raise BrokerError(f"{paths.data}/meta.properties has no cluster.id")


def _wait_until_ready(paths: NodePaths, pid: int, deadline: float) -> None:
    try:
        kafka_broker._wait_until_ready(paths, pid, deadline)
    except BrokerError as exc:
        raise BrokerError(f"node {paths.node}: {exc}") from None


def _node_status(paths: NodePaths) -> NodeStatus:
    pid = kafka_broker._running_pid(paths)
    answers = pid is not None and kafka_broker._port_open(paths.port)
    return NodeStatus(paths.node, pid, answers, paths.bootstrap)
