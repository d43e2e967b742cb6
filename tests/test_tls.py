"""TLS decoder: tshark's hellos (SNI, JA3, JA3S) per capture, JA4 against FoxIO's published
example (and ja4plus output where an oracle file exists), reassembly across segments and
records, HelloRetryRequest pairing, STARTTLS, hostile input, and exact snapshot/restore."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_task_restore import keyed_packets
from tests.test_task_restore import run as run_task
from wirestream import testing as harness
from wirestream.decoders.api import CLIENT, SERVER, Endpoint, FlowInfo
from wirestream.decoders.registry import select
from wirestream.decoders.tls import TlsDecoder
from wirestream.decoders.tls_hello import (
    HRR_RANDOM,
    ja4_alpn,
    parse_client_hello,
    parse_server_hello,
)
from wirestream.decoders.tls_stream import MAX_HANDSHAKE
from wirestream.streams.replay import replay_records
from wirestream.testing import Event

PCAPS = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
ORACLES = PCAPS / "oracles"


# ------------------------------------------------------------------ oracle comparison
def _oracle(name: str, file: str) -> list[dict]:
    path = ORACLES / name / file
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _captures() -> list[str]:
    return sorted(p.name for p in PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap"))


TLS_CAPTURES = [n for n in _captures() if _oracle(n, "tls_tshark.jsonl")]

# TLS inside an HTTP CONNECT tunnel: found once the http decoder hands the tunnel over.
TUNNELED = {"zeek__http__connect-with-header.pcap", "own_connect_tunnels.pcap"}

# Differences with tshark's tls_tshark.jsonl, each checked for its exact shape below.
KNOWN_DIFFERENCES = {
    "zeek__tls__hrr.pcap": (
        "tshark (default prefs, no out-of-order reassembly) misses the second ServerHello: the "
        "server's segment carrying it is captured after a later one. With "
        "tcp.reassemble_out_of_order:TRUE tshark finds it too, with the JA3S we report"
    ),
}


def hello_rows(records: list[dict]) -> Counter:
    """Our tls records as tshark's rows: one per hello, in the direction it travelled."""
    rows: Counter = Counter()
    for r in records:
        if r["type"] != "tls":
            continue
        c, s = r["client"], r["server"]
        if r["client_hello"]:
            ch = r["client_hello"]
            rows[
                (c["ip"], c["port"], s["ip"], s["port"], "client_hello", ch["sni"], ch["ja3"], None)
            ] += 1
        if r["server_hello"]:
            sh = r["server_hello"]
            rows[
                (s["ip"], s["port"], c["ip"], c["port"], "server_hello", None, None, sh["ja3s"])
            ] += 1
    return rows


def oracle_rows(name: str) -> Counter:
    return Counter(
        (o["src"], o["sport"], o["dst"], o["dport"], o["type"], o["sni"], o["ja3"], o["ja3s"])
        for o in _oracle(name, "tls_tshark.jsonl")
    )


_REPLAYS: dict[tuple[str, tuple[str, ...]], list[dict]] = {}


def replay(name: str, decoders: tuple[str, ...] = ("tls",)) -> list[dict]:
    key = (name, decoders)
    if key not in _REPLAYS:
        _REPLAYS[key] = replay_records([str(PCAPS / name)], decoders=list(decoders))
    return _REPLAYS[key]


def test_tls_is_registered():
    assert select(["tls"]) == [TlsDecoder]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            n,
            marks=[pytest.mark.xfail(reason=KNOWN_DIFFERENCES[n], strict=True)]
            if n in KNOWN_DIFFERENCES
            else [],
        )
        for n in TLS_CAPTURES
    ],
)
@pytest.mark.parametrize("decoders", [("tls",), ("http", "tls", "dns")])
def test_hellos_match_tshark(name: str, decoders: tuple[str, ...]):
    rows = hello_rows(replay(name, decoders))
    if name in TUNNELED and "http" not in decoders:
        # The tunnel is opened by the http decoder: without it, only the hellos outside
        # tunnels (own_connect_tunnels' relayed leg) are found.
        assert rows < oracle_rows(name)
        return
    assert rows == oracle_rows(name)


def test_hrr_difference_is_exactly_the_second_server_hello():
    name = "zeek__tls__hrr.pcap"
    ours, theirs = hello_rows(replay(name)), oracle_rows(name)
    assert not theirs - ours
    extra = list((ours - theirs).elements())
    assert len(extra) == 1 and extra[0][4] == "server_hello"
    records = [r for r in replay(name) if r["type"] == "tls"]
    assert [r["server_hello"]["hello_retry_request"] for r in records] == [True, False]
    assert records[0]["ts"] < records[1]["ts"]
    assert records[1]["server_hello"]["ja3s"] == extra[0][7]


def test_tls_inside_a_connect_tunnel_is_handed_over_by_the_http_decoder():
    records = replay("zeek__http__connect-with-header.pcap", ("http", "tls", "dns"))
    (flow,) = [r for r in records if r["type"] == "flow"]
    assert flow["service"] == "http,tls"  # as Zeek's conn.log says: http,ssl
    assert [r for r in records if r["type"] == "tls"]


@pytest.mark.parametrize("name", [n for n in _captures() if not _oracle(n, "tls_tshark.jsonl")])
def test_no_tls_record_where_tshark_sees_no_hello(name: str):
    records = replay_records([str(PCAPS / name)], decoders=["http", "tls", "dns"])
    assert not [r for r in records if r["type"] == "tls"]
    assert not [r for r in records if r["type"] == "anomaly" and r["name"].startswith("tls")]


def test_starttls_records_are_tagged():
    records = [r for r in replay("zeek__tls__smtp-starttls.pcap") if r["type"] == "tls"]
    assert len(records) == 1 and records[0]["tags"] == ["starttls"]
    assert records[0]["server"]["port"] == 25


JA4_KNOWN: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=[pytest.mark.xfail(reason=JA4_KNOWN[n], strict=True)])
        if n in JA4_KNOWN
        else n
        for n in TLS_CAPTURES
    ],
)
def test_ja4_and_ts_match_ja4plus_where_an_oracle_exists(name: str):
    """tls_ja4plus.jsonl: `ja4plus analyze --format json --types ja4 CAPTURE` (PyPI ja4plus,
    FoxIO's algorithm), one JSON line per ClientHello."""
    rows = _oracle(name, "tls_ja4plus.jsonl")
    if not rows:
        pytest.skip("no ja4plus oracle for this capture")
    want = Counter(
        (
            o["src_ip"],
            o["src_port"],
            o["dst_ip"],
            o["dst_port"],
            o["fingerprint"],
            round(datetime.fromisoformat(o["timestamp"].replace("Z", "+00:00")).timestamp(), 6),
        )
        for o in rows
        if o["type"] == "ja4"
    )
    got = Counter(
        (
            r["client"]["ip"],
            r["client"]["port"],
            r["server"]["ip"],
            r["server"]["port"],
            r["client_hello"]["ja4"],
            round(r["ts"], 6),
        )
        for r in replay(name)
        if r["type"] == "tls" and r["client_hello"]
    )
    assert got == want


def test_record_schema():
    records = [r for r in replay("zeek__tls__tls13-ech.pcap") if r["type"] == "tls"]
    assert records
    for r in records:
        assert list(r) == [
            "type",
            "id",
            "uid",
            "community_id",
            "ts",
            "client",
            "server",
            "client_hello",
            "server_hello",
            "tags",
            # issue 15, after the original fields (docs/tls-dns.md)
            "version",
            "cipher",
            "alpn",
            "ja4s",
            "established",
            "resumed",
            "alerts",
            "server_certificates",
            "client_certificates",
        ]
        assert list(r["client_hello"]) == [
            "version",
            "sni",
            "alpn",
            "supported_versions",
            "cipher_suites",
            "extensions",
            "elliptic_curves",
            "ec_point_formats",
            "ja3",
            "ja3_string",
            "ja4",
        ]
        assert list(r["server_hello"]) == [
            "version",
            "selected_version",
            "cipher_suite",
            "extensions",
            "ja3s",
            "ja3s_string",
            "hello_retry_request",
        ]
        assert r["server_hello"]["selected_version"] == "0x0304"
        assert "0x0304" in r["client_hello"]["supported_versions"]


# ------------------------------------------------------------------ building hellos
def _u16s(values: list[int]) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in values)


def _vec(data: bytes, n: int) -> bytes:
    return len(data).to_bytes(n, "big") + data


def ext(etype: int, body: bytes = b"") -> bytes:
    return etype.to_bytes(2, "big") + _vec(body, 2)


def sni_ext(host: str) -> bytes:
    return ext(0, _vec(b"\x00" + _vec(host.encode(), 2), 2))


def alpn_ext(*protos: bytes) -> bytes:
    return ext(16, _vec(b"".join(_vec(p, 1) for p in protos), 2))


def client_hello_body(ciphers: list[int], exts: list[bytes], version: int = 0x0303) -> bytes:
    return (
        version.to_bytes(2, "big")
        + bytes(range(32))
        + _vec(b"\x11" * 32, 1)
        + _vec(_u16s(ciphers), 2)
        + b"\x01\x00"
        + _vec(b"".join(exts), 2)
    )


def server_hello_body(cipher: int, exts: list[bytes], random_: bytes = b"\x22" * 32) -> bytes:
    return (
        b"\x03\x03"
        + random_
        + _vec(b"\x11" * 32, 1)
        + _u16s([cipher])
        + b"\x00"
        + (_vec(b"".join(exts), 2))
    )


def handshake(mtype: int, body: bytes) -> bytes:
    return bytes([mtype]) + len(body).to_bytes(3, "big") + body


def records(payload: bytes, ctype: int = 22, size: int = 1 << 14) -> bytes:
    out = b""
    for i in range(0, len(payload), size):
        chunk = payload[i : i + size]
        out += bytes([ctype, 3, 1]) + len(chunk).to_bytes(2, "big") + chunk
    return out


# FoxIO's JA4 example (technical_details/JA4.md, "Example" and "Raw Output"): original order.
SPEC_CIPHERS = [
    0x1301,
    0x1302,
    0x1303,
    0xC02B,
    0xC02F,
    0xC02C,
    0xC030,
    0xCCA9,
    0xCCA8,
    0xC013,
    0xC014,
    0x009C,
    0x009D,
    0x002F,
    0x0035,
]
SPEC_EXTS = [
    0x001B,
    0x0000,
    0x0033,
    0x0010,
    0x4469,
    0x0017,
    0x002D,
    0x000D,
    0x0005,
    0x0023,
    0x0012,
    0x002B,
    0xFF01,
    0x000B,
    0x000A,
    0x0015,
]
SPEC_SIG_ALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
# The spec's own result for that hello, from the section that shows every step. (Its
# introduction quotes "..._b186095e22b6", which its extension-hash steps do not produce.)
SPEC_JA4 = "t13d1516h2_8daaf6152771_e5627efa2ab1"


def spec_hello(grease: bool = True) -> bytes:
    bodies = {
        0x0000: sni_ext("example.com")[4:],
        0x0010: alpn_ext(b"h2", b"http/1.1")[4:],
        0x000D: _vec(_u16s(SPEC_SIG_ALGS + ([0x0A0A] if grease else [])), 2),
        0x002B: _vec(_u16s(([0x3A3A] if grease else []) + [0x0304, 0x0303]), 1),
        0x000A: _vec(_u16s(([0x4A4A] if grease else []) + [0x001D, 0x0017, 0x0018]), 2),
        0x000B: _vec(b"\x00", 1),
    }
    exts = [ext(e, bodies.get(e, b"")) for e in SPEC_EXTS]
    ciphers = list(SPEC_CIPHERS)
    if grease:
        exts = [ext(0x1A1A), *exts, ext(0x2A2A, b"\x00")]
        ciphers = [0x0A0A, *ciphers]
    return client_hello_body(ciphers, exts)


def test_ja4_reproduces_the_published_example():
    assert parse_client_hello(spec_hello())["ja4"] == SPEC_JA4


def test_grease_is_ignored_by_ja3_and_ja4_but_kept_in_the_lists():
    with_grease, without = parse_client_hello(spec_hello()), parse_client_hello(spec_hello(False))
    assert with_grease["ja3"] == without["ja3"]
    assert with_grease["ja3_string"] == without["ja3_string"]
    assert with_grease["ja4"] == without["ja4"]
    assert 0x0A0A in with_grease["cipher_suites"] and 0x1A1A in with_grease["extensions"]
    assert with_grease["supported_versions"] == ["0x3a3a", "0x0304", "0x0303"]


@pytest.mark.parametrize(
    ("alpn", "want"),  # the examples of JA4.md, "ALPN Extension Value"
    [
        (b"h2", "h2"),
        (b"http/1.1", "h1"),
        (b"", "00"),
        (b"a", "aa"),
        (b"\xab", "ab"),
        (b"\xab\xcd", "ad"),
        (b"\x30\xab", "3b"),
        (b"\x30\x31\xab\xcd", "3d"),
        (b"\x30\xab\xcd\x31", "01"),
    ],
)
def test_ja4_alpn_characters(alpn: bytes, want: str):
    assert ja4_alpn(alpn) == want


def test_ja4_without_alpn_sni_or_extensions():
    body = client_hello_body([0x002F], [], version=0x0301)[:-2]  # no extension block at all
    fields = parse_client_hello(body)
    assert fields["ja4"] == "t10i010000_" + fields["ja4"].split("_")[1] + "_000000000000"
    assert fields["extensions"] == [] and fields["sni"] is None
    assert fields["ja3_string"] == "769,47,,,"


def test_server_hello_fields_and_hrr():
    sh = parse_server_hello(server_hello_body(0x1301, [ext(43, b"\x03\x04"), ext(51, b"\x00")]))
    assert sh["version"] == "0x0303" and sh["selected_version"] == "0x0304"
    assert sh["cipher_suite"] == 0x1301 and sh["extensions"] == [43, 51]
    assert sh["ja3s_string"] == "771,4865,43-51" and not sh["hello_retry_request"]
    hrr = parse_server_hello(server_hello_body(0x1301, [ext(43, b"\x03\x04")], HRR_RANDOM))
    assert hrr["hello_retry_request"]


# ------------------------------------------------------------------ decoder runs
FLOW = FlowInfo("Ctest", "tcp", Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 443))


class FakeCtx(harness.FakeContext):
    def __init__(self, flow: FlowInfo = FLOW, out: list | None = None) -> None:
        super().__init__(flow, out, ts_ns=0)


def run(events: list[Event], cls: Any = TlsDecoder, flow: FlowInfo = FLOW, restore_every=False):
    """Feed events; with restore_every, snapshot -> msgpack -> restore before each one."""
    return harness.run_events(cls, events, restore_every=restore_every, ctx=FakeCtx(flow))


def split(data: bytes, rng: random.Random, max_chunk: int) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, max_chunk)
        out.append(data[i : i + n])
        i += n
    return out


CH = handshake(1, spec_hello())
SH = handshake(2, server_hello_body(0x1301, [ext(43, b"\x03\x04")]))
HRR = handshake(2, server_hello_body(0x1301, [ext(43, b"\x03\x04")], HRR_RANDOM))
CCS = bytes([20, 3, 3, 0, 1, 1])


def simple_flow() -> list[Event]:
    return [
        ("data", CLIENT, records(CH), 1_000_000_000),
        (
            "data",
            SERVER,
            records(SH) + records(b"\x0b" + b"\x00" * 50) + b"\x17\x03\x03",
            2_000_000_000,
        ),
        ("data", CLIENT, CCS + bytes([23, 3, 3, 0, 5]) + b"xxxxx", 3_000_000_000),
        ("close", "fin", 4_000_000_000),
    ]


def tls_records(out: list) -> list[dict]:
    return [f for t, f in out if t == "tls"]


def test_one_record_per_pair_and_nothing_after_the_server_hello():
    out = run(simple_flow())
    assert [t for t, _ in out] == ["tls"]
    rec = out[0][1]
    assert rec["ts"] == 1.0 and rec["tags"] == []
    assert rec["client_hello"] == parse_client_hello(spec_hello())
    assert rec["server_hello"]["selected_version"] == "0x0304"
    assert rec["client"] == {"ip": "10.0.0.1", "port": 40000}


@pytest.mark.parametrize("seed", range(12))
def test_hello_split_over_segments_and_records(seed: int):
    rng = random.Random(seed)
    events: list[Event] = []
    ts = 10_000_000_000
    wire = records(CH, size=rng.choice([7, 50, 300, 1 << 14]))
    for piece in split(wire, rng, rng.choice([1, 3, 40, 500])):
        events.append(("data", CLIENT, piece, ts))
        ts += 1000
    events += [("data", SERVER, records(SH), ts), ("close", "fin", ts + 1)]
    out = run(events)
    assert len(out) == 1 and out[0][1]["client_hello"] == parse_client_hello(spec_hello())
    assert out[0][1]["ts"] == 10.0  # the packet that brought the hello's first byte
    assert run(events, restore_every=True) == out


def test_hello_retry_request_gives_two_records():
    ch2 = handshake(1, spec_hello(grease=False))
    events = [
        ("data", CLIENT, records(CH), 1_000_000),
        ("data", SERVER, records(HRR) + CCS, 2_000_000),
        ("data", CLIENT, CCS + records(ch2), 3_000_000),
        ("data", SERVER, records(SH), 4_000_000),
        ("close", "fin", 5_000_000),
    ]
    recs = tls_records(run(events))
    assert [r["server_hello"]["hello_retry_request"] for r in recs] == [True, False]
    assert [r["ts"] for r in recs] == [0.001, 0.003]
    assert run(events, restore_every=True) == run(events)


def test_client_hello_without_answer_is_emitted_at_close():
    out = run([("data", CLIENT, records(CH), 5), ("close", "timeout", 9)])
    assert len(out) == 1 and out[0][1]["server_hello"] is None


def test_server_alert_ends_the_wait_for_a_server_hello():
    alert = bytes([21, 3, 3, 0, 2, 2, 40])
    out = run([("data", CLIENT, records(CH), 5), ("data", SERVER, alert, 6)])
    assert len(out) == 1 and out[0][1]["server_hello"] is None


def test_gap_before_the_server_hello():
    out = run([("data", CLIENT, records(CH), 5), ("gap", SERVER, 100, 6), ("close", "fin", 7)])
    assert len(out) == 1 and out[0][1]["server_hello"] is None and out[0][1]["tags"] == ["gap"]


def test_server_hello_alone_when_the_client_hello_was_missed():
    out = run([("data", SERVER, records(SH), 5), ("close", "fin", 7)])
    assert len(out) == 1 and out[0][1]["client_hello"] is None and out[0][1]["ts"] == 0.0


def test_oversized_handshake_message_is_bounded():
    huge = bytes([1]) + (MAX_HANDSHAKE + 1).to_bytes(3, "big")
    out = run([("data", CLIENT, records(huge + b"\x00" * 100), 1), ("close", "fin", 2)])
    assert [(t, f["name"]) for t, f in out] == [("anomaly", "tls_buffer_limit")]


def test_malformed_hello_is_tagged_not_raised():
    bad = handshake(1, b"\x03\x03" + b"\x00" * 10)
    out = run([("data", CLIENT, records(bad), 1), ("data", SERVER, records(SH), 2)])
    # the pair is held while the handshake is followed (tls_session.py): out at the close
    assert [t for t, _ in out] == ["anomaly"]
    out = run(
        [("data", CLIENT, records(bad), 1), ("data", SERVER, records(SH), 2), ("close", "fin", 3)]
    )
    assert [t for t, _ in out] == ["anomaly", "tls"]
    assert out[0][1]["name"] == "tls_parse_error"
    assert out[1][1]["client_hello"] is None and out[1][1]["tags"] == ["parse_error"]


def test_non_tls_record_header_is_an_anomaly():
    out = run([("data", CLIENT, records(CH)[:5] + b"x", 1), ("data", CLIENT, b"\x99" * 20, 2)])
    assert out == []  # still waiting for the record's end
    out = run([("data", CLIENT, records(CH) + b"\x42" * 9, 1), ("close", "fin", 2)])
    assert [f["name"] for t, f in out if t == "anomaly"] == ["tls_record_invalid"]
    assert [f["tags"] for t, f in out if t == "tls"] == [["record_invalid"]]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 64))
def test_random_bytes_never_raise(blob: bytes, chunk: int):
    for prefix in (b"", records(CH)[:9], b"\x16\x03\x01\x01\x00\x01\x00\x00\xfc"):
        data = prefix + blob
        events = [("data", CLIENT, data[i : i + chunk], i) for i in range(0, len(data), chunk)]
        events += [("data", SERVER, blob, 10**6), ("close", "fin", 10**7)]
        run(events)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(CH) - 1), st.binary(min_size=1, max_size=8))
def test_corrupted_hellos_never_raise(at: int, junk: bytes):
    body = spec_hello()
    mutated = body[:at] + junk + body[at + len(junk) :]
    try:
        parse_client_hello(mutated)
    except ValueError:
        pass  # the documented failure: the decoder tags parse_error
    run([("data", CLIENT, records(handshake(1, mutated)), 1), ("close", "fin", 2)])


# ------------------------------------------------------------------ probe
def test_probe():
    probe = TlsDecoder.probe
    wire_ch, wire_sh = records(CH), records(SH)
    assert probe(CLIENT, wire_ch) is True and probe(SERVER, wire_sh) is True
    assert probe(CLIENT, wire_sh) is False and probe(SERVER, wire_ch) is False
    for n in (1, 2):
        assert probe(CLIENT, wire_ch[:n]) is None
    for n in (3, 4, 5):  # the record header's start is enough (Zeek's signature, Suricata)
        assert probe(CLIENT, wire_ch[:n]) is True
    assert probe(CLIENT, b"") is None
    assert probe(CLIENT, b"GET / HTTP/1.1\r\n") is False
    assert probe(SERVER, b"220 mx ESMTP\r\n") is False
    assert probe(CLIENT, b"\x16\x03\x09\x00\x10\x01") is False  # no such version
    # The record length is not part of the signature: the decoder reports a bad record.
    assert probe(CLIENT, b"\x16\x03\x01\xff\xff\x01") is True


# ------------------------------------------------------------------ STARTTLS
SMTP_FLOW = FlowInfo("Csmtp", "tcp", Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 25))


def smtp(*steps: tuple[int, bytes]) -> list[Event]:
    return [("data", d, data, i * 1000) for i, (d, data) in enumerate(steps)] + [
        ("close", "fin", 10**9)
    ]


def test_starttls_after_pipelined_commands_and_a_refusal():
    events = smtp(
        (SERVER, b"220 mx ESMTP ready\r\n"),
        (CLIENT, b"EHLO a\r\nSTARTTLS\r\n"),
        (SERVER, b"250-mx\r\n250 STARTTLS\r\n"),
        (SERVER, b"454 4.7.0 TLS not available now\r\n"),
        (CLIENT, b"NOOP\r\nSTARTTLS\r\n"),
        (SERVER, b"250 ok\r\n220 2.0.0 go ahead\r\n"),
        (CLIENT, records(CH)),
        (SERVER, records(SH)),
    )
    for restore in (False, True):
        recs = tls_records(run(events, flow=SMTP_FLOW, restore_every=restore))
        assert len(recs) == 1 and recs[0]["tags"] == ["starttls"]
        assert recs[0]["ts"] == 6e-6 and recs[0]["server_hello"] is not None


def test_smtp_without_starttls_gives_nothing():
    events = smtp(
        (SERVER, b"220 mx ESMTP\r\n"),
        (CLIENT, b"EHLO a\r\n"),
        (SERVER, b"250 mx\r\n"),
        (CLIENT, b"MAIL FROM:<a@b>\r\n"),
        (CLIENT, b"STARTTLS\r\n"),  # after MAIL: not followed any more
        (SERVER, b"220 go\r\n"),
        (CLIENT, records(CH)),
    )
    assert run(events, flow=SMTP_FLOW) == []


def test_plain_traffic_on_other_ports_is_ignored():
    assert run([("data", CLIENT, b"hello\r\n", 1), ("close", "fin", 2)]) == []


# ------------------------------------------------------------------ state, real flows
@pytest.mark.parametrize("name", TLS_CAPTURES)
def test_restore_at_every_event_of_real_flows(name: str):
    flows = harness.recorded_flows(PCAPS / name, TlsDecoder)
    assert flows or name in KNOWN_DIFFERENCES or name in TUNNELED  # TLS decoder alone
    for flow, events in flows.values():
        assert run(events, flow=flow, restore_every=True) == run(events, flow=flow)


@pytest.mark.parametrize("name", ["zeek__tls__hrr.pcap", "zeek__tls__smtp-starttls.pcap"])
def test_task_restored_at_every_packet_emits_the_same_bytes(name: str, tmp_path: Path):
    packets = keyed_packets(name)
    reference = run_task(packets, tmp_path / "ref", set(), decoders=["tls"])
    assert any(b'"type":"tls"' in r for r in reference)
    every = set(range(1, len(packets)))
    assert run_task(packets, tmp_path / "every", every, decoders=["tls"]) == reference
