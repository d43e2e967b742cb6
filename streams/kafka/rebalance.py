"""The rebalance listener: revoked partitions are committed and closed, lost ones closed
without a commit, assigned ones queued for the main thread to initialise.

kafka-python runs the listener on its IO thread, hence the async listener: the offset
commit of a revocation is awaited there rather than made with a blocking consumer call.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kafka import TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError

from streams.kafka.guarantee import checkpoint, commit_failed, commit_transaction, produce_changelog
from streams.kafka.partitions import drop_slot
from streams.kafka_errors import FatalError

if TYPE_CHECKING:
    from streams.kafka.runtime import KafkaRuntime

REVOKE_FLUSH_SECONDS = 30.0  # revocation runs on the consumer's IO thread: keep it bounded


class RebalanceListener(AsyncConsumerRebalanceListener):
    """Runs on kafka-python's IO thread: no blocking consumer calls here (the offset
    commit is awaited); the producer and RocksDB may block briefly."""

    def __init__(self, runtime: KafkaRuntime) -> None:
        self.rt = runtime

    async def on_partitions_revoked(self, revoked: Any) -> None:
        parts = sorted({tp.partition for tp in revoked})
        offsets, ok = on_revoked(self.rt, parts)
        if offsets and ok:
            consumer = self.rt.consumer
            assert consumer is not None
            try:
                await consumer.commit_async(offsets)
            except Exception as exc:
                commit_failed(self.rt, [s for s in self.rt.slots.values() if s.tp in offsets], exc)
                ok = False
        if parts:
            close_revoked(self.rt, parts, ok)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        on_assigned(self.rt, sorted({tp.partition for tp in assigned}))

    async def on_partitions_lost(self, lost: Any) -> None:
        on_lost(self.rt, sorted({tp.partition for tp in lost}))


def on_revoked(rt: KafkaRuntime, partitions: list[int]) -> tuple[dict[TopicPartition, Any], bool]:
    """Phase 1 (IO thread): EOS commits and closes; ALOS produces the changelog and
    returns the offsets to commit (the listener awaits that commit) and whether
    everything so far succeeded."""
    rt._to_init.difference_update(partitions)
    rt._last_activity = time.monotonic()
    slots = [rt.slots[p] for p in partitions if p in rt.slots]
    dirty = [s for s in slots if s.dirty and s.task is not None]
    if rt.settings.exactly_once:
        ok = True
        if dirty:
            consumer = rt.consumer
            assert consumer is not None
            metadata = consumer.group_metadata()
            for slot in dirty:
                ok = commit_transaction(rt, slot, metadata, reinit=False) and ok
        return {}, ok
    if not dirty:
        return {}, True
    try:
        return produce_changelog(rt, dirty, timeout=REVOKE_FLUSH_SECONDS), True
    except (KafkaError, FatalError) as exc:
        commit_failed(rt, dirty, exc)
        return {}, False


def close_revoked(rt: KafkaRuntime, partitions: list[int], committed: bool) -> None:
    """Phase 2: checkpoint (if the offsets were committed) and close."""
    closed = []
    for p in partitions:
        slot = rt.slots.get(p)
        if slot is None:
            continue
        if committed and slot.dirty and slot.task is not None and slot.store is not None:
            checkpoint(rt, slot)
        drop_slot(rt, slot, abort=False)
        closed.append(p)
    rt.metrics.set("wirestream_assigned_partitions", len(rt.slots))
    if closed:
        rt.log.info("partitions_revoked", partitions=closed, committed=committed)


def on_lost(rt: KafkaRuntime, partitions: list[int]) -> None:
    rt._to_init.difference_update(partitions)
    for p in partitions:
        slot = rt.slots.get(p)
        if slot is not None:
            drop_slot(rt, slot, abort=True)
    rt.log.warning("partitions_lost", partitions=sorted(partitions))


def on_assigned(rt: KafkaRuntime, partitions: list[int]) -> None:
    rt._to_init.update(partitions)
    rt._last_activity = time.monotonic()
