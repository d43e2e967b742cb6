"""Removal of stale local state: store directories of partitions this member no longer
owns, after a quiet time (Kafka Streams' `state.cleanup.delay.ms`).

A member keeps the stores of partitions it lost in a rebalance: if it gets them back soon
(the state-aware assignor prefers it), it restores only the changelog tail. Kept forever,
they would fill the disk as partitions wander, and announce stale checkpoints to the
group leader. So a directory `<store>-<partition>` whose partition is not owned and that
saw no activity for `delay` seconds (no file written in it, not released by this process,
and not since this process started) is deleted. A store another process on this host
still holds (RocksDB's lock) is left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterable

from wirestream.state.store import StateStore, StoreError

_DIR = re.compile(r"^(?P<store>[a-z][a-z0-9_]*)-(?P<partition>\d+)$")


class StateCleaner:
    def __init__(
        self,
        root: str,
        delay: float,
        stores: Iterable[str] = ("flows", "flowstats"),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.delay = delay
        self.stores = set(stores)
        self.clock = clock
        self.started = clock()
        self.released: dict[int, float] = {}

    def release(self, partition: int) -> None:
        """This member closed the partition's stores (revocation, stop)."""
        self.released[partition] = self.clock()

    def directories(self) -> dict[int, list[str]]:
        """Partition -> its store directories under the root."""
        out: dict[int, list[str]] = {}
        try:
            names = os.listdir(self.root)
        except OSError:
            return out
        for name in sorted(names):
            m = _DIR.match(name)
            if m is None or m["store"] not in self.stores:
                continue
            out.setdefault(int(m["partition"]), []).append(os.path.join(self.root, name))
        return out

    def last_activity(self, partition: int, dirs: list[str]) -> float:
        newest = max(self.started, self.released.get(partition, 0.0))
        for path in dirs:
            try:
                newest = max(newest, os.stat(path).st_mtime)
                with os.scandir(path) as entries:
                    for entry in entries:
                        newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
            except OSError:
                continue
        return newest

    def sweep(self, owned: set[int]) -> list[tuple[int, float]]:
        """Delete the stale directories; returns (partition, idle seconds) per removal."""
        now = self.clock()
        removed = []
        for partition, dirs in self.directories().items():
            if partition in owned:
                continue
            idle = now - self.last_activity(partition, dirs)
            if idle < self.delay:
                continue
            if not all(_unlocked(path) for path in dirs):
                continue
            for path in dirs:
                shutil.rmtree(path, ignore_errors=True)
            self.released.pop(partition, None)
            removed.append((partition, idle))
        return removed


def _unlocked(path: str) -> bool:
    """True if no process holds the store (opening it takes RocksDB's lock)."""
    try:
        StateStore(path).close()
    except StoreError:
        return False
    return True
