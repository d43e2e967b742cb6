"""A guard against a consumer-group join that kafka-python never completes.

Seen with kafka-python 3.0.12 on Apache Kafka 4.1, about one member start in ten: the
SyncGroup answer arrives, but the join's completion (the assignment callback, re-enabling
the heartbeats) never runs. The member then polls without partitions while the coordinator
expires its session and gives everything to the others (the tests saw "partitions never
split between the members"). The cause found since, an orphaned join task, is fixed in
streams/kafka_python_fixes.py (80 member starts without a stall after the fix); the
watchdog stays as the guard for any other way a join can be left incomplete.

Every join starts with a revocation callback (possibly of nothing) and ends with an
assignment callback (possibly of nothing). When the second has not come `patience`
seconds after the first, the watchdog asks the coordinator to join again. Asking is
harmless when a join is merely slow (a rebalance waits for every member): kafka-python
keeps awaiting the join already in flight instead of sending another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class JoinWatchdog:
    def __init__(self, request_rejoin: Callable[[], None], patience: float, log: Any) -> None:
        self.request_rejoin = request_rejoin
        self.patience = patience
        self.log = log
        self.waiting_since: float | None = None  # a join started and not completed
        self.nudges = 0

    def join_started(self, now: float | None = None) -> None:
        if self.waiting_since is None:
            self.waiting_since = time.monotonic() if now is None else now

    def join_completed(self) -> None:
        self.waiting_since = None

    def check(self, now: float) -> bool:
        """Called from the poll loop; True when it asked for a new join."""
        since = self.waiting_since
        if since is None or now - since < self.patience:
            return False
        self.nudges += 1
        self.log.warning(
            "join_stalled",
            waited_seconds=round(now - since, 1),
            nudges=self.nudges,
            note="no assignment since the join began; asking the coordinator to join again",
        )
        self.waiting_since = now  # wait as long again before the next nudge
        self.request_rejoin()
        return True
