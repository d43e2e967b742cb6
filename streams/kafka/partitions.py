"""Partition lifecycle: a newly assigned partition becomes a ready slot (producer, store
restored from the changelog, task with its flows rebuilt, consumer at the committed
offset), and a slot is closed again (revoked, lost, rewound after a broker fault, member
stopping).

Assignments are initialised on the main thread, after the poll that reported them, never
in the rebalance listener: restoring can take long, and the listener runs on
kafka-python's IO thread. (Quix Streams' RecoveryManager has the restore part of this job.)
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any, Protocol

from kafka import TopicPartition

from wirestream.state.changelog import ChangelogRestorer
from wirestream.streams.kafka.guarantee import ProcessingGuarantee
from wirestream.streams.kafka.restore import RestoreJob, restore
from wirestream.streams.kafka.slot import PartitionSlot, SlotContext
from wirestream.streams.kafka.stores import StoreManager
from wirestream.streams.kafka.table import Activity, SlotTable
from wirestream.streams.kafka_clients import BROKER_WAIT_SECONDS
from wirestream.streams.kafka_metrics import Metrics
from wirestream.streams.kafka_retry import Outage
from wirestream.streams.task import Task

# (partition, emit, store, bad_packet) -> the partition's task
TaskFactory = Callable[[int, Any, Any, Any], Task]


def _without_gc(fn: Any) -> Any:
    """Run `fn` with the cyclic GC paused: rebuilding 100k flows allocates millions of
    objects, and the collections this triggers took 2/3 of the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return fn()
    finally:
        if was_enabled:
            gc.enable()


class FeatureRestore(Protocol):
    """What the lifecycle asks of the features (streams/kafka/features.py)."""

    def restore(
        self,
        slots: dict[int, PartitionSlot],
        committed: dict[int, int | None],
        restorer: Any,
        timeout: float,
    ) -> None: ...


class PartitionLifecycle:
    def __init__(
        self,
        *,
        consumer: Any,
        table: SlotTable,
        guarantee: ProcessingGuarantee,
        stores: StoreManager,
        features: FeatureRestore,
        slot_context: SlotContext,
        new_task: TaskFactory,
        restorer: Callable[[], Any],
        changelog: str,
        restore_timeout: float,
        activity: Activity,
        outage: Outage,
        metrics: Metrics,
        log: Any,
    ) -> None:
        self.consumer = consumer
        self.table = table
        self.guarantee = guarantee
        self.stores = stores
        self.features = features
        self.slot_context = slot_context
        self.new_task = new_task
        self.restorer = restorer  # the group-less restore consumer (made on first use)
        self.changelog = changelog
        self.restore_timeout = restore_timeout
        self.activity = activity
        self.outage = outage
        self.metrics = metrics
        self.log = log
        self._initialising: dict[int, PartitionSlot] = {}  # slots of an unfinished init

    # -- assigned partitions --
    def init_pending(self, batch: dict[TopicPartition, list[Any]]) -> dict[TopicPartition, Any]:
        """Initialise newly assigned partitions; drops their records from `batch` (they are
        fetched again from the committed offset)."""
        wanted = self.table.take_pending()
        assigned = {tp.partition for tp in self.consumer.assignment()}
        parts = sorted(p for p in wanted if p in assigned and p not in self.table)
        if parts:
            self._initialising = {}
            try:
                self._init_partitions(parts)
            except BaseException:
                # Release what the failed attempt opened (RocksDB locks, producers); the
                # partitions are initialised again after the next poll.
                for p, slot in self._initialising.items():
                    if self.table.get(p) is not slot:
                        self.drop(slot, abort=True, registered=False)
                self.table.request_init(p for p in parts if p not in self.table)
                raise
            self.outage.recovered()
        return {tp: recs for tp, recs in batch.items() if tp.partition not in wanted}

    def _init_partitions(self, parts: list[int]) -> None:
        consumer = self.consumer
        started = time.monotonic()
        slots: dict[int, PartitionSlot] = {}
        self._initialising = slots
        for p in parts:
            producer, errback = self.guarantee.producer_for(p)
            slots[p] = PartitionSlot(self.slot_context, p, producer, errback)
        jobs: list[RestoreJob] = []
        committed: dict[int, int | None] = {}
        for p, slot in slots.items():
            committed[p] = consumer.committed(slot.tp, timeout_ms=int(BROKER_WAIT_SECONDS * 1000))
            store, start = self.stores.open_checked(p, committed[p] or 0)
            slot.store = store
            restorer = ChangelogRestorer(store, start, committed[p] or 0)
            jobs.append(RestoreJob(p, restorer, start))
        reader = self.restorer()
        _without_gc(lambda: restore(reader, self.changelog, jobs, self.restore_timeout))
        self.features.restore(slots, committed, reader, self.restore_timeout)
        for job in jobs:
            p = job.partition
            slot = slots[p]
            assert slot.store is not None
            task = self.new_task(p, slot.emit, slot.store, slot.bad_packet)
            slot.task = task
            rebuild_started = time.perf_counter()
            flows = _without_gc(task.restore)
            rebuild_seconds = time.perf_counter() - rebuild_started
            if committed[p] is None:
                consumer.seek_to_beginning(slot.tp)
            else:
                consumer.seek(slot.tp, committed[p])
            slot.next_offset = consumer.position(slot.tp)
            slot.changelog_next = job.restorer.checkpoint.changelog_offset
            self.stores.checkpointed(p, slot.changelog_next)
            self.guarantee.begin(slot)
            self.table.add(slot)
            r = job.restorer
            self.metrics.inc("wirestream_restored_records_total", r.applied, partition=p)
            self.metrics.inc("wirestream_restore_seconds_total", job.seconds, partition=p)
            self.log.info(
                "partition_ready",
                partition=p,
                committed_offset=committed[p],
                restored_records=r.applied,
                skipped_records=r.skipped,
                changelog_from=job.start.changelog_offset,
                changelog_to=job.end,
                flows=flows,
                stream_time_ns=task.tracker.stream_time,
                seconds=round(job.seconds, 3),
                rebuild_seconds=round(rebuild_seconds, 3),
            )
            if committed[p] and r.input_offset < committed[p]:
                self.log.warning(
                    "state_behind_input",
                    partition=p,
                    state_input_offset=r.input_offset,
                    committed_offset=committed[p],
                    note="the changelog lacks commits (topic recreated or broker data lost)",
                )
        self.metrics.set("wirestream_assigned_partitions", len(self.table))
        self.metrics.inc("wirestream_rebalances_total")
        self.activity.touch()
        self.log.info(
            "partitions_assigned",
            partitions=self.table.partitions(),
            seconds=round(time.monotonic() - started, 3),
            member_id=consumer.group_metadata().member_id,
        )

    # -- closing --
    def drop(self, slot: PartitionSlot, abort: bool, registered: bool = True) -> None:
        """Close a slot; EOS: end its producer (aborting an open transaction if asked)."""
        self.guarantee.end(slot, abort, registered)

    def close(self, partitions: list[int]) -> None:
        for p in partitions:
            slot = self.table.get(p)
            if slot is not None:
                self.drop(slot, abort=True)

    def close_all(self) -> None:
        self.close(self.table.partitions())

    def abandon(self) -> None:
        """After a fatal error: close without committing (the next owner redoes the tail)."""
        for slot in self.table:
            try:
                self.drop(slot, abort=True)
            except Exception as exc:
                self.log.info("close_failed", partition=slot.partition, error=str(exc)[:200])

    def rewind(self) -> None:
        """Back to the last committed offsets: every slot dropped without committing (its
        producer discarded; an open transaction is aborted when the partition's
        transactional id is initialised again), the shared producer replaced, the assigned
        partitions initialised again (restored from the changelog) after the next poll."""
        self.metrics.inc("wirestream_rewinds_total")
        parts = self.table.partitions()
        for p in parts:
            slot = self.table.get(p)
            if slot is not None:
                try:
                    # No abort: the brokers may be away; initialising the transactional id
                    # again aborts what is open.
                    self.drop(slot, abort=False)
                except Exception as exc:  # the store must close; go on with the others
                    self.log.info("close_failed", partition=p, error=str(exc)[:200])
        self.table.request_init(parts)
        self.guarantee.rewind()
        self.log.info("rewound", partitions=parts)
