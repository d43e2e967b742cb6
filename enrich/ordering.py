"""Sans-IO bookkeeping of the stage: per-key output order and committable offsets.

`KeyedOrder`: records finish their lookups in any order; a record goes out only after
every earlier record with the same key went out (records without a key are unordered).

`OffsetTracker`: per partition, the offsets received, in order, and which are done
(produced and acknowledged). The committable offset is one past the longest done
prefix: nothing is committed past a record that is still in flight. Offsets need not be
consecutive (transaction markers and compaction leave holes).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any


class Slot:
    """One input record moving through the stage."""

    __slots__ = ("epoch", "key", "offset", "output", "partition", "ready", "value")

    def __init__(self, partition: int, offset: int, key: bytes | None, value: Any, epoch: int):
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.epoch = epoch
        self.ready = False
        self.output: bytes | None = None


class KeyedOrder:
    def __init__(self) -> None:
        self._queues: dict[tuple[int, bytes], deque[Slot]] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def admit(self, slot: Slot) -> None:
        if slot.key is not None:
            q = self._queues.setdefault((slot.partition, slot.key), deque())
            q.append(slot)

    def complete(self, slot: Slot) -> list[Slot]:
        """`slot` has its output; returns the slots that may now go out, in order."""
        slot.ready = True
        if slot.key is None:
            return [slot]
        name = (slot.partition, slot.key)
        q = self._queues.get(name)
        out: list[Slot] = []
        while q and q[0].ready:
            out.append(q.popleft())
        if q is not None and not q:
            del self._queues[name]
        return out

    def drop_partition(self, partition: int) -> None:
        for name in [n for n in self._queues if n[0] == partition]:
            del self._queues[name]


class OffsetTracker:
    """Not thread-safe: the caller holds a lock (the producer's callbacks mark records
    done on the producer's thread, the consumer commits on its own)."""

    def __init__(self) -> None:
        self._parts: dict[int, OrderedDict[int, bool]] = {}
        self._committable: dict[int, int] = {}

    def assign(self, partition: int) -> None:
        self._parts[partition] = OrderedDict()
        self._committable.pop(partition, None)

    def revoke(self, partition: int) -> None:
        self._parts.pop(partition, None)
        self._committable.pop(partition, None)

    def owned(self, partition: int) -> bool:
        return partition in self._parts

    def received(self, partition: int, offset: int) -> None:
        part = self._parts.get(partition)
        if part is not None:
            part[offset] = False

    def done(self, partition: int, offset: int) -> None:
        part = self._parts.get(partition)
        if part is None or offset not in part:
            return  # revoked meanwhile
        part[offset] = True
        last = None
        while part:
            first, is_done = next(iter(part.items()))
            if not is_done:
                break
            part.popitem(last=False)
            last = first
        if last is not None:
            self._committable[partition] = last + 1

    def pending(self, partition: int | None = None) -> int:
        if partition is not None:
            return len(self._parts.get(partition, ()))
        return sum(len(p) for p in self._parts.values())

    def committable(self) -> dict[int, int]:
        """Partition -> next offset to commit (one past the done prefix)."""
        return dict(self._committable)
