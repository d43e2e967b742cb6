"""Fixes for kafka-python 3.0.12 bugs found on Apache Kafka, installed process-wide.

Parked records of a paused partition (KAFKA-7548, as ported to kafka-python): when a
partition is paused, the fetcher parks the records it had parsed for it, and puts them
back in line on a later poll once the partition is resumed, but only if its in-line slot
`is None` (kafka/consumer/fetcher.py, `Fetcher.fetched_records`). Once any partition's
records have been fully read, that slot holds the exhausted (falsy, not None) object, so
parked records are never put back, and the partition, excluded from fetching while it has
parked records, is never fetched again. A member that pauses for backpressure then sees
no more input from it, goes idle and exits with its records unread. The fix empties an
exhausted in-line slot before each call, which every other use of the slot already treats
as empty (`if not ...`). tests/test_kafka_paused_records.py shows the stall without it.

An orphaned join (no KIP, Java has it right): a join's JoinGroup/SyncGroup round trip runs
as a task that later polls re-await when a short poll gave up on it
(kafka/coordinator/base.py, `join_group_async`), but they only re-enter while
`need_rejoin()` is true. The leader's own assignment inside that task makes the consumer
coordinator's reason to rejoin (assignment snapshot != metadata snapshot) false, so the
finished task is never awaited: the assignment callback never runs, heartbeats stay off,
the group keeps the member in a generation it never completes, and `poll()` spins without
partitions until the session expires. Java's loop condition is `rejoinNeededOrPending()`:
rejoin needed, or a join pending; the fix makes `need_rejoin()` the same. Seen on about one
member start in ten (the watchdog of streams/kafka/joins.py then nudged it after 10 s of a
busy loop); a consumer polling with a zero timeout hits it on every start
(tests/test_kafka_join_stall.py).

Only on the version the fixes were written against: on another one nothing is changed and
a warning says so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kafka.consumer.fetcher import Fetcher
from kafka.coordinator.base import BaseCoordinator

from wirestream.streams.kafka_patch import LibraryPatch

KAFKA_PYTHON = "3.0.12"
_ORIGINAL: Callable[..., Any] = Fetcher.fetched_records


@functools.wraps(_ORIGINAL)
def _fetched_records(self: Any, *args: Any, **kwargs: Any) -> Any:
    current = self._next_partition_records
    if current is not None and not current:  # exhausted: let parked records back in line
        self._next_partition_records = None
    return _ORIGINAL(self, *args, **kwargs)


def _need_rejoin(self: Any) -> bool:
    # Java's AbstractCoordinator.rejoinNeededOrPending(): a join in flight, or finished and
    # not yet awaited, is still to be completed by the next poll.
    return self.rejoin_needed or self._join_task is not None


PATCH = LibraryPatch(
    "kafka_python_fixes",
    KAFKA_PYTHON,
    [
        (Fetcher, "fetched_records", _fetched_records),
        (BaseCoordinator, "need_rejoin", _need_rejoin),
    ],
)
install = PATCH.install
uninstall = PATCH.uninstall  # for tests: kafka-python's own methods back
installed = PATCH.installed
