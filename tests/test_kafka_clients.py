"""streams/kafka_clients.py on Apache Kafka: the member's producers take their batching
from the settings, and every client factory sets kafka-python up the same way (read size,
fewer copies, bug fixes) before it connects."""

from __future__ import annotations

from dataclasses import replace

import pytest
from kafka.coordinator.assignors.range import RangePartitionAssignor

from wirestream.streams import kafka_copies, kafka_python_fixes, kafka_reads
from wirestream.streams.kafka_clients import (
    new_group_consumer,
    new_producer,
    new_restore_consumer,
)
from wirestream.streams.kafka_settings import RunSettings

try:
    from tests import brokers
except ImportError:
    import brokers

pytestmark = pytest.mark.kafka


def test_clients_take_their_settings_and_the_library_is_set_up(broker: brokers.Broker) -> None:
    kafka_copies.uninstall()
    kafka_python_fixes.uninstall()
    kafka_reads.read_in(kafka_reads.LIBRARY_READ)
    settings = RunSettings(bootstrap_servers=broker.bootstrap, application_id="app",
                           linger_ms=37, socket_read_bytes=64 << 10)  # fmt: skip
    producer = new_producer(settings, "test")
    try:
        assert producer.config["linger_ms"] == 37
        assert kafka_copies.installed() and kafka_python_fixes.installed()
        assert kafka_reads.read_size() == 64 << 10
    finally:
        producer.close()
    kafka_copies.uninstall()
    consumer = new_restore_consumer(settings, "test")
    consumer.close()
    assert kafka_copies.installed()
    fetches = replace(settings, max_partition_fetch_bytes=3 << 20, fetch_max_bytes=5 << 20)
    group = new_group_consumer(fetches, "test", RangePartitionAssignor)
    try:
        assert group.config["max_partition_fetch_bytes"] == 3 << 20
        assert group.config["fetch_max_bytes"] == 5 << 20
    finally:
        group.close()
    kafka_reads.read_in(RunSettings(bootstrap_servers="x", application_id="y").socket_read_bytes)
