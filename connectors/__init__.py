"""Connectors between the flows and the systems around them (Kafka)."""
