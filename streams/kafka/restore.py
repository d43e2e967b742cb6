"""Restoring stores from their changelog partitions with a group-less consumer.

Reads every changelog partition being restored at once, from its local checkpoint, until
the consumer's position reaches the high watermark reported by a fetch. End offsets from
ListOffsets are never trusted (Tansu's are off by a batch); with read_committed the
position passes aborted data and transaction markers as the fetches report them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import structlog
from kafka import KafkaConsumer, TopicPartition

from wirestream.state.changelog import ChangelogRestorer, Checkpoint

log = structlog.get_logger("wirestream.kafka.restore")


class RestoreError(Exception):
    """A changelog partition could not be read to its end."""


@dataclass
class RestoreJob:
    partition: int
    restorer: ChangelogRestorer
    start: Checkpoint
    done: bool = False
    seconds: float = 0.0
    end: int = 0
    started: float = field(default_factory=time.monotonic)


def restore(
    consumer: KafkaConsumer,
    topic: str,
    jobs: list[RestoreJob],
    stall_timeout: float = 120.0,
) -> None:
    """Run `jobs` to the end of their changelog partitions; raises RestoreError on a stall."""
    if not jobs:
        return
    by_tp = {TopicPartition(topic, job.partition): job for job in jobs}
    consumer.assign(list(by_tp))
    for tp, job in by_tp.items():
        consumer.seek(tp, job.start.changelog_offset)
    pending = dict(by_tp)
    last_progress = time.monotonic()
    last_positions: dict[TopicPartition, int] = {}
    try:
        while pending:
            batch = consumer.poll(timeout_ms=200, max_records=20_000)
            for tp, records in batch.items():
                job = by_tp[tp]
                feed = job.restorer.feed
                for r in records:
                    feed(r.offset, r.key, r.value, r.headers)
            now = time.monotonic()
            if batch:
                last_progress = now
            for tp in list(pending):
                hw = consumer.highwater(tp)
                if hw is None:
                    continue
                position = consumer.position(tp)
                if position != last_positions.get(tp):
                    last_positions[tp] = position
                    last_progress = now
                if position >= hw:
                    job = pending.pop(tp)
                    job.restorer.finish(position)
                    job.end = position
                    job.done = True
                    job.seconds = now - job.started
                    consumer.pause(tp)
            if pending and now - last_progress > stall_timeout:
                waiting = sorted(tp.partition for tp in pending)
                raise RestoreError(
                    f"changelog {topic} partitions {waiting}: no progress for "
                    f"{stall_timeout:.0f} s while restoring (broker unreachable, or an "
                    "open transaction holding back read_committed readers)"
                )
    finally:
        consumer.unsubscribe()  # a group-less consumer: just drops the assignment
