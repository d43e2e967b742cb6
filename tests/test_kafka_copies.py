"""streams/kafka_copies.py: kafka-python's fetch path with one copy where it made two gives
the same records, types and errors; on Apache Kafka, and on batches kafka-python builds."""

from __future__ import annotations

import inspect
import random
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kafka
import pytest
from kafka import KafkaProducer
from kafka.errors import CorruptRecordError
from kafka.protocol.frame import KafkaBytes
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from wirestream.streams import kafka_copies

try:
    from tests import brokers
except ImportError:
    import brokers

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def restore_install() -> Iterator[None]:
    """Whatever the test switches, the process keeps the member's setting afterwards."""
    was = kafka_copies.installed()
    yield
    (kafka_copies.install if was else kafka_copies.uninstall)()


def _both(fn: Any) -> tuple[Any, Any]:
    """`fn()` with kafka-python's own methods, then with the replacements."""
    kafka_copies.uninstall()
    own = fn()
    kafka_copies.install()
    assert kafka_copies.installed()
    return own, fn()


def _reads(data: bytes, sizes: list[int | None]) -> list[tuple[type, bytes, int]]:
    buf = KafkaBytes(len(data))
    buf.write(data)
    buf.seek(0)
    out = []
    for n in sizes:
        got = buf.read(n)
        out.append((type(got), got, buf.tell()))
    return out


def test_kafka_bytes_reads_agree(restore_install: None) -> None:
    data = random.Random(1).randbytes(10_000)
    sizes: list[int | None] = [0, 4, 1, 4095, 3000, None, 5, None]
    own, ours = _both(lambda: _reads(data, sizes))
    assert ours == own
    assert own[2][1] == data[4:5] and own[5][1] == data[7100:] and own[6][1] == b""
    assert all(t is bytes for t, _, _ in own)
    past_end = _both(lambda: _reads(data, [9_990, 50, None]))
    assert past_end[1] == past_end[0]
    assert past_end[0][1] == (bytes, data[9_990:], 10_000)


def _batch(compression: int, seed: int) -> bytes:
    rng = random.Random(seed)
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=compression, is_transactional=False,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 24,
    )  # fmt: skip
    for offset in range(40):
        key = None if offset % 7 == 3 else rng.randbytes(rng.randrange(0, 60))
        value = None if offset % 11 == 5 else rng.randbytes(rng.choice([0, 1, 300, 70_000]))
        headers = [(f"h{i}", None if i == 1 else rng.randbytes(i * 3)) for i in range(offset % 3)]
        builder.append(offset, timestamp=1_700_000_000_000 + offset, key=key, value=value,
                       headers=headers)  # fmt: skip
    return bytes(builder.build())


def _records(raw: bytes) -> list[tuple[Any, ...]]:
    batch = DefaultRecordBatch(memoryview(raw))
    assert batch.validate_crc()
    return [
        (r.offset, r.timestamp, type(r.key), r.key, type(r.value), r.value, r.headers)
        for r in batch
    ]


@pytest.mark.parametrize("compression", [0, 1], ids=["none", "gzip"])
def test_record_batches_read_the_same(compression: int, restore_install: None) -> None:
    raw = _batch(compression, seed=compression)
    own, ours = _both(lambda: _records(raw))
    assert ours == own
    assert len(own) == 40 and {t for r in own for t in (r[2], r[4])} == {bytes, type(None)}


def test_a_damaged_batch_fails_the_same(restore_install: None) -> None:
    good = _batch(0, seed=2)
    flipped = bytearray(good)
    flipped[-5] ^= 0xFF  # inside the last record's payload: the CRC no longer matches
    cut = bytearray(good)
    cut[61] = 0x7F  # the first record's length varint (after the 61-byte header): too long

    def read(raw: bytes) -> tuple[bool, str]:
        batch = DefaultRecordBatch(memoryview(raw))
        crc = batch.validate_crc()
        try:
            return crc, repr([(r.key, r.value, r.headers) for r in batch])
        except CorruptRecordError as exc:
            return crc, f"CorruptRecordError: {exc}"

    for raw in (bytes(flipped), bytes(cut)):
        own, ours = _both(lambda raw=raw: read(raw))
        assert ours == own
        assert own[0] is False
    assert _both(lambda: read(bytes(cut)))[0][1].startswith("CorruptRecordError")


@pytest.mark.kafka
def test_apache_kafka_records_read_the_same(broker: brokers.Broker, restore_install: None) -> None:
    """Fetch responses of a real broker, decoded both ways (bundle-sized values too)."""
    topic = brokers.unique("copies")
    brokers.create_topic(broker.bootstrap, topic, 2)
    rng = random.Random(3)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, batch_size=1 << 20)
    for i in range(120):
        size = rng.choice([0, 10, 1500, 256 << 10])
        producer.send(topic, key=None if i % 10 == 0 else b"k%d" % i,
                      value=None if i % 10 == 5 else rng.randbytes(size),
                      headers=[("n", b"%d" % i)], partition=i % 2)  # fmt: skip
    producer.flush()
    producer.close()

    def fetch() -> list[tuple[Any, ...]]:
        records = brokers.read_all(broker.bootstrap, [topic])
        return sorted(
            (r.partition, r.offset, r.timestamp, r.key, type(r.value), r.value, r.headers)
            for r in records
        )

    own, ours = _both(fetch)
    assert len(own) == 120
    assert ours == own


def test_the_copied_methods_are_of_the_pinned_version() -> None:
    """Bumping kafka-python's pin means re-reading both methods: this fails until then."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [re.sub(r"^kafka-python==", "", d) for d in deps if d.startswith("kafka-python")]
    assert pin == kafka_copies.KAFKA_PYTHON == kafka.__version__
    assert "return bytes(self[start:self._idx])" in inspect.getsource(kafka_copies._ORIGINAL_READ)
    assert "self._buffer = bytearray(buffer)" in inspect.getsource(kafka_copies._ORIGINAL_INIT)


def test_other_kafka_python_versions_keep_their_own_methods(
    monkeypatch: pytest.MonkeyPatch, restore_install: None
) -> None:
    kafka_copies.uninstall()
    monkeypatch.setattr(kafka, "__version__", "9.9.9")
    kafka_copies.install()
    assert not kafka_copies.installed()
    assert KafkaBytes.read is kafka_copies._ORIGINAL_READ
