"""One assigned input partition in the Kafka mode: its task, store, producer and offsets.

The slot turns what the task emits into Kafka records, sends undecodable input to the
dead-letter topic, and writes the task's changes to the changelog at commit time (the
records also go into the store's write-back cache; RocksDB is written only by
`checkpoint()`, after the input offsets are committed).

With the features (streams/kafka/features.py) it also keeps the partition's flow
statistics table (its delta goes to the flowstats store and changelog at each commit, and
to the query view once committed) and copies input records to the per-protocol
substreams.

A slot is built with a `SlotContext`: what it needs from the member (topics, metrics,
the dead-letter report, the features' topics, what to do when it closes), so that it never
reaches into the runtime.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from kafka import KafkaProducer, TopicPartition

from wirestream.probe.errors import RecordError
from wirestream.probe.flowkey import kafka_partition
from wirestream.probe.record import decode_record
from wirestream.state.changelog import Checkpoint, offset_headers
from wirestream.state.store import StateStore
from wirestream.streams.flowstats import (
    Delta,
    FlowStatsTable,
    FlowStatsView,
    encode_entry,
    entry_json,
)
from wirestream.streams.packet_input import PacketInput, split_by_protocol
from wirestream.streams.serde import dumps_record

if TYPE_CHECKING:
    from kafka.producer.future import FutureRecordMetadata

    from wirestream.streams.kafka_metrics import Metrics
    from wirestream.streams.task import Task

_FLOW_DIRECTIONS = ("client_to_server", "server_to_client")


class Topics(Protocol):
    """The member's topics, as a slot sees them (streams/kafka/topics.py)."""

    changelog: str
    deadletter: tuple[str, int]
    input_partitions: int

    def output_topic(self, record_type: str) -> tuple[str, int]: ...


class SlotFeatures(Protocol):
    """The feature topics a slot writes to (streams/kafka/features.py); None when off."""

    substreams: dict[int | None, tuple[str, int]] | None
    stats_changelog: str | None
    stats_topic: tuple[str, int] | None


@dataclass(frozen=True)
class SlotContext:
    """What every slot of a member shares."""

    input_topic: str
    topics: Topics
    features: SlotFeatures
    metrics: Metrics
    dead_lettered: Callable[[PartitionSlot, str], None]  # count and log a dead letter
    released: Callable[[int], None]  # the slot closed: views, gauges, cleanup clock


class PartitionSlot:
    def __init__(
        self,
        ctx: SlotContext,
        partition: int,
        producer: KafkaProducer,
        errback: Callable[[BaseException], None],
    ) -> None:
        self.ctx = ctx
        self.partition = partition
        self.tp = TopicPartition(ctx.input_topic, partition)
        self.producer = producer  # ALOS: the member's shared producer; EOS: this slot's own
        # Called when a send fails (ALOS: tied to the shared producer's generation).
        self.errback = errback
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
        self.anomalies: Counter[str] = Counter()  # by name, since the last metrics update
        self.limit_hits: Counter[str] = Counter()
        self.deadlettered = 0
        self.substream_counts: Counter[str] = Counter()  # by topic, since the last update
        self._processor: tuple[Any, Any] | None = None  # (task, function)
        self._changelog_future: FutureRecordMetadata | None = None
        # Flow statistics (set by Features.restore when the table is kept).
        self.stats: FlowStatsTable | None = None
        self.stats_store: StateStore | None = None
        self.stats_view: FlowStatsView | None = None
        self.stats_changelog_next = 0
        self._stats_future: FutureRecordMetadata | None = None
        self._stats_unpublished: Delta = {}

    # -- the task's outputs --
    def emit(self, record_type: str, key: str, record: dict[str, Any]) -> None:
        topic, partitions = self.ctx.topics.output_topic(record_type)
        kb = key.encode()
        future = self.producer.send(
            topic, value=dumps_record(record), key=kb, partition=kafka_partition(kb, partitions)
        )
        future.add_errback(self.errback)
        self.outputs[record_type] += 1
        if record_type == "flow":
            if self.stats is not None:
                self.stats.flow_finished(record)
            for direction in _FLOW_DIRECTIONS:
                if record[direction]["beyond_depth"]:
                    self.limit_hits["depth"] += 1
                    break
        elif record_type == "anomaly":
            self.anomalies[record["name"]] += 1

    # -- input --
    def processor(self) -> Any:
        """What processes one input value: the task, and with substreams a copy of the
        record to `<prefix>packets.<proto>` (same key and value) unless it was
        dead-lettered; of a bundle, its good packets in one bundle per protocol (keyed by
        the flow key of its first packet)."""
        task = self.task
        assert task is not None
        if self._processor is not None and self._processor[0] is task:
            return self._processor[1]
        reader = PacketInput(task, self.deadletter_part)  # either layout
        process = reader.process
        topics = self.ctx.features.substreams
        if not topics:
            self._processor = (task, process)
            return process
        send = self.producer.send
        errback = self.errback
        counts = self.substream_counts
        same = self.ctx.topics.input_partitions

        def copy(msg: Any, key: bytes | None, value: bytes) -> None:
            proto = key[2] if key is not None and len(key) >= 4 and key[0] == 1 else None
            topic, partitions = topics.get(proto) or topics[None]
            if partitions == same:
                partition = msg.partition  # co-partitioned with the input
            else:
                partition = kafka_partition(key or b"", partitions)
            send(topic, key=key, value=value, partition=partition).add_errback(errback)
            counts[topic] += 1

        def process_and_split(value: bytes) -> None:
            dead = self.deadlettered
            process(value)
            msg = self.current
            if msg is None:
                return
            if reader.last is not None:  # a bundle: its good packets, a bundle per protocol
                for key, part in split_by_protocol(reader.last):
                    copy(msg, key, part)
            elif self.deadlettered == dead:
                copy(msg, msg.key, value)

        self._processor = (task, process_and_split)
        return process_and_split

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

    def deadletter_part(self, reason: str, value: bytes, entry: int) -> None:
        """PacketInput hook: part of the input record (a bundle's entry `entry`, or the
        whole record for entry -1) cannot be used."""
        self.deadletter(reason, value, entry)

    def deadletter(self, reason: str, value: bytes | None = None, entry: int = -1) -> None:
        msg = self.current
        if msg is None:
            return
        topic, partitions = self.ctx.topics.deadletter
        headers = [
            ("reason", reason.encode()),
            ("source.topic", msg.topic.encode()),
            ("source.partition", str(msg.partition).encode()),
            ("source.offset", str(msg.offset).encode()),
        ]
        if entry >= 0:  # one record of a bundle
            headers.append(("source.entry", str(entry).encode()))
        future = self.producer.send(
            topic,
            value=msg.value if value is None else value,
            key=msg.key,
            headers=headers,
            partition=msg.partition % partitions,
        )
        future.add_errback(self.errback)
        self.deadlettered += 1
        self.ctx.dead_lettered(self, reason)

    # -- commit phases --
    def write_changelog(self) -> int:
        """Send the task's changes to the changelog (and the store's cache); returns how many."""
        assert self.task is not None and self.store is not None
        headers = offset_headers(self.next_offset)
        stats_records = self._write_stats(headers) if self.stats is not None else 0
        changes = self.task.changes()  # after the statistics: this resets the dirty set
        future = self._to_changelog(self.ctx.topics.changelog, self.store, changes.items(), headers)
        if future is not None:
            self._changelog_future = future
        return len(changes) + stats_records

    def _to_changelog(
        self,
        topic: str,
        store: StateStore,
        items: Iterable[tuple[bytes, bytes | None]],
        headers: list[tuple[str, bytes]],
    ) -> Any:
        """Send each (key, value) to the store's changelog partition and apply it to the
        store's cache (None = delete); returns the last send's future (errback attached)."""
        send = self.producer.send
        future = None
        for key, value in items:
            future = send(topic, key=key, value=value, partition=self.partition, headers=headers)
            if value is None:
                store.delete(key)
            else:
                store.put(key, value)
        if future is not None:
            future.add_errback(self.errback)
        return future

    def _write_stats(self, headers: list[tuple[str, bytes]]) -> int:
        """The statistics delta of this commit: to its changelog and store cache, and to
        the upsert topic if enabled; published to the query view after the checkpoint."""
        assert self.task is not None and self.stats is not None and self.stats_store is not None
        tracker = self.task.tracker
        flows = tracker.flows
        touched = [flows[k] for k in tracker.dirty if k in flows]
        delta = self.stats.collect(touched, tracker.stream_time)
        if not delta:
            return 0
        features = self.ctx.features
        assert features.stats_changelog is not None
        items = [
            (uid.encode(), None if entry is None else encode_entry(entry))
            for uid, entry in delta.items()
        ]
        future = self._to_changelog(features.stats_changelog, self.stats_store, items, headers)
        if future is not None:
            self._stats_future = future
        if features.stats_topic is not None:
            name, count = features.stats_topic
            send = self.producer.send
            for uid, entry in delta.items():
                key = uid.encode()
                record = None if entry is None else dumps_record(entry_json(uid, entry))
                send(name, key=key, value=record, partition=kafka_partition(key, count))
        self._stats_unpublished.update(delta)
        self.ctx.metrics.inc("wirestream_flowstats_records_total", len(delta))
        return len(delta)

    def changelog_written(self, timeout: float = 30.0) -> None:
        """After the producer flushed: where the changelog now ends (for the checkpoint)."""
        future, self._changelog_future = self._changelog_future, None
        if future is not None:
            self.changelog_next = future.get(timeout=timeout).offset + 1
        future, self._stats_future = self._stats_future, None
        if future is not None:
            self.stats_changelog_next = future.get(timeout=timeout).offset + 1

    def checkpoint(self) -> None:
        """The input offsets are committed: write the store batch with its checkpoint."""
        assert self.store is not None
        self.store.flush(Checkpoint(self.changelog_next, self.next_offset).encode())
        if self.stats_store is not None:
            self.stats_store.flush(Checkpoint(self.stats_changelog_next, self.next_offset).encode())
            if self.stats_view is not None:
                self.stats_view.apply(self._stats_unpublished)  # now committed: queryable
            self._stats_unpublished = {}
        self.dirty = False

    def close(self) -> None:
        """Release the store (RocksDB lock); writes not checkpointed are dropped."""
        if self.store is not None:
            # Pending writes are dropped: local state never runs ahead of committed input.
            self.store.close()
            self.store = None
        if self.stats_store is not None:
            self.stats_store.close()
            self.stats_store = None
        self.stats = self.stats_view = None
        self._stats_unpublished = {}
        self.task = None
        self._processor = None
        self.ctx.released(self.partition)
