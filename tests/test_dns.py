"""DNS decoder: tshark's messages (id, response flag, transport, qname, qtype, rcode) per
capture, mDNS against dpkt's parser, pairing rules, TCP framing across segments, hostile
input (compression loops, truncation), a conservative probe, and exact snapshot/restore."""

from __future__ import annotations

import ipaddress
import json
import random
from collections import Counter
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_task_restore import keyed_packets
from tests.test_task_restore import run as run_task
from wirestream import testing as harness
from wirestream.decoders.api import CLIENT, SERVER, Endpoint, FlowInfo
from wirestream.decoders.dns import DnsDecoder
from wirestream.decoders.dns_msg import MAX_POINTERS, parse_message, read_name
from wirestream.decoders.registry import select
from wirestream.probe.capture import open_capture
from wirestream.probe.source import PacketSource
from wirestream.streams.replay import replay_records
from wirestream.testing import Event

PCAPS = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
ORACLES = PCAPS / "oracles"

# tshark's `dns` filter (make_tls_dns_oracles.py) does not match what its own mdns and llmnr
# dissectors take (UDP 5353, 5355): those messages are ours but not in the oracle, and are
# checked against dpkt below instead.
NOT_IN_TSHARK_DNS = {5353: "mDNS (tshark: mdns)", 5355: "LLMNR (tshark: llmnr)"}


def _oracle(name: str) -> list[dict]:
    path = ORACLES / name / "dns_tshark.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _captures() -> list[str]:
    return sorted(p.name for p in PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap"))


DNS_CAPTURES = [n for n in _captures() if _oracle(n)]
_REPLAYS: dict[tuple[str, tuple[str, ...]], list[dict]] = {}


def replay(name: str, decoders: tuple[str, ...] = ("dns",)) -> list[dict]:
    key = (name, decoders)
    if key not in _REPLAYS:
        _REPLAYS[key] = replay_records([str(PCAPS / name)], decoders=list(decoders))
    return _REPLAYS[key]


def message_rows(records: list[dict]) -> Counter:
    """Our dns records as tshark's rows: the query (client -> server) unless the record is
    response-only, the response (server -> client) unless it is unanswered."""
    rows: Counter = Counter()
    for r in records:
        if r["type"] != "dns" or r["server"]["port"] in NOT_IN_TSHARK_DNS:
            continue
        c = (r["client"]["ip"], r["client"]["port"])
        s = (r["server"]["ip"], r["server"]["port"])
        common = (r["transport"], r["trans_id"])
        if "no_query" not in r["tags"]:
            rows[(*c, *s, *common, False, r["query"], r["qtype"], None)] += 1
        if "unanswered" not in r["tags"]:
            rows[(*s, *c, *common, True, r["query"], r["qtype"], r["rcode"])] += 1
    return rows


def oracle_rows(name: str) -> Counter:
    return Counter(
        (
            o["src"],
            o["sport"],
            o["dst"],
            o["dport"],
            o["transport"],
            o["id"],
            o["response"],
            o["qname"],
            o["qtype"],
            o["rcode"],
        )
        for o in _oracle(name)
    )


def test_dns_is_registered():
    assert select(["dns"]) == [DnsDecoder]


@pytest.mark.parametrize("name", DNS_CAPTURES)
@pytest.mark.parametrize("decoders", [("dns",), ("http", "tls", "dns")])
def test_messages_match_tshark(name: str, decoders: tuple[str, ...]):
    assert message_rows(replay(name, decoders)) == oracle_rows(name)


@pytest.mark.parametrize("name", [n for n in _captures() if not _oracle(n)])
def test_no_unicast_dns_record_where_tshark_sees_none(name: str):
    records = replay_records([str(PCAPS / name)], decoders=["http", "tls", "dns"])
    assert not message_rows(records)


def _dpkt_rows(name: str, ports: set[int]) -> Counter:
    """One row per DNS message on `ports`, parsed by dpkt (an independent parser)."""
    rows: Counter = Counter()
    for kp in PacketSource().keyed(open_capture(PCAPS / name)):
        p = kp.packet
        if p.proto != 17 or not ({p.sport, p.dport} & ports):
            continue
        # header and question only: dpkt cannot unpack every record type (NSEC: raises)
        m = dpkt.dns.DNS(p.payload[:6] + bytes(6) + p.payload[12:])
        ends = frozenset(
            [
                (str(ipaddress.ip_address(p.src)), p.sport),
                (str(ipaddress.ip_address(p.dst)), p.dport),
            ]
        )
        q = m.qd[0] if m.qd else None
        rows[
            (
                ends,
                m.id,
                bool(m.qr),
                q.name if q is not None else None,
                q.type if q is not None else None,
                m.rcode if m.qr else None,
            )
        ] += 1
    return rows


def _our_rows(records: list[dict], ports: set[int]) -> Counter:
    rows: Counter = Counter()
    for r in records:
        if r["type"] != "dns" or r["server"]["port"] not in ports:
            continue
        ends = frozenset(
            [(r["client"]["ip"], r["client"]["port"]), (r["server"]["ip"], r["server"]["port"])]
        )
        base = (ends, r["trans_id"])
        if "no_query" not in r["tags"]:
            rows[(*base, False, r["query"], r["qtype"], None)] += 1
        if "unanswered" not in r["tags"]:
            rows[(*base, True, r["query"], r["qtype"], r["rcode"])] += 1
    return rows


@pytest.mark.parametrize("name", ["zeek__dns__mdns.pcap", "zeek__wikipedia.pcap"])
def test_mdns_and_llmnr_match_dpkt(name: str):
    ports = set(NOT_IN_TSHARK_DNS)
    want = _dpkt_rows(name, ports)
    assert want
    assert _our_rows(replay(name), ports) == want


def test_mdns_responses_without_queries_are_records_of_their_own():
    recs = [r for r in replay("zeek__dns__mdns.pcap") if r["type"] == "dns"]
    responses = [r for r in recs if "no_query" in r["tags"]]
    assert responses and all(r["rtt"] is None and r["rcode"] == 0 for r in responses)
    assert all(r["answers"] for r in responses)
    assert all(r["flags"]["aa"] for r in responses)


def test_two_responses_to_one_query():
    recs = [r for r in replay("zeek__dns-two-responses.pcap") if r["type"] == "dns"]
    assert [r["tags"] for r in recs] == [[], ["no_query"]]
    assert recs[0]["rtt"] is not None and recs[1]["rtt"] is None
    assert recs[0]["answers"] == recs[1]["answers"]


def test_record_schema_and_answer_text():
    recs = [r for r in replay("zeek__dns__long-connection.pcap") if r["type"] == "dns"]
    assert recs
    for r in recs:
        assert list(r) == [
            "type",
            "id",
            "uid",
            "community_id",
            "ts",
            "client",
            "server",
            "transport",
            "trans_id",
            "query",
            "qtype",
            "qtype_name",
            "qclass",
            "rcode",
            "rcode_name",
            "flags",
            "answers",
            "rtt",
            "tags",
            # issue 15, after the original fields (docs/tls-dns.md)
            "qclass_name",
            "answer_types",
            "authority",
            "additional",
            "query_edns",
            "response_edns",
            "section_error",
        ]
        assert list(r["flags"]) == ["aa", "tc", "rd", "ra"]
        assert r["rtt"] is not None and r["rtt"] >= 0
        for a in r["answers"]:
            assert list(a) == ["name", "type", "ttl", "data"] and isinstance(a["data"], str)
    by_type = {r["qtype_name"]: r for r in recs}
    assert {"MX", "AAAA", "PTR", "A", "ANY"} <= set(by_type)
    assert by_type["AAAA"]["rcode_name"] in ("NOERROR", "NXDOMAIN")


# ------------------------------------------------------------------ building messages
def name_bytes(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\x00"


def message(
    trans_id: int,
    qname: str = "example.com",
    qtype: int = 1,
    flags: int = 0x0100,
    answers: list[tuple[int, bytes]] = (),  # type: ignore[assignment]
) -> bytes:
    head = trans_id.to_bytes(2, "big") + flags.to_bytes(2, "big")
    head += (1).to_bytes(2, "big") + len(answers).to_bytes(2, "big") + b"\x00\x00\x00\x00"
    body = name_bytes(qname) + qtype.to_bytes(2, "big") + b"\x00\x01"
    for rtype, rdata in answers:  # owner name: a pointer to the question's name
        body += b"\xc0\x0c" + rtype.to_bytes(2, "big") + b"\x00\x01" + (300).to_bytes(4, "big")
        body += len(rdata).to_bytes(2, "big") + rdata
    return head + body


def response(
    trans_id: int,
    qname: str = "example.com",
    qtype: int = 1,
    rcode: int = 0,
    answers: list[tuple[int, bytes]] = (),
) -> bytes:  # type: ignore[assignment]
    return message(trans_id, qname, qtype, 0x8180 | rcode, answers)


UDP = FlowInfo("Cudp", "udp", Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.53", 53))
TCP = FlowInfo("Ctcp", "tcp", Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.53", 53))


class FakeCtx(harness.FakeContext):
    def __init__(self, flow: FlowInfo, out: list | None = None) -> None:
        super().__init__(flow, out, ts_ns=0)


def run(events: list[Event], flow: FlowInfo = UDP, restore_every: bool = False) -> list:
    return harness.run_events(DnsDecoder, events, restore_every=restore_every, ctx=FakeCtx(flow))


def dns_records(out: list) -> list[dict]:
    return [f for t, f in out if t == "dns"]


# ------------------------------------------------------------------ pairing
def test_pairing_by_id_name_and_type():
    events = [
        ("data", CLIENT, message(1, "a.example", 1), 1_000_000),
        ("data", CLIENT, message(1, "a.example", 28), 2_000_000),
        ("data", CLIENT, message(2, "b.example", 1), 3_000_000),
        (
            "data",
            SERVER,
            response(1, "A.EXAMPLE", 28, answers=[(28, bytes(15) + b"\x01")]),
            4_500_000,
        ),
        ("data", SERVER, response(9, "c.example", 1), 5_000_000),
        (
            "data",
            SERVER,
            response(1, "a.example", 1, answers=[(1, bytes([192, 0, 2, 1]))]),
            6_000_000,
        ),
        ("close", "timeout", 7_000_000),
    ]
    recs = dns_records(run(events))
    assert [(r["trans_id"], r["query"], r["qtype_name"], r["tags"]) for r in recs] == [
        (1, "a.example", "AAAA", []),  # query's spelling kept, case-insensitive match
        (9, "c.example", "A", ["no_query"]),
        (1, "a.example", "A", []),
        (2, "b.example", "A", ["unanswered"]),
    ]
    assert recs[0]["rtt"] == 0.0025 and recs[0]["ts"] == 0.002
    assert recs[0]["answers"] == [{"name": "A.EXAMPLE", "type": 28, "ttl": 300, "data": "::1"}]
    assert recs[2]["answers"][0]["data"] == "192.0.2.1"
    assert recs[3]["rcode"] is None and recs[3]["rtt"] is None and recs[3]["flags"]["rd"]
    assert recs[1]["rcode_name"] == "NOERROR" and recs[1]["flags"]["ra"]
    assert run(events, restore_every=True) == run(events)


def test_retransmitted_query():
    events = [
        ("data", CLIENT, message(5), 1_000),
        ("data", CLIENT, message(5), 2_000_000),
        ("data", SERVER, response(5, rcode=3), 3_000_000),
    ]
    recs = dns_records(run(events))
    assert [r["tags"] for r in recs] == [["retransmitted", "unanswered"], []]
    assert recs[1]["rtt"] == 0.001 and recs[1]["rcode_name"] == "NXDOMAIN"


def test_answer_data_text():
    mx = (15, b"\x00\x0a" + name_bytes("mail.example"))
    txt = (16, b"\x05hello" + b'\x07a "b" \\' + b"\x02\x00\xff")
    srv = (33, b"\x00\x01\x00\x02\x01\xbb" + name_bytes("sip.example"))
    soa = (6, name_bytes("ns.example") + name_bytes("root.example") + bytes(range(20)))
    cname = (5, b"\x03www\xc0\x0c")  # compressed: www + the question's name
    other = (99, b"")  # SPF with no strings
    unknown = (4242, b"\xde\xad")
    msg = parse_message(response(7, answers=[mx, txt, srv, soa, cname, other, unknown]))
    assert msg.error is None
    assert [a["data"] for a in msg.answers] == [
        "10 mail.example",
        '"hello" "a \\"b\\" \\\\" "\\000\\255"',
        "1 2 443 sip.example",
        "ns.example root.example 66051 67438087 134810123 202182159 269554195",
        "www.example.com",
        "",
        "dead",
    ]


def test_name_escaping_and_root():
    data = b"\x00" * 12 + b"\x03a.b\x02\x00 \x00" + b"\x00"
    assert read_name(data, 12) == ("a\\.b.\\000 ", 12 + 8)
    assert read_name(data, 20) == (".", 21)


# ------------------------------------------------------------------ hostile input
def test_compression_loop_is_bounded():
    looped = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    msg = parse_message(looped)
    assert msg.error == "compression pointer loop" and msg.qname is None
    chain = bytearray(b"\x00" * 12 + b"\x01a\x00")
    for i in range(MAX_POINTERS + 1):  # a chain of pointers, each to the one before
        chain += b"\xc0" + bytes([12 if i == 0 else 15 + 2 * (i - 1)])
    assert read_name(bytes(chain), len(chain) - 4) == ("a", len(chain) - 2)  # MAX_POINTERS
    with pytest.raises(ValueError, match="loop"):
        read_name(bytes(chain), len(chain) - 2)  # one more
    out = run([("data", CLIENT, looped, 1), ("close", "fin", 2)])
    assert [t for t, _ in out] == ["anomaly", "dns"]
    assert out[0][1]["name"] == "dns_parse_error"
    assert out[1][1]["tags"] == ["parse_error", "unanswered"]


def test_truncated_answers_keep_the_question():
    full = response(3, answers=[(1, b"\x01\x02\x03\x04"), (1, b"\x05\x06\x07\x08")])
    out = run([("data", CLIENT, message(3), 1), ("data", SERVER, full[:-3], 2)])
    assert [t for t, _ in out] == ["anomaly", "dns"]
    rec = out[1][1]
    assert rec["query"] == "example.com" and rec["tags"] == ["parse_error"]
    assert [a["data"] for a in rec["answers"]] == ["1.2.3.4"]


def test_short_datagram_is_only_an_anomaly():
    out = run([("data", CLIENT, b"\x00\x01\x02", 1), ("close", "fin", 2)])
    assert [(t, f["name"]) for t, f in out] == [("anomaly", "dns_parse_error")]


def test_anomalies_are_capped_per_flow():
    out = run([("data", CLIENT, b"\x00", i) for i in range(100)])
    assert len(out) == 16


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(blob: bytes):
    for flow in (UDP, TCP):
        run([("data", CLIENT, blob, 1), ("data", SERVER, blob, 2), ("close", "fin", 3)], flow)
    DnsDecoder.probe(CLIENT, blob)
    DnsDecoder.probe(SERVER, blob)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 200), st.binary(min_size=1, max_size=6))
def test_corrupted_responses_never_raise(at: int, junk: bytes):
    good = response(4, answers=[(5, b"\x03www\xc0\x0c"), (15, b"\x00\x01\xc0\x0c")])
    bad = good[:at] + junk + good[at + len(junk) :]
    run([("data", CLIENT, message(4), 1), ("data", SERVER, bad, 2), ("close", "fin", 3)])


# ------------------------------------------------------------------ TCP framing
def framed(msg: bytes) -> bytes:
    return len(msg).to_bytes(2, "big") + msg


@pytest.mark.parametrize("seed", range(10))
def test_tcp_messages_across_and_within_segments(seed: int):
    rng = random.Random(seed)
    client = framed(message(1)) + framed(message(2, "b.example"))
    server = framed(response(2, "b.example")) + framed(response(1))
    events: list[Event] = []
    ts = 1000
    for direction, stream in ((CLIENT, client), (SERVER, server)):
        i = 0
        while i < len(stream):
            n = rng.randint(1, 25)
            events.append(("data", direction, stream[i : i + n], ts))
            i, ts = i + n, ts + 1000
    events.append(("close", "fin", ts))
    out = run(events, TCP)
    assert [(t, f["trans_id"], f["transport"], f["tags"]) for t, f in out] == [
        ("dns", 2, "tcp", []),
        ("dns", 1, "tcp", []),
    ]
    assert run(events, TCP, restore_every=True) == out


def test_tcp_gap_stops_the_direction():
    events = [
        ("data", CLIENT, framed(message(1)), 1),
        ("gap", SERVER, 40, 2),
        ("data", SERVER, framed(response(1))[5:], 3),
        ("close", "fin", 4),
    ]
    recs = dns_records(run(events, TCP))
    assert [r["tags"] for r in recs] == [["gap", "unanswered"]]


def test_tcp_message_cut_by_the_end_of_the_flow():
    out = run([("data", CLIENT, framed(message(1))[:10], 1), ("close", "fin", 2)], TCP)
    assert [(t, f["name"]) for t, f in out] == [("anomaly", "dns_truncated")]


# ------------------------------------------------------------------ probe
def test_probe_accepts_dns():
    q, r = message(0x1234), response(0x1234)
    assert DnsDecoder.probe(CLIENT, q) is True and DnsDecoder.probe(SERVER, r) is True
    assert DnsDecoder.probe(CLIENT, r) is False and DnsDecoder.probe(SERVER, q) is False
    assert DnsDecoder.probe(CLIENT, framed(q)) is True
    assert DnsDecoder.probe(CLIENT, framed(q)[:9]) is None  # TCP: the rest may follow
    assert DnsDecoder.probe(CLIENT, b"\x00") is None


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),
        b"SSH-2.0-OpenSSH_8.9\r\n",
        b"220 mx ESMTP\r\n",
        bytes(64),
        # NetBIOS name service: DNS-shaped, its own protocol (a query for "FRED<20>")
        b"\x82\x28\x01\x10\x00\x01\x00\x00\x00\x00\x00\x00\x20"
        + b"EGFCEFEECACACACACACACACACACACACA"
        + b"\x00\x00\x20\x00\x01",
        message(1, flags=0x7800),  # opcode 15
        message(1, flags=0x0140),  # Z bit
    ],
)
def test_probe_rejects_other_protocols(data: bytes):
    assert not DnsDecoder.probe(CLIENT, data)
    assert not DnsDecoder.probe(SERVER, data)


# ------------------------------------------------------------------ state, real flows
@pytest.mark.parametrize("name", [*DNS_CAPTURES, "zeek__dns__mdns.pcap"])
def test_restore_at_every_event_of_real_flows(name: str):
    flows = harness.recorded_flows(PCAPS / name, DnsDecoder)
    assert flows
    for flow, events in flows.values():
        assert run(events, flow, restore_every=True) == run(events, flow)


@pytest.mark.parametrize(
    "name", ["zeek__dns-edns-tcp-keepalive.pcap", "zeek__dns__long-connection.pcap"]
)
def test_task_restored_at_every_packet_emits_the_same_bytes(name: str, tmp_path: Path):
    packets = keyed_packets(name)
    reference = run_task(packets, tmp_path / "ref", set(), decoders=["dns"])
    assert any(b'"type":"dns"' in r for r in reference)
    every = set(range(1, len(packets)))
    assert run_task(packets, tmp_path / "every", every, decoders=["dns"]) == reference
