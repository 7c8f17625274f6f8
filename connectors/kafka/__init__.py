"""The Kafka connector, in the shape of Bytewax's own (`bytewax.connectors.kafka`): the
settings (`settings`), the admin calls (`admin`), the live source (`source`), the sink and
the flows' output step (`sink`), and messages <-> values (`serde`).

The topics, keys and message shapes: docs/topics.md.
"""

from connectors.kafka.admin import (
    drop_topics,
    ensure_topics,
    fetch_metadata,
    partition_counts,
    prepare_topics,
)
from connectors.kafka.serde import SinkItem, to_messages
from connectors.kafka.settings import (
    ALL_TOPICS,
    BETS,
    BETS_IN,
    FEED,
    INPUT_TOPICS,
    MARKETS,
    MATCHES,
    OUTPUT_TOPICS,
    PRICES,
    REJECTS,
    WALLETS,
    KafkaConfigError,
    KafkaSettings,
    KafkaUnreachableError,
    TopicSetupError,
)
from connectors.kafka.sink import (
    DELIVERY,
    KafkaDeliveryError,
    KafkaSink,
    KafkaSinkPartition,
    kafka_output,
)
from connectors.kafka.source import InputStalledError, LiveSource, input_lags, newest_ts

__all__ = [
    "ALL_TOPICS",
    "BETS",
    "BETS_IN",
    "DELIVERY",
    "FEED",
    "INPUT_TOPICS",
    "MARKETS",
    "MATCHES",
    "OUTPUT_TOPICS",
    "PRICES",
    "REJECTS",
    "WALLETS",
    "InputStalledError",
    "KafkaConfigError",
    "KafkaDeliveryError",
    "KafkaSettings",
    "KafkaSink",
    "KafkaSinkPartition",
    "KafkaUnreachableError",
    "LiveSource",
    "SinkItem",
    "TopicSetupError",
    "drop_topics",
    "ensure_topics",
    "fetch_metadata",
    "input_lags",
    "kafka_output",
    "newest_ts",
    "partition_counts",
    "prepare_topics",
    "to_messages",
]
