"""The processing guarantee: one interface, an at-least-once and an exactly-once
implementation. The commit protocol (Kafka Streams / Quix Streams order), per commit:

  1. the tasks' changes go to the changelog (and into the stores' write-back caches), each
     record carrying the input offset this commit is about to commit;
  2. at-least-once: flush the producer, commit the input offsets;
     exactly-once: per partition, send the offsets to its transaction and commit it;
  3. write each store's batch to RocksDB together with its checkpoint (changelog end,
     input offset).

A crash before 2 leaves changelog records whose input offset was never committed: restore
skips them and the input is processed again (same records, same ids). A crash between 2
and 3 leaves the local store behind: restore reads the changelog tail.

What differs between the two guarantees is here and nowhere else: which producer a slot
gets, what begins a slot's work, how a commit and a revocation commit, and what closing a
slot does to its producer (Quix Streams' Checkpoint has the same role).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from wirestream.streams.kafka.producer import SharedProducer
from wirestream.streams.kafka.slot import PartitionSlot
from wirestream.streams.kafka.stores import StoreManager
from wirestream.streams.kafka.table import SlotTable
from wirestream.streams.kafka_clients import BROKER_WAIT_SECONDS
from wirestream.streams.kafka_errors import OWNERSHIP_ERRORS, REBALANCE_ERRORS, FatalError
from wirestream.streams.kafka_metrics import Metrics
from wirestream.streams.kafka_retry import Outage, discard_producer, finish_transaction

# A transaction step normally takes milliseconds; kafka-python 3.0 never finishes one that
# spans a broker restart, so after this long the partition's producer is replaced. Not
# shorter: on a busy machine (two cores shared with the broker) a step can take seconds,
# and each timeout sends the partition back to its last commit.
TXN_WAIT_SECONDS = 15.0
ABORT_WAIT_SECONDS = 2.0  # an abort is a courtesy: the next owner's init aborts it anyway
REVOKE_FLUSH_SECONDS = 30.0  # revocation runs on the consumer's IO thread: keep it bounded

Offsets = dict[TopicPartition, Any]


class ProcessingGuarantee(ABC):
    """Begin, produce, commit, abort: the member calls these and never asks which
    guarantee it runs."""

    def __init__(
        self,
        consumer: Any,
        table: SlotTable,
        stores: StoreManager,
        metrics: Metrics,
        outage: Outage,
        log: Any,
    ) -> None:
        self.consumer = consumer
        self.table = table
        self.stores = stores
        self.metrics = metrics
        self.outage = outage
        self.log = log

    @abstractmethod
    def start(self) -> None:
        """Before the member joins its group: open what is shared."""

    # -- the slot's producer --
    @abstractmethod
    def producer_for(self, partition: int) -> tuple[Any, Callable[[BaseException], None]]:
        """The producer of a newly assigned partition, and the errback of its sends."""

    @abstractmethod
    def begin(self, slot: PartitionSlot) -> None:
        """The slot is restored: from now on its outputs belong to the next commit."""

    @abstractmethod
    def release(self, slot: PartitionSlot, abort: bool) -> None:
        """The slot closed: end what its producer has open (`abort`: abort it, else
        leave it for the next owner's fencing)."""

    def end(self, slot: PartitionSlot, abort: bool, registered: bool = True) -> None:
        """Close a slot (its stores) and end its producer side."""
        self.table.drop(slot, registered)
        self.release(slot, abort)

    # -- sends --
    @abstractmethod
    def check_sends(self) -> None:
        """Main thread: raise FatalError if a send failed that nothing else redoes."""

    @abstractmethod
    def send_failed(self) -> bool:
        """Whether a FatalError came from a failed send that a rewind redoes."""

    @abstractmethod
    def rewind(self) -> None:
        """After the slots were dropped for a rewind: replace what is shared."""

    # -- commits --
    def commit(self) -> bool:
        """Commit every slot with new input or changes; False if the commit failed."""
        slots = self.table.dirty()
        if not slots:
            return True
        started = time.perf_counter()
        ok = self._commit(slots)
        self._after_commit(slots, time.perf_counter() - started)
        return ok

    @abstractmethod
    def _commit(self, slots: list[PartitionSlot]) -> bool: ...

    @abstractmethod
    def prepare_revoke(self, slots: list[PartitionSlot]) -> tuple[Offsets, bool]:
        """Revocation, phase 1 (IO thread): returns the offsets the listener commits
        (awaited there) and whether everything so far succeeded."""

    def commit_failed(self, slots: list[PartitionSlot], exc: BaseException) -> None:
        # ALOS: the changelog records stay valid (their input offset is committed by a
        # later commit, or never, and then restore skips them); the stores keep the
        # changes in their caches until a commit succeeds.
        self.metrics.inc("wirestream_commit_failures_total")
        self.log.warning(
            "commit_failed",
            partitions=sorted(s.partition for s in slots),
            error=str(exc)[:300],
            note="usually a rebalance in progress; input since the last commit may be "
            "processed again (identical records)",
        )

    def _after_commit(self, slots: list[PartitionSlot], seconds: float) -> None:
        m = self.metrics
        m.inc("wirestream_commits_total")
        m.inc("wirestream_commit_seconds_total", seconds)
        for slot in slots:
            for record_type, n in slot.outputs.items():
                m.inc("wirestream_output_records_total", n, type=record_type)
            slot.outputs.clear()
            m.observe_slot(slot, self.consumer)  # lag, open flows, parked bytes, ...


class AtLeastOnce(ProcessingGuarantee):
    """One producer shared by all slots; flush, then commit the offsets."""

    name = "at_least_once"

    def __init__(self, shared: SharedProducer, **parts: Any) -> None:
        super().__init__(**parts)
        self.shared = shared

    def start(self) -> None:
        self.shared.open()

    def producer_for(self, partition: int) -> tuple[Any, Callable[[BaseException], None]]:
        return self.shared.get(), self.shared.errback()

    def begin(self, slot: PartitionSlot) -> None:
        pass

    def release(self, slot: PartitionSlot, abort: bool) -> None:
        pass  # the shared producer outlives its slots

    def check_sends(self) -> None:
        self.shared.check()

    def send_failed(self) -> bool:
        return self.shared.error is not None

    def rewind(self) -> None:
        self.shared.discard()

    def _commit(self, slots: list[PartitionSlot]) -> bool:
        offsets = self.produce_changelog(slots)
        try:
            self.consumer.commit(offsets, timeout_ms=int(BROKER_WAIT_SECONDS * 1000))
        except KafkaError as exc:
            self.commit_failed(slots, exc)
            if not isinstance(exc, REBALANCE_ERRORS):
                raise  # brokers failing: the loop rewinds (the commit may have happened)
            return False
        for slot in slots:
            self.stores.checkpoint(slot)
        self.outage.recovered()
        return True

    def produce_changelog(
        self, slots: list[PartitionSlot], timeout: float | None = None
    ) -> Offsets:
        """Phase 1: changelog records for every slot, then one producer flush."""
        producer = self.shared.producer
        assert producer is not None
        records = 0
        for slot in slots:
            records += slot.write_changelog()
        producer.flush(timeout=BROKER_WAIT_SECONDS if timeout is None else timeout)
        self.shared.check()
        for slot in slots:
            slot.changelog_written()
        self.metrics.inc("wirestream_changelog_records_total", records)
        return {slot.tp: OffsetAndMetadata(slot.next_offset, "", -1) for slot in slots}

    def prepare_revoke(self, slots: list[PartitionSlot]) -> tuple[Offsets, bool]:
        if not slots:
            return {}, True
        try:
            return self.produce_changelog(slots, timeout=REVOKE_FLUSH_SECONDS), True
        except (KafkaError, FatalError) as exc:
            self.commit_failed(slots, exc)
            return {}, False


class ExactlyOnce(ProcessingGuarantee):
    """One transactional producer per input partition; changelog, outputs and offsets of
    a partition commit in its transaction."""

    name = "exactly_once"

    def __init__(self, new_producer: Callable[[int], Any], **parts: Any) -> None:
        super().__init__(**parts)
        self._new_producer = new_producer  # partition -> transactional producer

    def start(self) -> None:
        pass  # producers are made per partition, on assignment

    def producer_for(self, partition: int) -> tuple[Any, Callable[[BaseException], None]]:
        # Initialising the partition's transactional id fences the previous owner and
        # aborts its open transaction before anything is read back.
        producer = self._new_producer(partition)
        producer.init_transactions()
        return producer, _ignore  # a failed send fails its transaction's commit

    def begin(self, slot: PartitionSlot) -> None:
        slot.producer.begin_transaction()
        slot.in_transaction = True

    def release(self, slot: PartitionSlot, abort: bool) -> None:
        if abort and slot.in_transaction:
            try:
                finish_transaction(slot.producer, "abort", ABORT_WAIT_SECONDS)
            except Exception as exc:  # fenced or broken: the next owner's init aborts it
                self.log.info("abort_failed", partition=slot.partition, error=str(exc)[:200])
        slot.in_transaction = False
        # Without an abort, nothing of the producer's is worth waiting for.
        discard_producer(slot.producer, timeout=5.0 if abort else 0.0)

    def check_sends(self) -> None:
        pass  # a failed send fails its transaction's commit, which is redone

    def send_failed(self) -> bool:
        return False

    def rewind(self) -> None:
        pass  # every slot's producer went with its slot

    def _commit(self, slots: list[PartitionSlot]) -> bool:
        metadata = self.consumer.group_metadata()
        ok = True
        for slot in slots:
            ok = self.commit_transaction(slot, metadata, reinit=True) and ok
        return ok

    def prepare_revoke(self, slots: list[PartitionSlot]) -> tuple[Offsets, bool]:
        ok = True
        if slots:
            metadata = self.consumer.group_metadata()
            for slot in slots:
                ok = self.commit_transaction(slot, metadata, reinit=False) and ok
        return {}, ok

    def commit_transaction(self, slot: PartitionSlot, metadata: Any, reinit: bool) -> bool:
        """Changelog + offsets + outputs of one partition in its transaction."""
        producer = slot.producer
        try:
            records = slot.write_changelog()
            offsets = {slot.tp: OffsetAndMetadata(slot.next_offset, "", -1)}
            finish_transaction(producer, "offsets", TXN_WAIT_SECONDS, offsets, metadata)
            finish_transaction(producer, "commit", TXN_WAIT_SECONDS)
            slot.in_transaction = False
            slot.changelog_written()
        except KafkaError as exc:
            self.commit_failed([slot], exc)
            # After a timeout the brokers are not answering: an abort would only wait too.
            self.end(slot, abort=not isinstance(exc, KafkaTimeoutError))
            if reinit:
                self.table.request_init([slot.partition])  # restored again after the next poll
                if not isinstance(exc, OWNERSHIP_ERRORS):
                    raise  # brokers failing: replace every producer before they come back
            return False
        self.metrics.inc("wirestream_changelog_records_total", records)
        self.stores.checkpoint(slot)
        producer.begin_transaction()
        slot.in_transaction = True
        return True


def _ignore(exc: BaseException) -> None:
    pass
