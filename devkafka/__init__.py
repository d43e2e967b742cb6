"""Apache Kafka for tests, benchmarks and local tries (see broker.py and docs/kafka-mode.md)."""
