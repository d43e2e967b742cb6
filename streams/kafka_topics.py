"""Topic names and explicit topic creation (both test brokers auto-create with defaults on
first send, which would give the wrong partition counts)."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

# -1: the broker's default replication factor (KIP-464), accepted by Kafka >= 2.4 and both
# test brokers.
BROKER_DEFAULT_REPLICATION = -1
CREATE_VISIBLE_SECONDS = 10.0


def changelog_topic(application_id: str, store: str = "flows") -> str:
    return f"{application_id}-{store}-changelog"


def output_topic(prefix: str, record_type: str) -> str:
    return f"{prefix}{record_type}"


def deadletter_topic(prefix: str) -> str:
    return f"{prefix}deadletter"


class TopicError(Exception):
    """A topic is missing or cannot be created; the message says which and why."""


def admin_client(bootstrap_servers: str, **config: Any) -> KafkaAdminClient:
    config.setdefault("reconnect_backoff_max_ms", 2000)  # kafka-python's 30 s is too lazy
    return KafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="wirestream-admin", **config
    )


def partition_count(admin: KafkaAdminClient, topic: str) -> int | None:
    """Partitions of `topic`, or None if it does not exist."""
    for desc in admin.describe_topics([topic]):
        if desc.get("name") == topic:
            if desc.get("error_code"):
                return None
            return len(desc["partitions"]) or None
    return None


def ensure_topic(
    admin: KafkaAdminClient,
    topic: str,
    partitions: int,
    replication: int = BROKER_DEFAULT_REPLICATION,
    configs: dict[str, str] | None = None,
) -> tuple[int, bool]:
    """Create `topic` if missing; returns (its partition count, whether it was created)."""
    existing = partition_count(admin, topic)
    if existing is not None:
        return existing, False
    try:
        admin.create_topics([NewTopic(topic, partitions, replication, topic_configs=configs or {})])
    except TopicAlreadyExistsError:
        pass  # created concurrently by another member or probe
    except KafkaError as exc:
        raise TopicError(f"cannot create topic {topic}: {exc}") from exc
    # Apache Kafka acknowledges the creation before every broker's metadata lists the
    # topic: ask until it does (a bounded wait for that event, not a guess at its time).
    deadline = time.monotonic() + CREATE_VISIBLE_SECONDS
    while (count := partition_count(admin, topic)) is None:
        if time.monotonic() > deadline:
            raise TopicError(f"topic {topic} still missing after creating it")
        time.sleep(0.05)
    return count, True
