"""The member's local RocksDB stores, one per input partition, under the state directory.

Kept apart from the partition lifecycle because the checkpoints on disk are read before the
member joins the group (the state-aware assignor announces them to the leader).
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from state.changelog import EMPTY, Checkpoint
from state.store import StateStore, StoreError

STORE_NAME = "flows"
LOCK_WAIT_SECONDS = 30.0


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


def store_path(state_root: str, partition: int) -> str:
    return os.path.join(state_root, f"{STORE_NAME}-{partition}")


def open_store(state_root: str, partition: int) -> StateStore:
    """Open a store, waiting a while for a lock held by a member on this host."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            return StateStore(store_path(state_root, partition))
        except StoreError as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def open_checked(
    state_root: str, partition: int, committed: int, log: Any
) -> tuple[StateStore, Checkpoint]:
    """The local store and where its restore starts; a store ahead of the committed
    input (offsets reset, group deleted) is wiped and rebuilt from the changelog."""
    store = open_store(state_root, partition)
    start = Checkpoint.decode(store.checkpoint())
    if start is not None and start.input_offset <= committed:
        return store, start
    if start is not None:
        log.warning(
            "local_state_discarded",
            partition=partition,
            state_input_offset=start.input_offset,
            committed_offset=committed,
        )
    store.close()
    shutil.rmtree(store_path(state_root, partition), ignore_errors=True)
    return open_store(state_root, partition), EMPTY
