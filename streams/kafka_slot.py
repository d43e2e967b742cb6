"""One assigned input partition in the Kafka mode: its task, store, producer and offsets.

The slot turns what the task emits into Kafka records, sends undecodable input to the
dead-letter topic, and writes the task's changes to the changelog at commit time (the
records also go into the store's write-back cache; RocksDB is written only by
`checkpoint()`, after the input offsets are committed).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from kafka import KafkaProducer, TopicPartition

from probe.errors import RecordError
from probe.flowkey import kafka_partition
from probe.record import decode_record
from state.changelog import Checkpoint, offset_headers
from state.store import StateStore
from streams.serde import dumps_record

if TYPE_CHECKING:
    from kafka.producer.future import FutureRecordMetadata

    from streams.kafka_runtime import KafkaRuntime
    from streams.task import Task


class PartitionSlot:
    def __init__(self, runtime: KafkaRuntime, partition: int, producer: KafkaProducer) -> None:
        self.rt = runtime
        self.partition = partition
        self.tp = TopicPartition(runtime.settings.input_topic, partition)
        self.producer = producer  # ALOS: the member's shared producer; EOS: this slot's own
        self.store: StateStore | None = None
        self.task: Task | None = None
        self.next_offset = 0  # next input offset to process (what a commit commits)
        self.changelog_next = 0  # next changelog offset (the store checkpoint)
        self.dirty = False  # processed or changed since the last successful commit
        self.in_transaction = False
        self.last_input = time.monotonic()
        self.last_punctuation = 0.0
        self.current: Any = None  # the input record being processed (for dead letters)
        self.outputs: Counter[str] = Counter()
        self._changelog_future: FutureRecordMetadata | None = None

    # -- the task's outputs --
    def emit(self, record_type: str, key: str, record: dict[str, Any]) -> None:
        topic, partitions = self.rt.output_topic(record_type)
        kb = key.encode()
        future = self.producer.send(
            topic, value=dumps_record(record), key=kb, partition=kafka_partition(kb, partitions)
        )
        future.add_errback(self.rt.send_failed)
        self.outputs[record_type] += 1

    def bad_packet(self, kind: str) -> None:
        """Task hook: the record being processed cannot be decoded."""
        if kind == "RecordError" and self.current is not None:
            # Task reports record-level errors by class name; the dead letter carries the
            # stable reason (too_short, unknown_version, ...), found again on this rare path.
            try:
                decode_record(self.current.value)
            except RecordError as exc:
                kind = exc.reason
        self.deadletter(kind)

    def deadletter(self, reason: str) -> None:
        msg = self.current
        if msg is None:
            return
        topic, partitions = self.rt.deadletter
        headers = [
            ("reason", reason.encode()),
            ("source.topic", msg.topic.encode()),
            ("source.partition", str(msg.partition).encode()),
            ("source.offset", str(msg.offset).encode()),
        ]
        future = self.producer.send(
            topic,
            value=msg.value,
            key=msg.key,
            headers=headers,
            partition=msg.partition % partitions,
        )
        future.add_errback(self.rt.send_failed)
        self.rt.dead_lettered(self, reason)

    # -- commit phases --
    def write_changelog(self) -> int:
        """Send the task's changes to the changelog (and the store's cache); returns how many."""
        assert self.task is not None and self.store is not None
        changes = self.task.changes()
        headers = offset_headers(self.next_offset)
        topic = self.rt.changelog
        send = self.producer.send
        store = self.store
        future = None
        for key, value in changes.items():
            future = send(topic, key=key, value=value, partition=self.partition, headers=headers)
            if value is None:
                store.delete(key)
            else:
                store.put(key, value)
        if future is not None:
            future.add_errback(self.rt.send_failed)
            self._changelog_future = future
        return len(changes)

    def changelog_written(self, timeout: float = 30.0) -> None:
        """After the producer flushed: where the changelog now ends (for the checkpoint)."""
        future, self._changelog_future = self._changelog_future, None
        if future is not None:
            self.changelog_next = future.get(timeout=timeout).offset + 1

    def checkpoint(self) -> None:
        """The input offsets are committed: write the store batch with its checkpoint."""
        assert self.store is not None
        self.store.flush(Checkpoint(self.changelog_next, self.next_offset).encode())
        self.dirty = False

    def close(self) -> None:
        """Release the store (RocksDB lock); writes not checkpointed are dropped."""
        if self.store is not None:
            # Pending writes are dropped: local state never runs ahead of committed input.
            self.store.close()
            self.store = None
        self.task = None
