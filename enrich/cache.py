"""A bounded TTL cache (LRU order), sans-IO: the clock is passed in."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class TtlCache:
    """Entries expire `ttl` seconds after they were stored; beyond `max_entries` the least
    recently used goes. ttl <= 0 disables caching."""

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, now: float) -> tuple[bool, Any]:
        item = self._data.get(key)
        if item is None or item[0] <= now:
            if item is not None:
                del self._data[key]
            self.misses += 1
            return False, None
        self._data.move_to_end(key)
        self.hits += 1
        return True, item[1]

    def put(self, key: str, value: Any, now: float) -> None:
        if self.ttl <= 0 or self.max_entries <= 0:
            return
        self._data[key] = (now + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
