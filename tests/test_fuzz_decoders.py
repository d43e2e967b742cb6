"""Fuzzing the HTTP, TLS and DNS decoders through their public API with a fake context.

Inputs: the decoder event streams of the fixtures (extracted by the real reassembly engine),
mutated (bytes flipped, segments split and merged, data replaced by gaps, protocol-shaped
tokens spliced in); and streams built from protocol-shaped tokens. Every decoder gets every
stream, as a decoder attached by port would.

Contract: no method ever raises (the runtime would detach the decoder with a decoder_error
anomaly: a bug); at most 16 anomalies per name per flow; decoded bodies within the limit; and
a decoder snapshotted, msgpack'ed and restored at any event emits exactly what the original
does (the restore contract of docs/plugins.md).
"""

from __future__ import annotations

import gzip
import random
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import fuzz
from wirestream.decoders.api import CLIENT, SERVER, Endpoint, FlowInfo
from wirestream.decoders.dns import DnsDecoder
from wirestream.decoders.http import HttpDecoder
from wirestream.decoders.http.body import BodyDigest
from wirestream.decoders.tls import TlsDecoder
from wirestream.probe.capture import open_capture
from wirestream.probe.errors import CaptureError
from wirestream.probe.source import PacketSource
from wirestream.reassembly.limits import Limits
from wirestream.reassembly.tracker import FlowTracker

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "fixtures" / "pcaps").glob("*.pcap*"))
DECODERS = (HttpDecoder, TlsDecoder, DnsDecoder)
ANOMALY_CAP = 16

Event = tuple  # ("data", direction, bytes) | ("gap", direction, length)


class FakeCtx:
    """DecoderContext: records what the decoder emits, in order."""

    def __init__(self, transport: str, out: list | None = None) -> None:
        self.flow = FlowInfo(
            "Cfuzz", transport, Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 80)
        )
        self.ts_ns = 1_700_000_000_000_000_000
        self.out: list[tuple[str, dict[str, Any]]] = [] if out is None else out

    def emit(self, record_type: str, fields: dict[str, Any]) -> None:
        assert isinstance(record_type, str) and isinstance(fields, dict)
        self.out.append((record_type, fields))

    def anomaly(self, name: str, detail: str = "") -> None:
        assert isinstance(name, str) and isinstance(detail, str)
        self.out.append(("anomaly", {"name": name, "detail": detail}))


# ------------------------------------------------------------------ seeds from the fixtures
class _EventSink:
    def __init__(self, flow: Any, seeds: list) -> None:
        self.events: list[Event] = []
        self.flow = flow
        seeds.append(self)

    def on_data(self, direction: int, data: bytes) -> None:
        if sum(len(e[2]) for e in self.events if e[0] == "data") < 32_768:
            self.events.append(("data", direction, bytes(data)))

    def on_gap(self, direction: int, length: int) -> None:
        self.events.append(("gap", direction, length))

    def on_close(self, reason: str) -> None:
        pass

    def role_hint(self, data: bytes) -> int | None:
        return None

    def anomaly(self, name: str, detail: str) -> None:
        pass


def _seed_streams() -> list[tuple[str, list[Event]]]:
    """Every flow of every fixture as (transport, decoder events), through the real engine."""
    sinks: list[_EventSink] = []
    for path in FIXTURES:
        tracker = FlowTracker(Limits(), lambda f: _EventSink(f, sinks), lambda f: None,
                              lambda f, n, d: None)  # fmt: skip
        try:
            with open_capture(path) as cap:
                for kp in PacketSource().keyed(cap):
                    tracker.process(kp.packet, kp.key, kp.forward)
        except CaptureError:
            pass
        tracker.close_all("end_of_input")
    out = []
    for sink in sinks:
        transport = "tcp" if sink.flow.__class__.__name__ == "TcpFlow" else "udp"
        if sink.events:
            out.append((transport, sink.events))
    return out


SEEDS = _seed_streams()


def test_seeds_cover_every_decoder():
    """The seeds hold streams each decoder recognises (so mutations start from real input)."""
    for cls in DECODERS:
        assert any(cls.probe(e[1], e[2]) for _, events in SEEDS for e in events[:2]
                   if e[0] == "data")  # fmt: skip


# ------------------------------------------------------------------ protocol-shaped tokens
_GZ = gzip.compress(b"hello gzip world " * 40)
_DEFLATE = zlib.compress(b"deflated " * 30)
HTTP_TOKENS = [
    b"GET / HTTP/1.1\r\n", b"POST /up HTTP/1.1\r\n", b"HEAD / HTTP/1.0\r\n",
    b"GET / HTTP/1.0\r\n", b"CONNECT h:443 HTTP/1.1\r\n", b"OPTIONS * HTTP/1.1\r\n",
    b"GET /x\r\n", b"BREW / HTCPCP/1.0\r\n",
    b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n", b"HTTP/1.1 101 Switching\r\n",
    b"HTTP/1.0 204 No Content\r\n", b"http/1.1 304 Not Modified\r\n", b"HTTP/1.1 200\r\n",
    b"HTTP/1.1 999 ?\r\n", b"HTTP/2 200\r\n", b"Host: a\r\n", b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n", b"Content-Length: 18446744073709551616\r\n",
    b"Content-Length: -1\r\n", b"Content-Length: 5, 5\r\n", b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n", b"Transfer-Encoding : chunked\r\n",
    b"Content-Encoding: gzip\r\n", b"Content-Encoding: deflate\r\n",
    b"Content-Encoding: gzip, gzip\r\n", b"Content-Encoding: br\r\n", b"Connection: close\r\n",
    b"Connection: upgrade\r\nUpgrade: websocket\r\n", b"Expect: 100-continue\r\n",
    b" folded\r\n", b"X: y\r\n", b"Bad Header\r\n", b"\r\n", b"\n", b"\r\n\r\n", b"hello",
    b"5\r\nhello\r\n", b"0\r\n\r\n", b"0\r\nTrailer: t\r\n\r\n", b"ffffffffffffffffff\r\n",
    b"10000000000000000\r\n", b"5;ext=1\r\n", _GZ, _GZ[:10], _GZ[10:], _DEFLATE, b"\x00\xff",
]  # fmt: skip


def _tls_record(ct: int, body: bytes, version: int = 0x0301) -> bytes:
    return bytes([ct]) + version.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def _handshake(mtype: int, body: bytes) -> bytes:
    return bytes([mtype]) + len(body).to_bytes(3, "big") + body


_HELLO = (
    b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x04\x13\x01\x0a\x0a" + b"\x01\x00"
    + b"\x00\x0e" + b"\x00\x00\x00\x06\x00\x04\x00\x00\x01a" + b"\x00\x2b\x00\x00"
)  # fmt: skip
TLS_TOKENS = [
    _tls_record(22, _handshake(1, _HELLO)), _tls_record(22, _handshake(2, _HELLO)),
    _tls_record(22, _handshake(1, _HELLO))[:20], _tls_record(22, _handshake(0, b"")),
    _tls_record(22, _handshake(11, b"\x00" * 30)), _tls_record(20, b"\x01"),
    _tls_record(21, b"\x02\x28"), _tls_record(23, b"appdata"), _tls_record(22, b""),
    b"\x16\x03\x01\xff\xff", b"\x16\x03\x05\x00\x05", _handshake(1, _HELLO),
    b"220 smtp ready\r\n", b"EHLO x\r\n", b"STARTTLS\r\n", b"220 go ahead\r\n",
    b"454 not now\r\n", b"MAIL FROM:<a>\r\n", b"250-x\r\n250 ok\r\n",
]  # fmt: skip


def _dns_message(qr: int, qname: bytes, ancount: int, tail: bytes) -> bytes:
    flags = (qr << 15) | 0x0100
    return (b"\x12\x34" + flags.to_bytes(2, "big") + b"\x00\x01" + ancount.to_bytes(2, "big")
            + b"\x00\x00\x00\x00" + qname + b"\x00\x01\x00\x01" + tail)  # fmt: skip


DNS_TOKENS = [
    _dns_message(0, b"\x03www\x07example\x03com\x00", 0, b""),
    _dns_message(1, b"\x03www\x07example\x03com\x00", 1,
                 b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x04"),
    _dns_message(1, b"\xc0\x0c", 1, b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x02\xc0\x0c"),
    _dns_message(1, b"\x3f" + b"a" * 63 + b"\x00", 300, b"\xc0\x0c" * 10),
    _dns_message(0, b"\x01a" * 130 + b"\x00", 0, b""), b"\x00\x1d", b"\x00", b"\xff\xff",
]  # fmt: skip


def _token_events(tokens: list[bytes]):
    piece = st.one_of(
        st.lists(st.sampled_from(tokens), min_size=1, max_size=6).map(b"".join),
        st.binary(min_size=1, max_size=40),
    )
    event = st.one_of(
        st.tuples(st.just("data"), st.sampled_from([CLIENT, SERVER]), piece),
        st.tuples(st.just("data"), st.sampled_from([CLIENT, SERVER]), piece),
        st.tuples(st.just("data"), st.sampled_from([CLIENT, SERVER]), piece),
        st.tuples(
            st.just("gap"),
            st.sampled_from([CLIENT, SERVER]),
            st.sampled_from([1, 5, 100, 70_000, 1 << 31]),
        ),
    )
    return st.lists(event, min_size=1, max_size=25)


# ------------------------------------------------------------------ mutation of seeds
def mutate(events: list[Event], rng: random.Random, tokens: list[bytes]) -> list[Event]:
    out = list(events[:60])
    for _ in range(rng.randint(0, 6)):
        if not out:
            break
        i = rng.randrange(len(out))
        kind, direction, value = out[i]
        op = rng.randrange(7)
        if kind == "data" and op == 0 and value:  # flip bytes
            buf = bytearray(value)
            for _ in range(rng.randint(1, 4)):
                buf[rng.randrange(len(buf))] ^= rng.randint(1, 255)
            out[i] = (kind, direction, bytes(buf))
        elif kind == "data" and op == 1 and len(value) > 1:  # split
            k = rng.randrange(1, len(value))
            out[i : i + 1] = [(kind, direction, value[:k]), (kind, direction, value[k:])]
        elif kind == "data" and op == 2:  # lost
            out[i] = ("gap", direction, len(value) or 1)
        elif op == 3:  # spliced-in token
            out.insert(i, ("data", rng.randrange(2), rng.choice(tokens)))
        elif op == 4:
            del out[i]
        elif op == 5:  # direction swapped
            out[i] = (kind, 1 - direction, value)
        elif kind == "data" and op == 6 and value:  # truncated
            out[i] = (kind, direction, value[: rng.randrange(len(value))] or value[:1])
    return out


seeded_streams = st.tuples(
    st.sampled_from(SEEDS), st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2])
).map(
    lambda t: (
        t[0][0],
        mutate(t[0][1], random.Random(t[1]), (HTTP_TOKENS, TLS_TOKENS, DNS_TOKENS)[t[2]]),
    )
)

options_st = st.fixed_dictionaries(
    {},
    optional={
        "max_header_bytes": st.sampled_from([1024, 4096, 65536]),
        "max_headers": st.integers(1, 8),
        "max_pending": st.integers(1, 4),
        "max_decompressed": st.sampled_from([0, 10, 1000, 1 << 20]),
        "max_replay_bytes": st.sampled_from([1, 4096, 1 << 20]),
    },
)


# ------------------------------------------------------------------ driving a decoder
def _apply(dec: Any, ctx: FakeCtx, event: Event, i: int) -> None:
    ctx.ts_ns += 1000 * (i + 1)
    kind, direction, value = event
    if kind == "data":
        dec.on_data(direction, value)
    else:
        dec.on_gap(direction, value)


def drive(cls: type, transport: str, events: list[Event], options: dict,
          restore_at: int | None = None) -> list:  # fmt: skip
    """Feed the events then close; with restore_at, snapshot -> msgpack -> restore there."""
    ctx = FakeCtx(transport)
    dec = cls(ctx, options)
    for i, event in enumerate(events):
        if i == restore_at:
            blob = msgpack.packb(dec.snapshot(), use_bin_type=True)
            ts = ctx.ts_ns
            ctx = FakeCtx(transport, ctx.out)
            ctx.ts_ns = ts
            dec = cls.restore(ctx, options, msgpack.unpackb(blob, raw=False))
        _apply(dec, ctx, event, i)
    dec.on_close("end_of_input")
    dec.on_close("end_of_input")  # twice: harmless
    return ctx.out


def check_output(out: list, options: dict) -> None:
    names = Counter(f["name"] for t, f in out if t == "anomaly")
    assert "decoder_error" not in names
    assert all(n <= ANOMALY_CAP for n in names.values()), names
    limit = options.get("max_decompressed", 64 << 20)
    for t, f in out:
        if t == "http":
            for m in (f["request"], f["response"]):
                if m and m.get("decoded_body_len") is not None:
                    assert m["decoded_body_len"] <= limit


def _run_all(transport: str, events: list[Event], options: dict, restore_at: int) -> None:
    for cls in DECODERS:
        if transport not in cls.transports:
            continue
        out = drive(cls, transport, events, options)
        check_output(out, options)
        if cls is HttpDecoder and options.get("max_replay_bytes", 1 << 23) < 1 << 20:
            continue  # a restore past max_replay resumes at the next message (documented)
        at = restore_at % (len(events) + 1)
        again = drive(cls, transport, events, options, at)
        assert again == out, f"{cls.name}: restore at {at} differs"


@fuzz(1000)
@given(seeded_streams, options_st, st.integers(0, 1000))
def test_decoders_on_mutated_fixture_streams(stream, options, restore_at):
    transport, events = stream
    _run_all(transport, events, options, restore_at)


@fuzz(600)
@given(_token_events(HTTP_TOKENS), options_st, st.integers(0, 1000), st.sampled_from(["tcp"]))
def test_decoders_on_http_shaped_streams(events, options, restore_at, transport):
    _run_all(transport, events, options, restore_at)


@fuzz(400)
@given(_token_events(TLS_TOKENS), st.integers(0, 1000))
def test_decoders_on_tls_shaped_streams(events, restore_at):
    _run_all("tcp", events, {}, restore_at)


@fuzz(400)
@given(_token_events(DNS_TOKENS), st.integers(0, 1000), st.sampled_from(["tcp", "udp"]))
def test_decoders_on_dns_shaped_streams(events, restore_at, transport):
    if transport == "udp":
        events = [e for e in events if e[0] == "data"] or [("data", CLIENT, b"")]
    _run_all(transport, events, {}, restore_at)


@fuzz(500)
@given(st.sampled_from([CLIENT, SERVER]), st.one_of(
    st.binary(max_size=64),
    st.lists(st.sampled_from(HTTP_TOKENS + TLS_TOKENS + DNS_TOKENS), max_size=3).map(b"".join),
))  # fmt: skip
def test_probes_answer_true_false_or_none(direction, data):
    for cls in DECODERS:
        assert cls.probe(direction, data) in (True, False, None)


# ------------------------------------------------------------------ body decoding
@fuzz(200)
@given(
    st.lists(st.sampled_from(["gzip", "x-gzip", "deflate"]), min_size=1, max_size=3),
    st.binary(max_size=3000),
    st.integers(0, 5000),
    st.integers(1, 700),
)
def test_body_digest_decodes_at_most_the_limit(codings, plain, limit, piece):
    """Valid stacked encodings of `plain` fed in pieces: the decoded length is the plain
    length, cut at the limit (never more), with the tag exactly when cut. (Where an
    intermediate form is itself over the limit, only "never more".)"""
    body, forms = plain, []
    for c in codings:
        forms.append(body)
        body = gzip.compress(body) if c != "deflate" else zlib.compress(body)
    digest = BodyDigest(list(reversed(codings)), limit)
    for i in range(0, len(body), piece):
        digest.feed(body[i : i + piece])
    fields = digest.fields()
    assert fields["body_len"] == len(body)
    assert fields["decoded_body_len"] <= limit
    if all(len(f) <= limit for f in forms[1:]):
        assert fields["decoded_body_len"] == min(len(plain), limit)
        assert digest.tags() == (["decompression_limit"] if len(plain) > limit else [])


def test_stacked_encoding_cut_at_the_limit_keeps_the_first_bytes():
    inner = gzip.compress(bytes(10 << 20))  # ~10 KB of gzip: more than the limit
    digest = BodyDigest(["gzip", "gzip"], 1000)
    digest.feed(gzip.compress(inner))
    assert digest.fields()["decoded_body_len"] == 1000


def test_corrupt_gzip_decodes_the_same_however_it_is_cut():
    body = bytearray(gzip.compress(bytes(range(256)) * 64))
    body[len(body) // 2] ^= 0xFF
    whole, bytewise = BodyDigest(["gzip"], 1 << 20), BodyDigest(["gzip"], 1 << 20)
    whole.feed(bytes(body))
    for i in range(len(body)):
        bytewise.feed(bytes(body[i : i + 1]))
    assert whole.fields() == bytewise.fields()
