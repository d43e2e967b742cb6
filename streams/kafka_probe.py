"""`wirestream probe`: captures (files or a live interface) -> topic wirestream.packets.

Every keyed packet (PacketSource: the same parsing, defragmentation and flow keys as
replay) becomes one record: key = flow key, value = packet record, partition = Kafka's
default partitioner on the key (probe.flowkey.kafka_partition, computed here rather than
by the client; it gives the same partition as kafka-python's and the Java client's
partitioner, checked in tests). The record timestamp is left to the producer (time of
producing): broker retention acts on it, the capture time lives in the record.

Broker faults: the brokers are tried for `--connect-timeout` at start (streams/kafka_retry.py).
Once producing, the idempotent producer retries every record for `--reconnect-timeout`
(delivery timeout; `send` also blocks that long at most when its buffer is full), so a
broker restart within that time loses nothing and duplicates nothing. If a record still
fails, the probe stops reading, waits for what is in flight, and exits 3 with one line
saying how many records it produced, how many were acknowledged, and where it stopped.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError

from wirestream.probe.bundle import ENTRY_HEADER
from wirestream.probe.bundler import Bundler, Ready
from wirestream.probe.capture import open_capture
from wirestream.probe.errors import CaptureError
from wirestream.probe.flowkey import kafka_partition
from wirestream.probe.record import RECORD_VERSION
from wirestream.probe.source import PacketSource
from wirestream.streams.exitcodes import ExitCode
from wirestream.streams.kafka_inflight import InFlight
from wirestream.streams.kafka_live import LiveCapture, LiveCaptureError
from wirestream.streams.kafka_retry import (
    RECONNECT_BACKOFF_MAX_MS,
    BrokerUnavailable,
    connect,
    discard_producer,
    peak_rss_mib,
)
from wirestream.streams.kafka_settings import MAX_REQUEST_BYTES, ProbeSettings
from wirestream.streams.kafka_topics import TopicError, admin_client, ensure_topic

log = structlog.get_logger("wirestream.probe")


FLUSH_GRACE_SECONDS = 10.0
PARTITION_CACHE = 1 << 16  # flow key -> partition (a cache: only speed depends on it)

Frame = tuple[int, int, int, bytes]


def paced(frames: Iterable[Frame], should_stop: Any = None) -> Iterator[Frame]:
    """Yield frames at capture pace (relative to the first; a step back in time rebases)."""
    base_ts = base_wall = None
    for frame in frames:
        ts = frame[1]
        now = time.monotonic()
        if base_ts is None or ts < base_ts:
            base_ts, base_wall = ts, now
        else:
            delay = (ts - base_ts) / 1e9 - (now - base_wall)  # type: ignore[operator]
            while delay > 0 and not (should_stop and should_stop()):
                time.sleep(min(delay, 0.2))
                delay = (ts - base_ts) / 1e9 - (time.monotonic() - base_wall)  # type: ignore[operator]
        yield frame


class Probe:
    def __init__(self, settings: ProbeSettings, partitions_given: bool = True) -> None:
        self.settings = settings
        self.partitions_given = partitions_given
        self.source = PacketSource()
        self.records = 0
        self.record_bytes = 0
        self.errors: list[str] = []
        self._send_error: BaseException | None = None
        # Producer callbacks, all on its one sender thread.
        self.acked = 0
        self.failed = 0
        self.current: str | None = None  # the capture being read
        self._stop = False
        self.partitions = settings.partitions
        self.producer: KafkaProducer | None = None
        # Bundles: packets handed over (in records sent) and acknowledged, packets held.
        self.bundler = Bundler(settings.bundle_bytes, settings.bundle_linger_ms / 1000)
        self.packets = 0
        self.packets_acked = 0
        self.pending = 0
        self._partitions_cache: dict[bytes, int] = {}
        # Kafka's buffer.memory, which kafka-python 3.0.12 lacks (streams/kafka_inflight.py).
        self.inflight = InFlight(settings.buffer_bytes, settings.reconnect_timeout, self._stopping)

    def request_stop(self, *_: Any) -> None:
        self._stop = True

    def _stopping(self) -> bool:
        return self._stop

    def _acked(self, size: int, _metadata: Any) -> None:
        self.acked += 1
        self.inflight.release(size)

    def _send_failed(self, size: int, exc: BaseException) -> None:
        """Errback of a record of either layout: its bytes leave the buffer."""
        self.inflight.release(size)
        self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self.failed += 1
        if self._send_error is None:
            self._send_error = exc

    def _connect(self) -> None:
        s = self.settings
        admin = connect(
            lambda ms: admin_client(s.bootstrap_servers, bootstrap_timeout_ms=ms),
            s.bootstrap_servers,
            s.connect_timeout,
            log,
        )
        try:
            count, created = ensure_topic(admin, s.topic, s.partitions, s.replication_factor)
        finally:
            admin.close()
        if created:
            log.info("topic_created", topic=s.topic, partitions=count)
        elif count != s.partitions and self.partitions_given:
            log.warning(
                "topic_partitions_differ",
                topic=s.topic,
                existing=count,
                requested=s.partitions,
                note="records are partitioned over the existing partitions",
            )
        self.partitions = count
        retry_ms = int(s.reconnect_timeout * 1000)
        request_ms = max(1000, min(30_000, retry_ms // 2))
        self.producer = KafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id="wirestream-probe",
            acks="all",
            enable_idempotence=True,  # retries after a broker restart add no duplicates
            linger_ms=s.linger_ms,
            batch_size=s.batch_size,
            max_request_size=MAX_REQUEST_BYTES,
            bootstrap_timeout_ms=int(s.connect_timeout * 1000),
            request_timeout_ms=request_ms,
            delivery_timeout_ms=max(retry_ms, request_ms + s.linger_ms),
            max_block_ms=retry_ms,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            compression_type=None if s.compression == "none" else s.compression,
        )

    def _produce(self, frames: Iterable[Frame], stoppable: bool = False) -> None:
        if self.settings.layout == "packet":
            self._produce_packets(frames, stoppable)
        else:
            self._produce_bundles(frames, stoppable)

    def _produce_packets(self, frames: Iterable[Frame], stoppable: bool = False) -> None:
        """The seed's layout: one record per packet, keyed by its flow."""
        producer = self.producer
        assert producer is not None
        send = producer.send
        topic = self.settings.topic
        n = self.partitions
        failed = self._send_failed
        acked = self._acked
        acquire = self.inflight.acquire
        count = 0
        size = 0
        try:
            for kp in self.source.keyed(frames):
                value = kp.record()
                key = kp.key
                length = len(value)
                acquire(length)
                future = send(topic, value=value, key=key, partition=kafka_partition(key, n))
                future.add_callback(acked, length)
                future.add_errback(failed, length)
                count += 1
                size += length
                if self._send_error is not None or (stoppable and self._stop):
                    break
        finally:  # also when `send` raised: the counts say how much was handed over
            self.records += count
            self.record_bytes += size

    def _produce_bundles(self, frames: Iterable[Frame], stoppable: bool = False) -> None:
        """Bundles (probe/bundler.py): per packet, a partition lookup (cached per flow key),
        one struct pack and one frame slice; a Kafka record per bundle."""
        bundler = self.bundler
        partition_of = self._partitions_cache
        n = self.partitions
        add = bundler.add
        ship = self._ship
        clock = time.monotonic
        head = ENTRY_HEADER.pack
        version = RECORD_VERSION
        try:
            for kp in self.source.keyed(frames):
                key = kp[0]
                p = partition_of.get(key)
                if p is None:
                    if len(partition_of) >= PARTITION_CACHE:
                        partition_of.clear()
                    p = partition_of[key] = kafka_partition(key, n)
                buf, start, stop = kp[5], kp[6], kp[7]
                now = clock()
                ready = add(
                    p,
                    key,
                    head(16 + stop - start, version, kp[4], kp[3], kp[2].ts_ns, kp[8]),
                    buf[start:stop],
                    now,
                )
                if ready is not None:
                    ship(ready)
                if now - bundler.oldest >= bundler.linger:
                    for r in bundler.due(now):
                        ship(r)
                if self._send_error is not None or (stoppable and self._stop):
                    break
        finally:  # also when `send` raised: what was bundled still goes (or is counted)
            self.pending = bundler.pending

    def _linger_tick(self) -> None:
        """Live capture, no packet for a while: send the bundles that waited long enough."""
        if self.producer is not None and self.bundler.pending:
            for r in self.bundler.due(time.monotonic()):
                self._ship(r)

    def _ship(self, ready: Ready) -> None:
        producer = self.producer
        assert producer is not None
        size = len(ready.value)
        self.inflight.acquire(size)
        future = producer.send(
            self.settings.topic, value=ready.value, key=ready.key, partition=ready.partition
        )
        count = ready.count
        future.add_callback(self._bundle_acked, count, size)
        future.add_errback(self._send_failed, size)
        self.records += 1
        self.record_bytes += size
        self.packets += count

    def _bundle_acked(self, count: int, size: int, _metadata: Any) -> None:
        self.acked += 1
        self.packets_acked += count
        self.inflight.release(size)

    def _flush_bundles(self) -> None:
        if self.settings.layout == "bundle" and self.producer is not None:
            for r in self.bundler.drain():
                self._ship(r)
            self.pending = 0

    def run_files(self, paths: Sequence[str]) -> int:
        started = time.perf_counter()
        previous = {
            sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self._connect()
            for path in paths:
                if self._stop:
                    break
                self.current = path
                try:
                    capture = open_capture(path)
                except CaptureError as exc:
                    self._capture_error(exc)
                    continue
                try:
                    frames: Iterable[Frame] = capture
                    if self.settings.pace:
                        frames = paced(capture, self._stopping)
                    self._produce(frames, stoppable=True)
                except CaptureError as exc:
                    self._capture_error(exc)
                finally:
                    capture.close()
            return self._finish(started)
        except (KafkaError, TopicError, BrokerUnavailable) as exc:
            return self._broker_failed(exc, started)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def run_live(self, interface: str, bpf: str | None) -> int:
        started = time.perf_counter()
        previous = {
            sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            capture = LiveCapture(
                interface, bpf, should_stop=self._stopping, on_idle=self._linger_tick
            )
        except LiveCaptureError as exc:
            log.error("capture_error", error=str(exc))
            return ExitCode.INPUT_ERROR
        try:
            self._connect()
            log.info(
                "live_capture_started", interface=interface, bpf=bpf, topic=self.settings.topic
            )
            self.current = f"interface {interface}"
            self._produce(capture)
            return self._finish(started)
        except (KafkaError, TopicError, BrokerUnavailable) as exc:
            return self._broker_failed(exc, started)
        finally:
            capture.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _capture_error(self, exc: CaptureError) -> None:
        self.errors.append(str(exc))
        log.error("capture_error", error=str(exc))

    def _finish(self, started: float) -> int:
        producer = self.producer
        assert producer is not None
        try:
            self._flush_bundles()
            # Every record acknowledged or failed by the delivery timeout; the bound is for
            # batches kafka-python 3.0 sometimes never expires after a broker went away.
            producer.flush(timeout=self.settings.reconnect_timeout + FLUSH_GRACE_SECONDS)
        except KafkaError as exc:
            return self._broker_failed(exc, started, flush=False)
        producer.close()
        self._summary(started)
        if self._send_error is not None:
            self._lost(self._send_error)
            return ExitCode.BROKER
        return ExitCode.INPUT_ERROR if self.errors else ExitCode.OK

    def _broker_failed(self, exc: BaseException, started: float, flush: bool = True) -> int:
        """A broker error outside the producer's callbacks (connect, topic, `send` blocked
        past the timeout, a flush that never ends): settle what is in flight, then one
        error line with the counts."""
        producer, self.producer = self.producer, None
        if producer is None:  # never connected: nothing was read
            log.error("broker_error", error=str(exc)[:400])
            return ExitCode.BROKER
        try:
            if flush:
                producer.flush(timeout=self.settings.reconnect_timeout + FLUSH_GRACE_SECONDS)
        except KafkaError:
            pass  # what is still unresolved is counted below as not acknowledged
        finally:
            discard_producer(producer)
        self._summary(started)
        self._lost(exc)
        return ExitCode.BROKER

    def _lost(self, exc: BaseException) -> None:
        """Unacknowledged records may still have reached the topic (a broker that stops can
        drop the acknowledgement with the connection): they are "not acknowledged", not
        "lost"; rerunning the capture would duplicate the acknowledged ones."""
        s = self.settings
        acked = self.acked
        log.error(
            "broker_lost",
            error=f"records could not be delivered to {s.topic} at {s.bootstrap_servers} "
            f"within --reconnect-timeout {s.reconnect_timeout:g} s ({str(exc)[:200]}): "
            f"{self.records} records produced, {acked} acknowledged, "
            f"{self.records - acked} not acknowledged (they may or may not be in the topic)"
            f"{self._bundled_note()}; "
            f"stopped in {self.current} after {self.source.frames} frames",
            records=self.records,
            acknowledged=acked,
            unacknowledged=self.records - acked,
            packets_acknowledged=self.packets_acked,
            packets_not_sent=self.pending,
            stopped_in=self.current,
            frames_read=self.source.frames,
        )

    def _bundled_note(self) -> str:
        if self.settings.layout != "bundle":
            return ""
        return (
            f", in bundles of {self.packets} packets ({self.packets_acked} acknowledged), "
            f"{self.pending} packets not sent"
        )

    def _summary(self, started: float) -> None:
        seconds = time.perf_counter() - started
        src = self.source
        undecodable = dict(sorted(src.bad.items()))
        log.info(
            "probe_finished",
            topic=self.settings.topic,
            partitions=self.partitions,
            frames=src.frames,
            layout=self.settings.layout,
            records=self.records,
            packets=self.packets if self.settings.layout == "bundle" else self.records,
            unacknowledged=self.records - self.acked,
            record_bytes=self.record_bytes,
            non_ip_frames=src.non_ip,
            undecodable_frames=sum(undecodable.values()),
            undecodable_by_kind=undecodable,
            seconds=round(seconds, 3),
            records_per_s=round(self.records / seconds) if seconds else 0,
            packets_per_s=round(
                (self.packets if self.settings.layout == "bundle" else self.records) / seconds
            )
            if seconds
            else 0,
            capture_errors=len(self.errors),
            peak_unacknowledged_bytes=self.inflight.peak,
            buffer_waits=self.inflight.waits,
            peak_rss_mib=peak_rss_mib(),
        )
