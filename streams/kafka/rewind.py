"""The broker-fault path: a broker error on the main thread rewinds the member to the last
committed offsets and backs off (streams/kafka_retry.py decides how long, and when to give
up).

The rewind itself is the partition lifecycle's (every slot dropped without committing,
open transactions aborted, the shared producer replaced, the partitions re-initialised from
the changelog after the next poll). Output since the last commit is produced again,
byte-identical (at-least-once) or only once (exactly-once: the first try was aborted).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from wirestream.streams.kafka.table import Activity
from wirestream.streams.kafka_metrics import Metrics
from wirestream.streams.kafka_retry import Outage


class BrokerFaults:
    def __init__(
        self,
        outage: Outage,
        rewind: Callable[[], None],
        activity: Activity,
        metrics: Metrics,
        stopping: Callable[[], bool],
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outage = outage
        self.rewind = rewind
        self.activity = activity
        self.metrics = metrics
        self.stopping = stopping
        self.sleep = sleep
        self.clock = clock

    def handle(self, exc: BaseException) -> None:
        """A broker error on the main thread: rewind to the last commit, back off (raises
        BrokerUnavailable once the errors have lasted reconnect_timeout)."""
        self.metrics.inc("wirestream_broker_errors_total")
        delay = self.outage.failed(exc, type(exc).__name__)
        self.rewind()
        deadline = self.clock() + delay
        while not self.stopping() and self.clock() < deadline:
            self.sleep(min(0.2, max(0.0, deadline - self.clock())))
        self.activity.touch()  # time without brokers is not idleness
