"""The rebalance listener and what it delegates to: revoked partitions are committed and
closed, lost ones closed without a commit, assigned ones queued for the main thread to
initialise.

kafka-python runs the listener on its IO thread, hence the async listener: the offset
commit of a revocation is awaited there rather than made with a blocking consumer call.
The listener's callbacks only delegate to `Rebalancing` (Quix Streams'
RebalancingCallbacks have the same split).
"""

from __future__ import annotations

from typing import Any, Protocol

from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener

from wirestream.streams.kafka.guarantee import Offsets, ProcessingGuarantee
from wirestream.streams.kafka.joins import JoinWatchdog
from wirestream.streams.kafka.stores import StoreManager
from wirestream.streams.kafka.table import Activity, SlotTable
from wirestream.streams.kafka_metrics import Metrics


class Dropper(Protocol):
    """The partition lifecycle, as far as rebalances go (streams/kafka/partitions.py)."""

    def drop(self, slot: Any, abort: bool, registered: bool = True) -> None: ...


class Rebalancing:
    """Runs on kafka-python's IO thread: no blocking consumer calls here (the offset
    commit is awaited); the producer and RocksDB may block briefly."""

    def __init__(
        self,
        *,
        consumer: Any,
        table: SlotTable,
        lifecycle: Dropper,
        guarantee: ProcessingGuarantee,
        stores: StoreManager,
        activity: Activity,
        metrics: Metrics,
        log: Any,
        joins: JoinWatchdog | None = None,
    ) -> None:
        self.joins = joins
        self.consumer = consumer
        self.table = table
        self.lifecycle = lifecycle
        self.guarantee = guarantee
        self.stores = stores
        self.activity = activity
        self.metrics = metrics
        self.log = log

    async def revoked(self, partitions: list[int]) -> None:
        if self.joins is not None:
            self.joins.join_started()  # every join begins with this callback
        offsets, ok = self.prepare_revoke(partitions)
        if offsets and ok:
            try:
                await self.consumer.commit_async(offsets)
            except Exception as exc:
                self.guarantee.commit_failed([s for s in self.table if s.tp in offsets], exc)
                ok = False
        if partitions:
            self.close_revoked(partitions, ok)

    def prepare_revoke(self, partitions: list[int]) -> tuple[Offsets, bool]:
        """Phase 1 (IO thread): EOS commits and closes; ALOS produces the changelog and
        returns the offsets to commit and whether everything so far succeeded."""
        self.table.cancel_init(partitions)
        self.activity.touch()
        slots = [self.table.get(p) for p in partitions if p in self.table]
        dirty = [s for s in slots if s.dirty and s.task is not None]
        return self.guarantee.prepare_revoke(dirty)

    def close_revoked(self, partitions: list[int], committed: bool) -> None:
        """Phase 2: checkpoint (if the offsets were committed) and close."""
        closed = []
        for p in partitions:
            slot = self.table.get(p)
            if slot is None:
                continue
            if committed and slot.dirty and slot.task is not None and slot.store is not None:
                self.stores.checkpoint(slot)
            self.lifecycle.drop(slot, abort=False)
            closed.append(p)
        self.metrics.set("wirestream_assigned_partitions", len(self.table))
        if closed:
            self.log.info("partitions_revoked", partitions=closed, committed=committed)

    def lost(self, partitions: list[int]) -> None:
        self.table.cancel_init(partitions)
        for p in partitions:
            slot = self.table.get(p)
            if slot is not None:
                self.lifecycle.drop(slot, abort=True)
        self.log.warning("partitions_lost", partitions=sorted(partitions))

    def assigned(self, partitions: list[int]) -> None:
        if self.joins is not None:
            self.joins.join_completed()
        self.table.request_init(partitions)
        self.activity.touch()


def _partitions(tps: Any) -> list[int]:
    return sorted({tp.partition for tp in tps})


class RebalanceListener(AsyncConsumerRebalanceListener):
    """kafka-python's listener: each callback hands its partitions to `Rebalancing`."""

    def __init__(self, rebalancing: Rebalancing) -> None:
        self.rebalancing = rebalancing

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.rebalancing.revoked(_partitions(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.rebalancing.assigned(_partitions(assigned))

    async def on_partitions_lost(self, lost: Any) -> None:
        self.rebalancing.lost(_partitions(lost))
