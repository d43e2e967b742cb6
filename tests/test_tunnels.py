"""What follows a successful CONNECT or Upgrade goes through protocol detection again: HTTP
inside a tunnel is decoded as its own transactions, TLS is recognised from its record header.

fixtures/pcaps/own_connect_tunnels.pcap (tools/make_tunnel_captures.sh) records curl through a
CONNECT proxy (plain HTTP with -p, and https), a ClientHello whose first segment holds 3 bytes,
and suricata-verify's http-connect-tls input (a record header with length 0, then zeros), on
both legs: client <-> proxy (3128) and proxy <-> HTTPS server (18443, the same TLS bytes with no
tunnel around them). tshark's hellos and requests in it are the oracle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_http_switch import ESTABLISHED, flights, of, replay  # noqa: F401 - fixture
from tests.test_starttls import _expected, _ours
from wirestream.decoders.api import CLIENT, SERVER
from wirestream.decoders.tls import TlsDecoder
from wirestream.streams.replay import replay_records

PCAPS = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
NAME = "own_connect_tunnels.pcap"
PROXY, UPSTREAM = 3128, 18443


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return replay_records([str(PCAPS / NAME)], decoders=["http", "tls", "dns"])


def _oracle(file: str) -> list[dict]:
    text = (PCAPS / "oracles" / NAME / file).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_hellos_inside_tunnels_match_tshark(records: list[dict]) -> None:
    tls = of(records, "tls")
    expected = _expected(NAME)
    assert sum(1 for k in expected if k[0] == "ch" and k[2][1] == PROXY) >= 2
    assert _ours(tls) == expected  # both legs, the tunnelled one and the relayed copy


def test_every_tunnelled_hello_is_the_relayed_one(records: list[dict]) -> None:
    """Inside the tunnel we see what the proxy relays: the same ClientHello (JA3, SNI, suites)
    as tshark dissects on the proxy -> server leg, where no tunnel hides it."""
    relayed = {
        (h["ja3"], h["sni"], tuple(h["cipher_suites"]))
        for h in _oracle("tls_tshark.jsonl")
        if h["type"] == "client_hello" and h["dport"] == UPSTREAM
    }
    tunnelled = [r["client_hello"] for r in of(records, "tls") if r["server"]["port"] == PROXY]
    assert len(tunnelled) == len(relayed) == 2
    for ch in tunnelled:
        assert (ch["ja3"], ch["sni"], tuple(ch["cipher_suites"])) in relayed


def test_http_inside_a_tunnel_is_its_own_transaction(records: list[dict]) -> None:
    """tshark decodes the GET sent through `curl -p`'s tunnel as an HTTP request; so do we,
    after the CONNECT, on the same connection."""
    requests = [
        (m["sport"], m["method"], m["uri"])
        for m in _oracle("http_tshark.jsonl")
        if m.get("method") and m["dport"] == PROXY
    ]
    ours = [
        (r["client"]["port"], r["request"]["method"], r["request"]["uri"])
        for r in of(records, "http")
        if r["request"]
    ]
    assert sorted(ours) == sorted(requests)
    inner = [r for r in of(records, "http") if r["request"]["method"] == "GET"]
    assert len(inner) == 1 and inner[0]["response"]["status"] == 200
    flows = {f["client"]["port"]: f["service"] for f in of(records, "flow")}
    assert flows[inner[0]["client"]["port"]] == "http,http"


def test_a_short_record_start_makes_the_tunnel_tls(records: list[dict]) -> None:
    """suricata-verify http-connect-tls expects app_proto tls (app_proto_orig http) for a
    tunnel carrying 16 03 00 00 00 and zeros: every CONNECT flow to the HTTPS port here ends
    up with the TLS decoder, the short one included; its bad second header is reported, in the
    tunnel and on the relayed leg (where nothing precedes the record)."""
    tunnels = [f for f in of(records, "flow") if f["server"]["port"] == PROXY]
    services = sorted(f["service"] for f in tunnels)
    assert services == ["http,http", "http,tls", "http,tls", "http,tls"]
    bad = {a["uid"] for a in of(records, "anomaly") if a["name"] == "tls_record_invalid"}
    ports = sorted(f["server"]["port"] for f in of(records, "flow") if f["uid"] in bad)
    assert ports == [PROXY, UPSTREAM]


def test_probe_needs_only_the_record_header() -> None:
    probe = TlsDecoder.probe
    assert probe(CLIENT, b"\x16") is None and probe(CLIENT, b"\x16\x03") is None
    assert probe(CLIENT, b"\x16\x03\x01") is True and probe(SERVER, b"\x16\x03\x03") is True
    assert probe(CLIENT, b"\x16\x03\x00" + b"\x00" * 11) is True  # suricata-verify's input
    assert probe(CLIENT, b"\x17\x03\x03") is False and probe(CLIENT, b"\x16\x02\x00") is False


RFC2817 = (
    b"OPTIONS * HTTP/1.1\r\nHost: tunnel.test\r\nUpgrade: TLS/1.0\r\nConnection: Upgrade\r\n\r\n"
)
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: TLS/1.0, HTTP/1.1\r\nConnection: Upgrade\r\n\r\n"
)


def test_tls_after_an_upgrade_is_detected(flights, tmp_path: Path) -> None:  # noqa: F811
    """RFC 2817: Upgrade: TLS/1.0 and 101, then the handshake on the same connection."""
    from tests.flowgen import Conversation

    hello, server_flight = flights
    c = Conversation("10.9.0.1", "10.9.0.2", 41000, 80, mss=1460)
    c.handshake()
    c.send(True, RFC2817)
    c.send(False, SWITCHING)
    c.send(True, hello[:3])
    c.send(True, hello[3:])
    c.send(False, server_flight)
    recs = replay(c.close().frames, tmp_path)
    (http,) = of(recs, "http")
    assert http["response"]["status"] == 101 and "upgrade" in http["tags"]
    (tls,) = of(recs, "tls")
    assert tls["client_hello"]["sni"] == "tunnel.test" and tls["server_hello"] is not None
    assert of(recs, "flow")[0]["service"] == "http,tls"


def test_a_three_byte_tunnel_is_tls(tmp_path: Path) -> None:
    """Only a record header's start comes through the tunnel before the flow ends."""
    from tests.flowgen import Conversation

    c = Conversation("10.9.0.1", "10.9.0.2", 41000, 3128, mss=1460)
    c.handshake()
    c.send(True, b"CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n")
    c.send(False, ESTABLISHED)
    c.send(True, b"\x16\x03\x01")
    recs = replay(c.close().frames, tmp_path)
    assert of(recs, "flow")[0]["service"] == "http,tls"
