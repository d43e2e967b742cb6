"""The changelog reader on Apache Kafka: a partition restored, dropped and assigned again
at its end offset must still report its high watermark, or a restore that has nothing left
to read waits until its stall timeout (found when the emulators were replaced: they have
no incremental fetch sessions; streams/kafka_clients.py says why they are off)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kafka import KafkaProducer, TopicPartition

from wirestream.streams.kafka_clients import new_restore_consumer
from wirestream.streams.kafka_settings import RunSettings

try:
    from tests import brokers
except ImportError:
    import brokers

pytestmark = pytest.mark.kafka


def _read_to_end(
    consumer: Any, tps: list[TopicPartition], start: int, timeout: float
) -> set[TopicPartition]:
    """What the restore does: assign, seek, poll until position >= high watermark; the
    partitions still pending when `timeout` runs out."""
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, start)
    pending = set(tps)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        consumer.poll(timeout_ms=200)
        for tp in list(pending):
            hw = consumer.highwater(tp)
            if hw is not None and consumer.position(tp) >= hw:
                pending.discard(tp)
                consumer.pause(tp)
    consumer.unsubscribe()
    return pending


def test_partition_restored_again_at_its_end_reports_its_high_watermark(
    broker: brokers.Broker,
) -> None:
    topic = brokers.unique("changelog")
    brokers.create_topic(broker.bootstrap, topic, 2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i in range(20):
        producer.send(topic, key=b"k%d" % i, value=b"v", partition=i % 2)
    producer.flush()
    producer.close()
    consumer = new_restore_consumer(
        RunSettings(bootstrap_servers=broker.bootstrap, application_id="app"), "test"
    )
    try:
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        assert _read_to_end(consumer, tps, 0, 30) == set()  # first restore reads records
        # Assigned again (a rebalance gave them back) with nothing left to read: the
        # answer must come from the broker within the time a fetch takes, not never.
        assert _read_to_end(consumer, tps, 10, 30) == set()
        assert _read_to_end(consumer, tps, 10, 30) == set()
    finally:
        consumer.close()
