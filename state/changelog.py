"""The store side of a changelog, sans-IO: checkpoints, record headers, and the restore rule.

A changelog record is (key = store key, value = store value, None = tombstone) with one
header, `ws.input_offset`: the input offset the commit that wrote it was about to commit.
Restoring applies a record only if that offset is at or below the input offset the
consumer group has actually committed, as Quix Streams does: a commit that crashed after
its changelog records landed but before its input offsets were committed is skipped, and
its input is processed again, so the restored state never runs ahead of the input.

The local checkpoint (stored atomically with the RocksDB batch) holds the next changelog
offset to read and the input offset the local state corresponds to.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from wirestream.state.store import StateStore

INPUT_OFFSET_HEADER = "ws.input_offset"
_CHECKPOINT = struct.Struct(">Bqq")
_CHECKPOINT_VERSION = 1
_OFFSET = struct.Struct(">q")
# Restored entries are written to RocksDB in batches of this many (bounded memory).
RESTORE_BATCH = 20_000

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    changelog_offset: int  # next changelog offset to read (everything before is in the store)
    input_offset: int  # input offset the stored state corresponds to (next to process)

    def encode(self) -> bytes:
        return _CHECKPOINT.pack(_CHECKPOINT_VERSION, self.changelog_offset, self.input_offset)

    @classmethod
    def decode(cls, data: bytes | None) -> Checkpoint | None:
        """None for a missing or unreadable checkpoint (the store is then rebuilt)."""
        if data is None or len(data) != _CHECKPOINT.size or data[0] != _CHECKPOINT_VERSION:
            return None
        _, changelog_offset, input_offset = _CHECKPOINT.unpack(data)
        return cls(changelog_offset, input_offset)


EMPTY = Checkpoint(0, 0)


def offset_headers(input_offset: int) -> list[tuple[str, bytes]]:
    return [(INPUT_OFFSET_HEADER, _OFFSET.pack(input_offset))]


def header_input_offset(headers: Headers | None) -> int | None:
    for name, value in headers or ():
        if name == INPUT_OFFSET_HEADER and value is not None and len(value) == _OFFSET.size:
            return int(_OFFSET.unpack(value)[0])
    return None


class ChangelogRestorer:
    """Feeds changelog records read back into a store, skipping uncommitted commits."""

    def __init__(self, store: StateStore, start: Checkpoint, committed_input: int) -> None:
        self.store = store
        self.committed_input = committed_input
        self.next_offset = start.changelog_offset
        self.input_offset = start.input_offset
        self.applied = 0
        self.skipped = 0
        self._batch: list[tuple[bytes, bytes | None]] = []

    def feed(self, offset: int, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        """One changelog record, in offset order."""
        self.next_offset = offset + 1
        wrote = header_input_offset(headers)
        if key is None or (wrote is not None and wrote > self.committed_input):
            self.skipped += 1
            return
        if wrote is not None and wrote > self.input_offset:
            self.input_offset = wrote
        self._batch.append((key, value))
        self.applied += 1
        if len(self._batch) >= RESTORE_BATCH:
            self._write()

    def finish(self, position: int) -> Checkpoint:
        """The changelog was read up to `position` (exclusive): write what is left."""
        self.next_offset = max(self.next_offset, position)
        self._write()
        return self.checkpoint

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.next_offset, self.input_offset)

    def _write(self) -> None:
        self.store.apply_changelog(self._batch, self.checkpoint.encode())
        self._batch = []
