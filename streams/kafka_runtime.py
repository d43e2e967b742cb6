"""`wirestream run`: one member of a consumer group, one task per assigned partition.

Loop: poll -> each record through its partition's task (outputs are produced as they are
emitted) -> every `commit_interval` a commit -> wall-clock punctuation of idle partitions.

Commit protocol (Kafka Streams / Quix Streams order), per commit:
  1. the tasks' changes go to the changelog (and into the stores' write-back caches), each
     record carrying the input offset this commit is about to commit;
  2. at-least-once: flush the producer, commit the input offsets;
     exactly-once: per partition, send the offsets to its transaction and commit it;
  3. write each store's batch to RocksDB together with its checkpoint (changelog end,
     input offset).
A crash before 2 leaves changelog records whose input offset was never committed: restore
skips them and the input is processed again (same records, same ids). A crash between 2
and 3 leaves the local store behind: restore reads the changelog tail.

Broker faults (streams/kafka_retry.py): the brokers are tried for `connect_timeout` at start.
While running, a broker error (poll, produce, commit, transaction, restore) rewinds the
member to the last committed offsets: every slot is dropped without committing (open
transactions aborted, the shared producer replaced) and re-initialised from the changelog
after the next poll, after a backoff. Output since the last commit is produced again,
byte-identical (at-least-once) or only once (exactly-once: the first try was aborted).
The member gives up (exit 3) when the errors have lasted `reconnect_timeout`.

Rebalance: assignments are initialised on the main thread (open store, restore from the
local checkpoint to the changelog's end, rebuild flows, seek to the committed offset);
revocations commit and close the stores inside the listener, which kafka-python runs on
its IO thread (hence the async listener: the offset commit is awaited there).
"""

from __future__ import annotations

import functools
import gc
import os
import shutil
import signal
import socket
import time
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFencedError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from kafka.structs import MemberState, OffsetAndMetadata

from decoders.registry import select
from state.changelog import EMPTY, ChangelogRestorer, Checkpoint
from state.store import StateStore, StoreError
from streams.config import RuntimeConfig
from streams.feature_settings import FeatureSettings
from streams.kafka_features import Features
from streams.kafka_metrics import Metrics, serve
from streams.kafka_restore import RestoreError, RestoreJob, restore
from streams.kafka_retry import (
    EXIT_BROKER,
    RECONNECT_BACKOFF_MAX_MS,
    BrokerUnavailable,
    Outage,
    connect,
    discard_producer,
    finish_transaction,
    peak_rss_mib,
)
from streams.kafka_settings import MAX_REQUEST_BYTES, RunSettings
from streams.kafka_slot import PartitionSlot
from streams.kafka_statedir import StateDirError, StateDirLock, claim
from streams.kafka_topics import (
    TopicError,
    admin_client,
    changelog_topic,
    deadletter_topic,
    ensure_topic,
    output_topic,
    partition_count,
)
from streams.task import Task

log = structlog.get_logger("wirestream.kafka")

STORE_NAME = "flows"
BASE_RECORD_TYPES = ("flow", "anomaly")
LOCK_WAIT_SECONDS = 30.0
END_OF_INPUT_ATTEMPTS = 10
END_OF_INPUT_RETRY_SECONDS = 1.0
STABLE = MemberState.STABLE
REVOKE_FLUSH_SECONDS = 30.0  # revocation runs on the consumer's IO thread: keep it bounded
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
# Bounds on calls that wait for the brokers (kafka-python waits forever for some).
BROKER_WAIT_SECONDS = 30.0
# A transaction step normally takes milliseconds; kafka-python 3.0 never finishes one that
# spans a broker restart, so after this long the partition's producer is replaced.
TXN_WAIT_SECONDS = 5.0
ABORT_WAIT_SECONDS = 2.0  # an abort is a courtesy: the next owner's init aborts it anyway
# Errors that mean "the brokers are failing" rather than "this member is wrong": rewind to
# the last commit, back off, retry.
BROKER_ERRORS = (KafkaError, TopicError, RestoreError)
# A commit refused because the group is rebalancing: no outage; the partitions are
# revoked and committed again (or lost) in the rebalance that follows.
REBALANCE_ERRORS = (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
# ... or because another member owns the partition now (exactly-once).
OWNERSHIP_ERRORS = (*REBALANCE_ERRORS, ProducerFencedError)


def _fast_crc() -> bool:
    """kafka-python verifies fetched batches with CRC-32C, in pure Python unless the
    `crc32c` package is installed (then ~10x faster overall)."""
    try:
        import crc32c  # noqa: F401
    except ImportError:
        return False
    return True


CHECK_CRCS = _fast_crc()


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


class FatalError(Exception):
    """The member cannot go on safely (a produce failed for good, state unusable)."""


class KafkaRuntime:
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
    def _common(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.settings.bootstrap_servers,
            "bootstrap_timeout_ms": int(self.settings.connect_timeout * 1000),
            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
        }

    def _producer(self, **extra: Any) -> KafkaProducer:
        # Records are retried for reconnect_timeout (a broker restart loses nothing); a
        # send or init_transactions blocks BROKER_WAIT_SECONDS at most (buffer full,
        # metadata or coordinator missing), then the member rewinds and backs off.
        retry_ms = int(self.settings.reconnect_timeout * 1000)
        wait_ms = int(BROKER_WAIT_SECONDS * 1000)
        return KafkaProducer(
            request_timeout_ms=min(wait_ms, max(1000, retry_ms // 2)),
            delivery_timeout_ms=max(retry_ms, wait_ms + 100),
            max_block_ms=wait_ms,
            client_id=f"wirestream-{self.member}",
            acks="all",
            linger_ms=5,
            batch_size=256 << 10,
            max_request_size=MAX_REQUEST_BYTES,
            **self._common(),
            **extra,
        )

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

    def _scan_local_state(self, strict: bool = False) -> None:
        """Checkpoints of the stores on disk (announced to the group leader). `strict`: a
        store locked by another process is an error (we hold the directory's lock, so no
        member of ours can be holding it)."""
        if not os.path.isdir(self.state_root):
            return
        prefix = f"{STORE_NAME}-"
        for name in sorted(os.listdir(self.state_root)):
            if not name.startswith(prefix) or not name[len(prefix) :].isdigit():
                continue
            partition = int(name[len(prefix) :])
            try:
                with StateStore(os.path.join(self.state_root, name)) as store:
                    cp = Checkpoint.decode(store.checkpoint())
            except StoreError as exc:
                if strict and "lock" in str(exc).lower():
                    raise
                self.log.warning("local_store_unreadable", partition=partition, error=str(exc))
                continue
            if cp is not None:
                self._local_checkpoints[partition] = cp.changelog_offset

    def _local_state(self) -> dict[int, int]:
        return dict(self._local_checkpoints)

    def _consumer(self) -> KafkaConsumer:
        s = self.settings
        return KafkaConsumer(
            group_id=s.application_id,
            client_id=f"wirestream-{self.member}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed" if s.exactly_once else "read_uncommitted",
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_records=s.max_poll_records,
            partition_assignment_strategy=[self.features.assignor(self._local_state)],
            check_crcs=CHECK_CRCS,
            **self._common(),
        )

    def _restorer(self) -> KafkaConsumer:
        if self._restore_consumer is None:
            self._restore_consumer = KafkaConsumer(
                group_id=None,
                client_id=f"wirestream-{self.member}-restore",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed"
                if self.settings.exactly_once
                else "read_uncommitted",
                check_crcs=CHECK_CRCS,
                **self._common(),
            )
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
            self.consumer = self._consumer()
            self.consumer.subscribe([s.input_topic], listener=_Listener(self))
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
        self._scan_local_state(strict=True)

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
                    batch = self._init_pending(batch)
                if batch:
                    self._process(batch)
                self._check_send_error()
                now = time.monotonic()
                if now - last_commit >= s.commit_interval:
                    self.commit()
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
                self._broker_trouble(exc)
            except FatalError as exc:
                if self.settings.exactly_once or self._send_error is None:
                    raise
                self._broker_trouble(exc)  # a record of the shared producer failed
        self.log.info("stopping")
        try:
            committed = self.commit()
        except (*BROKER_ERRORS, FatalError) as exc:
            self.log.warning("final_commit_error", error=str(exc)[:300])
            committed = False
        if not committed:
            self.log.warning("final_commit_failed", note="the next owner repeats the tail")
        self._close_slots(list(self.slots))
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
        self.producer = self._producer()

    def _broker_trouble(self, exc: BaseException) -> None:
        """A broker error on the main thread: rewind to the last commit, back off (raises
        BrokerUnavailable once the errors have lasted reconnect_timeout)."""
        self.metrics.inc("wirestream_broker_errors_total")
        delay = self.outage.failed(exc, type(exc).__name__)
        self._rewind()
        deadline = time.monotonic() + delay
        while not self._stop and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        self._last_activity = time.monotonic()  # time without brokers is not idleness

    def _rewind(self) -> None:
        """Back to the last committed offsets: every slot dropped without committing (its
        producer discarded; an open transaction is aborted when the partition's
        transactional id is initialised again), the shared producer replaced, the assigned
        partitions initialised again (restored from the changelog) after the next poll."""
        self.metrics.inc("wirestream_rewinds_total")
        parts = sorted(self.slots)
        for p in parts:
            slot = self.slots.get(p)
            if slot is not None:
                try:
                    # No abort: the brokers may be away; initialising the transactional id
                    # again aborts what is open.
                    self._drop_slot(slot, abort=False)
                except Exception as exc:  # the store must close; go on with the others
                    self.log.info("close_failed", partition=p, error=str(exc)[:200])
        self._to_init.update(parts)
        if not self.settings.exactly_once and self.producer is not None:
            producer, self.producer = self.producer, None
            self._producer_generation += 1  # its pending records' errbacks are stale now
            discard_producer(producer)
            self._send_error = None
        self.log.info("rewound", partitions=parts)

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

    # ------------------------------------------------------------------ commit
    def commit(self) -> bool:
        """Commit every slot with new input or changes; False if the commit failed."""
        slots = [s for s in self.slots.values() if s.dirty and s.task is not None]
        if not slots:
            return True
        started = time.perf_counter()
        if self.settings.exactly_once:
            consumer = self.consumer
            assert consumer is not None
            metadata = consumer.group_metadata()
            ok = True
            for slot in slots:
                ok = self._commit_transaction(slot, metadata, reinit=True) and ok
        else:
            ok = self._commit_alos(slots)
        self._after_commit(slots, ok, time.perf_counter() - started)
        return ok

    def _commit_alos(self, slots: list[PartitionSlot]) -> bool:
        offsets = self._produce_changelog(slots)
        consumer = self.consumer
        assert consumer is not None
        try:
            consumer.commit(offsets, timeout_ms=int(BROKER_WAIT_SECONDS * 1000))
        except KafkaError as exc:
            self._commit_failed(slots, exc)
            if not isinstance(exc, REBALANCE_ERRORS):
                raise  # brokers failing: the loop rewinds (the commit may have happened)
            return False
        for slot in slots:
            self._checkpoint(slot)
        self.outage.recovered()
        return True

    def _produce_changelog(
        self, slots: list[PartitionSlot], timeout: float | None = None
    ) -> dict[TopicPartition, Any]:
        """ALOS phase 1: changelog records for every slot, then one producer flush."""
        producer = self.producer
        assert producer is not None
        records = 0
        for slot in slots:
            records += slot.write_changelog()
        producer.flush(timeout=BROKER_WAIT_SECONDS if timeout is None else timeout)
        self._check_send_error()
        for slot in slots:
            slot.changelog_written()
        self.metrics.inc("wirestream_changelog_records_total", records)
        return {slot.tp: OffsetAndMetadata(slot.next_offset, "", -1) for slot in slots}

    def _checkpoint(self, slot: PartitionSlot) -> None:
        slot.checkpoint()
        self._local_checkpoints[slot.partition] = slot.changelog_next

    def _commit_failed(self, slots: list[PartitionSlot], exc: BaseException) -> None:
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

    def _commit_transaction(self, slot: PartitionSlot, metadata: Any, reinit: bool) -> bool:
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
            self._commit_failed([slot], exc)
            # After a timeout the brokers are not answering: an abort would only wait too.
            self._drop_slot(slot, abort=not isinstance(exc, KafkaTimeoutError))
            if reinit:
                self._to_init.add(slot.partition)  # restored again after the next poll
                if not isinstance(exc, OWNERSHIP_ERRORS):
                    raise  # brokers failing: replace every producer before they come back
            return False
        self.metrics.inc("wirestream_changelog_records_total", records)
        self._checkpoint(slot)
        producer.begin_transaction()
        slot.in_transaction = True
        return True

    def _after_commit(self, slots: list[PartitionSlot], ok: bool, seconds: float) -> None:
        m = self.metrics
        m.inc("wirestream_commits_total")
        m.inc("wirestream_commit_seconds_total", seconds)
        for slot in slots:
            for record_type, n in slot.outputs.items():
                m.inc("wirestream_output_records_total", n, type=record_type)
            slot.outputs.clear()
            m.observe_slot(slot)  # lag, open flows, parked bytes, limits hit, ...

    # ------------------------------------------------------------------ assignment
    def _init_pending(self, batch: dict[TopicPartition, list[Any]]) -> dict[TopicPartition, Any]:
        """Initialise newly assigned partitions; drops their records from `batch` (they are
        fetched again from the committed offset)."""
        consumer = self.consumer
        assert consumer is not None
        wanted, self._to_init = self._to_init, set()
        assigned = {tp.partition for tp in consumer.assignment()}
        parts = sorted(p for p in wanted if p in assigned and p not in self.slots)
        if parts:
            self._initialising = {}
            try:
                self._init_partitions(parts)
            except BaseException:
                # Release what the failed attempt opened (RocksDB locks, producers); the
                # partitions are initialised again after the next poll.
                for p, slot in self._initialising.items():
                    if self.slots.get(p) is not slot:
                        self._drop_slot(slot, abort=True, registered=False)
                self._to_init.update(p for p in parts if p not in self.slots)
                raise
            self.outage.recovered()
        return {tp: recs for tp, recs in batch.items() if tp.partition not in wanted}

    def _init_partitions(self, parts: list[int]) -> None:
        consumer = self.consumer
        assert consumer is not None
        s = self.settings
        started = time.monotonic()
        slots: dict[int, PartitionSlot] = {}
        self._initialising = slots
        for p in parts:
            if s.exactly_once:
                # Initialising the partition's transactional id fences the previous owner
                # and aborts its open transaction before anything is read back.
                producer = self._producer(transactional_id=self._transactional_id(p))
                producer.init_transactions()
            else:
                if self.producer is None:  # replaced after a broker error
                    self._new_shared_producer()
                assert self.producer is not None
                producer = self.producer
            slots[p] = PartitionSlot(self, p, producer)
        jobs: list[RestoreJob] = []
        committed: dict[int, int | None] = {}
        for p, slot in slots.items():
            committed[p] = consumer.committed(slot.tp, timeout_ms=int(BROKER_WAIT_SECONDS * 1000))
            store, start = self._open_checked(p, committed[p] or 0)
            slot.store = store
            restorer = ChangelogRestorer(store, start, committed[p] or 0)
            jobs.append(RestoreJob(p, restorer, start))
        restorer = self._restorer()
        _without_gc(lambda: restore(restorer, self.changelog, jobs, s.restore_timeout))
        self.features.restore(slots, committed)
        for job in jobs:
            p = job.partition
            slot = slots[p]
            assert slot.store is not None
            task = Task(p, self.config, self.decoders, slot.emit, slot.store, slot.bad_packet)
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
            self._local_checkpoints[p] = slot.changelog_next
            if s.exactly_once:
                slot.producer.begin_transaction()
                slot.in_transaction = True
            self.slots[p] = slot
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
        self.metrics.set("wirestream_assigned_partitions", len(self.slots))
        self.metrics.inc("wirestream_rebalances_total")
        self._last_activity = time.monotonic()
        self.log.info(
            "partitions_assigned",
            partitions=sorted(self.slots),
            seconds=round(time.monotonic() - started, 3),
            member_id=consumer.group_metadata().member_id,
        )

    def _transactional_id(self, partition: int) -> str:
        s = self.settings
        return f"{s.application_id}-{s.input_topic}-{partition}"

    def _store_path(self, partition: int) -> str:
        return os.path.join(self.state_root, f"{STORE_NAME}-{partition}")

    def _open_store(self, partition: int) -> StateStore:
        """Open a store, waiting a while for a lock held by a member on this host."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                return StateStore(self._store_path(partition))
            except StoreError as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _open_checked(self, partition: int, committed: int) -> tuple[StateStore, Checkpoint]:
        """The local store and where its restore starts; a store ahead of the committed
        input (offsets reset, group deleted) is wiped and rebuilt from the changelog."""
        store = self._open_store(partition)
        start = Checkpoint.decode(store.checkpoint())
        if start is not None and start.input_offset <= committed:
            return store, start
        if start is not None:
            self.log.warning(
                "local_state_discarded",
                partition=partition,
                state_input_offset=start.input_offset,
                committed_offset=committed,
            )
        store.close()
        shutil.rmtree(self._store_path(partition), ignore_errors=True)
        return self._open_store(partition), EMPTY

    # ------------------------------------------------------------------ revocation
    def on_revoked(self, partitions: list[int]) -> tuple[dict[TopicPartition, Any], bool]:
        """Listener, phase 1 (IO thread): EOS commits and closes; ALOS produces the
        changelog and returns the offsets to commit (the listener awaits that commit)
        and whether everything so far succeeded."""
        self._to_init.difference_update(partitions)
        self._last_activity = time.monotonic()
        slots = [self.slots[p] for p in partitions if p in self.slots]
        dirty = [s for s in slots if s.dirty and s.task is not None]
        if self.settings.exactly_once:
            ok = True
            if dirty:
                consumer = self.consumer
                assert consumer is not None
                metadata = consumer.group_metadata()
                for slot in dirty:
                    ok = self._commit_transaction(slot, metadata, reinit=False) and ok
            return {}, ok
        if not dirty:
            return {}, True
        try:
            return self._produce_changelog(dirty, timeout=REVOKE_FLUSH_SECONDS), True
        except (KafkaError, FatalError) as exc:
            self._commit_failed(dirty, exc)
            return {}, False

    def close_revoked(self, partitions: list[int], committed: bool) -> None:
        """Listener, phase 2: checkpoint (if the offsets were committed) and close."""
        closed = []
        for p in partitions:
            slot = self.slots.get(p)
            if slot is None:
                continue
            if committed and slot.dirty and slot.task is not None and slot.store is not None:
                self._checkpoint(slot)
            self._drop_slot(slot, abort=False)
            closed.append(p)
        self.metrics.set("wirestream_assigned_partitions", len(self.slots))
        if closed:
            self.log.info("partitions_revoked", partitions=closed, committed=committed)

    def on_lost(self, partitions: list[int]) -> None:
        self._to_init.difference_update(partitions)
        for p in partitions:
            slot = self.slots.get(p)
            if slot is not None:
                self._drop_slot(slot, abort=True)
        self.log.warning("partitions_lost", partitions=sorted(partitions))

    def on_assigned(self, partitions: list[int]) -> None:
        self._to_init.update(partitions)
        self._last_activity = time.monotonic()

    def _drop_slot(self, slot: PartitionSlot, abort: bool, registered: bool = True) -> None:
        """Close a slot; EOS: end its producer (aborting an open transaction if asked)."""
        if registered:
            self.slots.pop(slot.partition, None)
        slot.close()
        if self.settings.exactly_once:
            if abort and slot.in_transaction:
                try:
                    finish_transaction(slot.producer, "abort", ABORT_WAIT_SECONDS)
                except Exception as exc:  # fenced or broken: the next owner's init aborts it
                    self.log.info("abort_failed", partition=slot.partition, error=str(exc)[:200])
            slot.in_transaction = False
            # Without an abort, nothing of the producer's is worth waiting for.
            discard_producer(slot.producer, timeout=5.0 if abort else 0.0)

    def _close_slots(self, partitions: list[int]) -> None:
        for p in partitions:
            slot = self.slots.get(p)
            if slot is not None:
                self._drop_slot(slot, abort=True)

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
        if not self.commit():
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
        self._close_slots(list(self.slots))
        return True

    def _abandon(self) -> None:
        """After a fatal error: close without committing (the next owner redoes the tail)."""
        for slot in list(self.slots.values()):
            try:
                self._drop_slot(slot, abort=True)
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


class _Listener(AsyncConsumerRebalanceListener):
    """Runs on kafka-python's IO thread: no blocking consumer calls here (the offset
    commit is awaited); the producer and RocksDB may block briefly."""

    def __init__(self, runtime: KafkaRuntime) -> None:
        self.rt = runtime

    async def on_partitions_revoked(self, revoked: Any) -> None:
        parts = sorted({tp.partition for tp in revoked})
        offsets, ok = self.rt.on_revoked(parts)
        if offsets and ok:
            consumer = self.rt.consumer
            assert consumer is not None
            try:
                await consumer.commit_async(offsets)
            except Exception as exc:
                self.rt._commit_failed([s for s in self.rt.slots.values() if s.tp in offsets], exc)
                ok = False
        if parts:
            self.rt.close_revoked(parts, ok)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.rt.on_assigned(sorted({tp.partition for tp in assigned}))

    async def on_partitions_lost(self, lost: Any) -> None:
        self.rt.on_lost(sorted({tp.partition for tp in lost}))
