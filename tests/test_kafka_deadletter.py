"""Undecodable input records go to <prefix>deadletter with their reason; nothing else changes."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaProducer

from wirestream.probe.bundle import BUNDLE_HEADER, MAGIC, encode_bundle
from wirestream.probe.errors import ParseError
from wirestream.probe.parse import parse_frame
from wirestream.probe.record import encode_record
from wirestream.streams.replay import replay_records
from wirestream.streams.serde import dumps_record

try:
    from tests import brokers
    from tests.test_bundles import Member, per_packet
except ImportError:
    import brokers
    from test_bundles import Member, per_packet  # type: ignore[no-redef]

pytestmark = pytest.mark.kafka

CAPTURE = (
    Path(__file__).resolve().parents[1] / "fixtures" / "pcaps" / "own_nginx_keepalive_multi.pcap"
)
PARTITIONS = 2


def _parse_error_kind(linktype: int, frame: bytes) -> str:
    try:
        parse_frame(linktype, frame, 0, len(frame))
    except ParseError as exc:
        return exc.kind
    raise AssertionError("the frame was supposed to be malformed")


def test_garbage_goes_to_deadletter_and_the_rest_is_unaffected(
    broker: brokers.Broker, tmp_path: Path
) -> None:
    bs = broker.bootstrap
    prefix = brokers.unique("dlq") + "."
    topic = prefix + "packets"
    brokers.create_topic(bs, topic, PARTITIONS)
    truncated_ether = b"\x02\x00\x00\x00\x00\x01\x02\x00"
    garbage = [
        (0, b"g0", b"xx", "too_short"),
        (1, b"g1", b"\x07" + bytes(30), "unknown_version"),
        (
            0,
            b"g2",
            encode_record(1, 10**18, 8, truncated_ether),
            _parse_error_kind(1, truncated_ether),
        ),
        (1, b"g3", None, "null_value"),
    ]
    producer = KafkaProducer(bootstrap_servers=bs)
    sent = []

    def produce(items: list) -> None:
        for partition, key, value, reason in items:
            meta = producer.send(topic, key=key, value=value, partition=partition).get(30)
            sent.append((partition, meta.offset, key, value, reason))

    produce(garbage[:2])  # before the packets...
    done = brokers.cli("probe", str(CAPTURE), "--bootstrap-servers", bs, "--topic", topic)
    assert done.returncode == 0, done.stderr
    produce(garbage[2:])  # ...and after them
    producer.close()

    member = brokers.Member(
        bs, brokers.unique("app"), tmp_path / "state",
        "--input-topic", topic, "--topic-prefix", prefix, "--exit-when-idle", "3",
    )  # fmt: skip
    assert member.wait(120) == 0, member.log()[-3000:]

    dead = brokers.read_all(bs, [prefix + "deadletter"])
    got = set()
    for r in dead:
        headers = {k: v.decode() for k, v in r.headers}
        assert headers["source.topic"] == topic
        got.add((int(headers["source.partition"]), int(headers["source.offset"]), r.key, r.value,
                 headers["reason"]))  # fmt: skip
    assert got == set(sent)
    assert len(dead) == len(sent)
    # Logged once per reason, not per record.
    assert sorted(e["reason"] for e in member.events("dead_letter")) == sorted(
        {g[3] for g in garbage}
    )

    skip = {topic, prefix + "deadletter"}
    outputs = [t for t in brokers.topics_with_prefix(bs, prefix) if t not in skip]
    got_records = Counter(r.value for r in brokers.read_all(bs, outputs))
    want = Counter(dumps_record(r) for r in replay_records([str(CAPTURE)], partitions=PARTITIONS))
    assert got_records == want


def test_damaged_bundle_good_packets_processed_bad_ones_deadlettered(
    broker: brokers.Broker, tmp_path: Path
) -> None:
    """A bundle with a record of unknown version, a frame that does not parse and a cut
    tail, then a bundle of an unknown bundle version: the good packets are processed (the
    output equals the good packets fed to a task one by one), each bad part is
    dead-lettered with its reason and entry number, the unknown bundle whole."""
    bs = broker.bootstrap
    prefix = brokers.unique("dlqb") + "."
    topic = prefix + "packets"
    brokers.create_topic(bs, topic, 1)
    records = [v for _, v in per_packet([str(CAPTURE)], 1)]
    n = len(records)
    bad3 = b"\x09" + records[3][1:]
    bad5 = records[5][:30]
    entries = [*records[:3], bad3, records[4], bad5, *records[6:-1]]
    body = encode_bundle(entries)[BUNDLE_HEADER.size :]
    tail = struct.pack(">I", len(records[-1]) + 50) + records[-1]
    damaged = BUNDLE_HEADER.pack(MAGIC, 1, len(entries) + 1) + body + tail
    unknown = MAGIC + bytes([9]) + body
    producer = KafkaProducer(bootstrap_servers=bs)
    offsets = [producer.send(topic, key=b"k", value=v, partition=0).get(30).offset
               for v in (damaged, unknown)]  # fmt: skip
    producer.close()

    member = brokers.Member(
        bs, brokers.unique("app"), tmp_path / "state",
        "--input-topic", topic, "--topic-prefix", prefix, "--exit-when-idle", "3",
        "--processing-guarantee", "exactly_once",
    )  # fmt: skip
    assert member.wait(120) == 0, member.log()[-3000:]

    dead = brokers.read_all(bs, [prefix + "deadletter"], read_committed=True)
    got = set()
    for r in dead:
        h = {k: v.decode() for k, v in r.headers}
        got.add((int(h["source.offset"]), int(h.get("source.entry", -1)), h["reason"], r.value))
    assert got == {
        (offsets[0], 3, "unknown_version", bad3),
        (offsets[0], 5, _parse_error_kind(1, bad5[16:]), bad5),
        (offsets[0], n - 1, "bundle_truncated", tail),
        (offsets[1], -1, "unknown_bundle_version", unknown),
    }
    assert len(dead) == 4

    good = Member(1)
    for i, r in enumerate(records[:-1]):
        if i not in (3, 5):
            good.inputs[0].process(r)
    want = good.finish()
    assert sum(want.values()) > 3
    skip = {topic, prefix + "deadletter"}
    outputs = [t for t in brokers.topics_with_prefix(bs, prefix) if t not in skip]
    got_records = Counter(r.value for r in brokers.read_all(bs, outputs, read_committed=True))
    assert got_records == want
