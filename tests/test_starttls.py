"""In-place TLS upgrades (decoders/tls_starttls.py + the rules in tls_starttls_rules.py).

Real captures: fixtures/pcaps/own_starttls_<protocol>.pcap, recorded on loopback by
tools/make_starttls_captures.sh (openssl s_client -starttls, Python's mail and FTP clients,
psql; against a small server, and Debian's Dovecot for IMAP and POP3); each hello is compared
with what tshark dissected in the same capture (oracles/<capture>/tls_tshark.jsonl, written by
tools/starttls_oracle.py). Synthetic dialogues cover what the captures do not: refusals,
pipelining, the give-up points, bounds, any segmentation and a restore after every event.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import fuzz
from tests.test_tls import CH, SH, records, run, tls_records
from wirestream import testing as harness
from wirestream.decoders.api import CLIENT, SERVER, Endpoint, FlowInfo, ts_seconds
from wirestream.decoders.tls_starttls import HEAD, MAX_PENDING, MAX_SCAN, StartTls
from wirestream.decoders.tls_starttls_rules import BY_NAME, LDAP_STARTTLS_OID, RULES

PCAPS = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
PROTOCOLS = [rule.name for rule in RULES]


# ------------------------------------------------------------------ real captures vs tshark
def _oracle(name: str) -> list[dict]:
    path = PCAPS / "oracles" / name / "tls_tshark.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _us(ts: str) -> Decimal:
    """tshark's epoch text, cut to whole microseconds like our records' `ts`."""
    return Decimal(ts).quantize(Decimal("0.000001"), rounding="ROUND_DOWN")


def _expected(name: str) -> Counter:
    hellos = Counter()
    for h in _oracle(name):
        a, b = (h["src"], h["sport"]), (h["dst"], h["dport"])
        if h["type"] == "client_hello":
            key = (a, b, h["version"], h["sni"], tuple(h["cipher_suites"]))
            hellos[("ch", *key, tuple(h["supported_versions"]), tuple(h["alpn"]), h["ja3"])] += 1
            hellos[("ts", a, b, _us(h["ts_first"]))] += 1  # when the hello began
        else:
            (suite,) = h["cipher_suites"]
            versions = tuple(h["supported_versions"])
            hellos[("sh", b, a, h["version"], suite, versions, h["ja3s"])] += 1
    return hellos


def _ours(recs: list[dict]) -> Counter:
    hellos = Counter()
    for r in recs:
        c, s = (r["client"]["ip"], r["client"]["port"]), (r["server"]["ip"], r["server"]["port"])
        ch, sh = r["client_hello"], r["server_hello"]
        if ch:
            key = (c, s, ch["version"], ch["sni"], tuple(ch["cipher_suites"]))
            hellos[("ch", *key, tuple(ch["supported_versions"]), tuple(ch["alpn"]), ch["ja3"])] += 1
            hellos[("ts", c, s, Decimal(str(r["ts"])))] += 1
        if sh:
            sel = sh["selected_version"]
            versions = (sel,) if sel else ()
            key = (c, s, sh["version"], sh["cipher_suite"], versions, sh["ja3s"])
            hellos[("sh", *key)] += 1
    return hellos


# capture -> the rules its flows use (own_starttls_dovecot: a real server, Debian's Dovecot)
CAPTURES = {f"own_starttls_{p}.pcap": (p,) for p in PROTOCOLS}
CAPTURES["own_starttls_dovecot.pcap"] = ("imap", "pop3")
# a real PostgreSQL 15 server: its key-share preference makes OpenSSL's clients go through a
# HelloRetryRequest after the upgrade (two hello pairs per flow)
CAPTURES["own_starttls_pgserver.pcap"] = ("postgres",)
CAPTURES["own_starttls_vsftpd.pcap"] = ("ftp",)  # vsftpd 3.0: a HelloRetryRequest as well
CAPTURES["own_starttls_prosody.pcap"] = ("xmpp",)  # Prosody 0.12, STARTTLS required
CAPTURES["own_starttls_slapd.pcap"] = ("ldap",)  # OpenLDAP 2.5 (GnuTLS), ldapwhoami -ZZ


@pytest.mark.parametrize(("name", "protos"), CAPTURES.items())
def test_hellos_after_starttls_match_tshark(name: str, protos: tuple[str, ...]) -> None:
    from wirestream.streams.replay import replay_records

    out = replay_records([str(PCAPS / name)], decoders=["tls"])
    recs = [r for r in out if r["type"] == "tls"]
    expected = _expected(name)
    assert sum(n for k, n in expected.items() if k[0] == "ch") >= 1  # the oracle is not empty
    assert _ours(recs) == expected
    assert all(r["tags"] == ["starttls"] for r in recs)
    flows = [r for r in out if r["type"] == "flow"]
    assert flows and all(f["service"] == "tls" for f in flows)
    ports = {f["server"]["port"] for f in flows}
    assert all(any(port in BY_NAME[p].ports for p in protos) for port in ports)


@pytest.mark.parametrize("name", CAPTURES)
def test_real_dialogues_restored_at_every_event_and_cut_into_bytes(name: str) -> None:
    from wirestream.decoders.tls import TlsDecoder

    flows = harness.recorded_flows(PCAPS / name, TlsDecoder)
    assert flows
    for flow, events in flows.values():
        reference = run(events, flow=flow)
        assert tls_records(reference)
        assert run(events, flow=flow, restore_every=True) == reference
        assert run(_bytewise(events[:-3]) + events[-3:], flow=flow) == reference


def _bytewise(events: list) -> list:
    """Every data event cut into one-byte events at the same capture time."""
    out = []
    for e in events:
        if e[0] == "data":
            out += [("data", e[1], e[2][i : i + 1], e[3]) for i in range(len(e[2]))]
        else:
            out.append(e)
    return out


# ------------------------------------------------------------------ synthetic dialogues
def _flow(proto: str) -> FlowInfo:
    port = min(BY_NAME[proto].ports)
    return FlowInfo("Cst", "tcp", Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", port))


def _events(*steps: tuple[int, bytes]) -> list:
    return [("data", d, data, (i + 1) * 1000) for i, (d, data) in enumerate(steps)] + [
        ("close", "fin", 10**9)
    ]


HELLOS = ((CLIENT, records(CH)), (SERVER, records(SH)))


def _ber(tag: int, value: bytes, long_form: bool = False) -> bytes:
    n = len(value)
    length = b"\x84" + n.to_bytes(4, "big") if long_form else bytes([n])
    return bytes([tag]) + length + value


def _ldap(msgid: int, op: bytes, long_form: bool = False) -> bytes:
    return _ber(0x30, _ber(0x02, bytes([msgid])) + op, long_form)


LDAP_START = _ldap(1, _ber(0x77, _ber(0x80, LDAP_STARTTLS_OID)))
LDAP_WHOAMI = _ldap(1, _ber(0x77, _ber(0x80, b"1.3.6.1.4.1.4203.1.11.3")))
LDAP_BIND = _ldap(1, _ber(0x60, _ber(0x02, b"\x03") + _ber(0x04, b"") + _ber(0x80, b"")))
LDAP_BIND_OK = _ldap(1, _ber(0x61, _ber(0x0A, b"\x00") + _ber(0x04, b"") + _ber(0x04, b"")))


def _ldap_result(msgid: int, code: int, long_form: bool = False) -> bytes:
    result = _ber(0x0A, bytes([code])) + _ber(0x04, b"") + _ber(0x04, b"")
    return _ldap(msgid, _ber(0x78, result, long_form), long_form)


PG_SSL = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
PG_GSS = (8).to_bytes(4, "big") + (80877104).to_bytes(4, "big")
PG_STARTUP = (17).to_bytes(4, "big") + (196608).to_bytes(4, "big") + b"user\x00u\x00\x00"
XMPP_NS = b"urn:ietf:params:xml:ns:xmpp-tls"
XMPP_HEAD = b"<?xml version='1.0'?><stream:stream to='example.com' version='1.0'>"
XMPP_FEATURES = (
    b"<stream:stream from='example.com' id='1' version='1.0'><stream:features>"
    b"<starttls xmlns='" + XMPP_NS + b"'><required/></starttls></stream:features>"
)

# (protocol, dialogue up to the TLS bytes, whether TLS follows)
DIALOGUES = [
    ("smtp", [(SERVER, b"220 mx\r\n"), (CLIENT, b"EHLO a\r\nSTARTTLS\r\n"),
              (SERVER, b"250-mx\r\n250 STARTTLS\r\n220 go\r\n")], True),
    ("smtp", [(SERVER, b"220 mx\r\n"), (CLIENT, b"MAIL FROM:<a@b>\r\n"), (SERVER, b"250 ok\r\n"),
              (CLIENT, b"STARTTLS\r\n"), (SERVER, b"220 go\r\n")], False),
    ("imap", [(SERVER, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
              (CLIENT, b"a1 CAPABILITY\r\na2 STARTTLS\r\n"),
              (SERVER, b"* CAPABILITY IMAP4rev1 STARTTLS\r\na1 OK done\r\n"),
              (SERVER, b"a2 OK Begin TLS negotiation now\r\n")], True),
    ("imap", [(SERVER, b"* OK ready\r\n"), (CLIENT, b"x STARTTLS\r\n"), (SERVER, b"x NO later\r\n"),
              (CLIENT, b"y STARTTLS\r\n"), (SERVER, b"y OK go\r\n")], True),
    ("imap", [(SERVER, b"* OK ready\r\n"), (CLIENT, b"a1 LOGIN u p\r\n"), (SERVER, b"a1 OK\r\n"),
              (CLIENT, b"a2 STARTTLS\r\n"), (SERVER, b"a2 OK go\r\n")], False),
    ("imap", [(SERVER, b"* PREAUTH welcome\r\n"), (CLIENT, b"a1 STARTTLS\r\n"),
              (SERVER, b"a1 OK go\r\n")], False),
    ("pop3", [(SERVER, b"+OK ready\r\n"), (CLIENT, b"CAPA\r\n"),
              (SERVER, b"+OK caps\r\nSTLS\r\n.\r\n"), (CLIENT, b"STLS\r\n"),
              (SERVER, b"+OK Begin TLS\r\n")], True),
    ("pop3", [(SERVER, b"+OK ready\r\n"), (CLIENT, b"USER u\r\nPASS p\r\n"),
              (SERVER, b"+OK\r\n+OK\r\n"), (CLIENT, b"STLS\r\n"), (SERVER, b"+OK\r\n")], False),
    ("ftp", [(SERVER, b"220-Welcome\r\n plain text inside the greeting\r\n220 ready\r\n"),
             (CLIENT, b"AUTH TLS\r\n"), (SERVER, b"504 not now\r\n"), (CLIENT, b"AUTH SSL\r\n"),
             (SERVER, b"234 go\r\n")], True),
    ("ftp", [(SERVER, b"120 ready in 1 minute\r\n"), (SERVER, b"220 ready\r\n"),
             (CLIENT, b"AUTH TLS\r\n"), (SERVER, b"234 go\r\n")], True),  # preliminary 1yz
    ("ftp", [(SERVER, b"220 ready\r\n"), (CLIENT, b"LIST\r\n"), (SERVER, b"425 no\r\n"),
             (CLIENT, b"AUTH TLS\r\n"), (SERVER, b"234 go\r\n")], False),
    ("xmpp", [(CLIENT, XMPP_HEAD), (SERVER, XMPP_FEATURES),
              (CLIENT, b"<starttls xmlns='" + XMPP_NS + b"'/>"),
              (SERVER, b"<proceed xmlns='" + XMPP_NS + b"'/>")], True),
    ("xmpp", [(CLIENT, XMPP_HEAD), (SERVER, XMPP_FEATURES),
              (CLIENT, b"<starttls xmlns='" + XMPP_NS + b"'></starttls>"),
              (SERVER, b"<proceed xmlns='" + XMPP_NS + b"'></proceed>")], True),
    ("xmpp", [(CLIENT, XMPP_HEAD), (SERVER, XMPP_FEATURES),
              (CLIENT, b"<starttls xmlns='" + XMPP_NS + b"'/>"),
              (SERVER, b"<failure xmlns='" + XMPP_NS + b"'/></stream:stream>")], False),
    ("xmpp", [(CLIENT, XMPP_HEAD), (SERVER, XMPP_FEATURES),
              (CLIENT, b"<auth mechanism='PLAIN'>AGEAYg==</auth><starttls/>"),
              (SERVER, b"<proceed/>")], False),
    ("ldap", [(CLIENT, LDAP_START), (SERVER, _ldap_result(1, 0, long_form=True))], True),
    ("ldap", [(CLIENT, LDAP_BIND), (SERVER, LDAP_BIND_OK), (CLIENT, LDAP_WHOAMI + LDAP_START),
              (SERVER, _ldap_result(1, 0) + _ldap_result(1, 0))], True),
    ("ldap", [(CLIENT, LDAP_START), (SERVER, _ldap_result(1, 2))], False),
    ("ldap", [(CLIENT, LDAP_START), (SERVER, _ldap_result(0, 0))], False),  # a notice
    ("postgres", [(CLIENT, PG_SSL), (SERVER, b"S")], True),
    ("postgres", [(CLIENT, PG_GSS), (SERVER, b"N"), (CLIENT, PG_SSL), (SERVER, b"S")], True),
    ("postgres", [(CLIENT, PG_SSL), (SERVER, b"N"), (CLIENT, PG_STARTUP), (SERVER, b"S")], False),
    ("postgres", [(CLIENT, PG_STARTUP), (SERVER, b"R\x00\x00\x00\x08\x00\x00\x00\x00")], False),
]  # fmt: skip


@pytest.mark.parametrize(("proto", "steps", "upgrades"), DIALOGUES)
def test_dialogues(proto: str, steps: list, upgrades: bool) -> None:
    events = _events(*steps, *HELLOS)
    flow = _flow(proto)
    reference = run(events, flow=flow)
    recs = tls_records(reference)
    if not upgrades:
        assert recs == []
        return
    assert len(recs) == 1 and recs[0]["tags"] == ["starttls"]
    assert recs[0]["server_hello"] is not None
    assert recs[0]["ts"] == ts_seconds((len(steps) + 1) * 1000)  # the ClientHello's time
    assert run(events, flow=flow, restore_every=True) == reference
    assert run(_bytewise(events), flow=flow) == reference
    # The client's hello sent with its request (no wait for the answer) is held, then TLS.
    last_client = max(i for i, (d, _) in enumerate(steps) if d == CLIENT)
    together = list(steps)
    together[last_client] = (CLIENT, steps[last_client][1] + records(CH))
    merged = _events(*together, (SERVER, records(SH)))
    assert len(tls_records(run(merged, flow=flow))) == 1


def test_every_rule_names_its_rfc_and_ports() -> None:
    for rule in RULES:
        assert rule.ports and rule.client.__doc__
        assert "RFC" in rule.client.__doc__ or "PostgreSQL" in rule.client.__doc__


# ------------------------------------------------------------------ bounds
def test_line_heads_stay_short() -> None:
    s = StartTls(BY_NAME["smtp"])
    s.feed(SERVER, b"220 mx\r\n")
    for _ in range(100):
        s.feed(CLIENT, b"X" * 1000)
    assert len(s.snapshot()["framers"][0][0]) == HEAD and not s.abandoned


def test_held_client_bytes_are_capped() -> None:
    s = StartTls(BY_NAME["imap"])
    s.feed(SERVER, b"* OK\r\n")
    s.feed(CLIENT, b"a STARTTLS\r\n")
    s.feed(CLIENT, b"\x16" * MAX_PENDING)
    assert not s.abandoned
    s.feed(CLIENT, b"\x16")
    assert s.abandoned and s.feed(SERVER, b"a OK\r\n") is None
    assert s.unanswered


def test_an_unanswered_request_is_reported() -> None:
    flow = _flow("imap")
    big = b"\x17\x03\x03\x40\x00" + b"\x00" * 0x4000
    steps = [(SERVER, b"* OK\r\n"), (CLIENT, b"a STARTTLS\r\n")] + [(CLIENT, big)] * 4
    out = run(_events(*steps, (SERVER, b"a OK\r\n"), *HELLOS), flow=flow)
    assert [(t, f["name"]) for t, f in out] == [("anomaly", "tls_starttls_unanswered")]
    assert out[0][1]["detail"] == "imap: no answer to the request"


def test_plaintext_is_scanned_up_to_a_bound() -> None:
    s = StartTls(BY_NAME["ldap"])
    big = _ldap(2, _ber(0x64, b"\x04\x00" + b"\x00" * 100), long_form=True)  # search entries
    while not s.abandoned:
        s.feed(SERVER, big)
        assert s.snapshot()["scanned"][SERVER] <= MAX_SCAN + len(big)
    assert s.abandoned


def test_a_gap_ends_the_dialogue() -> None:
    flow = _flow("imap")
    events = [
        ("data", SERVER, b"* OK\r\n", 1),
        ("gap", CLIENT, 10, 2),
        ("data", CLIENT, b"a STARTTLS\r\n", 3),
        ("data", SERVER, b"a OK\r\n", 4),
        *[("data", d, b, 5 + i) for i, (d, b) in enumerate(HELLOS)],
    ]
    assert run(events, flow=flow) == []


def test_a_version_1_snapshot_of_an_smtp_dialogue_goes_on() -> None:
    """Flows saved by the SMTP-only version (TLS snapshot "v": 1) keep their dialogue."""
    from wirestream.decoders.tls import PLAIN, TlsDecoder

    flow = _flow("smtp")
    ctx = harness.FakeContext(flow)
    dec = TlsDecoder(ctx, {})
    for e in _events((SERVER, b"220 mx\r\n"), (CLIENT, b"EHLO a\r\nSTARTTLS\r\n"))[:-1]:
        harness.apply(dec, ctx, e)
    state = dec.snapshot()
    assert state["mode"] == PLAIN and state["upgrade"]["request_at"] == 2
    v1 = {k: v for k, v in state.items() if k != "upgrade"}
    v1.update(v=1, smtp=[2, 1, 2, [b"", b""], b"", 0])  # what the v1 decoder saved here
    restored = TlsDecoder.restore(ctx, {}, v1).snapshot()
    assert restored["upgrade"].pop("scanned") == [0, 0]  # v1 did not count: starts afresh
    state["upgrade"].pop("scanned")
    assert restored == state


# ------------------------------------------------------------------ hostile input
# Pieces every rule looks for, mixed with arbitrary bytes, so that the fuzzer reaches the
# dialogue states (requests, answers, refusals, give-up points) and not only "not this".
_PIECES = [
    b"\r\n", b"\n", b"220 ", b"220-", b"234 ", b"454 ", b"STARTTLS", b"STLS", b"AUTH TLS",
    b"a STARTTLS", b"a OK", b"a NO", b"* OK", b"* PREAUTH", b"+OK", b"-ERR", b"MAIL", b"PASS",
    b"LOGIN", b"<starttls/>", b"<proceed/>", b"<failure/>", b"</proceed>", b"<auth>", b"<", b">",
    LDAP_START, _ldap_result(1, 0), _ldap_result(1, 0, long_form=True), b"\x30\x84\xff\xff",
    b"\x30\x85", PG_SSL, PG_GSS, PG_STARTUP, b"S", b"N", b"G", records(CH)[:40], records(SH),
]  # fmt: skip


@fuzz(200)
@given(
    st.sampled_from(PROTOCOLS),
    st.lists(
        st.tuples(
            st.sampled_from([CLIENT, SERVER]),
            st.lists(st.one_of(st.sampled_from(_PIECES), st.binary(max_size=12)), max_size=6),
        ),
        max_size=10,
    ),
)
def test_arbitrary_dialogues_never_raise_and_restore_exactly(proto: str, steps: list) -> None:
    events = _events(*[(d, b"".join(parts)) for d, parts in steps])
    flow = _flow(proto)
    reference = run(events, flow=flow)
    assert run(events, flow=flow, restore_every=True) == reference
    assert run(_bytewise(events), flow=flow) == reference
