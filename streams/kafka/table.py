"""Which partitions the member holds: the ready slots, the partitions waiting to be
initialised after the next poll, and when the member last saw activity.

Shared by the poll loop, the partition lifecycle, the processing guarantee and the
rebalance handler; the table is the state they share, through its methods.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol


class Slot(Protocol):
    partition: int
    dirty: bool
    task: Any

    def close(self) -> None: ...


class SlotTable:
    def __init__(self) -> None:
        self.slots: dict[int, Any] = {}  # partition -> PartitionSlot, ready
        self._pending: set[int] = set()  # assigned, initialised after the next poll

    def __contains__(self, partition: int) -> bool:
        return partition in self.slots

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self.slots.values()))

    def __len__(self) -> int:
        return len(self.slots)

    def get(self, partition: int) -> Any:
        return self.slots.get(partition)

    def partitions(self) -> list[int]:
        return sorted(self.slots)

    def add(self, slot: Slot) -> None:
        self.slots[slot.partition] = slot

    def drop(self, slot: Slot, registered: bool = True) -> None:
        """Unregister (if it is) and close a slot: releases its stores."""
        if registered:
            self.slots.pop(slot.partition, None)
        slot.close()

    def dirty(self) -> list[Any]:
        """Slots with input or changes since their last commit."""
        return [s for s in self.slots.values() if s.dirty and s.task is not None]

    # -- partitions to initialise --
    def request_init(self, partitions: Iterable[int]) -> None:
        self._pending.update(partitions)

    def cancel_init(self, partitions: Iterable[int]) -> None:
        self._pending.difference_update(partitions)

    def take_pending(self) -> set[int]:
        pending, self._pending = self._pending, set()
        return pending

    def has_pending(self) -> bool:
        return bool(self._pending)

    def owned(self) -> set[int]:
        """Ready or about to be (not to be swept as stale)."""
        return set(self.slots) | self._pending


class Activity:
    """When the member last processed input or took part in a rebalance (--exit-when-idle)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last = clock()

    def touch(self, at: float | None = None) -> None:
        self.last = self.clock() if at is None else at
