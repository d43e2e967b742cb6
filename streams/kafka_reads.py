"""Larger socket reads for kafka-python's plaintext connections.

kafka-python 3.0.12 reads a readable socket in 4 KiB `recv()` calls and joins the pieces
(kafka/net/transport.py, `KafkaTCPTransport._sock_recv`). A member fetching 256 KiB
bundles makes ~40,000 calls per 166 MB, each with Python's per-call overhead: measured on
the perf capture's packets topic (4 partitions, a bare consumer reading it all), the
process spent 0.40 s of CPU with 4 KiB reads and 0.27 s with 256 KiB reads. The member's
whole-run comparison is bench/kafka_bench.py's "4 KiB socket reads" row.

`read_in(size)` swaps in a copy of that method that differs only in the read size (a flag:
tests/test_kafka_reads.py checks both give the same bytes and errors on the same input).
It changes the class, so every client of the process reads that way; the member sets it
once at start. Only on the kafka-python version it was copied from: on another one the
library's own method is kept and a warning says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kafka
import structlog
from kafka import errors as kafka_errors
from kafka.net import transport

KAFKA_PYTHON = "3.0.12"  # the version whose _sock_recv `_reader` copies
LIBRARY_READ = 4096  # kafka-python's own read size
_ORIGINAL: Callable[[Any], tuple[bytes, Exception | None]] = transport.KafkaTCPTransport._sock_recv
_library_log = logging.getLogger(transport.__name__)  # where the original logs its errors
log = structlog.get_logger("wirestream.kafka")


def _reader(size: int) -> Callable[[Any], tuple[bytes, Exception | None]]:
    def _sock_recv(self: Any) -> tuple[bytes, Exception | None]:
        recvd = []
        err = None
        while True:
            try:
                data = self._sock.recv(size)
                # An empty read without an exception: the peer closed the connection.
                if not data:
                    _library_log.error("%s: socket disconnected", self)
                    err = kafka_errors.KafkaConnectionError("socket disconnected")
                    break
                recvd.append(data)
            except (BlockingIOError, InterruptedError):
                break
            except BaseException as e:
                _library_log.exception("%s: Error receiving network data closing socket", self)
                err = kafka_errors.KafkaConnectionError(e)
                break
        return b"".join(recvd), err

    _sock_recv.read_size = size  # type: ignore[attr-defined]
    return _sock_recv


def read_in(size: int) -> None:
    """Make every plaintext Kafka connection of this process read `size` bytes per call
    (LIBRARY_READ restores kafka-python's own method)."""
    if size == LIBRARY_READ:
        transport.KafkaTCPTransport._sock_recv = _ORIGINAL
        return
    if kafka.__version__ != KAFKA_PYTHON:
        log.warning(
            "socket_reads_unchanged",
            kafka_python=kafka.__version__,
            checked_with=KAFKA_PYTHON,
            note="kafka-python's own 4 KiB reads are kept",
        )
        return
    transport.KafkaTCPTransport._sock_recv = _reader(size)


def read_size() -> int:
    """The read size in use now (for logs and tests)."""
    return getattr(transport.KafkaTCPTransport._sock_recv, "read_size", LIBRARY_READ)
