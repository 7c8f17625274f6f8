"""Local tooling around the flows, for development, tests and demos: the feed simulators,
a local Kafka broker (one node, a secure one, or a three-node cluster), and `oddsflow
publish` / `oddsflow tail`. Nothing here runs inside a flow."""
