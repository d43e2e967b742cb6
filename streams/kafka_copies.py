"""Fewer copies of fetched bytes in kafka-python 3.0.12, installed process-wide.

Between the socket and `ConsumerRecord.value`, kafka-python 3.0.12 copies every fetched
byte about eight times. Two of those steps copy twice where once gives the same bytes:

- `KafkaBytes.read` (kafka/protocol/frame.py), which hands a whole fetch response to the
  protocol decoder, slices its bytearray (a copy) and makes bytes of the slice (a second
  copy);
- `DefaultRecordBatch` (kafka/record/default_records.py) keeps a bytearray copy of its
  batch, so each key and value is sliced out of it (a bytearray copy) and made bytes (a
  second copy).

The replacements copy once: a memoryview slice made bytes, and the batch kept as bytes
(whose slices are bytes already). Values, types and errors are unchanged; a member
fetching 256 KiB bundles spends a few per cent less CPU (docs/benchmarks.md).
tests/test_kafka_copies.py reads the same records from Apache Kafka both ways.

Only on the version they were copied from: on another one the library's own methods are
kept and a warning says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kafka.protocol.frame import KafkaBytes
from kafka.record.default_records import DefaultRecordBatch

from wirestream.streams.kafka_patch import LibraryPatch

KAFKA_PYTHON = "3.0.12"  # the version whose methods are copied below
_ORIGINAL_READ: Callable[..., bytes] = KafkaBytes.read
_ORIGINAL_INIT: Callable[..., None] = DefaultRecordBatch.__init__


def _read(self: Any, nbytes: int | None = None) -> bytes:
    # KafkaBytes.read of 3.0.12 with one copy: `bytes(self[start:self._idx])` was two.
    if nbytes is None:
        nbytes = len(self) - self._idx
    start = self._idx
    self._idx += nbytes
    if self._idx > len(self):
        self._idx = len(self)
    return bytes(memoryview(self)[start : self._idx])


def _init(self: Any, buffer: Any) -> None:
    # DefaultRecordBatch.__init__ of 3.0.12, the batch kept as bytes instead of a bytearray
    # (read only here; a compressed batch still replaces it with its inflated bytearray).
    self._buffer = bytes(buffer)
    self._header_data = self.HEADER_STRUCT.unpack_from(self._buffer)
    self._pos = self.HEADER_STRUCT.size
    self._num_records = self._header_data[12]
    self._next_record_index = 0
    self._decompressed = False


PATCH = LibraryPatch(
    "kafka_copies",
    KAFKA_PYTHON,
    [(KafkaBytes, "read", _read), (DefaultRecordBatch, "__init__", _init)],
)
install = PATCH.install
uninstall = PATCH.uninstall  # kafka-python's own methods back (tests and benchmarks compare)
installed = PATCH.installed
