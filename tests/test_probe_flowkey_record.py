"""probe.flowkey and probe.record: symmetric keys, Kafka partitioner equivalence, codec."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as kafka_murmur2

from tests import pcapgen as g
from wirestream.probe.capture import open_capture
from wirestream.probe.errors import FlowKeyError, RecordError
from wirestream.probe.flowkey import decode_flow_key, flow_key, kafka_partition, murmur2
from wirestream.probe.packet import Packet
from wirestream.probe.parse import parse_frame
from wirestream.probe.record import FLAG_REASSEMBLED, HEADER, decode_record, encode_record

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"


def pkt(src, dst, sport, dport, *, proto=6, vlan=(), version=None) -> Packet:
    version = version or (4 if len(src) == 4 else 6)
    return Packet(1, version, proto, src, dst, sport, dport, b"", vlan=vlan)


addrs4 = st.binary(min_size=4, max_size=4)
addrs6 = st.binary(min_size=16, max_size=16)
ports = st.integers(0, 65535)
vlans = st.lists(st.integers(0, 4095), max_size=2).map(tuple)


@given(st.one_of(st.tuples(addrs4, addrs4), st.tuples(addrs6, addrs6)), ports, ports, vlans,
       st.integers(0, 255))  # fmt: skip
def test_key_symmetric_and_decodable(addrs, sport, dport, vlan, proto):
    a, b = addrs
    k1, a_lower = flow_key(pkt(a, b, sport, dport, proto=proto, vlan=vlan))
    k2, b_lower = flow_key(pkt(b, a, dport, sport, proto=proto, vlan=vlan))
    assert k1 == k2
    if (a, sport) != (b, dport):
        assert a_lower != b_lower
    else:
        assert a_lower and b_lower
    f = decode_flow_key(k1)
    assert (f.version, f.ip_version, f.proto) == (1, 4 if len(a) == 4 else 6, proto)
    assert f.vlans == tuple(v for v in vlan if v)
    assert {f.lower, f.higher} == {(a, sport), (b, dport)}
    assert f.lower <= f.higher
    assert f.lower == ((a, sport) if a_lower else (b, dport))


def test_key_layout_bytes():
    src, dst = g.addr("10.0.0.2"), g.addr("10.0.0.1")
    key, src_lower = flow_key(pkt(src, dst, 80, 51000))
    assert not src_lower
    assert key == bytes([1, 4, 6, 0]) + dst + struct.pack(">H", 51000) + src + b"\x00\x50"
    key, _ = flow_key(pkt(src, dst, 80, 51000, vlan=(0x123, 0x456)))
    assert key[:8] == bytes([1, 4, 6, 2, 0x01, 0x23, 0x04, 0x56]) and len(key) == 20
    k6, _ = flow_key(pkt(g.addr("::1"), g.addr("::2"), 1, 2, proto=17))
    assert k6[:4] == bytes([1, 6, 17, 0]) and len(k6) == 40


def test_same_address_ordered_by_port():
    a = g.addr("127.0.0.1")
    k, lower = flow_key(pkt(a, a, 9000, 80))
    assert not lower and decode_flow_key(k).lower == (a, 80)


def test_vlan_zero_is_not_part_of_the_key():
    a, b = g.addr("10.1.1.1"), g.addr("10.2.2.2")
    untagged = flow_key(pkt(a, b, 1, 2))[0]
    assert flow_key(pkt(a, b, 1, 2, vlan=(0,)))[0] == untagged
    assert flow_key(pkt(a, b, 1, 2, vlan=(0, 7)))[0] == flow_key(pkt(a, b, 1, 2, vlan=(7,)))[0]
    qinq = flow_key(pkt(a, b, 1, 2, vlan=(7, 8)))[0]
    assert qinq != flow_key(pkt(a, b, 1, 2, vlan=(8, 7)))[0]
    assert decode_flow_key(qinq).vlans == (7, 8)


def test_real_vlan0_capture_keys_like_untagged():
    path = FIXTURES / "zeek__http-vlan-0.pcap"
    if not path.exists():
        pytest.skip("public captures not available")
    keys, stripped = set(), set()
    for lt, ts, ol, fr in open_capture(path):
        p = parse_frame(lt, fr, ts, ol)
        assert p.vlan == (0,)
        keys.add(flow_key(p)[0])
        p.vlan = ()
        stripped.add(flow_key(p)[0])
    assert len(keys) == 1 and keys == stripped


@pytest.mark.parametrize(
    "key,reason",
    [
        (b"\x01\x04", "too_short"),
        (bytes([2, 4, 6, 0]) + b"\0" * 12, "unknown_version"),
        (bytes([1, 5, 6, 0]) + b"\0" * 12, "bad_ip_version"),
        (bytes([1, 4, 6, 3]) + b"\0" * 18, "vlan_depth"),
        (bytes([1, 4, 6, 0]) + b"\0" * 11, "bad_length"),
        (bytes([1, 6, 6, 0]) + b"\0" * 12, "bad_length"),
    ],
)
def test_decode_garbage(key, reason):
    with pytest.raises(FlowKeyError) as ei:
        decode_flow_key(key)
    assert ei.value.reason == reason


def test_too_many_vlans_in_packet():
    with pytest.raises(FlowKeyError):
        flow_key(pkt(b"1234", b"5678", 1, 2, vlan=(1, 2, 3)))


# --------------------------------------------------------------------------- partitioner


class _Cluster:
    """The part of kafka-python's ClusterMetadata that DefaultPartitioner uses."""

    def __init__(self, n: int) -> None:
        self.n = n

    def topics(self):
        return {"wirestream.packets"}

    def partitions_for_topic(self, topic):
        return set(range(self.n))

    def available_partitions_for_topic(self, topic):
        return set(range(self.n))


@given(st.binary(max_size=80), st.integers(1, 500))
def test_partition_equals_kafka_python_default_partitioner(key, n):
    assert murmur2(key) == kafka_murmur2(key)
    theirs = DefaultPartitioner().partition("wirestream.packets", key, key, None, None, _Cluster(n))
    assert kafka_partition(key, n) == theirs


# Java client reference values: Utils.murmur2 (signed int) from Kafka's UtilsTest and the
# Java-derived vectors quoted in Akka's Murmur2Spec.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"1": -1993445489,
    b"12": 126087238,
    b"123": -267702483,
    b"1234": -1614185708,
    b"12345": -1188365604,
}


@pytest.mark.parametrize("data", sorted(JAVA_MURMUR2))
def test_murmur2_matches_java_client(data):
    signed = JAVA_MURMUR2[data]
    assert murmur2(data) == signed & 0xFFFFFFFF
    # Java: Utils.toPositive(Utils.murmur2(key)) % n, toPositive = x & 0x7fffffff
    assert kafka_partition(data, 12) == (signed & 0x7FFFFFFF) % 12


# --------------------------------------------------------------------------- record codec


@given(
    linktype=st.integers(0, 0xFFFF),
    ts=st.integers(0, 2**64 - 1),
    orig=st.integers(0, 2**32 - 1),
    frame=st.binary(max_size=300),
    flags=st.integers(0, 255),
)
def test_record_round_trip(linktype, ts, orig, frame, flags):
    data = encode_record(linktype, ts, orig, frame, flags)
    assert len(data) == 16 + len(frame)
    rec = decode_record(data)
    assert rec == (1, flags, linktype, ts, orig, frame)
    assert decode_record(memoryview(data)) == rec


def test_record_layout():
    data = encode_record(276, 0x0102030405060708, 1514, b"FRAME", FLAG_REASSEMBLED)
    assert data == bytes.fromhex("01 01 0114 0102030405060708 000005ea") + b"FRAME"
    assert HEADER.size == 16


@pytest.mark.parametrize(
    "data,reason",
    [(b"", "too_short"), (b"\x01" * 15, "too_short"), (b"\x02" + b"\0" * 20, "unknown_version")],
)
def test_record_garbage(data, reason):
    with pytest.raises(RecordError) as ei:
        decode_record(data)
    assert ei.value.reason == reason


@pytest.mark.parametrize("args", [(70000, 0, 0), (1, -1, 0), (1, 0, 2**32), (1, 2**64, 0)])
def test_record_fields_out_of_range(args):
    with pytest.raises(RecordError):
        encode_record(*args, b"")


@given(st.binary(max_size=40))
def test_record_decode_never_crashes(data):
    try:
        decode_record(data)
    except RecordError:
        pass
