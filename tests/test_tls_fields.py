"""TLS record fields of issue 15: the negotiated version, cipher and ALPN against tshark's
ServerHellos, the certificates against tshark's X.509 dissection (fingerprint, serial,
subject, issuer, validity, SANs), `established` against the encrypted Finished messages
tshark sees, JA4S against FoxIO's published example, and resumption, alerts and client
certificates on hand-made handshakes (oracles: fixtures/pcaps/oracles/*/tls_fields_tshark.jsonl
and x509_tshark.jsonl, made by tests/field_oracles.py)."""

from __future__ import annotations

import datetime
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.test_tls import (
    CH,
    SH,
    client_hello_body,
    handshake,
    records,
    run,
    server_hello_body,
)
from wirestream.decoders.api import CLIENT, SERVER
from wirestream.decoders.tls_cert import parse_certificate_message
from wirestream.decoders.tls_hello import ja4s
from wirestream.decoders.tls_names import CIPHER_NAMES, cipher_name, version_name
from wirestream.decoders.tls_session import Session
from wirestream.decoders.tls_stream import EV_ALERT, EV_APPDATA, EV_CCS, EV_ENCRYPTED
from wirestream.streams.replay import replay_records

PCAPS = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
ORACLES = PCAPS / "oracles"


def _rows(name: str, file: str) -> list[dict]:
    path = ORACLES / name / file
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _one(row: dict, key: str) -> str | None:
    v = row.get(key)
    return v[0] if v else None


TLS_CAPTURES = sorted(
    p.parent.name
    for p in ORACLES.glob("*/tls_fields_tshark.jsonl")
    if p.parent.name != "zeek__http__connect-with-header.pcap"  # TLS in a CONNECT tunnel
)
CERT_CAPTURES = sorted(p.parent.name for p in ORACLES.glob("*/x509_tshark.jsonl"))
_REPLAYS: dict[str, list[dict]] = {}


def tls_records(name: str) -> list[dict]:
    if name not in _REPLAYS:
        recs = replay_records([str(PCAPS / name)], decoders=["tls"])
        _REPLAYS[name] = [r for r in recs if r["type"] == "tls"]
    return _REPLAYS[name]


def _server_hellos(name: str) -> Counter:
    """(server ip, port, version name, cipher name, ALPN) of every ServerHello tshark saw,
    HelloRetryRequests included (their records carry the HRR's parameters)."""
    out: Counter = Counter()
    for r in _rows(name, "tls_fields_tshark.jsonl"):
        if "2" not in r.get("tls.handshake.type", []):
            continue
        sv = _one(r, "tls.handshake.extensions.supported_version")
        version = int(sv or _one(r, "tls.handshake.version"), 16)
        cipher = int(_one(r, "tls.handshake.ciphersuite"), 16)
        src = _one(r, "ip.src") or _one(r, "ipv6.src")
        port = int(_one(r, "tcp.srcport"))
        alpn = _one(r, "tls.handshake.extensions_alpn_str")
        out[(src, port, version_name(version), CIPHER_NAMES[cipher], alpn)] += 1
    return out


@pytest.mark.parametrize("name", TLS_CAPTURES)
def test_negotiated_parameters_match_tshark(name: str) -> None:
    want = _server_hellos(name)
    got = Counter(
        (r["server"]["ip"], r["server"]["port"], r["version"], r["cipher"], r["alpn"])
        for r in tls_records(name)
        if r["server_hello"] is not None
    )
    if name == "zeek__tls__hrr.pcap":
        # tshark's default run misses the second ServerHello (test_tls.py's known difference)
        assert not (want - got) and sum((got - want).values()) == 1
    else:
        assert got == want


def test_alpn_is_compared_somewhere() -> None:
    assert any(k[4] for name in TLS_CAPTURES for k in _server_hellos(name))


_RDN = {
    "id-at-commonName": "CN",
    "id-at-organizationName": "O",
    "id-at-organizationalUnitName": "OU",
    "id-at-localityName": "L",
    "id-at-stateOrProvinceName": "ST",
    "id-at-countryName": "C",
    "id-at-streetAddress": "STREET",
    "id-at-postalCode": "2.5.4.17",  # cryptography prints no short name for postalCode
}


def _rfc4514(text: str | None) -> str | None:
    """tshark's `id-at-commonName=x,id-at-countryName=y` as RFC 4514 (same RDN order);
    None when an attribute has no RFC 4514 short name here (those are not compared)."""
    if text is None:
        return None
    parts: list[list[str]] = []
    for seg in text.split(","):
        if "=" in seg and seg.split("=", 1)[0] in _RDN:
            parts.append(seg.split("=", 1))
        elif parts and "=" not in seg:  # a comma inside a value
            parts[-1][1] += "," + seg
        else:
            return None
    esc = str.maketrans({",": "\\,", "+": "\\+", '"': '\\"', "\\": "\\\\", ";": "\\;"})
    return ",".join(f"{_RDN[k]}={v.translate(esc)}" for k, v in parts)


def _utc(text: str) -> int:
    dt = datetime.datetime.strptime(text.removesuffix(" (UTC)"), "%Y-%m-%d %H:%M:%S")
    return int(dt.replace(tzinfo=datetime.UTC).timestamp())


@pytest.mark.parametrize("name", CERT_CAPTURES)
def test_certificates_match_tshark(name: str) -> None:
    want = _rows(name, "x509_tshark.jsonl")
    ours = [c for r in tls_records(name) for c in r["server_certificates"]]
    assert len(ours) == len(want)
    by_fp = {c["sha256"]: c for c in ours}
    for w in want:
        c = by_fp[w["sha256"]]  # the fingerprint of the DER tshark shows
        assert int(c["serial"], 16) == int(w["serial"], 16)
        assert [c["not_before"], c["not_after"]] == [_utc(t) for t in w["validity"]]
        assert c["san_dns"] == w["san_dns"]
        for ours_name, theirs in ((c["subject"], w["subject"]), (c["issuer"], w["issuer"])):
            expected = _rfc4514(theirs)
            if expected is not None and len(theirs) >= 200:
                # tshark cuts long labels: the text it shows must start ours
                assert ours_name.startswith(expected)
            elif expected is not None:
                assert ours_name == expected
            else:  # an attribute without a short name: the CN at least
                cn = theirs.split("id-at-commonName=", 1)[1].split(",id-at-", 1)[0]
                assert f"CN={cn}" in ours_name


@pytest.mark.parametrize("name", TLS_CAPTURES)
def test_established_when_both_sides_change_cipher_spec(name: str) -> None:
    """TLS <= 1.2: established once both sides sent ChangeCipherSpec (content type 20 in
    tshark's records) and an encrypted record followed (the Finished, in the same flight)."""
    rows = _rows(name, "tls_fields_tshark.jsonl")
    recs = [r for r in tls_records(name) if r["server_hello"] is not None]
    final = [r for r in recs if not r["server_hello"]["hello_retry_request"]]
    if any(r["version"] == "TLSv13" for r in final):
        assert all(r["established"] for r in final)  # the captures' 1.3 handshakes complete
        return
    senders = {
        (_one(r, "ip.src"), _one(r, "tcp.srcport"))
        for r in rows
        if "20" in r.get("tls.record.content_type", [])
    }
    assert final
    for r in final:
        both = {
            (r["client"]["ip"], str(r["client"]["port"])),
            (r["server"]["ip"], str(r["server"]["port"])),
        }
        assert r["established"] == both.issubset(senders)


def test_ja4s_published_example() -> None:
    # FoxIO technical_details/JA4S.md: TLS 1.2, extensions 0005,0017,ff01,0000, cipher c030
    assert ja4s(0x0303, 0xC030, [0x0005, 0x0017, 0xFF01, 0x0000], b"") == (
        "t120400_c030_4e8089b08790"
    )


def test_ja4s_hand_computed_tls13_with_alpn() -> None:
    # Derivation: t + "13" (supported_versions 0x0304) + "03" (three extensions) + "h2"
    # (ALPN chosen: first and last character) _ "1301" _ the first 12 hex digits of
    # sha256("002b,0033,0010") (extensions in wire order, 4-digit lower-case hex).
    want_c = hashlib.sha256(b"002b,0033,0010").hexdigest()[:12]
    assert ja4s(0x0304, 0x1301, [0x002B, 0x0033, 0x0010], b"h2") == f"t1303h2_1301_{want_c}"
    # order matters (no sorting in JA4S)
    assert ja4s(0x0304, 0x1301, [0x0033, 0x002B], b"") != ja4s(
        0x0304, 0x1301, [0x002B, 0x0033], b""
    )


def test_names() -> None:
    # RFC 8446 B.4, RFC 5289 3.2, RFC 5246 A.5 (IANA registry entries)
    assert cipher_name(0x1301) == "TLS_AES_128_GCM_SHA256"
    assert cipher_name(0xC02F) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert cipher_name(0x002F) == "TLS_RSA_WITH_AES_128_CBC_SHA"
    assert cipher_name(0xCC13) == "unknown-52243"  # pre-standard ChaCha: not in IANA's registry
    assert version_name(0x0303) == "TLSv12" and version_name(0x7F1C) == "TLSv13-draft28"


# ------------------------------------------------------------------ hand-made handshakes
def _tls12_pair(session_id_echo: bool = True, client_exts: list[bytes] | None = None):
    ch = handshake(1, client_hello_body([0xC02F], client_exts or []))
    sh_body = server_hello_body(0xC02F, [])
    if not session_id_echo:
        sh_body = sh_body[:34] + b"\x20" + b"\x33" * 32 + sh_body[67:]
    return ch, handshake(2, sh_body)


def test_alert_after_client_hello() -> None:
    alert = records(b"\x02\x28", ctype=21)  # fatal handshake_failure
    out = run([("data", CLIENT, records(CH), 1), ("data", SERVER, alert, 2)])
    (tls,) = [f for t, f in out if t == "tls"]
    assert tls["server_hello"] is None and not tls["established"]
    assert tls["alerts"] == [
        {
            "from": "server",
            "level": 2,
            "level_name": "fatal",
            "description": 40,
            "description_name": "handshake_failure",
        }
    ]


def test_fatal_alert_after_server_hello_ends_the_record() -> None:
    ch, sh = _tls12_pair(session_id_echo=False)
    alert = records(b"\x02\x2a", ctype=21)  # bad_certificate, from the client
    out = run(
        [
            ("data", CLIENT, records(ch), 1),
            ("data", SERVER, records(sh), 2),
            ("data", CLIENT, alert, 3),
        ],
        restore_every=True,
    )
    (tls,) = [f for t, f in out if t == "tls"]
    assert [a["description_name"] for a in tls["alerts"]] == ["bad_certificate"]
    assert tls["alerts"][0]["from"] == "client"
    assert not tls["established"] and not tls["resumed"]


def _finish(direction: int) -> list:
    ccs = records(b"\x01", ctype=20)
    fin = records(b"\x99" * 40)  # an encrypted Finished
    return [("data", direction, ccs + fin, 10 + direction)]


def test_tls12_resumption_by_session_id_and_established() -> None:
    ch, sh = _tls12_pair(session_id_echo=True)
    events = [("data", CLIENT, records(ch), 1), ("data", SERVER, records(sh), 2)]
    events += _finish(SERVER) + _finish(CLIENT)
    out = run(events, restore_every=True)
    (tls,) = [f for t, f in out if t == "tls"]
    assert tls["resumed"] and tls["established"]
    assert tls["version"] == "TLSv12" and tls["cipher"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"


def test_full_handshake_with_client_certificate() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client.test")])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0xABCDEF)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("client.test"), x509.RFC822Name("a@b.c")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    chain = len(der).to_bytes(3, "big") + der
    cert_msg = handshake(11, len(chain).to_bytes(3, "big") + chain)
    ch, sh = _tls12_pair(session_id_echo=False)
    events = [("data", CLIENT, records(ch), 1), ("data", SERVER, records(sh), 2)]
    cke = handshake(16, b"\x41" + b"\x04" * 65)
    events.append(("data", CLIENT, records(cert_msg + cke, size=100), 3))  # split records
    events += _finish(CLIENT)
    out = run(events, restore_every=True)
    assert [t for t, _ in out] == []  # the server has not finished: held
    out = run([*events, *_finish(SERVER)])
    (tls,) = [f for t, f in out if t == "tls"]
    assert tls["established"] and not tls["resumed"] and tls["server_certificates"] == []
    (c,) = tls["client_certificates"]
    assert c["subject"] == "CN=client.test" and c["serial"] == "ABCDEF"
    assert c["san_dns"] == ["client.test"] and c["san_email"] == ["a@b.c"]
    assert c["not_before"] == int(now.timestamp()) and c["key_type"] == "ecdsa"
    assert c["key_length"] == 256


def test_ticket_resumption_and_psk() -> None:
    s = Session({"session_id": "", "ticket": True, "psk": False}, {"version": 0x0303})
    s.on_event(CLIENT, EV_CCS, b"")  # CCS with no ClientKeyExchange before it
    assert s.resumed
    s = Session({"session_id": "", "ticket": True}, {"version": 0x0303})
    s.on_message(CLIENT, 16, b"")
    s.on_event(CLIENT, EV_CCS, b"")
    assert not s.resumed  # a full handshake that also offered a ticket
    s = Session({"psk": True, "session_id": "ab" * 32}, {"psk": True, "version": 0x0304})
    assert s.resumed  # TLS 1.3: the server accepted the PSK (a session id echo is not one)
    s = Session({"session_id": "ab" * 32}, {"session_id": "ab" * 32, "version": 0x0304})
    assert not s.resumed
    s = Session({"session_id": "00" * 32}, {"session_id": "00" * 32, "version": 0x0303})
    assert not s.resumed  # an all-zero id is no session (Zeek's rule)


def test_tls13_established_by_application_data() -> None:
    s = Session({}, {"version": 0x0304})
    s.on_event(SERVER, EV_APPDATA, b"")
    s.on_event(SERVER, EV_APPDATA, b"")
    assert not s.established
    s.on_event(CLIENT, EV_ENCRYPTED, b"")  # not application data: no change of state
    assert not s.established
    s.on_event(CLIENT, EV_APPDATA, b"")
    assert s.established and s.over
    s = Session({}, {"version": 0x0304})
    s.on_event(SERVER, EV_ALERT, b"\x01\x00")  # warning close_notify: not over
    assert not s.over and s.alerts[0]["description_name"] == "close_notify"


def test_certificate_message_framing() -> None:
    assert parse_certificate_message(b"\x00\x00\x00") == []
    with pytest.raises(ValueError):
        parse_certificate_message(b"\x00\x00\x05\x00\x00\x09ab")
    (bad,) = parse_certificate_message(b"\x00\x00\x05\x00\x00\x02\x30\x00")
    assert "error" in bad and len(bad["sha256"]) == 64


def test_unparsable_server_hello_gives_null_parameters() -> None:
    bad = handshake(2, b"\x03\x03")  # a ServerHello cut short
    out = run(
        [("data", CLIENT, records(CH), 1), ("data", SERVER, records(bad), 2), ("close", "fin", 3)]
    )
    (tls,) = [f for t, f in out if t == "tls"]
    assert tls["server_hello"] is None and tls["version"] is None and tls["cipher"] is None


def test_sh_fixture_is_tls13() -> None:
    out = run(
        [("data", CLIENT, records(CH), 1), ("data", SERVER, records(SH), 2), ("close", "fin", 3)]
    )
    (tls,) = [f for t, f in out if t == "tls"]
    assert tls["version"] == "TLSv13" and tls["cipher"] == "TLS_AES_128_GCM_SHA256"
    assert tls["ja4s"] == ja4s(0x0304, 0x1301, [43], b"") and tls["server_certificates"] == []
