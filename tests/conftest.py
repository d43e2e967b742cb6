"""Shared fixtures. Apache Kafka (tests/brokers.py, devkafka/) starts lazily, once per
session, only when a test asks for `broker`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

try:
    from tests import brokers
except ImportError:  # pytest puts tests/ itself on sys.path when it is not a package
    import brokers


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[brokers.Broker]:
    """One Apache Kafka for the session's Kafka tests."""
    with brokers.running_broker(tmp_path_factory.mktemp("kafka")) as kafka_broker:
        yield kafka_broker
