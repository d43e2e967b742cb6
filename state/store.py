"""One RocksDB store for one (store name, partition), with a write-back cache.

Writes go into an in-memory dict and reach RocksDB only in `flush()`, as one atomic
WriteBatch together with the checkpoint (the changelog offset the batch corresponds to),
as Kafka Streams and Quix Streams do: after a crash, the store and its checkpoint agree,
and restoring replays the changelog from that offset on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from rocksdict import AccessType, Options, Rdict, WriteBatch

# Reserved key prefix for the store's own metadata; user keys must not start with it.
_META = b"\x00__wirestream__/"
_CHECKPOINT_KEY = _META + b"checkpoint"
_TOMBSTONE = None


class StoreError(Exception):
    """A store could not be opened or written; the message says which directory and what to do."""


class StateStore:
    """A bytes -> bytes store in RocksDB with a write-back cache and a changelog checkpoint."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create state directory {path}: {exc.strerror}; "
                "choose a writable --state-dir"
            ) from exc
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        try:
            self._db = Rdict(path, options, access_type=AccessType.read_write())
        except Exception as exc:  # rocksdict raises plain Exception with RocksDB's text
            text = str(exc)
            hint = (
                "another wirestream process holds this state directory; stop it or use "
                "another --state-dir"
                if "lock" in text.lower()
                else "check that the directory is writable and not corrupt"
            )
            raise StoreError(f"cannot open RocksDB store {path}: {text}; {hint}") from exc
        self._pending: dict[bytes, bytes | None] = {}

    # -- reads see the pending writes first (read-your-writes) --
    def get(self, key: bytes) -> bytes | None:
        if key in self._pending:
            return self._pending[key]
        return self._db.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """All user entries, pending writes included, in key order."""
        merged: dict[bytes, bytes | None] = {}
        for key, value in self._db.items():
            if not key.startswith(_META):
                merged[key] = value
        merged.update(self._pending)
        for key in sorted(merged):
            value = merged[key]
            if value is not None:
                yield key, value

    # -- writes are cached until flush --
    def put(self, key: bytes, value: bytes) -> None:
        self._pending[key] = value

    def delete(self, key: bytes) -> None:
        self._pending[key] = _TOMBSTONE

    def pending(self) -> dict[bytes, bytes | None]:
        """The writes since the last flush (None = delete): what goes to the changelog."""
        return self._pending

    def flush(self, checkpoint: bytes | None = None) -> int:
        """Write the pending writes and the checkpoint atomically; returns how many entries."""
        count = len(self._pending)
        if not count and checkpoint is None:
            return 0
        batch = WriteBatch(raw_mode=True)
        for key, value in self._pending.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if checkpoint is not None:
            batch.put(_CHECKPOINT_KEY, checkpoint)
        self._db.write(batch)
        self._pending = {}
        return count

    def checkpoint(self) -> bytes | None:
        """The checkpoint written by the last flush (e.g. the changelog offset), or None."""
        return self._db.get(_CHECKPOINT_KEY)

    def apply_changelog(self, entries: list[tuple[bytes, bytes | None]], checkpoint: bytes) -> None:
        """Write entries read back from a changelog (restore), with the new checkpoint."""
        for key, value in entries:
            self._pending[key] = value
        self.flush(checkpoint)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
