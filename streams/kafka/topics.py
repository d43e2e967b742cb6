"""The member's topics: the input (its partition count), the changelog, the dead-letter
topic and one output topic per record type (created on first use)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wirestream.streams.kafka.stores import STORE_NAME
from wirestream.streams.kafka_settings import MAX_REQUEST_BYTES, RunSettings
from wirestream.streams.kafka_topics import (
    TopicError,
    changelog_topic,
    deadletter_topic,
    ensure_topic,
    output_topic,
    partition_count,
)

BASE_RECORD_TYPES = ("flow", "anomaly")


class MemberTopics:
    def __init__(self, settings: RunSettings, log: Any) -> None:
        self.settings = settings
        self.log = log
        self.changelog = changelog_topic(settings.application_id, STORE_NAME)
        self.deadletter: tuple[str, int] = (deadletter_topic(settings.topic_prefix), 1)
        self.input_partitions = 0
        self.admin: Any = None
        self._outputs: dict[str, tuple[str, int]] = {}

    def setup(self, admin: Any, record_types: Iterable[str]) -> None:
        """With a connected admin client: read the input's partition count, create the
        changelog, dead-letter and output topics with as many partitions."""
        s = self.settings
        self.admin = admin
        n = partition_count(self.admin, s.input_topic)
        if n is None:
            raise TopicError(
                f"input topic {s.input_topic} does not exist: start `wirestream probe` first "
                "or create it with the partition count you want"
            )
        self.input_partitions = n
        rf = s.replication_factor
        ensure_topic(
            self.admin,
            self.changelog,
            n,
            rf,
            {"cleanup.policy": "compact", "max.message.bytes": str(MAX_REQUEST_BYTES)},
        )
        dead = self.deadletter[0]
        self.deadletter = (dead, ensure_topic(self.admin, dead, n, rf)[0])
        for record_type in (*BASE_RECORD_TYPES, *record_types):
            self.output_topic(record_type)

    def output_topic(self, record_type: str) -> tuple[str, int]:
        """(topic, partition count) for a record type; the topic is created on first use."""
        known = self._outputs.get(record_type)
        if known is None:
            name = output_topic(self.settings.topic_prefix, record_type)
            count, created = ensure_topic(
                self.admin, name, self.input_partitions, self.settings.replication_factor
            )
            if created:
                self.log.info("topic_created", topic=name, partitions=count)
            known = self._outputs[record_type] = (name, count)
        return known
