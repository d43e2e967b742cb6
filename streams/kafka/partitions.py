"""Partition lifecycle: a newly assigned partition becomes a ready slot (producer, store
restored from the changelog, task with its flows rebuilt, consumer at the committed
offset), and a slot is closed again (revoked, lost, rewound, member stopping).

Assignments are initialised on the main thread, after the poll that reported them, never
in the rebalance listener: restoring can take long, and the listener runs on
kafka-python's IO thread.
"""

from __future__ import annotations

import gc
import time
from typing import TYPE_CHECKING, Any

from kafka import TopicPartition

from state.changelog import ChangelogRestorer
from streams.kafka.restore import RestoreJob, restore
from streams.kafka.slot import PartitionSlot
from streams.kafka.stores import open_checked
from streams.kafka_clients import BROKER_WAIT_SECONDS, new_producer
from streams.kafka_retry import discard_producer, finish_transaction
from streams.task import Task

if TYPE_CHECKING:
    from streams.kafka.runtime import KafkaRuntime

ABORT_WAIT_SECONDS = 2.0  # an abort is a courtesy: the next owner's init aborts it anyway


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


def init_pending(
    rt: KafkaRuntime, batch: dict[TopicPartition, list[Any]]
) -> dict[TopicPartition, Any]:
    """Initialise newly assigned partitions; drops their records from `batch` (they are
    fetched again from the committed offset)."""
    consumer = rt.consumer
    assert consumer is not None
    wanted, rt._to_init = rt._to_init, set()
    assigned = {tp.partition for tp in consumer.assignment()}
    parts = sorted(p for p in wanted if p in assigned and p not in rt.slots)
    if parts:
        rt._initialising = {}
        try:
            _init_partitions(rt, parts)
        except BaseException:
            # Release what the failed attempt opened (RocksDB locks, producers); the
            # partitions are initialised again after the next poll.
            for p, slot in rt._initialising.items():
                if rt.slots.get(p) is not slot:
                    drop_slot(rt, slot, abort=True, registered=False)
            rt._to_init.update(p for p in parts if p not in rt.slots)
            raise
        rt.outage.recovered()
    return {tp: recs for tp, recs in batch.items() if tp.partition not in wanted}


def _init_partitions(rt: KafkaRuntime, parts: list[int]) -> None:
    consumer = rt.consumer
    assert consumer is not None
    s = rt.settings
    started = time.monotonic()
    slots: dict[int, PartitionSlot] = {}
    rt._initialising = slots
    for p in parts:
        if s.exactly_once:
            # Initialising the partition's transactional id fences the previous owner
            # and aborts its open transaction before anything is read back.
            producer = new_producer(s, rt.member, transactional_id=_transactional_id(rt, p))
            producer.init_transactions()
        else:
            if rt.producer is None:  # replaced after a broker error
                rt._new_shared_producer()
            assert rt.producer is not None
            producer = rt.producer
        slots[p] = PartitionSlot(rt, p, producer)
    jobs: list[RestoreJob] = []
    committed: dict[int, int | None] = {}
    for p, slot in slots.items():
        committed[p] = consumer.committed(slot.tp, timeout_ms=int(BROKER_WAIT_SECONDS * 1000))
        store, start = open_checked(rt.state_root, p, committed[p] or 0, rt.log)
        slot.store = store
        restorer = ChangelogRestorer(store, start, committed[p] or 0)
        jobs.append(RestoreJob(p, restorer, start))
    restorer = rt._restorer()
    _without_gc(lambda: restore(restorer, rt.changelog, jobs, s.restore_timeout))
    rt.features.restore(slots, committed)
    for job in jobs:
        p = job.partition
        slot = slots[p]
        assert slot.store is not None
        task = Task(p, rt.config, rt.decoders, slot.emit, slot.store, slot.bad_packet)
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
        rt._local_checkpoints[p] = slot.changelog_next
        if s.exactly_once:
            slot.producer.begin_transaction()
            slot.in_transaction = True
        rt.slots[p] = slot
        r = job.restorer
        rt.metrics.inc("wirestream_restored_records_total", r.applied, partition=p)
        rt.metrics.inc("wirestream_restore_seconds_total", job.seconds, partition=p)
        rt.log.info(
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
            rt.log.warning(
                "state_behind_input",
                partition=p,
                state_input_offset=r.input_offset,
                committed_offset=committed[p],
                note="the changelog lacks commits (topic recreated or broker data lost)",
            )
    rt.metrics.set("wirestream_assigned_partitions", len(rt.slots))
    rt.metrics.inc("wirestream_rebalances_total")
    rt._last_activity = time.monotonic()
    rt.log.info(
        "partitions_assigned",
        partitions=sorted(rt.slots),
        seconds=round(time.monotonic() - started, 3),
        member_id=consumer.group_metadata().member_id,
    )


def _transactional_id(rt: KafkaRuntime, partition: int) -> str:
    s = rt.settings
    return f"{s.application_id}-{s.input_topic}-{partition}"


def drop_slot(rt: KafkaRuntime, slot: PartitionSlot, abort: bool, registered: bool = True) -> None:
    """Close a slot; EOS: end its producer (aborting an open transaction if asked)."""
    if registered:
        rt.slots.pop(slot.partition, None)
    slot.close()
    if rt.settings.exactly_once:
        if abort and slot.in_transaction:
            try:
                finish_transaction(slot.producer, "abort", ABORT_WAIT_SECONDS)
            except Exception as exc:  # fenced or broken: the next owner's init aborts it
                rt.log.info("abort_failed", partition=slot.partition, error=str(exc)[:200])
        slot.in_transaction = False
        # Without an abort, nothing of the producer's is worth waiting for.
        discard_producer(slot.producer, timeout=5.0 if abort else 0.0)


def close_slots(rt: KafkaRuntime, partitions: list[int]) -> None:
    for p in partitions:
        slot = rt.slots.get(p)
        if slot is not None:
            drop_slot(rt, slot, abort=True)
