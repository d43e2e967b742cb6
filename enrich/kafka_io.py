"""The Kafka side of the stage: kafka-python's blocking clients on their own threads,
bridged to the asyncio loop.

Threads: the loop thread (the stage, HTTP), the consumer thread (poll, pause/resume,
commit: a KafkaConsumer must be driven from one thread), one sender thread (producer
sends in the order the loop decided them: a single-worker executor is FIFO), and
kafka-python's own IO threads (producer callbacks, rebalance listener).

Shared state, under one lock: the OffsetTracker (received on poll, done on the
producer's acknowledgement, committable read by the consumer thread) and the partition
epochs (a revoked partition's late results are dropped before they reach the producer).

At-least-once: an input offset is committed only when it and every record before it in
its partition have been produced and acknowledged. A crash or a revocation with records
in flight means they are read and looked up again by the next owner: duplicates are
possible, losses are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from wirestream.enrich.lookup import Lookup
from wirestream.enrich.ordering import OffsetTracker, Slot
from wirestream.enrich.settings import EnrichSettings
from wirestream.enrich.stage import EnrichStage
from wirestream.enrich.template import UrlTemplate
from wirestream.streams import kafka_python_fixes
from wirestream.streams.exitcodes import ExitCode
from wirestream.streams.kafka.joins import JoinWatchdog
from wirestream.streams.kafka_clients import rejoin_request

log = structlog.get_logger("wirestream.enrich")


def _fast_crc() -> bool:
    """kafka-python checks fetched batches with CRC-32C in pure Python unless `crc32c` is
    installed; without it the checks are off, as in `wirestream run` (docs/kafka-mode.md)."""
    try:
        import crc32c  # noqa: F401
    except ImportError:
        return False
    return True


CHECK_CRCS = _fast_crc()


class KafkaEnricher:
    """One member of the enrichment group. `run()` blocks until stopped; returns an exit code."""

    def __init__(self, settings: EnrichSettings) -> None:
        self.settings = settings
        self.template = UrlTemplate(settings.url)
        self.member = f"{socket.gethostname()}-{os.getpid()}"
        self.lock = threading.Lock()
        self.tracker = OffsetTracker()
        self.epochs: dict[int, int] = {}
        self._stop = threading.Event()
        self._drained = threading.Event()
        self._fatal: BaseException | None = None
        # --exit-when-idle counts from the last input or assignment, never while the member
        # is joining or rebalancing (None): a member that joins a busy group waits for the
        # others to rejoin, however long they take, before it can be idle.
        self._last_input: float | None = None
        self._committed: dict[int, int] = {}
        self._to_init: set[int] = set()  # assigned, not yet positioned at the committed offset
        self.commits = 0
        self.produced = 0
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stage: EnrichStage | None = None
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="enrich-send")

    # ------------------------------------------------------------ entry point
    def run(self) -> int:
        previous = {
            s: signal.signal(s, lambda *_: self.stop()) for s in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            return asyncio.run(self._main())
        except KafkaError as exc:
            log.error("enrich_failed", error=str(exc)[:300], kind=type(exc).__name__)
            return ExitCode.ERROR
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def stop(self) -> None:
        self._stop.set()

    async def _main(self) -> int:
        s = self.settings
        self.loop = asyncio.get_running_loop()
        self._setup_topics()
        self.producer = KafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"wirestream-enrich-{self.member}",
            acks="all",
            linger_ms=5,
            # One request in flight: a retried batch cannot overtake the next one, so
            # per-key order survives broker errors.
            max_in_flight_requests_per_connection=1,
        )
        self.producer.partitions_for(s.output_topic)  # metadata now, not in the first send
        consumer_thread = threading.Thread(target=self._consume, name="enrich-consume", daemon=True)
        async with Lookup(s.lookup) as lookup:
            self.stage = EnrichStage(self.template, lookup, self._send)
            consumer_thread.start()
            log.info("enrich_started", input_topic=s.input_topic, output_topic=s.output_topic,
                     group_id=s.group_id, url=s.url, max_in_flight=s.lookup.max_in_flight,
                     max_pending=s.max_pending)  # fmt: skip
            last_stats = time.monotonic()
            while not self._stop.is_set() and self._fatal is None:
                await asyncio.sleep(0.05)
                now = time.monotonic()
                if now - last_stats >= s.stats_interval:
                    self._log_stats("enrich_stats")
                    last_stats = now
                idle_since = self._last_input
                if (
                    s.exit_when_idle is not None
                    and idle_since is not None
                    and now - idle_since >= s.exit_when_idle
                ):
                    with self.lock:
                        pending = self.tracker.pending()
                    if pending == 0 and self.stage.busy == 0:
                        log.info("enrich_idle", seconds=s.exit_when_idle)
                        break
            self._stop.set()
            drained = await self.stage.drain(s.drain_timeout)
            await asyncio.get_running_loop().run_in_executor(self._sender, self._flush)
            self._drained.set()
            await asyncio.get_running_loop().run_in_executor(None, consumer_thread.join, 30)
        self._sender.shutdown(wait=True)
        self.producer.close(timeout=10)
        self._log_stats("enrich_stopped", drained=drained)
        if self._fatal is not None:
            log.error("enrich_failed", error=str(self._fatal)[:300])
            return ExitCode.ERROR
        return ExitCode.OK

    def _setup_topics(self) -> None:
        from wirestream.streams.kafka_topics import admin_client, ensure_topic, partition_count

        s = self.settings
        admin = admin_client(s.bootstrap_servers)
        try:
            n = partition_count(admin, s.input_topic)
            if n is None:
                raise KafkaError(f"input topic {s.input_topic} does not exist")
            count, created = ensure_topic(admin, s.output_topic, n, s.replication_factor)
            if created:
                log.info("topic_created", topic=s.output_topic, partitions=count)
        finally:
            admin.close()

    def _log_stats(self, event: str, **extra: Any) -> None:
        assert self.stage is not None
        lookup = self.stage.lookup
        log.info(event, **dict(sorted(self.stage.counts.items())), produced=self.produced,
                 commits=self.commits, requests=lookup.stats.requests,
                 retries=lookup.stats.retries, coalesced=lookup.stats.coalesced,
                 cache_entries=len(lookup.cache), **extra)  # fmt: skip

    # ------------------------------------------------------------ sending (loop -> sender)
    def _send(self, slot: Slot) -> None:
        """Loop thread, in per-key order: hand the output to the sender thread (FIFO)."""
        self._sender.submit(self._produce, slot)

    def _produce(self, slot: Slot) -> None:
        producer = self.producer
        assert producer is not None
        p, offset = slot.partition, slot.offset
        with self.lock:
            if self.epochs.get(p) != slot.epoch or not self.tracker.owned(p):
                return  # revoked since: the new owner redoes it
            if slot.output is None:  # tombstone: nothing to produce
                self.tracker.done(p, offset)
                return
            try:
                future = producer.send(self.settings.output_topic, value=slot.output, key=slot.key)
            except KafkaError as exc:
                self._fatal = exc
                return
        future.add_callback(lambda _md: self._delivered(p, offset))
        future.add_errback(self._failed)

    def _delivered(self, partition: int, offset: int) -> None:
        with self.lock:
            self.tracker.done(partition, offset)
            self.produced += 1

    def _failed(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
        self._stop.set()

    def _flush(self) -> None:
        assert self.producer is not None
        try:
            self.producer.flush(timeout=self.settings.drain_timeout)
        except KafkaError as exc:
            log.warning("flush_failed", error=str(exc)[:300])

    # ------------------------------------------------------------ consuming (own thread)
    def _consume(self) -> None:
        s = self.settings
        kafka_python_fixes.install()  # it pauses for backpressure: parked records must return
        consumer = KafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=s.group_id,
            client_id=f"wirestream-enrich-{self.member}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_records=s.max_poll_records,
            check_crcs=CHECK_CRCS,
        )
        self.consumer = consumer
        # kafka-python sometimes never completes a join (streams/kafka/joins.py).
        joins = JoinWatchdog(rejoin_request(consumer), s.session_timeout_ms / 1000, log)
        consumer.subscribe([s.input_topic], listener=_Listener(self, joins))
        paused = False
        last_commit = time.monotonic()
        try:
            while not self._stop.is_set():
                with self.lock:
                    pending = self.tracker.pending()
                if pending >= s.max_pending or (paused and pending > s.max_pending // 2):
                    consumer.pause(*consumer.assignment())  # backpressure (also new ones)
                    paused = True
                elif paused:
                    consumer.resume(*consumer.paused())
                    paused = False
                if paused and self._last_input is not None:
                    # Paused for backpressure is not idle: --exit-when-idle counts from the
                    # resume, or a member whose backlog took longer than the idle time to
                    # drain would exit before reading what it had not fetched yet.
                    self._last_input = time.monotonic()
                try:
                    batch = consumer.poll(timeout_ms=100)
                    joins.check(time.monotonic())
                except KafkaError as exc:
                    log.warning("poll_failed", error=str(exc)[:300])
                    batch = {}
                if self._to_init:
                    batch = self._init_partitions(consumer, batch)
                if batch:
                    self._admit(batch)
                now = time.monotonic()
                if now - last_commit >= s.commit_interval:
                    self._commit(consumer)
                    last_commit = now
            self._drained.wait(s.drain_timeout + 30)
            self._commit(consumer)
        finally:
            with contextlib.suppress(Exception):
                consumer.close(autocommit=False)

    def _init_partitions(
        self, consumer: KafkaConsumer, batch: dict[TopicPartition, list[Any]]
    ) -> dict[TopicPartition, list[Any]]:
        """Position newly assigned partitions at their committed offset. kafka-python may
        keep its in-memory position for a partition it gets back (after a loss or an
        eager rebalance), past records whose results were dropped: those must be read
        again. Their records in `batch` are dropped (fetched again from there)."""
        with self.lock:
            wanted, self._to_init = self._to_init, set()
        assigned = {tp.partition: tp for tp in consumer.assignment()}
        for p in sorted(wanted):
            tp = assigned.get(p)
            if tp is None:
                continue
            committed = consumer.committed(tp)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        return {tp: msgs for tp, msgs in batch.items() if tp.partition not in wanted}

    def _admit(self, batch: dict[TopicPartition, list[Any]]) -> None:
        slots = []
        with self.lock:
            for tp, messages in batch.items():
                p = tp.partition
                if not self.tracker.owned(p):
                    continue
                epoch = self.epochs[p]
                for m in messages:
                    self.tracker.received(p, m.offset)
                    slots.append(Slot(p, m.offset, m.key, m.value, epoch))
        if slots:
            self._last_input = time.monotonic()
            assert self.loop is not None and self.stage is not None
            self.loop.call_soon_threadsafe(self.stage.submit, slots)

    def _commit(self, consumer: KafkaConsumer) -> None:
        with self.lock:
            points = {p: o for p, o in self.tracker.committable().items()
                      if self._committed.get(p) != o}  # fmt: skip
        if not points:
            return
        offsets = {TopicPartition(self.settings.input_topic, p): OffsetAndMetadata(o, "", -1)
                   for p, o in points.items()}  # fmt: skip
        try:
            consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("commit_failed", error=str(exc)[:300], note="retried at the next commit")
            return
        self._committed.update(points)
        self.commits += 1

    # ------------------------------------------------------------ rebalance (kafka IO thread)
    async def on_revoked(self, partitions: set[int]) -> None:
        self._last_input = None  # rebalancing is not idleness
        with self.lock:
            self._to_init -= partitions
            for p in partitions:
                self.epochs[p] = self.epochs.get(p, 0) + 1  # no more sends for p
        assert self.producer is not None
        try:
            self.producer.flush(timeout=self.settings.drain_timeout)  # what was sent is acked
        except KafkaError as exc:
            log.warning("flush_failed", error=str(exc)[:300])
        with self.lock:
            points = {p: o for p, o in self.tracker.committable().items() if p in partitions}
            for p in partitions:
                self.tracker.revoke(p)
        committed = {}
        if points and self.consumer is not None:
            offsets = {TopicPartition(self.settings.input_topic, p): OffsetAndMetadata(o, "", -1)
                       for p, o in points.items()}  # fmt: skip
            try:
                await self.consumer.commit_async(offsets)
                committed = points
            except Exception as exc:  # the next owner redoes them: duplicates, no loss
                log.warning("revoke_commit_failed", error=str(exc)[:300])
        for p in partitions:
            self._committed.pop(p, None)
        if self.loop is not None and self.stage is not None:
            self.loop.call_soon_threadsafe(self.stage.revoke, set(partitions))
        log.info("partitions_revoked", partitions=sorted(partitions), committed=committed)

    def on_assigned(self, partitions: set[int]) -> None:
        with self.lock:
            for p in partitions:
                self.epochs[p] = self.epochs.get(p, 0) + 1
                self.tracker.assign(p)
            self._to_init |= partitions
        self._last_input = time.monotonic()  # --exit-when-idle counts from here too
        member = None
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                member = self.consumer.group_metadata().member_id
        log.info("partitions_assigned", partitions=sorted(partitions), member_id=member)

    def on_lost(self, partitions: set[int]) -> None:
        self._last_input = None  # rejoining is not idleness
        with self.lock:
            self._to_init -= partitions
            for p in partitions:
                self.epochs[p] = self.epochs.get(p, 0) + 1
                self.tracker.revoke(p)
        if self.loop is not None and self.stage is not None:
            self.loop.call_soon_threadsafe(self.stage.revoke, set(partitions))
        log.warning("partitions_lost", partitions=sorted(partitions))


class _Listener(AsyncConsumerRebalanceListener):
    """kafka-python runs this on its IO thread: the commit is awaited, not blocked on."""

    def __init__(self, enricher: KafkaEnricher, joins: JoinWatchdog) -> None:
        self.e = enricher
        self.joins = joins

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.joins.join_started()  # every join begins with this callback
        parts = {tp.partition for tp in revoked}
        if parts:
            await self.e.on_revoked(parts)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.joins.join_completed()
        self.e.on_assigned({tp.partition for tp in assigned})

    async def on_partitions_lost(self, lost: Any) -> None:
        self.e.on_lost({tp.partition for tp in lost})
