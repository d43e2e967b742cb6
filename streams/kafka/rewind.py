"""The broker-fault path: a broker error on the main thread rewinds the member to the last
committed offsets and backs off (streams/kafka_retry.py decides how long, and when to give
up).

Every slot is dropped without committing (open transactions aborted, the shared producer
replaced) and re-initialised from the changelog after the next poll. Output since the last
commit is produced again, byte-identical (at-least-once) or only once (exactly-once: the
first try was aborted).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from streams.kafka.partitions import drop_slot
from streams.kafka_retry import discard_producer

if TYPE_CHECKING:
    from streams.kafka.runtime import KafkaRuntime


def broker_trouble(rt: KafkaRuntime, exc: BaseException) -> None:
    """A broker error on the main thread: rewind to the last commit, back off (raises
    BrokerUnavailable once the errors have lasted reconnect_timeout)."""
    rt.metrics.inc("wirestream_broker_errors_total")
    delay = rt.outage.failed(exc, type(exc).__name__)
    _rewind(rt)
    deadline = time.monotonic() + delay
    while not rt._stop and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    rt._last_activity = time.monotonic()  # time without brokers is not idleness


def _rewind(rt: KafkaRuntime) -> None:
    """Back to the last committed offsets: every slot dropped without committing (its
    producer discarded; an open transaction is aborted when the partition's
    transactional id is initialised again), the shared producer replaced, the assigned
    partitions initialised again (restored from the changelog) after the next poll."""
    rt.metrics.inc("wirestream_rewinds_total")
    parts = sorted(rt.slots)
    for p in parts:
        slot = rt.slots.get(p)
        if slot is not None:
            try:
                # No abort: the brokers may be away; initialising the transactional id
                # again aborts what is open.
                drop_slot(rt, slot, abort=False)
            except Exception as exc:  # the store must close; go on with the others
                rt.log.info("close_failed", partition=p, error=str(exc)[:200])
    rt._to_init.update(parts)
    if not rt.settings.exactly_once and rt.producer is not None:
        producer, rt.producer = rt.producer, None
        rt._producer_generation += 1  # its pending records' errbacks are stale now
        discard_producer(producer)
        rt._send_error = None
    rt.log.info("rewound", partitions=parts)
