"""Community ID v1 on every record of a flow, against the reference `communityid` package
(Corelight's implementation of the spec): from each flow record's endpoints, and from
every packet of every fixture read independently with dpkt."""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path
from typing import Any

import communityid
import dpkt
import pytest

import wirestream.streams.session as session_module
from tests import pcapgen
from wirestream.streams.config import RuntimeConfig
from wirestream.streams.replay import replay_records

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
CAPTURES = sorted(p for p in FIXTURES.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap"))
_ICMP = (1, 58)


def reference(proto: int, src: str, dst: str, sport: int, dport: int, seed: int = 0) -> str:
    cid = communityid.CommunityID(seed)
    if proto in _ICMP:  # a flow's ports are the type and the reply type or code
        make = communityid.FlowTuple.make_icmp if proto == 1 else communityid.FlowTuple.make_icmp6
        tpl = make(src, dst, sport, dport)
    elif proto in (6, 17, 132):
        tpl = communityid.FlowTuple(proto, src, dst, sport, dport)
    else:
        tpl = communityid.FlowTuple.make_ip(src, dst, proto)
    return cid.calc(tpl)


def of_flow_record(flow: dict[str, Any], seed: int = 0) -> str:
    c, s = flow["client"], flow["server"]
    return reference(flow["ip_proto"], c["ip"], s["ip"], c["port"], s["port"], seed)


def _ip_of(linktype: int, buf: bytes) -> Any:
    if linktype == 1:
        frame = dpkt.ethernet.Ethernet(buf)
        return frame.data if isinstance(frame.data, dpkt.ip.IP | dpkt.ip6.IP6) else None
    if linktype == 0:
        frame = dpkt.loopback.Loopback(buf)
        return frame.data if isinstance(frame.data, dpkt.ip.IP | dpkt.ip6.IP6) else None
    if linktype == 228:
        return dpkt.ip.IP(buf)
    raise AssertionError(f"link type {linktype}: add it here")


def packet_ids(path: Path) -> set[str]:
    """The reference ID of every whole IP packet (first fragments and datagrams whose
    headers dpkt cannot read are left out: they make no flow of their own)."""
    out = set()
    with open(path, "rb") as fh:
        pcapng = fh.read(4) == b"\x0a\x0d\x0d\x0a"
        fh.seek(0)
        reader = dpkt.pcapng.Reader(fh) if pcapng else dpkt.pcap.Reader(fh)
        linktype = reader.datalink()
        for _, buf in reader:
            try:
                ip = _ip_of(linktype, buf)
            except (dpkt.UnpackError, IndexError):
                continue
            if ip is None:
                continue
            v6 = isinstance(ip, dpkt.ip6.IP6)
            if not v6 and ip.offset:
                continue  # a later fragment: the first one has the ports
            family = socket.AF_INET6 if v6 else socket.AF_INET
            src, dst = socket.inet_ntop(family, ip.src), socket.inet_ntop(family, ip.dst)
            proto = ip.p  # IPv6: after the extension headers
            l4 = ip.data
            if isinstance(l4, bytes):  # dpkt could not decode it: the ports by hand
                if v6 and proto == 44:
                    continue  # a fragment
                if proto in (6, 17):
                    if len(l4) >= 4:
                        ports = struct.unpack_from("!HH", l4)
                        out.add(reference(proto, src, dst, *ports))
                elif proto in _ICMP and len(l4) >= 2:
                    out.add(reference(proto, src, dst, l4[0], l4[1]))
                else:
                    out.add(reference(proto, src, dst, 0, 0))
                continue
            if proto in _ICMP:
                out.add(reference(proto, src, dst, l4.type, l4.code))
            elif proto in (6, 17):
                out.add(reference(proto, src, dst, l4.sport, l4.dport))
            else:
                out.add(reference(proto, src, dst, 0, 0))
    return out


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_every_record_of_every_flow_carries_the_reference_id(capture: Path) -> None:
    records = replay_records([str(capture)])
    flows = {r["uid"]: r for r in records if r["type"] == "flow"}
    assert flows
    for flow in flows.values():
        assert flow["community_id"] == of_flow_record(flow), flow["uid"]
    for r in records:
        assert r["community_id"] == flows[r["uid"]]["community_id"], r["id"]
    check_anomalies(records, flows)
    # Every packet's reference ID names a flow we report, and every flow has packets.
    assert {f["community_id"] for f in flows.values()} == packet_ids(capture)


def icmp_capture(path: Path) -> Path:
    def echo(kind: int, seq: int) -> bytes:
        return bytes(dpkt.icmp.ICMP(type=kind, data=dpkt.icmp.ICMP.Echo(id=7, seq=seq)))

    def echo6(kind: int, seq: int) -> bytes:
        return bytes((kind, 0, 0, 0, 0, 7, 0, seq)) + b"ping6"

    a, b, r = "10.1.0.1", "10.1.0.2", "10.1.0.254"
    unreachable = bytes(dpkt.icmp.ICMP(type=3, code=1, data=b"\0" * 4 + b"inner datagram"))
    frames = []
    for i in range(3):  # six echo packets: one flow, as in Zeek's conn.log
        frames.append(pcapgen.ether(pcapgen.ipv4(echo(8, i), a, b, proto=1)))
        frames.append(pcapgen.ether(pcapgen.ipv4(echo(0, i), b, a, proto=1)))
    frames.append(pcapgen.ether(pcapgen.ipv4(unreachable, r, a, proto=1)))
    frames.append(pcapgen.ether(pcapgen.ipv6(echo6(128, 1), proto=58), vlans=[42]))
    frames.append(
        pcapgen.ether(pcapgen.ipv6(echo6(129, 1), "2001:db8::2", "2001:db8::1", proto=58),
                      vlans=[42])
    )  # fmt: skip
    frames.append(pcapgen.ether(pcapgen.ipv4(b"\0\0\x08\0gre", a, b, proto=47)))
    base = 1_700_000_000 * 10**9
    return pcapgen.write_pcap(path, [(base + i * 1000, f) for i, f in enumerate(frames)])


def test_icmp_and_other_protocols_make_flows_like_zeeks_conn_log(tmp_path: Path) -> None:
    capture = icmp_capture(tmp_path / "icmp.pcap")
    flows = [r for r in replay_records([str(capture)]) if r["type"] == "flow"]
    by = {(f["ip_proto"], f["client"]["port"], f["server"]["port"]): f for f in flows}
    assert sorted(by) == [(1, 3, 1), (1, 8, 0), (47, 0, 0), (58, 128, 129)]
    echo = by[(1, 8, 0)]
    assert (echo["proto"], echo["state"], echo["history"]) == ("icmp", "OTH", "")
    assert echo["client"]["ip"] == "10.1.0.1" and echo["server"]["ip"] == "10.1.0.2"
    c2s, s2c = echo["client_to_server"], echo["server_to_client"]
    assert (c2s["packets"], s2c["packets"]) == (3, 3)
    assert c2s["ip_bytes"] == 3 * (20 + 8)  # IP header + ICMP echo header, no data
    assert by[(1, 3, 1)]["client"]["ip"] == "10.1.0.254"
    assert by[(58, 128, 129)]["vlan"] == [42] and echo["vlan"] == []
    assert by[(47, 0, 0)]["proto"] == "unknown_transport"
    for f in flows:
        assert f["community_id"] == of_flow_record(f)
    assert {f["community_id"] for f in flows} == packet_ids(capture)


def test_seed_is_an_option_and_matches_the_reference(tmp_path: Path) -> None:
    capture = FIXTURES / "zeek__http__get.pcap"
    flows = [
        r
        for r in replay_records([str(capture)], config=RuntimeConfig(community_id_seed=4242))
        if r["type"] == "flow"
    ]
    default = [r for r in replay_records([str(capture)]) if r["type"] == "flow"]
    assert flows and all(f["community_id"] == of_flow_record(f, 4242) for f in flows)
    assert [f["community_id"] for f in flows] != [f["community_id"] for f in default]


def test_computed_once_per_flow_not_per_packet_or_record(monkeypatch) -> None:
    calls = []
    real = session_module.flow_community_id

    def counting(*args: Any) -> str:
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(session_module, "flow_community_id", counting)
    records = replay_records([str(FIXTURES / "zeek__http__pipelined-requests.pcap")])
    flows = [r for r in records if r["type"] == "flow"]
    assert len(records) > len(flows) and len(calls) == len(flows) == len(set(calls))


def test_ipv6_addresses_hash_packed() -> None:
    """A check of the helper itself on the spec's own IPv6 example shape."""
    src, dst = "2001:db8::1", "2001:db8::2"
    assert ipaddress.ip_address(src).version == 6
    assert reference(6, src, dst, 1234, 80) == reference(6, dst, src, 80, 1234)


def check_anomalies(records: list[dict[str, Any]], flows: dict[str, dict[str, Any]]) -> None:
    """Anomalies carry their flow's endpoints, and the decoder they concern (none for
    reassembly and flow-table anomalies)."""
    for a in (r for r in records if r["type"] == "anomaly"):
        flow = flows[a["uid"]]
        assert (a["proto"], a["client"], a["server"]) == (
            flow["proto"], flow["client"], flow["server"],
        ), a["id"]  # fmt: skip
        if a["name"] in session_module.RUNTIME_ANOMALIES:
            assert a["decoder"] is None, a["id"]
        elif a["decoder"] is not None:
            assert a["decoder"] in (flow["service"] or "").split(","), a["id"]


@pytest.mark.parametrize(
    "capture,decoder",
    [
        ("sv__eve-overlap-payload-01__tcp-overlap.pcap", None),
        ("sv__http-chunked__input.pcap", "http"),
    ],
)
def test_anomalies_name_their_decoder_or_none(capture: str, decoder: str | None) -> None:
    records = replay_records([str(FIXTURES / capture)])
    anomalies = [r for r in records if r["type"] == "anomaly"]
    assert anomalies and {a["decoder"] for a in anomalies} == {decoder}
