"""`oddsflow publish` (a recorded file into the input topics) and `oddsflow tail` (print a
topic's messages).

publish: feed lines go to the feed topic keyed by `match_id`, `bet` lines to the bets_in
topic keyed by their `match_id` too (so a bet lands in the bets_in partition with the same
index as its match's feed partition: the live flow reads the two together, see
connectors/kafka/source.py), `deposit` lines to bets_in keyed by `user_id`; each value is
the line's exact bytes. A line that is not JSON is still sent (to the feed topic, with an
empty key): rejecting it is the flow's job, and it lands in `rejects` with a reason.
Every message carries its line's position in the file (`oddsflow-pos` header), which the
live flow uses to keep the file's order among lines sent in the same millisecond. A
signed recorded line (`<signature>\t<line>`) is sent as the line with its signature in
the `oddsflow-sig` header; `--sign` signs the lines of every provider the keyring holds a
secret for.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import msgspec
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
from confluent_kafka.admin import ClusterMetadata

from connectors.kafka.admin import ensure_topics, fetch_metadata
from connectors.kafka.serde import SinkItem
from connectors.kafka.settings import (
    BETS_IN,
    FEED,
    INPUT_TOPICS,
    POSITION_HEADER,
    KafkaConfigError,
    KafkaSettings,
    KafkaUnreachableError,
    TopicSetupError,
)
from connectors.kafka.sink import Headers, KafkaDeliveryError, KafkaSinkPartition
from flows import config
from flows.sources import bounded_lines, file_format, open_feed, read_limit
from operators.signing import (
    ENV_SECRETS_FILE,
    SIGNATURE_HEADER,
    Keyring,
    KeyringError,
    load_keyring,
    sign,
    split_signed,
)

# Both commands ask the broker for metadata first, so an unreachable bootstrap fails
# within this many seconds with one line, instead of librdkafka retrying forever.
CHECK_TIMEOUT_S = 5.0
BET_TYPES = frozenset({"deposit", "bet"})
BATCH_LINES = 1000
PROGRESS_EVERY_S = 0.5


class _Routing(msgspec.Struct):
    """The only fields publish looks at; everything else passes through untouched."""

    type: object = None
    match_id: object = None
    user_id: object = None
    ts: object = None


_routing = msgspec.json.Decoder(_Routing)


class Routed(NamedTuple):
    item: SinkItem  # (topic suffix, key, the line's bytes)
    ts: int | None  # for pacing; None when the line has no integer ts
    is_json: bool


def route(line: bytes) -> Routed:
    """Which input topic and key one line goes to."""
    try:
        fields = _routing.decode(line)
    except msgspec.MsgspecError:
        return Routed((FEED, "", line), None, False)
    ts = fields.ts if isinstance(fields.ts, int) else None
    if fields.type == "bet":  # with its match: what must meet, meets (connectors/kafka/source.py)
        return Routed((BETS_IN, _text(fields.match_id) or _text(fields.user_id), line), ts, True)
    if fields.type in BET_TYPES:
        return Routed((BETS_IN, _text(fields.user_id), line), ts, True)
    return Routed((FEED, _text(fields.match_id), line), ts, True)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


class _Provider(msgspec.Struct):
    provider: object = None


_provider = msgspec.json.Decoder(_Provider)


def signature_for(line: bytes, keyring: Keyring) -> str:
    """The line's signature when its provider is signed in `keyring`, else ""."""
    try:
        provider = _provider.decode(line).provider
    except msgspec.MsgspecError:
        return ""
    secret = keyring.secret_for(provider) if isinstance(provider, str) else None
    return sign(line, secret) if secret is not None else ""


@dataclass
class PublishStats:
    lines: int = 0
    per_topic: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INPUT_TOPICS, 0))
    not_json: int = 0
    signed: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else float(self.lines)


def publish(
    settings: KafkaSettings,
    path: Path,
    speed: float = 0.0,
    *,
    progress: bool = False,
    sign_with: Keyring | None = None,
) -> PublishStats:
    """Send every non-blank line of `path`; at `speed` > 0, paced by the lines' `ts`.
    Each message has its line's position in the `oddsflow-pos` header; a recorded
    signature, or one made with `sign_with`, goes in the `oddsflow-sig` header.

    Returns once every message is acknowledged by the broker; raises
    `KafkaDeliveryError` if one could not be delivered.
    """
    sink = _Publisher(settings, client_id="oddsflow-publish")
    stats = PublishStats()
    started = time.monotonic()
    pace = _Pacer(speed, started)
    ticker = _Progress(stats, started) if progress else None
    batch: list[Placed] = []
    for line, recorded in _lines(path):
        item, ts, is_json = route(line)
        signature = (signature_for(line, sign_with) if sign_with else "") or recorded
        wait = pace.wait_for(ts)
        if wait > 0:
            sink.write_placed(batch)
            batch = []
            _serve_for(sink, wait)
        batch.append((item, stats.lines, signature))
        stats.lines += 1
        stats.per_topic[item[0]] += 1
        stats.not_json += not is_json
        stats.signed += bool(signature)
        if len(batch) >= BATCH_LINES or speed > 0:
            sink.write_placed(batch)
            batch = []
        if ticker:
            ticker.maybe_print()
    sink.write_placed(batch)
    sink.close()
    stats.seconds = time.monotonic() - started
    if ticker:
        ticker.finish()
    return stats


def _lines(path: Path) -> Iterator[tuple[bytes, str]]:
    """(line, recorded signature or "") for every non-blank line; a line over its file
    format's limit is cut just past it (and rejected as `line_too_long` where it is read)."""
    with open_feed(path) as stream:
        for raw in bounded_lines(stream, read_limit(file_format(path))):
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield split_signed(line)


Placed = tuple[SinkItem, int, str]  # an item, its line's position, its signature or ""


class _Publisher(KafkaSinkPartition):
    """The Kafka sink's producer, with a line's position and signature as headers."""

    def write_placed(self, batch: list[Placed]) -> None:
        """Queue the batch in order; raises like `write_batch`."""
        self._raise_if_failed()
        for (suffix, key, value), position, signature in batch:
            self._produce(self._prefix + suffix, key, value, _headers(position, signature))
        self.poll(0)


def _headers(position: int, signature: str) -> Headers:
    headers: Headers = [(POSITION_HEADER, str(position).encode())]
    if signature:
        headers.append((SIGNATURE_HEADER, signature.encode()))
    return headers


class _Pacer:
    """Maps event time to wall time: line `ts` is due `(ts - first_ts) / speed` after start."""

    def __init__(self, speed: float, started: float) -> None:
        self.speed = speed
        self.started = started
        self.first_ts: int | None = None

    def wait_for(self, ts: int | None) -> float:
        if self.speed <= 0 or ts is None:
            return 0.0
        if self.first_ts is None:
            self.first_ts = ts
        due = self.started + (ts - self.first_ts) / 1000 / self.speed
        return due - time.monotonic()


def _serve_for(sink: KafkaSinkPartition, seconds: float) -> None:
    """Sleep `seconds` while serving delivery reports."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sink.poll(min(left, 0.1))


class _Progress:
    def __init__(self, stats: PublishStats, started: float) -> None:
        self.stats = stats
        self.started = started
        self.next_at = started + PROGRESS_EVERY_S

    def maybe_print(self) -> None:
        now = time.monotonic()
        if now >= self.next_at:
            self.next_at = now + PROGRESS_EVERY_S
            rate = self.stats.lines / (now - self.started)
            print(f"\r  {self.stats.lines:,} lines  {rate:,.0f} lines/s", end="", file=sys.stderr)

    def finish(self) -> None:
        print("\r" + " " * 40 + "\r", end="", file=sys.stderr, flush=True)


def publish_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="oddsflow publish",
        description="Send a recorded native JSONL feed (.jsonl, .gz, .bz2) into the "
        "feed and bets_in topics.",
    )
    parser.add_argument("file", type=Path, metavar="FILE")
    _add_kafka_args(parser)
    parser.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="0 (default): as fast as possible; X: X times real time by the lines' ts",
    )
    parser.add_argument(
        "--sign",
        action="store_true",
        help="sign the lines of every provider with a secret (ODDSFLOW_SECRET_<PROVIDER>, "
        "or --secrets / $ODDSFLOW_SECRETS_FILE): HMAC-SHA256 in the oddsflow-sig header",
    )
    parser.add_argument(
        "--secrets",
        type=Path,
        metavar="FILE",
        help="TOML file of provider secrets, mode 0600 (see docs/security.md)",
    )
    args = parser.parse_args(argv)
    if not args.file.is_file():
        return _fail("publish", f"no such file: {args.file}")
    try:
        settings = _kafka_settings(args)
        env = {**os.environ, ENV_SECRETS_FILE: str(args.secrets)} if args.secrets else None
        keyring = load_keyring(env)
    except (KafkaConfigError, KeyringError) as exc:
        return _fail("publish", str(exc))
    if args.sign and not keyring.secrets:
        return _fail("publish", "--sign: no secret (ODDSFLOW_SECRET_<PROVIDER> or --secrets)")
    try:
        fetch_metadata(settings, timeout=CHECK_TIMEOUT_S)
        ensure_topics(settings, INPUT_TOPICS)
        stats = publish(
            settings,
            args.file,
            args.speed,
            progress=sys.stderr.isatty(),
            sign_with=keyring if args.sign else None,
        )
    except (KafkaUnreachableError, TopicSetupError, KafkaDeliveryError) as exc:
        return _fail("publish", str(exc))
    except KeyboardInterrupt:
        return _fail("publish", "interrupted; queued messages may not all have been sent")
    counts = ", ".join(f"{settings.topic(t)} {n:,}" for t, n in stats.per_topic.items())
    print(
        f"published {stats.lines:,} lines from {args.file.name} to {settings.bootstrap} "
        f"({counts}; {stats.not_json:,} not JSON; {stats.signed:,} signed) in "
        f"{stats.seconds:.1f} s ({stats.rate:,.0f} lines/s)"
    )
    return 0


# --- tail ----------------------------------------------------------------------------


def tail_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="oddsflow tail",
        description="Print a topic's messages as `key<TAB>value` lines as they arrive.",
    )
    parser.add_argument("topic", metavar="TOPIC", help="e.g. prices or oddsflow.prices")
    _add_kafka_args(parser)
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest message")
    parser.add_argument("--max", type=int, metavar="N", help="stop after N messages")
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="stop after S seconds without a message"
    )
    args = parser.parse_args(argv)
    try:
        settings = _kafka_settings(args)
        metadata = fetch_metadata(settings, timeout=CHECK_TIMEOUT_S)
    except (KafkaConfigError, KafkaUnreachableError) as exc:
        return _fail("tail", str(exc))
    topic = resolve_topic(settings, args.topic, metadata)
    if topic is None:
        return _fail("tail", f"no topic {args.topic!r} or {settings.topic(args.topic)!r}")
    partitions = sorted(metadata.topics[topic].partitions)
    with contextlib.suppress(KeyboardInterrupt):
        _print_messages(settings, topic, partitions, args.from_beginning, args.max, args.timeout)
    return 0


def resolve_topic(settings: KafkaSettings, name: str, metadata: ClusterMetadata) -> str | None:
    """The prefixed topic if it exists, else `name` itself if it exists."""
    for candidate in (settings.topic(name), name):
        if candidate in metadata.topics:
            return candidate
    return None


def _print_messages(
    settings: KafkaSettings,
    topic: str,
    partitions: list[int],
    from_beginning: bool,
    max_messages: int | None,
    idle_timeout: float | None,
) -> None:
    config = settings.consumer_config(f"oddsflow-tail-{os.getpid()}")
    config["enable.auto.commit"] = False  # a reader, not a member with committed offsets
    consumer = Consumer(config)
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(topic, p, start) for p in partitions])
    seen = 0
    last = time.monotonic()
    try:
        while max_messages is None or seen < max_messages:
            msg = consumer.poll(0.2)
            if msg is None:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    return
                continue
            if msg.error():
                print(f"oddsflow tail: {msg.error()}", file=sys.stderr)
                continue
            print(f"{_decode(msg.key())}\t{_decode(msg.value())}", flush=True)
            seen += 1
            last = time.monotonic()
    except BrokenPipeError:  # `oddsflow tail ... | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps interpreter exit quiet
    finally:
        consumer.close()


def _decode(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


# --- shared --------------------------------------------------------------------------


def _add_kafka_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kafka",
        metavar="BOOTSTRAP",
        help="bootstrap servers (default: $ODDSFLOW_KAFKA, kafka.bootstrap of the config "
        "file, bootstrap.servers of the --kafka-config file, 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--kafka-config",
        type=Path,
        metavar="FILE",
        help="librdkafka .properties file (security.protocol, sasl.*, ssl.*, ...)",
    )


def _kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    """The Kafka settings of the command line (flows/config.py: the config file, the
    environment, then `--kafka` / `--kafka-config`); raises `KafkaConfigError`."""
    try:
        return config.current(config.flags_of(args)).kafka.client_settings()
    except config.ConfigError as exc:
        raise KafkaConfigError(str(exc)) from None


def _fail(command: str, message: str) -> int:
    print(f"oddsflow {command}: {message}", file=sys.stderr)
    return 1
