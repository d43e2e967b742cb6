"""streams/kafka_reads.py: the larger socket reads give kafka-python's transport the same
bytes and the same errors as its own 4 KiB reads, in fewer calls."""

from __future__ import annotations

import inspect
import random
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import kafka
import pytest
from kafka.net import transport

from wirestream.streams import kafka_reads

ROOT = Path(__file__).resolve().parent.parent


class ScriptedSocket:
    """A non-blocking socket whose reads return what is buffered, in pieces as large as
    asked (like a kernel buffer), then would block; or end in EOF / an error."""

    def __init__(self, data: bytes, end: str = "block") -> None:
        self.data = data
        self.end = end
        self.sizes: list[int] = []

    def recv(self, size: int) -> bytes:
        self.sizes.append(size)
        if self.data:
            piece, self.data = self.data[:size], self.data[size:]
            return piece
        if self.end == "eof":
            return b""
        if self.end == "reset":
            raise ConnectionResetError("reset by peer")
        raise BlockingIOError


class Holder:
    """What the method reads of its transport: `_sock` only."""

    def __init__(self, sock: ScriptedSocket) -> None:
        self._sock = sock


@pytest.fixture
def library_reads() -> Iterator[None]:
    yield
    kafka_reads.read_in(kafka_reads.LIBRARY_READ)


def _read(size: int, data: bytes, end: str) -> tuple[bytes, str, int]:
    kafka_reads.read_in(size)
    sock = ScriptedSocket(data, end)
    got, err = transport.KafkaTCPTransport._sock_recv(Holder(sock))
    return got, repr(err), len(sock.sizes)


@pytest.mark.parametrize("end", ["block", "eof", "reset"])
def test_larger_reads_agree_with_the_library(end: str, library_reads: None) -> None:
    rng = random.Random(end)
    for length in (0, 1, 4095, 4096, 4097, 300_000, rng.randrange(1, 3_000_000)):
        data = rng.randbytes(length)
        own = _read(kafka_reads.LIBRARY_READ, data, end)
        large = _read(256 << 10, data, end)
        assert large[:2] == own[:2]
        assert own[0] == data
        assert large[2] <= own[2]
        if length > 256 << 10:
            assert large[2] < own[2] / 10
    if end != "block":
        assert "KafkaConnectionError" in own[1]


def test_read_in_swaps_the_method_and_back(library_reads: None) -> None:
    assert kafka_reads.read_size() == kafka_reads.LIBRARY_READ
    kafka_reads.read_in(1 << 20)
    assert kafka_reads.read_size() == 1 << 20
    kafka_reads.read_in(kafka_reads.LIBRARY_READ)
    assert transport.KafkaTCPTransport._sock_recv is kafka_reads._ORIGINAL


def test_other_kafka_python_versions_keep_their_own_method(
    monkeypatch: pytest.MonkeyPatch, library_reads: None
) -> None:
    monkeypatch.setattr(kafka, "__version__", "9.9.9")
    kafka_reads.read_in(1 << 20)
    assert kafka_reads.read_size() == kafka_reads.LIBRARY_READ


def test_the_copied_method_is_of_the_pinned_version() -> None:
    """Bumping kafka-python's pin means re-reading its _sock_recv: this fails until then."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [re.sub(r"^kafka-python==", "", d) for d in deps if d.startswith("kafka-python")]
    assert pin == kafka_reads.KAFKA_PYTHON == kafka.__version__
    source = inspect.getsource(kafka_reads._ORIGINAL)
    assert f"self._sock.recv({kafka_reads.LIBRARY_READ})" in source
