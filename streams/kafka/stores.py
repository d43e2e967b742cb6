"""The store manager: the member's named local RocksDB stores (one per store name and input
partition, `<state-dir>/<application-id>/<name>-<partition>`), their checkpoints, the
state directory's lock, and the removal of stale stores.

The checkpoints on disk are read before the member joins the group (the state-aware
assignor announces them to the leader), and kept up to date by every checkpoint, so this
is the one place that knows which partitions' state this host holds (Quix Streams'
StateStoreManager has the same job).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Any, Protocol

from wirestream.state.changelog import EMPTY, Checkpoint
from wirestream.state.store import StateStore, StoreError
from wirestream.streams.kafka.cleanup import StateCleaner
from wirestream.streams.kafka.statedir import StateDirLock, claim

STORE_NAME = "flows"
LOCK_WAIT_SECONDS = 30.0


class Checkpointable(Protocol):
    """A slot, as far as checkpointing goes (streams/kafka/slot.py)."""

    partition: int
    changelog_next: int

    def checkpoint(self) -> None: ...


def local_checkpoints(state_root: str, log: Any, strict: bool = False) -> dict[int, int]:
    """Changelog offsets of the checkpoints of the stores on disk, by partition. `strict`:
    a store locked by another process is an error (we hold the directory's lock, so no
    member of ours can be holding it)."""
    checkpoints: dict[int, int] = {}
    if not os.path.isdir(state_root):
        return checkpoints
    prefix = f"{STORE_NAME}-"
    for name in sorted(os.listdir(state_root)):
        if not name.startswith(prefix) or not name[len(prefix) :].isdigit():
            continue
        partition = int(name[len(prefix) :])
        try:
            with StateStore(os.path.join(state_root, name)) as store:
                cp = Checkpoint.decode(store.checkpoint())
        except StoreError as exc:
            if strict and "lock" in str(exc).lower():
                raise
            log.warning("local_store_unreadable", partition=partition, error=str(exc))
            continue
        if cp is not None:
            checkpoints[partition] = cp.changelog_offset
    return checkpoints


def store_path(state_root: str, partition: int, name: str = STORE_NAME) -> str:
    return os.path.join(state_root, f"{name}-{partition}")


def open_store(state_root: str, partition: int, name: str = STORE_NAME) -> StateStore:
    """Open a store, waiting a while for a lock held by a member on this host."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            return StateStore(store_path(state_root, partition, name))
        except StoreError as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class StoreManager:
    """Named stores under `<state_dir>/<application_id>`; the checkpoint of each flows
    store (what the assignor announces); stale directories swept after `cleanup_delay`."""

    def __init__(
        self,
        state_dir: str,
        application_id: str,
        log: Any,
        cleanup_delay: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state_dir = state_dir
        self.application_id = application_id
        self.root = os.path.join(state_dir, application_id)
        self.log = log
        self.cleaner = StateCleaner(self.root, cleanup_delay)  # flows and flowstats stores
        self._checkpoints: dict[int, int] = {}
        self._lock: StateDirLock | None = None
        self._sweep_every = max(1.0, min(cleanup_delay / 2, 30.0))
        self._next_sweep = clock() + self._sweep_every

    # -- the state directory --
    def claim(self) -> None:
        """Before any broker call: the state directory must be writable and ours alone,
        and so must every store in it (a RocksDB lock held by some other process)."""
        self._lock = claim(self.state_dir, self.application_id)
        self._checkpoints.update(local_checkpoints(self.root, self.log, strict=True))

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    # -- checkpoints --
    def local_state(self) -> dict[int, int]:
        """Partition -> changelog offset of its flows store's checkpoint (for the leader)."""
        return dict(self._checkpoints)

    def checkpointed(self, partition: int, changelog_offset: int) -> None:
        self._checkpoints[partition] = changelog_offset

    def checkpoint(self, slot: Checkpointable) -> None:
        """The slot's input offsets are committed: write its stores' batches."""
        slot.checkpoint()
        self.checkpointed(slot.partition, slot.changelog_next)

    # -- stores --
    def open_checked(
        self, partition: int, committed: int, name: str = STORE_NAME, warn: bool = True
    ) -> tuple[StateStore, Checkpoint]:
        """The local store and where its restore starts; a store ahead of the committed
        input (offsets reset, group deleted) is wiped and rebuilt from the changelog."""
        store = open_store(self.root, partition, name)
        start = Checkpoint.decode(store.checkpoint())
        if start is not None and start.input_offset <= committed:
            return store, start
        if start is not None and warn:
            self.log.warning(
                "local_state_discarded",
                partition=partition,
                state_input_offset=start.input_offset,
                committed_offset=committed,
            )
        store.close()
        shutil.rmtree(store_path(self.root, partition, name), ignore_errors=True)
        return open_store(self.root, partition, name), EMPTY

    # -- cleanup --
    def released(self, partition: int) -> None:
        """This member closed the partition's stores: its quiet time starts now."""
        self.cleaner.release(partition)

    def sweep_due(self, now: float) -> bool:
        """True every `sweep_every` seconds (the caller then checks the group is stable)."""
        if now < self._next_sweep:
            return False
        self._next_sweep = now + self._sweep_every
        return True

    def sweep(self, owned: set[int]) -> list[tuple[int, float]]:
        """Remove stale stores of partitions not in `owned`; they are no longer announced
        to the group leader. Returns (partition, idle seconds) per removal."""
        removed = self.cleaner.sweep(owned)
        for partition, _ in removed:
            self._checkpoints.pop(partition, None)
        return removed
