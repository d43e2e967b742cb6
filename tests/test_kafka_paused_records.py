"""kafka-python 3.0.12 on Apache Kafka: records a consumer parked for a paused partition
must come back when it is resumed, however pauses and resumes interleave across
partitions (streams/kafka_python_fixes.py: without the fix, the second partition parked
is never fetched again, and a member paused for backpressure went idle with its records
unread: tests/test_enrich.py's hand-over test lost them)."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from wirestream.streams import kafka_python_fixes

try:
    from tests import brokers
except ImportError:
    import brokers

pytestmark = pytest.mark.kafka

PER_PARTITION = 300


def _fill(bootstrap: str) -> str:
    topic = brokers.unique("parked")
    brokers.create_topic(bootstrap, topic, 2)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for p in (0, 1):
        for i in range(PER_PARTITION):
            producer.send(topic, value=b"%d-%d" % (p, i), partition=p)
    producer.flush()
    producer.close()
    return topic


def _drain(bootstrap: str, topic: str) -> dict[int, int]:
    """Records read per partition (each once), with the sequence that parks records:
    a partition X paused while its records are in line, the other one read to its end
    meanwhile, then X resumed."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             max_poll_records=10)  # fmt: skip
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    seen: dict[int, set[int]] = {0: set(), 1: set()}

    def poll_until(done: object, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:  # type: ignore[operator]
            for tp, records in consumer.poll(timeout_ms=50).items():
                seen[tp.partition].update(r.offset for r in records)

    try:
        poll_until(lambda: any(seen.values()), 20)  # X: the first partition read
        x = next(p for p, offsets in seen.items() if offsets)
        y = 1 - x
        consumer.pause(tps[x])  # X's remaining records are in line: they get parked
        poll_until(lambda: len(seen[y]) == PER_PARTITION, 20)
        consumer.resume(tps[x])
        poll_until(lambda: len(seen[x]) == PER_PARTITION, 10)
    finally:
        consumer.close()
    return {p: len(offsets) for p, offsets in seen.items()}


def test_parked_records_of_paused_partitions_come_back(broker: brokers.Broker) -> None:
    kafka_python_fixes.install()
    topic = _fill(broker.bootstrap)
    assert _drain(broker.bootstrap, topic) == {0: PER_PARTITION, 1: PER_PARTITION}


def test_without_the_fix_a_partition_stalls(broker: brokers.Broker) -> None:
    """The bug is still there in the pinned kafka-python: if this fails, the fix can go."""
    kafka_python_fixes.uninstall()
    try:
        topic = _fill(broker.bootstrap)
        counts = _drain(broker.bootstrap, topic)
    finally:
        kafka_python_fixes.install()
    assert counts != {0: PER_PARTITION, 1: PER_PARTITION}
