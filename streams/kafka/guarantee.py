"""The commit protocol (Kafka Streams / Quix Streams order), per commit:

  1. the tasks' changes go to the changelog (and into the stores' write-back caches), each
     record carrying the input offset this commit is about to commit;
  2. at-least-once: flush the producer, commit the input offsets;
     exactly-once: per partition, send the offsets to its transaction and commit it;
  3. write each store's batch to RocksDB together with its checkpoint (changelog end,
     input offset).

A crash before 2 leaves changelog records whose input offset was never committed: restore
skips them and the input is processed again (same records, same ids). A crash between 2
and 3 leaves the local store behind: restore reads the changelog tail.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kafka import TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from streams.kafka.partitions import drop_slot
from streams.kafka.slot import PartitionSlot
from streams.kafka_clients import BROKER_WAIT_SECONDS
from streams.kafka_errors import OWNERSHIP_ERRORS, REBALANCE_ERRORS
from streams.kafka_retry import finish_transaction

if TYPE_CHECKING:
    from streams.kafka.runtime import KafkaRuntime

# A transaction step normally takes milliseconds; kafka-python 3.0 never finishes one that
# spans a broker restart, so after this long the partition's producer is replaced.
TXN_WAIT_SECONDS = 5.0


def commit(rt: KafkaRuntime) -> bool:
    """Commit every slot with new input or changes; False if the commit failed."""
    slots = [s for s in rt.slots.values() if s.dirty and s.task is not None]
    if not slots:
        return True
    started = time.perf_counter()
    if rt.settings.exactly_once:
        consumer = rt.consumer
        assert consumer is not None
        metadata = consumer.group_metadata()
        ok = True
        for slot in slots:
            ok = commit_transaction(rt, slot, metadata, reinit=True) and ok
    else:
        ok = _commit_alos(rt, slots)
    _after_commit(rt, slots, ok, time.perf_counter() - started)
    return ok


def _commit_alos(rt: KafkaRuntime, slots: list[PartitionSlot]) -> bool:
    offsets = produce_changelog(rt, slots)
    consumer = rt.consumer
    assert consumer is not None
    try:
        consumer.commit(offsets, timeout_ms=int(BROKER_WAIT_SECONDS * 1000))
    except KafkaError as exc:
        commit_failed(rt, slots, exc)
        if not isinstance(exc, REBALANCE_ERRORS):
            raise  # brokers failing: the loop rewinds (the commit may have happened)
        return False
    for slot in slots:
        checkpoint(rt, slot)
    rt.outage.recovered()
    return True


def produce_changelog(
    rt: KafkaRuntime, slots: list[PartitionSlot], timeout: float | None = None
) -> dict[TopicPartition, Any]:
    """ALOS phase 1: changelog records for every slot, then one producer flush."""
    producer = rt.producer
    assert producer is not None
    records = 0
    for slot in slots:
        records += slot.write_changelog()
    producer.flush(timeout=BROKER_WAIT_SECONDS if timeout is None else timeout)
    rt._check_send_error()
    for slot in slots:
        slot.changelog_written()
    rt.metrics.inc("wirestream_changelog_records_total", records)
    return {slot.tp: OffsetAndMetadata(slot.next_offset, "", -1) for slot in slots}


def checkpoint(rt: KafkaRuntime, slot: PartitionSlot) -> None:
    slot.checkpoint()
    rt._local_checkpoints[slot.partition] = slot.changelog_next


def commit_failed(rt: KafkaRuntime, slots: list[PartitionSlot], exc: BaseException) -> None:
    # ALOS: the changelog records stay valid (their input offset is committed by a
    # later commit, or never, and then restore skips them); the stores keep the
    # changes in their caches until a commit succeeds.
    rt.metrics.inc("wirestream_commit_failures_total")
    rt.log.warning(
        "commit_failed",
        partitions=sorted(s.partition for s in slots),
        error=str(exc)[:300],
        note="usually a rebalance in progress; input since the last commit may be "
        "processed again (identical records)",
    )


def commit_transaction(rt: KafkaRuntime, slot: PartitionSlot, metadata: Any, reinit: bool) -> bool:
    """EOS: changelog + offsets + outputs of one partition in its transaction."""
    producer = slot.producer
    try:
        records = slot.write_changelog()
        offsets = {slot.tp: OffsetAndMetadata(slot.next_offset, "", -1)}
        finish_transaction(producer, "offsets", TXN_WAIT_SECONDS, offsets, metadata)
        finish_transaction(producer, "commit", TXN_WAIT_SECONDS)
        slot.in_transaction = False
        slot.changelog_written()
    except KafkaError as exc:
        commit_failed(rt, [slot], exc)
        # After a timeout the brokers are not answering: an abort would only wait too.
        drop_slot(rt, slot, abort=not isinstance(exc, KafkaTimeoutError))
        if reinit:
            rt._to_init.add(slot.partition)  # restored again after the next poll
            if not isinstance(exc, OWNERSHIP_ERRORS):
                raise  # brokers failing: replace every producer before they come back
        return False
    rt.metrics.inc("wirestream_changelog_records_total", records)
    checkpoint(rt, slot)
    producer.begin_transaction()
    slot.in_transaction = True
    return True


def _after_commit(rt: KafkaRuntime, slots: list[PartitionSlot], ok: bool, seconds: float) -> None:
    m = rt.metrics
    m.inc("wirestream_commits_total")
    m.inc("wirestream_commit_seconds_total", seconds)
    for slot in slots:
        for record_type, n in slot.outputs.items():
            m.inc("wirestream_output_records_total", n, type=record_type)
        slot.outputs.clear()
        m.observe_slot(slot)  # lag, open flows, parked bytes, limits hit, ...
