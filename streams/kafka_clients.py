"""The member's kafka-python clients, configured in one place.

Every client shares the bootstrap and reconnect settings, and every wait on the brokers is
bounded (kafka-python waits forever for some), so that a broker fault surfaces as an error
the member can rewind from instead of a hang.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from wirestream.streams import kafka_copies, kafka_python_fixes
from wirestream.streams.kafka_reads import read_in
from wirestream.streams.kafka_retry import RECONNECT_BACKOFF_MAX_MS
from wirestream.streams.kafka_settings import MAX_REQUEST_BYTES, RunSettings

# Bounds on calls that wait for the brokers (kafka-python waits forever for some).
BROKER_WAIT_SECONDS = 30.0


def _fast_crc() -> bool:
    """kafka-python verifies fetched batches with CRC-32C, in pure Python unless the
    `crc32c` package is installed (then ~10x faster overall)."""
    try:
        import crc32c  # noqa: F401
    except ImportError:
        return False
    return True


CHECK_CRCS = _fast_crc()


def common_options(settings: RunSettings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "bootstrap_timeout_ms": int(settings.connect_timeout * 1000),
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    }


def _library_setup(settings: RunSettings) -> None:
    """What every client of the member needs from kafka-python, process-wide and
    idempotent: the read size (streams/kafka_reads.py), fewer copies of fetched bytes
    (streams/kafka_copies.py) and the fixes of its bugs (streams/kafka_python_fixes.py)."""
    read_in(settings.socket_read_bytes)
    kafka_copies.install()
    kafka_python_fixes.install()


def new_producer(settings: RunSettings, member: str, **extra: Any) -> KafkaProducer:
    # Records are retried for reconnect_timeout (a broker restart loses nothing); a
    # send or init_transactions blocks BROKER_WAIT_SECONDS at most (buffer full,
    # metadata or coordinator missing), then the member rewinds and backs off.
    retry_ms = int(settings.reconnect_timeout * 1000)
    wait_ms = int(BROKER_WAIT_SECONDS * 1000)
    _library_setup(settings)
    return KafkaProducer(
        request_timeout_ms=min(wait_ms, max(1000, retry_ms // 2)),
        delivery_timeout_ms=max(retry_ms, wait_ms + 100),
        max_block_ms=wait_ms,
        client_id=f"wirestream-{member}",
        acks="all",
        linger_ms=settings.linger_ms,
        batch_size=256 << 10,
        max_request_size=MAX_REQUEST_BYTES,
        **common_options(settings),
        **extra,
    )


def new_group_consumer(settings: RunSettings, member: str, assignor: Any) -> KafkaConsumer:
    """The input consumer: offsets committed by the commit protocol only."""
    s = settings
    _library_setup(s)
    return KafkaConsumer(
        group_id=s.application_id,
        client_id=f"wirestream-{member}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed" if s.exactly_once else "read_uncommitted",
        session_timeout_ms=s.session_timeout_ms,
        heartbeat_interval_ms=s.heartbeat_interval_ms,
        max_poll_records=s.max_poll_records,
        max_partition_fetch_bytes=s.max_partition_fetch_bytes,
        fetch_max_bytes=s.fetch_max_bytes,
        partition_assignment_strategy=[assignor],
        check_crcs=CHECK_CRCS,
        **common_options(s),
    )


def new_restore_consumer(settings: RunSettings, member: str) -> KafkaConsumer:
    """The changelog reader: no group, so restoring never takes part in a rebalance.

    Incremental fetch sessions (KIP-227) are off: a changelog partition restored, dropped
    and assigned again at the same offset is left out of the broker's incremental fetch
    responses (nothing changed for it in the session), so kafka-python never learns its
    high watermark and a restore that is already complete waits forever. Seen on Apache
    Kafka 4.1 with kafka-python 3.0.12; full fetches of a few partitions cost nothing."""
    _library_setup(settings)
    return KafkaConsumer(
        group_id=None,
        client_id=f"wirestream-{member}-restore",
        enable_incremental_fetch_sessions=False,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed" if settings.exactly_once else "read_uncommitted",
        check_crcs=CHECK_CRCS,
        **common_options(settings),
    )


def rejoin_request(consumer: Any) -> Callable[[], None]:
    """What asks a group consumer to join its group again (streams/kafka/joins.py says
    when). kafka-python has no public call for it: its coordinator's `request_rejoin()`
    is what a metadata change uses. Without that coordinator (another client version), a
    no-op: the watchdog then only logs."""
    coordinator = getattr(consumer, "_coordinator", None)
    request = getattr(coordinator, "request_rejoin", None)
    return request if callable(request) else (lambda: None)
