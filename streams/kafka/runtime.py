"""`wirestream run`: one member of a consumer group, one task per assigned partition.

Loop: poll -> each record through its partition's task (outputs are produced as they are
emitted) -> every `commit_interval` a commit -> wall-clock punctuation of idle partitions.
KafkaRuntime holds the member's state and runs the loop; the steps live in their own
modules: the commit protocol (kafka_commit.py), partition init/restore and closing
(kafka_partitions.py), the rebalance listener (kafka_rebalance.py), the broker-fault
rewind (kafka_rewind.py), the clients (kafka_clients.py), the local stores
(kafka_stores.py) and what each error means (kafka_errors.py).

Broker faults (streams/kafka_retry.py): the brokers are tried for `connect_timeout` at start.
While running, a broker error (poll, produce, commit, transaction, restore) rewinds the
member to the last committed offsets after a backoff (kafka_rewind.py). The member gives
up (exit 3) when the errors have lasted `reconnect_timeout`.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import time
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import MemberState

from decoders.registry import select
from state.store import StoreError
from streams.config import RuntimeConfig
from streams.feature_settings import FeatureSettings
from streams.kafka.features import Features
from streams.kafka.guarantee import commit
from streams.kafka.partitions import close_slots, drop_slot, init_pending
from streams.kafka.rebalance import RebalanceListener
from streams.kafka.restore import RestoreError
from streams.kafka.rewind import broker_trouble
from streams.kafka.slot import PartitionSlot
from streams.kafka.statedir import StateDirError, StateDirLock, claim
from streams.kafka.stores import STORE_NAME, local_checkpoints
from streams.kafka_clients import (
    CHECK_CRCS,
    new_group_consumer,
    new_producer,
    new_restore_consumer,
)
from streams.kafka_errors import BROKER_ERRORS, FatalError
from streams.kafka_metrics import Metrics, serve
from streams.kafka_retry import (
    EXIT_BROKER,
    BrokerUnavailable,
    Outage,
    connect,
    peak_rss_mib,
)
from streams.kafka_settings import MAX_REQUEST_BYTES, RunSettings
from streams.kafka_topics import (
    TopicError,
    admin_client,
    changelog_topic,
    deadletter_topic,
    ensure_topic,
    output_topic,
    partition_count,
)

log = structlog.get_logger("wirestream.kafka")

BASE_RECORD_TYPES = ("flow", "anomaly")
END_OF_INPUT_ATTEMPTS = 10
END_OF_INPUT_RETRY_SECONDS = 1.0
STABLE = MemberState.STABLE
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class KafkaRuntime:
    """One group member: owns its clients, slots and counters, and runs the poll loop;
    the commit, partition, rebalance and rewind modules act on it."""

    def __init__(
        self,
        settings: RunSettings,
        config: RuntimeConfig,
        metrics: Metrics | None = None,
        features: FeatureSettings | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.decoders = select(config.decoders)
        self.metrics = metrics or Metrics()
        self.member = f"{socket.gethostname()}-{os.getpid()}"
        self.log = log.bind(application_id=settings.application_id, member=self.member)
        self.state_root = os.path.join(settings.state_dir, settings.application_id)
        self.changelog = changelog_topic(settings.application_id, STORE_NAME)
        self.slots: dict[int, PartitionSlot] = {}
        self.input_partitions = 0
        self.deadletter: tuple[str, int] = (deadletter_topic(settings.topic_prefix), 1)
        self._outputs: dict[str, tuple[str, int]] = {}
        self._to_init: set[int] = set()
        self._local_checkpoints: dict[int, int] = {}
        self._stop = False
        self._send_error: BaseException | None = None
        self._dead_reasons: set[str] = set()
        self._error_kinds: set[str] = set()
        self._last_activity = time.monotonic()
        self._input_span: list[float] = []  # wall clock of the first and last input batch
        self.admin: Any = None
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None  # at-least-once: shared by all slots
        self._restore_consumer: KafkaConsumer | None = None
        self._metrics_server: Any = None
        self.features = Features(self, features)  # flow stats, queries, substreams, cleanup
        self.outage = Outage(settings.bootstrap_servers, settings.reconnect_timeout, self.log)
        self._state_lock: StateDirLock | None = None
        self._initialising: dict[int, PartitionSlot] = {}  # slots of an unfinished init
        # At-least-once: errbacks carry the generation of the producer they were sent with,
        # so that records failing in a discarded producer do not fail its successor.
        self._producer_generation = 0
        self.send_failed = functools.partial(self._send_failed, 0)  # type: ignore[method-assign]

    # ------------------------------------------------------------------ setup
    def _setup_topics(self) -> None:
        s = self.settings
        self.admin = connect(
            lambda ms: admin_client(s.bootstrap_servers, bootstrap_timeout_ms=ms),
            s.bootstrap_servers,
            s.connect_timeout,
            self.log,
        )
        n = partition_count(self.admin, s.input_topic)
        if n is None:
            raise TopicError(
                f"input topic {s.input_topic} does not exist: start `wirestream probe` first "
                "or create it with the partition count you want"
            )
        self.input_partitions = n
        rf = s.replication_factor
        ensure_topic(
            self.admin,
            self.changelog,
            n,
            rf,
            {"cleanup.policy": "compact", "max.message.bytes": str(MAX_REQUEST_BYTES)},
        )
        dead = self.deadletter[0]
        self.deadletter = (dead, ensure_topic(self.admin, dead, n, rf)[0])
        for record_type in (*BASE_RECORD_TYPES, *(cls.name for cls in self.decoders)):
            self.output_topic(record_type)

    def output_topic(self, record_type: str) -> tuple[str, int]:
        """(topic, partition count) for a record type; the topic is created on first use."""
        known = self._outputs.get(record_type)
        if known is None:
            name = output_topic(self.settings.topic_prefix, record_type)
            count, created = ensure_topic(
                self.admin, name, self.input_partitions, self.settings.replication_factor
            )
            if created:
                self.log.info("topic_created", topic=name, partitions=count)
            known = self._outputs[record_type] = (name, count)
        return known

    def _local_state(self) -> dict[int, int]:
        return dict(self._local_checkpoints)

    def _restorer(self) -> KafkaConsumer:
        if self._restore_consumer is None:
            self._restore_consumer = new_restore_consumer(self.settings, self.member)
        return self._restore_consumer

    # ------------------------------------------------------------------ main loop
    def request_stop(self, *_: Any) -> None:
        self._stop = True

    def run(self) -> int:
        s = self.settings
        previous = {
            sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        code = EXIT_ERROR
        try:
            self._claim_state_dir()
        except (StateDirError, StoreError) as exc:
            self.log.error("state_dir_unusable", error=str(exc), state_dir=self.state_root)
            self._restore_signals(previous)
            if self._state_lock is not None:
                self._state_lock.release()
            return EXIT_USAGE
        try:
            self._setup_topics()
            self.features.start()
            if s.metrics_port is not None:
                self._metrics_server = serve(self.metrics, s.metrics_port)
            if not s.exactly_once:
                self._new_shared_producer()
            assignor = self.features.assignor(self._local_state)
            self.consumer = new_group_consumer(s, self.member, assignor)
            self.consumer.subscribe([s.input_topic], listener=RebalanceListener(self))
            self.log.info(
                "member_started",
                input_topic=s.input_topic,
                partitions=self.input_partitions,
                guarantee=s.processing_guarantee,
                local_stores=len(self._local_checkpoints),
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
            code = EXIT_BROKER
        except (TopicError, StoreError, FatalError, RestoreError, KafkaError) as exc:
            self.log.error("member_failed", error=str(exc), kind=type(exc).__name__)
            self._abandon()
        finally:
            self._restore_signals(previous)
            self._close_clients()
            if self._state_lock is not None:
                self._state_lock.release()
        return code

    @staticmethod
    def _restore_signals(previous: dict[Any, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _claim_state_dir(self) -> None:
        """Before any broker call: the state directory must be writable and ours alone,
        and so must every store in it (a RocksDB lock held by some other process)."""
        self._state_lock = claim(self.settings.state_dir, self.settings.application_id)
        self._local_checkpoints.update(local_checkpoints(self.state_root, self.log, strict=True))

    def _loop(self) -> int:
        s = self.settings
        consumer = self.consumer
        assert consumer is not None
        last_commit = time.monotonic()
        punctuate_every = max(1.0, s.commit_interval)
        last_punctuation_check = last_commit
        end_attempts = 0
        while not self._stop:
            try:
                batch = consumer.poll(timeout_ms=100)
                if self._to_init:
                    batch = init_pending(self, batch)
                if batch:
                    self._process(batch)
                self._check_send_error()
                now = time.monotonic()
                if now - last_commit >= s.commit_interval:
                    commit(self)
                    last_commit = now
                if now - last_punctuation_check >= punctuate_every:
                    self._punctuate(now)
                    last_punctuation_check = now
                self.features.tick(now)
                if s.exit_when_idle is not None and consumer.group_metadata().state != STABLE:
                    self._last_activity = now  # joining or rebalancing is not idleness
                if (
                    s.exit_when_idle is not None
                    and now - self._last_activity >= s.exit_when_idle
                    and not self._to_init
                ):
                    if self._end_of_input():
                        return EXIT_OK
                    # Usually a rebalance started by a member that finished first: poll to
                    # take part in it (the restored state keeps what was closed), then retry.
                    end_attempts += 1
                    if end_attempts >= END_OF_INPUT_ATTEMPTS and self.outage.since is None:
                        return EXIT_ERROR
                    self._last_activity = now - s.exit_when_idle + END_OF_INPUT_RETRY_SECONDS
            except BROKER_ERRORS as exc:
                broker_trouble(self, exc)
            except FatalError as exc:
                if self.settings.exactly_once or self._send_error is None:
                    raise
                broker_trouble(self, exc)  # a record of the shared producer failed
        self.log.info("stopping")
        try:
            committed = commit(self)
        except (*BROKER_ERRORS, FatalError) as exc:
            self.log.warning("final_commit_error", error=str(exc)[:300])
            committed = False
        if not committed:
            self.log.warning("final_commit_failed", note="the next owner repeats the tail")
        close_slots(self, list(self.slots))
        return EXIT_OK

    def _process(self, batch: dict[TopicPartition, list[Any]]) -> None:
        now = time.monotonic()
        count = 0
        for tp, records in batch.items():
            slot = self.slots.get(tp.partition)
            if slot is None or slot.task is None:
                self._to_init.add(tp.partition)  # e.g. after a failed transaction
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
            self._last_activity = now
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
                topic=self.deadletter[0],
                note="logged once per reason; see wirestream_deadletter_records_total",
            )

    def _send_failed(self, generation: int, exc: BaseException) -> None:
        """Producer callback (its IO thread): a record could not be delivered. Exactly-once:
        the transaction it belongs to fails to commit and is redone, nothing to do here."""
        if self.settings.exactly_once or generation != self._producer_generation:
            return
        if self._send_error is None:
            self._send_error = exc

    def _new_shared_producer(self) -> None:
        """At-least-once: the member's producer (again after a rewind)."""
        self._producer_generation += 1
        self.send_failed = functools.partial(self._send_failed, self._producer_generation)  # type: ignore[method-assign]
        self._send_error = None
        self.producer = new_producer(self.settings, self.member)

    def _check_send_error(self) -> None:
        if self._send_error is not None:
            raise FatalError(f"a record could not be produced: {self._send_error}")

    # ------------------------------------------------------------------ punctuation
    def _punctuate(self, now: float) -> None:
        """Liveness: expire flows of partitions that received nothing for a while, with a
        time derived from the wall clock (stream time + idle time)."""
        after = self.settings.punctuate_idle
        for slot in self.slots.values():
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

    # ------------------------------------------------------------------ end
    def _end_of_input(self) -> bool:
        """--exit-when-idle: close every flow as replay does at the end and commit; True
        when committed (the member then exits)."""
        flows = 0
        for slot in self.slots.values():
            if slot.task is not None:
                flows += len(slot.task.tracker)
                slot.task.close_all("end_of_input")
                slot.dirty = True
        if not commit(self):
            self.log.warning("end_of_input_commit_failed", partitions=sorted(self.slots))
            return False
        self.log.info(
            "end_of_input",
            idle_seconds=self.settings.exit_when_idle,
            partitions=sorted(self.slots),
            flows_closed=flows,
            input_records=int(self.metrics.total("wirestream_input_records_total")),
            restored_records=int(self.metrics.total("wirestream_restored_records_total")),
            input_span=[round(t, 3) for t in self._input_span],
        )
        close_slots(self, list(self.slots))
        return True

    def _abandon(self) -> None:
        """After a fatal error: close without committing (the next owner redoes the tail)."""
        for slot in list(self.slots.values()):
            try:
                drop_slot(self, slot, abort=True)
            except Exception as exc:
                self.log.info("close_failed", partition=slot.partition, error=str(exc)[:200])

    def _close_clients(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close()
            except Exception as exc:
                self.log.info("consumer_close_failed", error=str(exc)[:200])
        for client in (self.producer, self._restore_consumer, self.admin):
            if client is None:
                continue
            try:
                client.close()
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
