"""`wirestream run`: one member of a consumer group, one task per assigned partition.

Loop: poll -> each record through its partition's task (outputs are produced as they are
emitted) -> every `commit_interval` a commit -> wall-clock punctuation of idle partitions.

KafkaRuntime builds the parts from its `Clients` (the kafka-python clients by default,
fakes in tests/test_kafka_parts.py) and runs the loop; each part is constructed with what
it needs and knows no other part's internals:

- stores.py      StoreManager: state directory and its lock, named RocksDB stores, their
                 checkpoints (announced by the assignor), stale-store cleanup;
- topics.py      MemberTopics: input partition count, changelog, dead-letter and output
                 topics;
- producer.py    SharedProducer: at-least-once's producer and its generation;
- guarantee.py   ProcessingGuarantee (AtLeastOnce / ExactlyOnce): begin, commit, abort;
- partitions.py  PartitionLifecycle: init/restore, drop, rewind;
- rebalance.py   Rebalancing and the listener that delegates to it;
- rewind.py      BrokerFaults: rewind and back off after a broker error;
- features.py    Features: flow statistics, queries, substreams;
- slot.py        PartitionSlot: one partition's task, store and producer;
- table.py       SlotTable (which partitions are held or pending) and Activity.

Broker faults (streams/kafka_retry.py): the brokers are tried for `connect_timeout` at start.
While running, a broker error (poll, produce, commit, transaction, restore) rewinds the
member to the last committed offsets after a backoff. The member gives up (exit 3) when
the errors have lasted `reconnect_timeout`.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import MemberState

from wirestream.decoders.registry import select
from wirestream.state.store import StoreError
from wirestream.streams.config import RuntimeConfig
from wirestream.streams.exitcodes import ExitCode
from wirestream.streams.feature_settings import FeatureSettings
from wirestream.streams.kafka.features import Features
from wirestream.streams.kafka.guarantee import AtLeastOnce, ExactlyOnce, ProcessingGuarantee
from wirestream.streams.kafka.joins import JoinWatchdog
from wirestream.streams.kafka.partitions import PartitionLifecycle
from wirestream.streams.kafka.producer import SharedProducer
from wirestream.streams.kafka.rebalance import RebalanceListener, Rebalancing
from wirestream.streams.kafka.restore import RestoreError
from wirestream.streams.kafka.rewind import BrokerFaults
from wirestream.streams.kafka.slot import PartitionSlot, SlotContext
from wirestream.streams.kafka.statedir import StateDirError
from wirestream.streams.kafka.stores import StoreManager
from wirestream.streams.kafka.table import Activity, SlotTable
from wirestream.streams.kafka.topics import MemberTopics
from wirestream.streams.kafka_clients import (
    CHECK_CRCS,
    new_group_consumer,
    new_producer,
    new_restore_consumer,
    rejoin_request,
)
from wirestream.streams.kafka_errors import BROKER_ERRORS, FatalError
from wirestream.streams.kafka_metrics import Metrics, serve
from wirestream.streams.kafka_retry import BrokerUnavailable, Outage, connect, peak_rss_mib
from wirestream.streams.kafka_settings import RunSettings
from wirestream.streams.kafka_topics import TopicError, admin_client
from wirestream.streams.task import Task

log = structlog.get_logger("wirestream.kafka")

END_OF_INPUT_ATTEMPTS = 10
END_OF_INPUT_RETRY_SECONDS = 1.0
STABLE = MemberState.STABLE


def _connect_admin(settings: RunSettings, log: Any) -> Any:
    """The admin client, with retries for `connect_timeout` (exit 3 after that)."""
    return connect(
        lambda ms: admin_client(settings.bootstrap_servers, bootstrap_timeout_ms=ms),
        settings.bootstrap_servers,
        settings.connect_timeout,
        log,
    )


@dataclass(frozen=True)
class Clients:
    """How the member makes its Kafka clients (fakes in the unit tests)."""

    admin: Callable[[RunSettings, Any], Any] = _connect_admin  # (settings, log)
    group_consumer: Callable[[RunSettings, str, Any], Any] = new_group_consumer
    producer: Callable[..., Any] = new_producer  # (settings, member, **extra)
    restore_consumer: Callable[[RunSettings, str], Any] = new_restore_consumer


class KafkaRuntime:
    """One group member: builds its parts, runs the poll loop."""

    def __init__(
        self,
        settings: RunSettings,
        config: RuntimeConfig,
        metrics: Metrics | None = None,
        features: FeatureSettings | None = None,
        clients: Clients | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients or Clients()
        self.config = config
        self.decoders = select(config.decoders)
        self.metrics = metrics or Metrics()
        self.member = f"{socket.gethostname()}-{os.getpid()}"
        self.log = log.bind(application_id=settings.application_id, member=self.member)
        feature_settings = features or FeatureSettings()
        self.stores = StoreManager(
            settings.state_dir,
            settings.application_id,
            self.log,
            feature_settings.state_cleanup_delay,
        )
        self.topics = MemberTopics(settings, self.log)
        self.features = Features(
            settings,
            feature_settings,
            self.stores,
            self.metrics,
            self.log,
            vlan_in_key=config.vlan_in_flow_key,
        )
        self.outage = Outage(settings.bootstrap_servers, settings.reconnect_timeout, self.log)
        self.shared = SharedProducer(lambda: self.clients.producer(settings, self.member))
        self.table = SlotTable()
        self.activity = Activity()
        self.slot_context = SlotContext(
            input_topic=settings.input_topic,
            topics=self.topics,
            features=self.features,
            metrics=self.metrics,
            dead_lettered=self.dead_lettered,
            released=self._released,
        )
        self.consumer: KafkaConsumer | None = None
        # Built once the consumer exists (run()).
        self.guarantee: ProcessingGuarantee | None = None
        self.lifecycle: PartitionLifecycle | None = None
        self.faults: BrokerFaults | None = None
        self.joins: JoinWatchdog | None = None
        self._restore_consumer: KafkaConsumer | None = None
        self._metrics_server: Any = None
        self._stop = False
        self._dead_reasons: set[str] = set()
        self._error_kinds: set[str] = set()
        self._input_span: list[float] = []  # wall clock of the first and last input batch

    # ------------------------------------------------------------------ wiring
    def _build(self, consumer: KafkaConsumer) -> RebalanceListener:
        """The parts that act on the consumer; returns the rebalance listener."""
        s = self.settings
        parts: dict[str, Any] = dict(
            consumer=consumer,
            table=self.table,
            stores=self.stores,
            metrics=self.metrics,
            outage=self.outage,
            log=self.log,
        )
        if s.exactly_once:
            self.guarantee = ExactlyOnce(self._transactional_producer, **parts)
        else:
            self.guarantee = AtLeastOnce(self.shared, **parts)
        self.lifecycle = PartitionLifecycle(
            consumer=consumer,
            table=self.table,
            guarantee=self.guarantee,
            stores=self.stores,
            features=self.features,
            slot_context=self.slot_context,
            new_task=self._new_task,
            restorer=self._restorer,
            changelog=self.topics.changelog,
            restore_timeout=s.restore_timeout,
            activity=self.activity,
            outage=self.outage,
            metrics=self.metrics,
            log=self.log,
        )
        self.faults = BrokerFaults(
            self.outage, self.lifecycle.rewind, self.activity, self.metrics, lambda: self._stop
        )
        self.joins = JoinWatchdog(
            rejoin_request(consumer), patience=s.session_timeout_ms / 1000, log=self.log
        )
        rebalancing = Rebalancing(
            consumer=consumer,
            table=self.table,
            lifecycle=self.lifecycle,
            guarantee=self.guarantee,
            stores=self.stores,
            activity=self.activity,
            metrics=self.metrics,
            log=self.log,
            joins=self.joins,
        )
        return RebalanceListener(rebalancing)

    def _transactional_producer(self, partition: int) -> Any:
        s = self.settings
        transactional_id = f"{s.application_id}-{s.input_topic}-{partition}"
        return self.clients.producer(s, self.member, transactional_id=transactional_id)

    def _new_task(self, partition: int, emit: Any, store: Any, bad_packet: Any) -> Task:
        return Task(partition, self.config, self.decoders, emit, store, bad_packet)

    def _restorer(self) -> KafkaConsumer:
        if self._restore_consumer is None:
            self._restore_consumer = self.clients.restore_consumer(self.settings, self.member)
        return self._restore_consumer

    def _released(self, partition: int) -> None:
        """A slot closed (revoked, lost, stopping)."""
        self.features.released(partition)
        self.stores.released(partition)

    # ------------------------------------------------------------------ main loop
    def request_stop(self, *_: Any) -> None:
        self._stop = True

    def run(self) -> int:
        s = self.settings
        previous = {
            sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        code = ExitCode.ERROR
        try:
            self.stores.claim()
        except (StateDirError, StoreError) as exc:
            self.log.error("state_dir_unusable", error=str(exc), state_dir=self.stores.root)
            self._restore_signals(previous)
            self.stores.release()
            return ExitCode.USAGE
        try:
            admin = self.clients.admin(s, self.log)
            self.topics.setup(admin, (cls.name for cls in self.decoders))
            self.features.start(self.topics.admin, self.topics.input_partitions)
            if s.metrics_port is not None:
                self._metrics_server = serve(self.metrics, s.metrics_port)
            assignor = self.features.assignor(self.stores.local_state)
            self.consumer = self.clients.group_consumer(s, self.member, assignor)
            listener = self._build(self.consumer)
            assert self.guarantee is not None
            self.guarantee.start()
            self.consumer.subscribe([s.input_topic], listener=listener)
            self.log.info(
                "member_started",
                input_topic=s.input_topic,
                partitions=self.topics.input_partitions,
                guarantee=s.processing_guarantee,
                local_stores=len(self.stores.local_state()),
                crc_checks=CHECK_CRCS,
            )
            if not CHECK_CRCS:
                self.log.info(
                    "crc_checks_off",
                    note="the crc32c package is not installed: CRC-32C checks of fetched "
                    "batches are off (pure-Python CRC costs ~80% of consumer CPU)",
                )
            code = self._loop()
        except BrokerUnavailable as exc:
            self.log.error("member_failed", error=str(exc), kind="broker_unavailable")
            self._abandon()
            code = ExitCode.BROKER
        except (TopicError, StoreError, FatalError, RestoreError, KafkaError) as exc:
            self.log.error("member_failed", error=str(exc), kind=type(exc).__name__)
            self._abandon()
        finally:
            self._restore_signals(previous)
            self._close_clients()
            self.stores.release()
        return code

    @staticmethod
    def _restore_signals(previous: dict[Any, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _loop(self) -> int:
        s = self.settings
        consumer, lifecycle, guarantee = self.consumer, self.lifecycle, self.guarantee
        faults = self.faults
        assert consumer is not None and lifecycle is not None and guarantee is not None
        assert faults is not None
        table, activity = self.table, self.activity
        last_commit = time.monotonic()
        punctuate_every = max(1.0, s.commit_interval)
        last_punctuation_check = last_commit
        end_attempts = 0
        while not self._stop:
            try:
                batch = consumer.poll(timeout_ms=100)
                if self.joins is not None:
                    self.joins.check(time.monotonic())
                if table.has_pending():
                    batch = lifecycle.init_pending(batch)
                if batch:
                    self._process(batch)
                guarantee.check_sends()
                now = time.monotonic()
                if now - last_commit >= s.commit_interval:
                    guarantee.commit()
                    last_commit = now
                if now - last_punctuation_check >= punctuate_every:
                    self._punctuate(now)
                    last_punctuation_check = now
                self._sweep(now)
                if s.exit_when_idle is not None and consumer.group_metadata().state != STABLE:
                    activity.touch(now)  # joining or rebalancing is not idleness
                if (
                    s.exit_when_idle is not None
                    and now - activity.last >= s.exit_when_idle
                    and not table.has_pending()
                ):
                    if self._end_of_input():
                        return ExitCode.OK
                    # Usually a rebalance started by a member that finished first: poll to
                    # take part in it (the restored state keeps what was closed), then retry.
                    end_attempts += 1
                    if end_attempts >= END_OF_INPUT_ATTEMPTS and self.outage.since is None:
                        return ExitCode.ERROR
                    activity.touch(now - s.exit_when_idle + END_OF_INPUT_RETRY_SECONDS)
            except BROKER_ERRORS as exc:
                faults.handle(exc)
            except FatalError as exc:
                if not guarantee.send_failed():
                    raise
                faults.handle(exc)  # a record of the shared producer failed
        self.log.info("stopping")
        try:
            committed = guarantee.commit()
        except (*BROKER_ERRORS, FatalError) as exc:
            self.log.warning("final_commit_error", error=str(exc)[:300])
            committed = False
        if not committed:
            self.log.warning("final_commit_failed", note="the next owner repeats the tail")
        lifecycle.close_all()
        return ExitCode.OK

    def _process(self, batch: dict[TopicPartition, list[Any]]) -> None:
        now = time.monotonic()
        count = 0
        for tp, records in batch.items():
            slot = self.table.get(tp.partition)
            if slot is None or slot.task is None:
                self.table.request_init([tp.partition])  # e.g. after a failed transaction
                continue
            process = slot.processor()
            for msg in records:
                slot.current = msg
                value = msg.value
                if value is None:
                    slot.deadletter("null_value")
                    continue
                try:
                    process(value)
                except KafkaError:
                    raise  # a produce that failed (broker gone): not this record's fault
                except Exception as exc:  # a bug must cost one record, not the member
                    self._processing_error(slot, msg, exc)
            slot.current = None
            slot.next_offset = records[-1].offset + 1
            slot.dirty = True
            slot.last_input = now
            count += len(records)
            self.metrics.inc("wirestream_input_records_total", len(records), partition=tp.partition)
        if count:
            self.activity.touch(now)
            wall = time.time()
            if not self._input_span:
                self._input_span = [wall, wall]
            self._input_span[1] = wall

    def _processing_error(self, slot: PartitionSlot, msg: Any, exc: Exception) -> None:
        kind = f"error:{type(exc).__name__}"
        slot.deadletter(kind)
        if kind not in self._error_kinds:
            self._error_kinds.add(kind)
            self.log.error(
                "processing_error",
                partition=msg.partition,
                offset=msg.offset,
                error=str(exc)[:300],
                exc_info=True,
            )

    def dead_lettered(self, slot: PartitionSlot, reason: str) -> None:
        self.metrics.inc("wirestream_deadletter_records_total", reason=reason)
        if reason not in self._dead_reasons:
            self._dead_reasons.add(reason)
            msg = slot.current
            self.log.warning(
                "dead_letter",
                reason=reason,
                partition=slot.partition,
                offset=getattr(msg, "offset", None),
                topic=self.topics.deadletter[0],
                note="logged once per reason; see wirestream_deadletter_records_total",
            )

    # ------------------------------------------------------------------ punctuation
    def _punctuate(self, now: float) -> None:
        """Liveness: expire flows of partitions that received nothing for a while, with a
        time derived from the wall clock (stream time + idle time)."""
        after = self.settings.punctuate_idle
        for slot in self.table:
            task = slot.task
            idle = now - slot.last_input
            if task is None or idle < after:
                continue
            stream_time = task.tracker.stream_time
            closed = task.punctuate(stream_time + int(idle * 1e9))
            slot.last_punctuation = now
            slot.dirty = True  # expired flows or released windows changed the task's state
            self.metrics.inc("wirestream_punctuations_total", partition=slot.partition)
            if closed:
                self.log.info(
                    "wall_clock_punctuation",
                    partition=slot.partition,
                    idle_seconds=round(idle, 1),
                    flows_closed=closed,
                    stream_time_ns=stream_time,
                )

    def _sweep(self, now: float) -> None:
        """Remove stale state directories now and then (only while the group is stable:
        mid-rebalance, partitions about to come back look unowned)."""
        if not self.stores.sweep_due(now):
            return
        consumer = self.consumer
        if consumer is None or consumer.group_metadata().state != STABLE:
            return
        owned = self.table.owned()
        owned.update(tp.partition for tp in consumer.assignment())
        for partition, idle in self.stores.sweep(owned):
            self.metrics.inc("wirestream_state_dirs_removed_total")
            self.log.info("state_dir_removed", partition=partition, idle_seconds=round(idle, 1))

    # ------------------------------------------------------------------ end
    def _end_of_input(self) -> bool:
        """--exit-when-idle: close every flow as replay does at the end and commit; True
        when committed (the member then exits)."""
        assert self.guarantee is not None and self.lifecycle is not None
        flows = 0
        for slot in self.table:
            if slot.task is not None:
                flows += len(slot.task.tracker)
                slot.task.close_all("end_of_input")
                slot.dirty = True
        if not self.guarantee.commit():
            self.log.warning("end_of_input_commit_failed", partitions=self.table.partitions())
            return False
        self.log.info(
            "end_of_input",
            idle_seconds=self.settings.exit_when_idle,
            partitions=self.table.partitions(),
            flows_closed=flows,
            input_records=int(self.metrics.total("wirestream_input_records_total")),
            restored_records=int(self.metrics.total("wirestream_restored_records_total")),
            input_span=[round(t, 3) for t in self._input_span],
        )
        self.lifecycle.close_all()
        return True

    def _abandon(self) -> None:
        """After a fatal error: close without committing (the next owner redoes the tail)."""
        if self.lifecycle is not None:
            self.lifecycle.abandon()

    def _close_clients(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close()
            except Exception as exc:
                self.log.info("consumer_close_failed", error=str(exc)[:200])
        closers = (self.shared.close, self._close_restorer, self._close_admin)
        for close in closers:
            try:
                close()
            except Exception as exc:
                self.log.info("client_close_failed", error=str(exc)[:200])
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.features.stop()
        self.log.info(
            "member_stopped",
            input_records=int(self.metrics.total("wirestream_input_records_total")),
            restored_records=int(self.metrics.total("wirestream_restored_records_total")),
            deadletters=int(self.metrics.total("wirestream_deadletter_records_total")),
            commits=int(self.metrics.total("wirestream_commits_total")),
            broker_errors=int(self.metrics.total("wirestream_broker_errors_total")),
            peak_rss_mib=peak_rss_mib(),
        )

    def _close_restorer(self) -> None:
        if self._restore_consumer is not None:
            self._restore_consumer.close()

    def _close_admin(self) -> None:
        if self.topics.admin is not None:
            self.topics.admin.close()
