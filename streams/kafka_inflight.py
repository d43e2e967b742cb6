"""A bound on the bytes a producer holds that the brokers have not acknowledged.

kafka-python 3.0.12 has no `buffer.memory`: its producer queues whatever it is given. A
probe reads a capture faster than a remote cluster, or a restarting broker, takes it, and
would hold the capture in memory until the brokers caught up. `InFlight` is Kafka's
`buffer.memory` put in front of `send()`: `acquire(n)` waits while the unacknowledged bytes
would pass the limit, for `max_block` seconds at most (then `KafkaTimeoutError`, as a Java
producer's `send()` after `max.block.ms`), and each record's callback, acknowledged or
failed, releases its bytes. A record larger than the limit goes alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kafka.errors import KafkaTimeoutError

_WAIT_SLICE = 0.1  # seconds between checks of `stopping` while waiting


class InFlight:
    def __init__(
        self,
        limit: int,
        max_block: float,
        stopping: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.max_block = max_block
        self.stopping = stopping  # a stop was asked for: send what is in hand, do not wait
        self.clock = clock
        self.bytes = 0  # handed to the producer, not yet acknowledged or failed
        self.peak = 0
        self.waits = 0  # acquires that had to wait (the brokers were the bound)
        self._cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self._cond:
            if self.bytes and self.bytes + n > self.limit:
                self.waits += 1
                deadline = self.clock() + self.max_block
                while self.bytes and self.bytes + n > self.limit and not self.stopping():
                    left = deadline - self.clock()
                    if left <= 0:
                        raise KafkaTimeoutError(
                            f"{self.bytes} bytes not acknowledged by the brokers after "
                            f"{self.max_block:g} s (limit {self.limit})"
                        )
                    self._cond.wait(min(left, _WAIT_SLICE))
            self.bytes += n
            if self.bytes > self.peak:
                self.peak = self.bytes

    def release(self, n: int) -> None:
        """From the producer's callbacks (its network thread)."""
        with self._cond:
            self.bytes -= n
            self._cond.notify_all()
