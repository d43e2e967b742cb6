"""Bundles on the packets topic: the codec, the bundler's bounds, and the member's decoding.

The member's path (streams/packet_input.py) is checked without a broker against replay
(`replay_records`, the embedded mode's oracle) and against the per-packet layout: bundles
built like the probe builds them, fed to one task per partition, must give the same
records. Damaged bundles: the good packets processed, every bad part reported.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from wirestream.decoders.registry import select
from wirestream.probe.bundle import (
    BUNDLE_HEADER,
    MAGIC,
    BundleError,
    encode_bundle,
    entry_head,
    is_bundle,
    split_bundle,
)
from wirestream.probe.bundler import Bundler
from wirestream.probe.capture import open_capture
from wirestream.probe.flowkey import kafka_partition
from wirestream.probe.record import decode_record, encode_record
from wirestream.probe.source import PacketSource
from wirestream.streams.config import RuntimeConfig
from wirestream.streams.packet_input import PacketInput
from wirestream.streams.replay import replay_records
from wirestream.streams.serde import dumps_record
from wirestream.streams.task import Task

PCAPS = Path(__file__).resolve().parents[1] / "fixtures" / "pcaps"
CAPTURES = [
    "own_nginx_keepalive_multi.pcap",
    "zeek__http__pipelined-requests.pcap",
    "own_wrk_small.pcap",
]
EVERY_CAPTURE = sorted(p.name for p in PCAPS.iterdir() if ".pcap" in p.name or p.suffix == ".cap")

records_st = st.lists(st.binary(min_size=0, max_size=64), max_size=20)


# -- codec --
@given(records_st)
def test_round_trip(records: list[bytes]) -> None:
    value = encode_bundle(records)
    assert is_bundle(value)
    spans, damage = split_bundle(value)
    assert damage == []
    assert [value[a:b] for a, b in spans] == records


@given(records_st, st.data())
@settings(max_examples=200)
def test_truncated_bundle_keeps_the_records_before_the_cut(
    records: list[bytes], data: st.DataObject
) -> None:
    value = encode_bundle(records)
    cut = data.draw(st.integers(BUNDLE_HEADER.size, len(value)))
    spans, damage = split_bundle(value[:cut])
    got = [value[a:b] for a, b in spans]
    assert got == records[: len(got)]  # a prefix, in order
    if cut == len(value):
        assert damage == []
        return
    # Nothing unaccounted for: the framed records plus the damage cover every byte.
    assert len(damage) == 1
    (d,) = damage
    assert d.index == len(got)
    framed = BUNDLE_HEADER.size + sum(4 + len(r) for r in got)
    assert framed + len(d.data) == cut
    assert d.reason == ("bundle_count_mismatch" if framed == cut else "bundle_truncated")


def test_bad_lengths_and_trailing_bytes() -> None:
    value = encode_bundle([b"abc", b"defg"])
    # The second length promises more than there is.
    bad = value[: BUNDLE_HEADER.size + 7] + struct.pack(">I", 1000) + b"defg"
    spans, damage = split_bundle(bad)
    assert [bad[a:b] for a, b in spans] == [b"abc"]
    assert [(d.reason, d.index) for d in damage] == [("bundle_truncated", 1)]
    assert damage[0].data == bad[BUNDLE_HEADER.size + 7 :]
    spans, damage = split_bundle(value + b"xyz")
    assert len(spans) == 2
    assert [(d.reason, d.index, d.data) for d in damage] == [("bundle_trailing_bytes", 2, b"xyz")]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (MAGIC + bytes([2]) + struct.pack(">I", 0), "unknown_bundle_version"),
        (MAGIC + bytes([0]) + struct.pack(">I", 1) + b"\0\0\0\0", "unknown_bundle_version"),
        (MAGIC + b"\x01", "too_short"),
        (b"", "too_short"),
        (encode_record(1, 5, 3, b"abc"), "not_a_bundle"),
    ],
)
def test_unreadable_bundles_are_refused(value: bytes, reason: str) -> None:
    with pytest.raises(BundleError) as info:
        split_bundle(value)
    assert info.value.reason == reason


def test_packet_records_are_not_bundles() -> None:
    # The first byte of a packet record is its version (1): never the magic's b"W".
    assert not is_bundle(encode_record(1, 5, 3, b"abc"))
    assert decode_record(encode_record(1, 5, 3, b"abc")).frame == b"abc"


def test_entry_head_is_the_packet_record_header() -> None:
    frame = b"\x01\x02\x03"
    head = entry_head(16 + len(frame), 2, 1, 123_456_789, 60)
    assert head[4:] + frame == encode_record(1, 123_456_789, 60, frame, flags=2)
    assert struct.unpack(">I", head[:4])[0] == 16 + len(frame)


# -- bundler --
def _head(frame: bytes) -> bytes:
    return entry_head(16 + len(frame), 0, 1, 1, len(frame))


def test_bundler_size_bound_linger_bound_and_order() -> None:
    b = Bundler(max_bytes=100, linger=1.0)
    frames = [bytes([i]) * 20 for i in range(10)]
    out = []
    for i, frame in enumerate(frames):
        r = b.add(i % 2, b"k%d" % (i % 2), _head(frame), frame, now=0.0)
        if r is not None:
            out.append(r)
    # 40 bytes per entry: a bundle is full at its third entry.
    assert [(r.partition, r.count) for r in out] == [(0, 3), (1, 3)]
    assert b.due(0.5) == []
    late = b.due(1.0)
    assert sorted((r.partition, r.count) for r in late) == [(0, 2), (1, 2)]
    assert b.pending == 0 and b.drain() == []
    got = {0: [], 1: []}  # type: dict[int, list[bytes]]
    for r in out + late:
        spans, damage = split_bundle(r.value)
        assert damage == []
        got[r.partition] += [decode_record(r.value[a:c]).frame for a, c in spans]
    assert got[0] == frames[0::2] and got[1] == frames[1::2]


def test_bundler_linger_counts_from_the_first_packet() -> None:
    b = Bundler(max_bytes=1 << 20, linger=1.0)
    b.add(0, b"a", _head(b"x"), b"x", now=0.0)
    b.add(1, b"b", _head(b"y"), b"y", now=0.8)
    assert [r.partition for r in b.due(1.0)] == [0]
    assert [r.partition for r in b.due(1.8)] == [1]
    b.add(2, b"c", _head(b"z"), b"z", now=2.0)
    assert [r.count for r in b.drain()] == [1]


# -- the member's decoding, against replay and the per-packet layout --
class Member:
    """One task per partition, fed like the Kafka member feeds them."""

    def __init__(self, partitions: int) -> None:
        config = RuntimeConfig()
        self.out: Counter[bytes] = Counter()
        self.bad: list[tuple[str, bytes, int]] = []
        decoders = select(config.decoders)
        self.tasks = [Task(p, config, decoders, self._emit) for p in range(partitions)]
        self.inputs = [PacketInput(t, self._bad) for t in self.tasks]

    def _emit(self, _type: str, _key: str, record: dict[str, Any]) -> None:
        self.out[dumps_record(record)] += 1

    def _bad(self, reason: str, data: bytes, index: int) -> None:
        self.bad.append((reason, data, index))

    def finish(self) -> Counter[bytes]:
        for t in self.tasks:
            t.close_all()
        return self.out


def probe_bundles(
    paths: list[str], partitions: int, max_bytes: int
) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) as `wirestream probe --layout bundle` builds them."""
    source = PacketSource()
    bundler = Bundler(max_bytes=max_bytes, linger=1e9)
    out = []
    for path in paths:
        with open_capture(path) as capture:
            for kp in source.keyed(capture):
                r = bundler.add(
                    kafka_partition(kp.key, partitions),
                    kp.key,
                    entry_head(16 + len(kp.frame), kp.flags, kp.linktype, kp.packet.ts_ns, kp[8]),
                    kp.frame,
                    0.0,
                )
                if r is not None:
                    out.append((r.partition, r.key, r.value))
    out += [(r.partition, r.key, r.value) for r in bundler.drain()]
    return out


def per_packet(paths: list[str], partitions: int) -> list[tuple[int, bytes]]:
    source = PacketSource()
    out = []
    for path in paths:
        with open_capture(path) as capture:
            for kp in source.keyed(capture):
                out.append((kafka_partition(kp.key, partitions), kp.record()))
    return out


@pytest.mark.parametrize("max_bytes", [1, 3000, 256 << 10])
def test_bundles_give_replays_records(max_bytes: int) -> None:
    paths = [str(PCAPS / name) for name in CAPTURES]
    partitions = 3
    want = Counter(dumps_record(r) for r in replay_records(paths, partitions=partitions))
    assert sum(want.values()) > 50
    assert_same_as_replay(paths, partitions, max_bytes, want)


@pytest.mark.parametrize("name", EVERY_CAPTURE)
def test_every_fixture_through_bundles_gives_replays_records(name: str) -> None:
    """IPv6, VLANs, reassembled fragments, UDP, TLS: each capture in its own run."""
    paths = [str(PCAPS / name)]
    want = Counter(dumps_record(r) for r in replay_records(paths, partitions=2))
    assert_same_as_replay(paths, 2, 3000, want)


def assert_same_as_replay(
    paths: list[str], partitions: int, max_bytes: int, want: Counter[bytes]
) -> None:
    member = Member(partitions)
    bundles = probe_bundles(paths, partitions, max_bytes)
    for p, key, value in bundles:
        # The key alone sends the bundle to its partition with Kafka's partitioner.
        assert (kafka_python_murmur2(key) & 0x7FFFFFFF) % partitions == p
        member.inputs[p].process(value)
    assert member.finish() == want
    assert member.bad == []
    if max_bytes == 1:
        assert all(split_bundle(v).spans.__len__() == 1 for _, _, v in bundles)

    seed = Member(partitions)
    for p, value in per_packet(paths, partitions):
        seed.inputs[p].process(value)  # the seed's layout, same entry point
    assert seed.finish() == want


def test_damaged_bundle_processes_the_good_packets_and_reports_the_bad() -> None:
    paths = [str(PCAPS / "own_nginx_keepalive_multi.pcap")]
    packets = per_packet(paths, 1)
    records = [v for _, v in packets]
    want = Member(1)
    for r in records:
        want.inputs[0].process(r)
    n = len(records)
    assert n > 10
    # Record 3: unknown record version; record 5: a frame that does not parse (truncated
    # IP header); then an entry whose length runs past the end (the tail is damage).
    bad3 = b"\x09" + records[3][1:]
    bad5 = records[5][:16] + records[5][16:30]
    entries = [*records[:3], bad3, records[4], bad5, *records[6:-1]]
    value = encode_bundle(entries)
    tail = struct.pack(">I", len(records[-1]) + 50) + records[-1]
    value = BUNDLE_HEADER.pack(MAGIC, 1, len(entries) + 1) + value[BUNDLE_HEADER.size :] + tail
    member = Member(1)
    member.inputs[0].process(value)
    reasons = [(reason, index) for reason, _, index in member.bad]
    assert reasons == [("unknown_version", 3), ("truncated_ipv4", 5), ("bundle_truncated", n - 1)]
    assert member.bad[0][1] == bad3 and member.bad[1][1] == bad5 and member.bad[2][1] == tail
    # The good packets: the same as feeding them one by one.
    good = Member(1)
    for i, r in enumerate(records[:-1]):
        if i not in (3, 5):
            good.inputs[0].process(r)
    assert member.finish() == good.finish()
    assert member.inputs[0].packets == n - 3


def test_unknown_bundle_version_is_refused_whole() -> None:
    member = Member(1)
    value = MAGIC + bytes([7]) + b"anything"
    member.inputs[0].process(value)
    assert member.bad == [("unknown_bundle_version", value, -1)]
    assert member.tasks[0].packets == 0


# -- the probe's bundle path, with a stand-in producer --
class _Future:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def add_callback(self, fn: Any, *args: Any) -> _Future:
        self.callbacks.append((fn, args))
        return self

    def add_errback(self, fn: Any, *args: Any) -> _Future:
        return self


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, int]] = []

    def send(self, topic: str, value: bytes, key: bytes, partition: int) -> _Future:
        self.sent.append((topic, key, value, partition))
        future = _Future()
        return future


def test_probe_bundles_partitioned_by_flow_in_capture_order_and_linger_flush() -> None:
    from wirestream.streams.kafka_probe import Probe
    from wirestream.streams.kafka_settings import ProbeSettings

    paths = [str(PCAPS / name) for name in CAPTURES]
    probe = Probe(ProbeSettings(bootstrap_servers="unused:9092", partitions=3, bundle_bytes=5000))
    producer = _Producer()
    probe.producer = producer  # type: ignore[assignment]
    probe.partitions = 3
    for path in paths:
        with open_capture(path) as capture:
            probe._produce(capture)
    held = probe.pending
    assert held > 0  # the last bundles wait for their bounds
    sent_before = len(producer.sent)
    probe.bundler.linger = 0.0  # a quiet link: the idle tick sends what waited
    probe._linger_tick()
    assert probe.bundler.pending == 0
    assert sum(split_bundle(v).spans.__len__() for *_, v, _p in producer.sent[sent_before:]) == held
    entries: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    for _topic, key, value, partition in producer.sent:
        assert kafka_partition(key, 3) == partition
        spans, damage = split_bundle(value)
        assert not damage
        entries[partition] += [value[a:b] for a, b in spans]
    want: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    for p, record in per_packet(paths, 3):
        want[p].append(record)
    assert entries == want
    assert probe.packets == sum(len(v) for v in want.values())
    assert probe.records == len(producer.sent) < probe.packets / 3
