"""KafkaSink throughput against a bare confluent-kafka producer, same messages, same run.

    oddsflow kafka up
    .venv/bin/python benchmarks/kafka_sink_bench.py [--messages 200000] [--rounds 4]

Every variant sends the same small keyed messages (about 70 bytes of JSON) with the
same producer settings (idempotent, acks=all, linger 1 ms) to its own 4-partition topic.
The producer is created and has delivered one warm-up message (metadata and producer id
fetched) before the clock starts; the clock stops when the broker acknowledged the
last message. The topic's end offsets are checked afterwards. Besides wall-clock
messages/s it reports this process's CPU time per message (all threads, librdkafka's
included), which a busy machine disturbs much less. Variants:

- bare:          Producer.produce in a loop, poll(0) every 1000, flush; no callback
- sink:          KafkaSinkPartition.write_batch with batches of 1000, then close()
- sink+flush:    the same with flush_every_batch=True (a batch returns once acknowledged)
- bytewax flow:  TestingSource(batch_size=1000) -> op.output(KafkaSink), run_main; its
                 time includes bytewax's start and the producer's warm-up
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.kafka.admin import drop_topics, ensure_topics, fetch_metadata
from connectors.kafka.serde import SinkItem
from connectors.kafka.settings import KafkaSettings
from connectors.kafka.sink import KafkaSink, KafkaSinkPartition

BATCH = 1000
T0 = 1_700_000_000_000


Messages = list[tuple[str, bytes]]  # (key, value)
Run = Callable[[], None]
# A variant's setup builds its client (outside the clock) and returns the timed part.
Setup = Callable[[KafkaSettings, str, Messages], Run]
WARM_UP = ("warm-up", b"{}")


def make_items(count: int) -> Messages:
    def value(i: int) -> bytes:
        body = {"match_id": f"m{i % 100}", "market": "1x2", "version": i, "ts": T0 + i}
        return json.dumps(body).encode()

    return [(f"m{i % 100}", value(i)) for i in range(count)]


def bare(settings: KafkaSettings, topic: str, items: Messages) -> Run:
    producer = Producer(settings.producer_config())
    name = settings.topic(topic)
    producer.produce(name, WARM_UP[1], WARM_UP[0])  # metadata and producer id, off the clock
    producer.flush(30)

    def run() -> None:
        for n, (key, value) in enumerate(items):
            while True:
                try:
                    producer.produce(name, value, key)
                    break
                except BufferError:
                    producer.poll(0.1)
            if n % BATCH == 0:
                producer.poll(0)
        assert producer.flush(60) == 0

    return run


def sink_direct(flush_every_batch: bool) -> Setup:
    def setup(settings: KafkaSettings, topic: str, items: Messages) -> Run:
        sink = KafkaSinkPartition(settings, flush_every_batch=flush_every_batch)
        sink.write_batch([(topic, *WARM_UP)])
        while sink.delivered < 1:
            sink.poll(0.1)
        batch: list[SinkItem] = [(topic, k, v) for k, v in items]

        def run() -> None:
            for start in range(0, len(batch), BATCH):
                sink.write_batch(batch[start : start + BATCH])
            sink.close()
            assert sink.delivered == len(items) + 1

        return run

    return setup


def sink_flow(settings: KafkaSettings, topic: str, items: Messages) -> Run:
    """Includes bytewax's start and the producer's first metadata and id requests."""
    flow = Dataflow("bench")
    source = TestingSource([(topic, *WARM_UP)] + [(topic, k, v) for k, v in items], BATCH)
    op.output("out", op.input("inp", flow, source), KafkaSink(settings))
    return lambda: run_main(flow)


def end_offsets(settings: KafkaSettings, topic: str) -> int:
    consumer = Consumer(settings.consumer_config("bench-check"))
    name = settings.topic(topic)
    partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
    total = sum(
        consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in partitions
    )
    consumer.close()
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    args = parser.parse_args()
    settings = KafkaSettings(bootstrap=args.kafka, topic_prefix=f"bench-{uuid.uuid4().hex[:6]}.")
    fetch_metadata(settings)
    variants: dict[str, Setup] = {
        "bare": bare,
        "sink": sink_direct(flush_every_batch=False),
        "sink+flush": sink_direct(flush_every_batch=True),
        "bytewax flow": sink_flow,
    }
    items = make_items(args.messages)
    print(f"{args.messages:,} messages of ~{len(items[0][1])} bytes, {args.rounds} rounds")
    rates: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    try:
        ensure_topics(settings, ["warmup"])
        bare(settings, "warmup", make_items(20_000))()  # broker and client caches warm
        for round_no in range(args.rounds):
            names = list(variants)
            shift = round_no % len(names)  # rotate the order: no variant always runs first
            for name in names[shift:] + names[:shift]:
                topic = f"{name.replace(' ', '_').replace('+', '_')}_{round_no}"
                ensure_topics(settings, [topic])
                run = variants[name](settings, topic, items)
                started, cpu_started = time.perf_counter(), time.process_time()
                run()
                seconds = time.perf_counter() - started
                cpu_us = (time.process_time() - cpu_started) / len(items) * 1e6
                sent = end_offsets(settings, topic)
                assert sent == len(items) + 1, f"{name}: {sent} of {len(items) + 1} in Kafka"
                rates[name].append(len(items) / seconds)
                cpu[name].append(cpu_us)
                print(
                    f"  round {round_no + 1} {name:<13} {len(items) / seconds:>10,.0f} msg/s"
                    f"  {cpu_us:5.2f} µs CPU/msg"
                )
    finally:
        drop_topics(settings)
    base, base_cpu = statistics.median(rates["bare"]), statistics.median(cpu["bare"])
    print("medians: msg/s (ratio to bare), client CPU µs/msg (ratio to bare)")
    for name in variants:
        rate, cost = statistics.median(rates[name]), statistics.median(cpu[name])
        print(
            f"  {name:<13} {rate:>10,.0f} ({rate / base:.2f})  {cost:5.2f} ({cost / base_cpu:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
