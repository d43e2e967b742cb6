"""kafka-python 3.0.12 on Apache Kafka: a consumer whose polls give up on a join while it
is in flight must still complete it (streams/kafka_python_fixes.py, the orphaned join).
Polling with a zero timeout makes every start hit it: the first join's assignment is made
before the topic's metadata is known, the metadata then asks for a second join, and the
leader's own assignment in that second join clears the reason to re-enter before the poll
that would await it."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer

from wirestream.streams import kafka_python_fixes

try:
    from tests import brokers
except ImportError:
    import brokers

pytestmark = pytest.mark.kafka

STARTS = 3


def _start(bootstrap: str, topic: str) -> Any:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"join-{uuid.uuid4().hex}",
                             enable_auto_commit=False)  # fmt: skip
    consumer.subscribe([topic])
    return consumer


def _poll_until(consumer: Any, done: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        consumer.poll(timeout_ms=0)


def _orphaned(consumer: Any) -> bool:
    """The stall's signature: a finished join nobody awaits, and nothing asks for another."""
    coordinator = consumer._coordinator
    task = coordinator._join_task
    return task is not None and task.is_done and not coordinator.need_rejoin()


@pytest.fixture
def topic(broker: brokers.Broker) -> str:
    name = brokers.unique("joins")
    brokers.create_topic(broker.bootstrap, name, 2)
    return name


def test_short_polls_complete_the_join(broker: brokers.Broker, topic: str) -> None:
    kafka_python_fixes.install()
    for _ in range(STARTS):
        consumer = _start(broker.bootstrap, topic)
        try:
            _poll_until(consumer, consumer.assignment)
            assert len(consumer.assignment()) == 2
            assert not _orphaned(consumer)
        finally:
            consumer.close()


def test_without_the_fix_the_join_is_orphaned(broker: brokers.Broker, topic: str) -> None:
    """The bug is still there in the pinned kafka-python: if this fails, the fix can go."""
    kafka_python_fixes.uninstall()
    orphaned = 0
    try:
        for _ in range(STARTS):
            consumer = _start(broker.bootstrap, topic)
            try:
                _poll_until(consumer, lambda c=consumer: c.assignment() or _orphaned(c))
                orphaned += _orphaned(consumer) and not consumer.assignment()
            finally:
                consumer.close()
    finally:
        kafka_python_fixes.install()
    assert orphaned > 0
