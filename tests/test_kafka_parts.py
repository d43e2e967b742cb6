"""Unit tests of the Kafka member's parts (streams/kafka/), each built with fakes: no
broker, no threads. The fakes record what is called on them in one shared list, so the
tests check the order of the commit protocol, not only that each step happened."""

from __future__ import annotations

import ast
import asyncio
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import (
    CommitFailedError,
    KafkaTimeoutError,
    NodeNotReadyError,
    ProducerFencedError,
)

from wirestream.state.changelog import Checkpoint
from wirestream.state.store import StateStore
from wirestream.streams.kafka.guarantee import AtLeastOnce, ExactlyOnce
from wirestream.streams.kafka.partitions import PartitionLifecycle
from wirestream.streams.kafka.producer import SharedProducer
from wirestream.streams.kafka.rebalance import RebalanceListener, Rebalancing
from wirestream.streams.kafka.rewind import BrokerFaults
from wirestream.streams.kafka.stores import StoreManager, store_path
from wirestream.streams.kafka.table import Activity, SlotTable
from wirestream.streams.kafka_errors import FatalError
from wirestream.streams.kafka_metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "in"

# --------------------------------------------------------------------------- fakes


class FakeLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _log(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    info = warning = error = _log

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.events if name == event]


class FakeFuture:
    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def add_errback(self, fn: Any) -> FakeFuture:
        return self

    def get(self, timeout: float | None = None) -> Any:
        return SimpleNamespace(offset=self.offset)


class FakeProducer:
    """Records flushes and transaction steps (public calls: finish_transaction uses them
    when the producer has no kafka-python internals)."""

    def __init__(
        self, calls: list[str], name: str = "producer", fail: dict[str, Any] | None = None
    ):
        self.calls = calls
        self.name = name
        self.fail = fail or {}
        self.closed = False

    def _step(self, step: str) -> None:
        self.calls.append(f"{self.name}.{step}")
        if step in self.fail:
            raise self.fail[step]

    def flush(self, timeout: float | None = None) -> None:
        self._step("flush")

    def init_transactions(self) -> None:
        self._step("init_transactions")

    def begin_transaction(self) -> None:
        self._step("begin_transaction")

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any) -> None:
        self._step("send_offsets")

    def commit_transaction(self) -> None:
        self._step("commit_transaction")

    def abort_transaction(self) -> None:
        self._step("abort_transaction")

    def close(self, timeout: float | None = None) -> None:
        self.closed = True
        self.calls.append(f"{self.name}.close")


class FakeSlot:
    """The slot's commit-phase surface (streams/kafka/slot.py)."""

    def __init__(self, partition: int, calls: list[str], producer: Any = None) -> None:
        self.partition = partition
        self.tp = TopicPartition(TOPIC, partition)
        self.calls = calls
        self.producer = producer
        self.task = SimpleNamespace(tracker=FakeTracker())
        self.store = object()
        self.dirty = True
        self.in_transaction = False
        self.next_offset = 10 + partition
        self.changelog_next = 0
        self.outputs: Counter[str] = Counter({"flow": 2})
        self.anomalies: Counter[str] = Counter()
        self.limit_hits: Counter[str] = Counter()
        self.substream_counts: Counter[str] = Counter()
        self.stats_view = None
        self.closed = False

    def write_changelog(self) -> int:
        self.calls.append(f"changelog.{self.partition}")
        return 3

    def changelog_written(self) -> None:
        self.calls.append(f"changelog_written.{self.partition}")
        self.changelog_next = 100 + self.partition

    def checkpoint(self) -> None:
        self.calls.append(f"checkpoint.{self.partition}")
        self.dirty = False

    def close(self) -> None:
        self.calls.append(f"close.{self.partition}")
        self.closed = True


class FakeTracker:
    stream_time = 0
    budget = SimpleNamespace(bytes=0)

    def __len__(self) -> int:
        return 0


class FakeConsumer:
    def __init__(self, calls: list[str], commit_error: BaseException | None = None) -> None:
        self.calls = calls
        self.commit_error = commit_error
        self.committed_offsets: dict[TopicPartition, int] = {}
        self.assigned: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.start: dict[TopicPartition, int | None] = {}

    def commit(self, offsets: Any, timeout_ms: int | None = None) -> None:
        self.calls.append("consumer.commit")
        if self.commit_error is not None:
            raise self.commit_error
        self.committed_offsets.update({tp: o.offset for tp, o in offsets.items()})

    async def commit_async(self, offsets: Any) -> None:
        self.commit(offsets)

    def group_metadata(self) -> Any:
        return SimpleNamespace(member_id="m-1", state="STABLE")

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def committed(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        return self.start.get(tp)

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.positions[tp] = 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


class FakeOutage:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.failures: list[str] = []
        self.recoveries = 0

    def failed(self, exc: BaseException, during: str) -> float:
        self.failures.append(during)
        return self.delay

    def recovered(self) -> None:
        self.recoveries += 1


def _parts(tmp_path: Path, consumer: Any, log: FakeLog, table: SlotTable) -> dict[str, Any]:
    stores = StoreManager(str(tmp_path), "app", log, cleanup_delay=600)
    return dict(
        consumer=consumer,
        table=table,
        stores=stores,
        metrics=Metrics(),
        outage=FakeOutage(),
        log=log,
    )


# --------------------------------------------------------------------------- shared producer


def test_shared_producer_is_the_one_owner_of_its_generation() -> None:
    calls: list[str] = []
    made: list[FakeProducer] = []
    discarded: list[Any] = []

    def factory() -> FakeProducer:
        made.append(FakeProducer(calls, f"p{len(made)}"))
        return made[-1]

    shared = SharedProducer(factory, discard=discarded.append)
    first = shared.get()
    stale = shared.errback()
    shared.check()  # nothing failed yet
    shared.discard()
    assert discarded == [first] and shared.producer is None
    second = shared.get()
    assert second is not first and len(made) == 2
    # A record of the discarded producer fails late: not the successor's problem.
    stale(RuntimeError("late failure of the old producer"))
    assert shared.error is None
    shared.check()
    current = shared.errback()
    current(RuntimeError("broker rejected"))
    current(RuntimeError("second failure is not kept"))
    assert str(shared.error) == "broker rejected"
    with pytest.raises(FatalError, match="broker rejected"):
        shared.check()
    # Replacing the producer clears the error: the rewind redoes those records.
    shared.discard()
    assert shared.error is None and discarded == [first, second]


# --------------------------------------------------------------------------- guarantees


def test_at_least_once_commit_order_changelog_flush_offsets_checkpoint(tmp_path: Path) -> None:
    calls: list[str] = []
    log = FakeLog()
    table = SlotTable()
    consumer = FakeConsumer(calls)
    shared = SharedProducer(lambda: FakeProducer(calls))
    parts = _parts(tmp_path, consumer, log, table)
    alos = AtLeastOnce(shared, **parts)
    alos.start()
    slots = [FakeSlot(p, calls) for p in (0, 1)]
    for slot in slots:
        table.add(slot)
    clean = FakeSlot(2, calls)
    clean.dirty = False
    table.add(clean)

    assert alos.commit() is True
    assert calls == [
        "changelog.0",
        "changelog.1",
        "producer.flush",
        "changelog_written.0",
        "changelog_written.1",
        "consumer.commit",
        "checkpoint.0",
        "checkpoint.1",
    ]
    assert consumer.committed_offsets == {slots[0].tp: 10, slots[1].tp: 11}
    # The store manager knows the new checkpoints (what the assignor announces).
    assert parts["stores"].local_state() == {0: 100, 1: 101}
    assert parts["outage"].recoveries == 1
    assert parts["metrics"].total("wirestream_output_records_total") == 4
    # Nothing dirty: nothing to do.
    calls.clear()
    assert alos.commit() is True and calls == []


def test_at_least_once_commit_refused_by_a_rebalance_keeps_the_stores_behind(
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    log = FakeLog()
    table = SlotTable()
    consumer = FakeConsumer(calls, commit_error=CommitFailedError("rebalancing"))
    alos = AtLeastOnce(
        SharedProducer(lambda: FakeProducer(calls)), **_parts(tmp_path, consumer, log, table)
    )
    alos.start()
    table.add(FakeSlot(0, calls))
    assert alos.commit() is False
    assert "checkpoint.0" not in calls and calls[-1] == "consumer.commit"
    assert log.named("commit_failed")[0]["partitions"] == [0]
    # A broker error is not a rebalance: the loop must rewind, so it is raised.
    consumer.commit_error = NodeNotReadyError("broker gone")
    with pytest.raises(NodeNotReadyError):
        alos.commit()


def test_at_least_once_failed_send_stops_the_commit_before_the_offsets(tmp_path: Path) -> None:
    calls: list[str] = []
    table = SlotTable()
    consumer = FakeConsumer(calls)
    shared = SharedProducer(lambda: FakeProducer(calls))
    alos = AtLeastOnce(shared, **_parts(tmp_path, consumer, FakeLog(), table))
    alos.start()
    _, errback = alos.producer_for(0)
    table.add(FakeSlot(0, calls))
    errback(RuntimeError("record too large"))
    assert alos.send_failed()
    with pytest.raises(FatalError):
        alos.commit()
    assert "consumer.commit" not in calls
    alos.rewind()  # a new producer: the error belonged to the old one
    assert not alos.send_failed()


def test_exactly_once_commits_each_partition_in_its_transaction(tmp_path: Path) -> None:
    calls: list[str] = []
    table = SlotTable()
    consumer = FakeConsumer(calls)
    made: dict[int, FakeProducer] = {}

    def transactional(partition: int) -> FakeProducer:
        made[partition] = FakeProducer(calls, f"txn{partition}")
        return made[partition]

    parts = _parts(tmp_path, consumer, FakeLog(), table)
    eos = ExactlyOnce(transactional, **parts)
    eos.start()
    producer, _ = eos.producer_for(0)
    assert calls == ["txn0.init_transactions"]  # fences the previous owner first
    slot = FakeSlot(0, calls, producer)
    eos.begin(slot)
    assert slot.in_transaction
    table.add(slot)
    calls.clear()
    assert eos.commit() is True
    assert calls == [
        "changelog.0",
        "txn0.send_offsets",
        "txn0.commit_transaction",
        "changelog_written.0",
        "checkpoint.0",
        "txn0.begin_transaction",
    ]
    assert "consumer.commit" not in calls  # the offsets went into the transaction
    assert slot.in_transaction and parts["stores"].local_state() == {0: 100}


def test_exactly_once_failed_transaction_drops_and_reinitialises_the_partition(
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    log = FakeLog()
    table = SlotTable()
    parts = _parts(tmp_path, FakeConsumer(calls), log, table)
    fenced = FakeProducer(calls, "txn0", fail={"commit_transaction": ProducerFencedError()})
    eos = ExactlyOnce(lambda p: fenced, **parts)
    slot = FakeSlot(0, calls, fenced)
    slot.in_transaction = True
    table.add(slot)
    # Fenced: another member owns the partition now; no outage, nothing raised.
    assert eos.commit() is False
    assert 0 not in table and slot.closed and fenced.closed
    assert "txn0.abort_transaction" in calls and "checkpoint.0" not in calls
    assert table.take_pending() == {0}
    assert log.named("commit_failed")[0]["partitions"] == [0]
    # A timeout: the brokers are not answering; no abort (it would wait too), raised.
    calls.clear()
    slow = FakeProducer(calls, "txn1", fail={"send_offsets": KafkaTimeoutError()})
    slot = FakeSlot(1, calls, slow)
    slot.in_transaction = True
    table.add(slot)
    with pytest.raises(KafkaTimeoutError):
        eos.commit()
    assert "txn1.abort_transaction" not in calls and slot.closed
    assert table.take_pending() == {1}


# --------------------------------------------------------------------------- rebalance


def _rebalancing(
    tmp_path: Path, calls: list[str], consumer: FakeConsumer, table: SlotTable, log: FakeLog
) -> tuple[Rebalancing, Activity]:
    parts = _parts(tmp_path, consumer, log, table)
    alos = AtLeastOnce(SharedProducer(lambda: FakeProducer(calls)), **parts)
    alos.start()
    activity = Activity(clock=lambda: 42.0)
    activity.last = 0.0
    lifecycle = SimpleNamespace(drop=lambda slot, abort, registered=True: alos.end(slot, abort))
    r = Rebalancing(
        consumer=consumer,
        table=table,
        lifecycle=lifecycle,
        guarantee=alos,
        stores=parts["stores"],
        activity=activity,
        metrics=parts["metrics"],
        log=log,
    )
    return r, activity


def test_revocation_commits_then_checkpoints_then_closes(tmp_path: Path) -> None:
    calls: list[str] = []
    log = FakeLog()
    table = SlotTable()
    consumer = FakeConsumer(calls)
    r, activity = _rebalancing(tmp_path, calls, consumer, table, log)
    for p in (0, 1):
        table.add(FakeSlot(p, calls))
    table.request_init([0, 5])
    asyncio.run(r.revoked([0]))
    assert calls == [
        "changelog.0",
        "producer.flush",
        "changelog_written.0",
        "consumer.commit",
        "checkpoint.0",
        "close.0",
    ]
    assert log.named("partitions_revoked") == [{"partitions": [0], "committed": True}]
    assert table.partitions() == [1] and table.take_pending() == {5}
    assert activity.last == 42.0


def test_revocation_whose_commit_fails_closes_without_checkpoint(tmp_path: Path) -> None:
    calls: list[str] = []
    log = FakeLog()
    table = SlotTable()
    consumer = FakeConsumer(calls, commit_error=CommitFailedError("generation moved on"))
    r, _ = _rebalancing(tmp_path, calls, consumer, table, log)
    table.add(FakeSlot(0, calls))
    asyncio.run(r.revoked([0]))
    assert "checkpoint.0" not in calls and "close.0" in calls
    assert log.named("partitions_revoked") == [{"partitions": [0], "committed": False}]
    assert log.named("commit_failed")[0]["partitions"] == [0]


def test_lost_partitions_close_without_commit_and_assigned_ones_wait_for_the_loop(
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    log = FakeLog()
    table = SlotTable()
    r, activity = _rebalancing(tmp_path, calls, FakeConsumer(calls), table, log)
    table.add(FakeSlot(0, calls))
    table.request_init([0])
    r.lost([0])
    assert calls == ["close.0"] and not table.has_pending()
    assert log.named("partitions_lost") == [{"partitions": [0]}]
    r.assigned([3, 4])
    assert table.take_pending() == {3, 4} and activity.last == 42.0
    assert len(table) == 0  # initialised by the loop, not on the IO thread


def test_rebalance_listener_only_delegates() -> None:
    seen: list[tuple[str, list[int]]] = []

    class Recorder:
        async def revoked(self, partitions: list[int]) -> None:
            seen.append(("revoked", partitions))

        def assigned(self, partitions: list[int]) -> None:
            seen.append(("assigned", partitions))

        def lost(self, partitions: list[int]) -> None:
            seen.append(("lost", partitions))

    listener = RebalanceListener(Recorder())  # type: ignore[arg-type]
    tps = [TopicPartition(TOPIC, 2), TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 2)]
    asyncio.run(listener.on_partitions_revoked(tps))
    asyncio.run(listener.on_partitions_assigned(tps[:1]))
    asyncio.run(listener.on_partitions_lost([]))
    assert seen == [("revoked", [0, 2]), ("assigned", [2]), ("lost", [])]


# --------------------------------------------------------------------------- lifecycle


class FakeRestoreConsumer:
    """A changelog that is empty: every partition is at its end at once."""

    def assign(self, tps: Any) -> None:
        self.tps = list(tps)

    def seek(self, tp: Any, offset: int) -> None:
        pass

    def poll(self, timeout_ms: int = 0, max_records: int = 0) -> dict[Any, Any]:
        return {}

    def highwater(self, tp: Any) -> int:
        return 0

    def position(self, tp: Any) -> int:
        return 0

    def pause(self, tp: Any) -> None:
        pass

    def unsubscribe(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeTask:
    def __init__(self, partition: int, fail: bool = False) -> None:
        if fail:
            raise RuntimeError("task cannot be built")
        self.partition = partition
        self.tracker = FakeTracker()

    def restore(self) -> int:
        return 7


class RecordingGuarantee:
    def __init__(self, table: SlotTable, calls: list[str]) -> None:
        self.table = table
        self.calls = calls

    def producer_for(self, partition: int) -> tuple[Any, Any]:
        self.calls.append(f"producer_for.{partition}")
        return FakeProducer(self.calls), lambda exc: None

    def begin(self, slot: Any) -> None:
        self.calls.append(f"begin.{slot.partition}")

    def end(self, slot: Any, abort: bool, registered: bool = True) -> None:
        self.calls.append(f"end.{slot.partition}.abort={abort}")
        self.table.drop(slot, registered)

    def rewind(self) -> None:
        self.calls.append("guarantee.rewind")


def _lifecycle(
    tmp_path: Path, calls: list[str], fail_task: bool = False
) -> tuple[PartitionLifecycle, FakeConsumer, SlotTable, FakeLog, StoreManager]:
    log = FakeLog()
    table = SlotTable()
    consumer = FakeConsumer(calls)
    stores = StoreManager(str(tmp_path), "app", log, cleanup_delay=600)
    released: list[int] = []
    ctx = SimpleNamespace(
        input_topic=TOPIC,
        topics=None,
        features=None,
        metrics=Metrics(),
        dead_lettered=None,
        released=released.append,
    )
    features = SimpleNamespace(restore=lambda *a: calls.append("features.restore"))
    lifecycle = PartitionLifecycle(
        consumer=consumer,
        table=table,
        guarantee=RecordingGuarantee(table, calls),  # type: ignore[arg-type]
        stores=stores,
        features=features,
        slot_context=ctx,  # type: ignore[arg-type]
        new_task=lambda p, emit, store, bad: FakeTask(p, fail_task),  # type: ignore[arg-type,return-value]
        restorer=FakeRestoreConsumer,
        changelog="app-flows-changelog",
        restore_timeout=5.0,
        activity=Activity(),
        outage=FakeOutage(),  # type: ignore[arg-type]
        metrics=Metrics(),
        log=log,
    )
    return lifecycle, consumer, table, log, stores


def test_lifecycle_initialises_assigned_partitions_from_the_committed_offset(
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    lifecycle, consumer, table, log, stores = _lifecycle(tmp_path, calls)
    consumer.assigned = {TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)}
    consumer.start = {TopicPartition(TOPIC, 1): 40}
    table.request_init([0, 1, 9])  # 9: revoked again before this poll
    batch = {TopicPartition(TOPIC, 0): ["r"], TopicPartition(TOPIC, 3): ["kept"]}
    rest = lifecycle.init_pending(batch)
    # Records of the new partitions are fetched again from the committed offset.
    assert rest == {TopicPartition(TOPIC, 3): ["kept"]}
    assert table.partitions() == [0, 1] and not table.has_pending()
    assert consumer.positions == {TopicPartition(TOPIC, 0): 0, TopicPartition(TOPIC, 1): 40}
    assert table.get(1).next_offset == 40
    # Producer first (EOS fences the previous owner), then the restore, then begin.
    assert calls.index("producer_for.1") < calls.index("features.restore") < calls.index("begin.0")
    ready = log.named("partition_ready")
    assert [e["partition"] for e in ready] == [0, 1]
    assert ready[1]["committed_offset"] == 40 and ready[1]["flows"] == 7
    assert log.named("partitions_assigned")[0]["partitions"] == [0, 1]
    assert log.named("partitions_assigned")[0]["member_id"] == "m-1"
    assert stores.local_state() == {0: 0, 1: 0}
    for slot in table:
        slot.close()


def test_lifecycle_failed_init_releases_what_it_opened(tmp_path: Path) -> None:
    calls: list[str] = []
    lifecycle, consumer, table, _, stores = _lifecycle(tmp_path, calls, fail_task=True)
    consumer.assigned = {TopicPartition(TOPIC, 0)}
    table.request_init([0])
    with pytest.raises(RuntimeError):
        lifecycle.init_pending({})
    assert "end.0.abort=True" in calls and len(table) == 0
    assert table.take_pending() == {0}  # tried again after the next poll
    # The RocksDB lock was released: the store opens again.
    StateStore(store_path(stores.root, 0)).close()


def test_lifecycle_rewind_drops_every_slot_and_queues_it_again(tmp_path: Path) -> None:
    calls: list[str] = []
    lifecycle, consumer, table, log, _ = _lifecycle(tmp_path, calls)
    consumer.assigned = {TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 2)}
    table.request_init([0, 2])
    lifecycle.init_pending({})
    calls.clear()
    lifecycle.rewind()
    assert calls == ["end.0.abort=False", "end.2.abort=False", "guarantee.rewind"]
    assert len(table) == 0 and table.take_pending() == {0, 2}
    assert log.named("rewound") == [{"partitions": [0, 2]}]


# --------------------------------------------------------------------------- broker faults


def test_broker_fault_rewinds_then_backs_off_until_stopped() -> None:
    now = [100.0]
    order: list[str] = []
    stop = [False]

    def sleep(seconds: float) -> None:
        order.append("sleep")
        now[0] += seconds
        if now[0] >= 100.5:
            stop[0] = True  # SIGTERM during the backoff

    activity = Activity(clock=lambda: now[0])
    activity.last = 0.0
    outage = FakeOutage(delay=2.0)
    metrics = Metrics()
    faults = BrokerFaults(
        outage,  # type: ignore[arg-type]
        lambda: order.append("rewind"),
        activity,
        metrics,
        lambda: stop[0],
        sleep=sleep,
        clock=lambda: now[0],
    )
    faults.handle(NodeNotReadyError("gone"))
    assert order[0] == "rewind" and order.count("rewind") == 1
    assert 100.5 <= now[0] < 102.0  # the stop cut the 2 s backoff short
    assert outage.failures == ["NodeNotReadyError"]
    assert metrics.total("wirestream_broker_errors_total") == 1
    assert activity.last == now[0]  # time without brokers is not idleness


# --------------------------------------------------------------------------- stores


def _store_with_checkpoint(root: Path, name: str, changelog: int, input_offset: int) -> None:
    with StateStore(str(root / name)) as store:
        store.put(b"k", b"v")
        store.flush(Checkpoint(changelog, input_offset).encode())


def test_store_manager_checkpoints_open_checked_and_sweep(tmp_path: Path) -> None:
    log = FakeLog()
    now = [0.0]
    stores = StoreManager(str(tmp_path), "app", log, cleanup_delay=0, clock=lambda: now[0])
    root = tmp_path / "app"
    root.mkdir()
    _store_with_checkpoint(root, "flows-0", changelog=12, input_offset=50)
    _store_with_checkpoint(root, "flows-3", changelog=7, input_offset=90)
    stores.claim()
    assert stores.local_state() == {0: 12, 3: 7}  # announced to the group leader
    # Behind the committed input: kept, restore starts at its checkpoint.
    store, start = stores.open_checked(0, committed=60)
    assert start == Checkpoint(12, 50) and store.get(b"k") == b"v"
    store.close()
    # Ahead of the committed input (offsets reset): wiped, rebuilt from the changelog.
    store, start = stores.open_checked(3, committed=10)
    assert start.changelog_offset == 0 and store.get(b"k") is None
    store.close()
    assert log.named("local_state_discarded")[0]["partition"] == 3
    stores.checkpointed(3, 0)
    # Cleanup: only unowned stores go, and they are no longer announced.
    assert stores.sweep_due(now[0] + 1.0)
    assert not stores.sweep_due(now[0] + 1.5)
    removed = stores.sweep(owned={0})
    assert [p for p, _ in removed] == [3]
    assert stores.local_state() == {0: 12}
    assert not (root / "flows-3").exists() and (root / "flows-0").exists()
    stores.release()


def test_store_manager_refuses_a_state_dir_in_use(tmp_path: Path) -> None:
    from wirestream.streams.kafka.statedir import StateDirError

    first = StoreManager(str(tmp_path), "app", FakeLog(), cleanup_delay=600)
    first.claim()
    second = StoreManager(str(tmp_path), "app", FakeLog(), cleanup_delay=600)
    with pytest.raises(StateDirError, match="in use"):
        second.claim()
    first.release()
    second.claim()  # free again
    second.release()


# --------------------------------------------------------------------------- structure


def _package_files() -> list[Path]:
    return sorted((ROOT / "streams" / "kafka").glob("*.py"))


def test_no_part_reads_another_objects_private_attributes() -> None:
    offenders = []
    for path in _package_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if not name.startswith("_") or name.startswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            offenders.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert offenders == []


def test_no_import_cycle_among_the_member_modules() -> None:
    """Every import counts, TYPE_CHECKING ones included."""
    modules = {
        f"wirestream.streams.kafka.{p.stem}": p for p in _package_files() if p.stem != "__init__"
    }
    modules.update(
        {f"wirestream.streams.{p.stem}": p for p in (ROOT / "streams").glob("kafka_*.py")}
    )
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in modules:
                deps.add(node.module)
        graph[name] = deps

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for dep in graph[start]:
            if dep == target or (dep not in seen and reaches(dep, target, seen | {dep})):
                return True
        return False

    assert [m for m in graph if reaches(m, m, {m})] == []


def test_the_guarantee_is_chosen_once() -> None:
    """No `exactly_once` branches scattered over the member: the runtime picks the
    implementation, the implementations differ."""
    hits = []
    for path in _package_files():
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if "exactly_once" in line and "name = " not in line:
                hits.append(f"{path.name}:{lineno}")
    assert len(hits) == 1 and hits[0].startswith("runtime.py"), hits


# --------------------------------------------------------------------------- topics, features


class FakeAdmin:
    """describe_topics / create_topics as ensure_topic uses them."""

    def __init__(self, existing: dict[str, int] | None = None) -> None:
        self.topics = dict(existing or {})
        self.created: list[tuple[str, int, dict[str, str]]] = []

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        out = []
        for name in names:
            if name in self.topics:
                out.append({"name": name, "error_code": 0, "partitions": [{}] * self.topics[name]})
            else:
                out.append({"name": name, "error_code": 3, "partitions": []})
        return out

    def close(self) -> None:
        pass

    def create_topics(self, new: list[Any]) -> None:
        for t in new:
            self.topics[t.name] = t.num_partitions
            self.created.append((t.name, t.num_partitions, dict(t.topic_configs)))


def _run_settings(**over: Any) -> Any:
    from wirestream.streams.kafka_settings import RunSettings

    fields = dict(
        bootstrap_servers="127.0.0.1:1",
        application_id="app",
        input_topic=TOPIC,
        topic_prefix="ws.",
        state_dir="unused",
    )
    fields.update(over)
    return RunSettings(**fields)


def test_member_topics_create_each_output_topic_once() -> None:
    from wirestream.streams.kafka.topics import MemberTopics

    log = FakeLog()
    topics = MemberTopics(_run_settings(), log)
    topics.admin = FakeAdmin({"ws.http": 2})
    topics.input_partitions = 4
    assert topics.output_topic("flow") == ("ws.flow", 4)
    assert topics.output_topic("flow") == ("ws.flow", 4)
    assert topics.output_topic("http") == ("ws.http", 2)  # an existing topic keeps its count
    assert [c[0] for c in topics.admin.created] == ["ws.flow"]
    assert log.named("topic_created") == [{"topic": "ws.flow", "partitions": 4}]
    assert topics.changelog == "app-flows-changelog"


def test_features_create_their_topics_only_when_enabled(tmp_path: Path) -> None:
    from wirestream.streams.feature_settings import FeatureSettings
    from wirestream.streams.kafka.features import Features

    stores = StoreManager(str(tmp_path), "app", FakeLog(), cleanup_delay=600)
    off = Features(_run_settings(), FeatureSettings(), stores, Metrics(), FakeLog())
    admin = FakeAdmin()
    off.start(admin, 3)
    assert admin.created == [] and off.substreams is None and off.stats_changelog is None
    on = Features(
        _run_settings(),
        FeatureSettings(flow_stats_topic=True, substreams=True),
        stores,
        Metrics(),
        FakeLog(),
    )
    on.start(admin, 3)
    created = {name: (n, cfg.get("cleanup.policy")) for name, n, cfg in admin.created}
    assert created == {
        "app-flowstats-changelog": (3, "compact"),
        "ws.flowstats": (3, "compact"),
        "ws.packets.tcp": (3, None),
        "ws.packets.udp": (3, None),
        "ws.packets.other": (3, None),
    }
    assert on.substreams == {
        6: ("ws.packets.tcp", 3),
        17: ("ws.packets.udp", 3),
        None: ("ws.packets.other", 3),
    }
    assert on.stats_topic == ("ws.flowstats", 3)


class ChangelogConsumer:
    """A restore consumer over fixed changelog records: one poll returns them all."""

    def __init__(self, records: dict[int, list[Any]]) -> None:
        self.records = records
        self.positions: dict[Any, int] = {}

    def assign(self, tps: Any) -> None:
        self.tps = list(tps)

    def seek(self, tp: Any, offset: int) -> None:
        self.positions[tp] = offset

    def poll(self, timeout_ms: int = 0, max_records: int = 0) -> dict[Any, Any]:
        out = {}
        for tp in self.tps:
            recs = [r for r in self.records.get(tp.partition, []) if r.offset >= self.positions[tp]]
            if recs:
                out[tp] = recs
                self.positions[tp] = recs[-1].offset + 1
        return out

    def highwater(self, tp: Any) -> int:
        return len(self.records.get(tp.partition, []))

    def position(self, tp: Any) -> int:
        return self.positions[tp]

    def pause(self, tp: Any) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


def test_features_restore_the_flow_stats_table_and_its_view(tmp_path: Path) -> None:
    from wirestream.state.changelog import offset_headers
    from wirestream.streams.feature_settings import FeatureSettings
    from wirestream.streams.flowstats import encode_entry
    from wirestream.streams.kafka.features import Features

    entry = ("tcp", "10.0.0.1", 40000, "10.0.0.2", 80, 1, 2, 3, 300, 0, 2, 200, 0, "SF")
    entry += (False, "fin", "http")
    committed_rec = SimpleNamespace(
        offset=0, key=b"uid-1", value=encode_entry(entry), headers=offset_headers(5)
    )
    uncommitted = SimpleNamespace(
        offset=1, key=b"uid-2", value=encode_entry(entry), headers=offset_headers(99)
    )
    log = FakeLog()
    metrics = Metrics()
    stores = StoreManager(str(tmp_path), "app", log, cleanup_delay=600)
    features = Features(_run_settings(), FeatureSettings(flow_stats=True), stores, metrics, log)
    slot = SimpleNamespace(stats=None, stats_store=None, stats_view=None, stats_changelog_next=0)
    reader = ChangelogConsumer({2: [committed_rec, uncommitted]})
    features.restore({2: slot}, {2: 10}, reader, timeout=5.0)  # type: ignore[dict-item]
    # Only the record whose input offset was committed is restored.
    assert slot.stats_view.get("uid-1") == entry and slot.stats_view.get("uid-2") is None
    assert slot.stats_changelog_next == 2
    assert features.views.get(2) is slot.stats_view
    ready = log.named("flowstats_ready")[0]
    assert (ready["restored_records"], ready["skipped_records"], ready["entries"]) == (1, 1, 1)
    features.released(2)
    assert features.views.get(2) is None
    slot.stats_store.close()


# --------------------------------------------------------------------------- slot


class SendingProducer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.errbacks: list[Any] = []

    def send(self, topic: str, **kw: Any) -> Any:
        self.sent.append({"topic": topic, **kw})
        future = FakeFuture(len(self.sent) - 1)
        future.add_errback = self.errbacks.append  # type: ignore[method-assign,assignment]
        return future


def test_slot_sends_outputs_dead_letters_and_substream_copies(tmp_path: Path) -> None:
    from wirestream.streams.kafka.slot import PartitionSlot, SlotContext

    dead: list[tuple[int, str]] = []
    released: list[int] = []
    topics = SimpleNamespace(
        changelog="app-flows-changelog",
        deadletter=("ws.deadletter", 1),
        input_partitions=4,
        output_topic=lambda t: (f"ws.{t}", 4),
    )
    features = SimpleNamespace(
        substreams={6: ("ws.packets.tcp", 4), 17: ("ws.packets.udp", 2), None: ("o", 4)},
        stats_changelog=None,
        stats_topic=None,
    )
    ctx = SlotContext(
        input_topic=TOPIC,
        topics=topics,  # type: ignore[arg-type]
        features=features,  # type: ignore[arg-type]
        metrics=Metrics(),
        dead_lettered=lambda slot, reason: dead.append((slot.partition, reason)),
        released=released.append,
    )
    producer = SendingProducer()

    def errback(exc: BaseException) -> None:
        pass

    slot = PartitionSlot(ctx, 1, producer, errback)  # type: ignore[arg-type]
    processed: list[bytes] = []
    slot.task = SimpleNamespace(  # type: ignore[assignment]
        process_record=processed.append, config=SimpleNamespace(vlan_in_flow_key=True)
    )
    slot.emit("anomaly", "k1", {"name": "gap"})
    assert producer.sent[0]["topic"] == "ws.anomaly" and slot.anomalies["gap"] == 1
    # A TCP record (flow key: version 1, proto 6) is copied, co-partitioned with the input.
    slot.current = SimpleNamespace(key=bytes([1, 0, 6, 0]), partition=1, topic=TOPIC, offset=7)
    slot.processor()(b"packet")
    assert processed == [b"packet"]
    assert producer.sent[-1]["topic"] == "ws.packets.tcp" and producer.sent[-1]["partition"] == 1
    # A dead-lettered record is not copied; it goes to the dead-letter topic with its source.
    slot.current = SimpleNamespace(
        key=bytes([1, 0, 17, 0]), partition=1, topic=TOPIC, offset=8, value=b"bad"
    )
    slot.task = SimpleNamespace(  # type: ignore[assignment]
        process_record=lambda v: slot.deadletter("too_short"),
        config=SimpleNamespace(vlan_in_flow_key=True),
    )
    slot.processor()(b"bad")
    assert producer.sent[-1]["topic"] == "ws.deadletter"
    assert dict(producer.sent[-1]["headers"])["source.offset"] == b"8"
    assert dead == [(1, "too_short")]
    assert all(fn is errback for fn in producer.errbacks) and len(producer.errbacks) == 3
    slot.close()
    assert released == [1]


# --------------------------------------------------------------------------- the poll loop


class LoopConsumer:
    """The group consumer of one member that gets partition 0 of a two-record topic: the
    first poll joins (the listener assigns), later polls deliver the records from the
    consumer's position, like Kafka does."""

    def __init__(self, records: list[Any]) -> None:
        self.records = records
        self.listener: Any = None
        self.assigned: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.closed = False

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        tp = TopicPartition(TOPIC, 0)
        if not self.assigned:
            self.assigned = {tp}
            asyncio.run(self.listener.on_partitions_assigned([tp]))
            return {}
        pos = self.positions.get(tp, 0)
        batch = [r for r in self.records if r.offset >= pos]
        if not batch:
            return {}
        self.positions[tp] = batch[-1].offset + 1
        return {tp: batch}

    def group_metadata(self) -> Any:
        from kafka.structs import MemberState

        return SimpleNamespace(state=MemberState.STABLE, member_id="m-1")

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def committed(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        return None

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.positions[tp] = 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.records)

    def commit(self, offsets: Any, timeout_ms: int | None = None) -> None:
        self.commits.append({tp: o.offset for tp, o in offsets.items()})

    def close(self) -> None:
        self.closed = True


class LoopProducer(SendingProducer):
    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


def test_runtime_loop_with_fake_clients_dead_letters_commits_and_exits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The wiring and the loop end to end, without a broker: assignment through the
    listener, init from the (empty) changelog, a null and an undecodable record to the
    dead-letter topic, --exit-when-idle's final commit of offset 2, the clients closed."""
    from wirestream.streams.config import RuntimeConfig
    from wirestream.streams.kafka.runtime import Clients, KafkaRuntime

    def record(offset: int, value: bytes | None) -> Any:
        return SimpleNamespace(
            topic=TOPIC, partition=0, offset=offset, key=b"k", value=value, headers=[]
        )

    consumer = LoopConsumer([record(0, None), record(1, b"\x01garbage")])
    producer = LoopProducer()
    admin = FakeAdmin({TOPIC: 1})
    clients = Clients(
        admin=lambda settings, log: admin,
        group_consumer=lambda settings, member, assignor: consumer,
        producer=lambda settings, member, **extra: producer,
        restore_consumer=lambda settings, member: FakeRestoreConsumer(),
    )
    settings = _run_settings(state_dir=str(tmp_path), exit_when_idle=0.2, commit_interval=60)
    runtime = KafkaRuntime(settings, RuntimeConfig(), clients=clients)
    assert runtime.run() == 0
    dead = [m for m in producer.sent if m["topic"] == "ws.deadletter"]
    assert [dict(m["headers"])["source.offset"] for m in dead] == [b"0", b"1"]
    reasons = [dict(m["headers"])["reason"] for m in dead]
    assert reasons[0] == b"null_value" and reasons[1] != b"null_value"
    assert consumer.commits[-1] == {TopicPartition(TOPIC, 0): 2}
    assert consumer.closed
    assert runtime.metrics.total("wirestream_input_records_total") == 2
    assert runtime.metrics.total("wirestream_deadletter_records_total") == 2
    assert {c[0] for c in admin.created} >= {"app-flows-changelog", "ws.flow", "ws.deadletter"}
    # The store was checkpointed at the commit: a restarted member announces it.
    manager = StoreManager(str(tmp_path), "app", FakeLog(), 600)
    manager.claim()
    assert 0 in manager.local_state()
    manager.release()
