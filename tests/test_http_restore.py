"""Snapshot -> msgpack -> restore at every delivery boundary must not change a single record
(byte-identical canonical JSON), on real captures and on streams that visit every state."""

from __future__ import annotations

import hashlib
import json
import random

import msgpack
import pytest

from tests.test_http_support import (
    PCAPS,
    FakeCtx,
    canon,
    chunked,
    flow_info,
    req,
    resp,
    run,
    run_with_restart,
    tcp_flows,
)
from wirestream.decoders.api import CLIENT, SERVER
from wirestream.decoders.http import HttpDecoder
from wirestream.decoders.http import body as http_body
from wirestream.testing import rechunk

REAL = [
    "own_nginx_keepalive_multi.pcap",
    "own_echo_post_chunked_upload.pcap",
    "zeek__http__pipelined-requests.pcap",
    "zeek__http__100-continue.pcap",
    "tcpflow__tests__test-gzip.pcap",
    "sv__http-gap-simple__input.pcap",
    "sv__http-gap-beyond-body__input.pcap",
    "zeek__http__zero-length-bodies-with-drops.pcap",
    "sv__http-connect__http-connect-fragmented__input.pcap",
    "zeek__http__http-lower-case-nonstandard-port.pcap",
    "zeek__http__261__variant-01-chunk_2pow64_overflow.pcap",
    "zeek__http__http-11-request-then-cruft.pcap",
]


@pytest.fixture(params=[True, False], ids=["resumable", "replayed"])
def resumable(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run with identity bodies hashed resumably (their digest saved), and as where libcrypto
    is missing (their bytes kept and replayed, like decoded bodies)."""
    monkeypatch.setattr(http_body, "RESUMABLE", request.param)
    return request.param


def _check_every_boundary(events: list, options: dict | None = None, flow=None) -> int:
    base = canon(run(events, options, flow).out)
    for at in range(len(events) + 1):
        got = canon(run_with_restart(events, at, options, flow).out)
        assert got == base, f"restore after event {at} of {len(events)} changed the output"
    return len(base)


@pytest.mark.parametrize("name", REAL)
def test_restore_anywhere_real_streams(name: str, resumable: bool) -> None:
    rng = random.Random(name)
    total = 0
    for key, events in tcp_flows(PCAPS / name).items():
        chunks = rechunk(events, rng, max_chunk=1500)[:300]
        total += _check_every_boundary(chunks, flow=flow_info(key))
    assert total > 0


def _d(direction: int, payload: bytes, ts: int) -> tuple:
    return ("data", direction, payload, ts)


def _states_stream() -> list:
    """Touches WAIT, RESYNC, absorbed gaps, 1xx, held transactions, host injection,
    lower-case status lines, lenient heads, pending limit and a tunnel at the end."""
    body = bytes(range(256)) * 8
    return [
        _d(
            CLIENT,
            b"\r\n" + req("GET", "/a") + b"POST /nohost HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            1,
        ),
        _d(SERVER, resp(body=body[:100]) + b"http/1.1 200 ok\r\nContent-Length: 2\r\n\r\nhi", 2),
        _d(CLIENT, req("PUT", "/up", extra="Expect: 100-continue\r\nContent-Length: 2048\r\n"), 3),
        _d(SERVER, b"HTTP/1.1 100 Continue\r\n\r\n", 4),
        _d(CLIENT, body[:700], 5),
        ("gap", CLIENT, 300, 6),
        _d(CLIENT, body[1000:], 7),
        _d(SERVER, resp(extra="Transfer-Encoding: chunked\r\n") + chunked(body, 300)[:500], 8),
        ("gap", SERVER, 40, 9),
        _d(SERVER, chunked(body, 300)[540:], 10),
        _d(
            CLIENT,
            b"\x00garbage\r\n" + req("HEAD", "/h") + req("POST", "/early", body=b"123456")[:-3],
            11,
        ),
        _d(SERVER, resp(extra="Transfer-Encoding: chunked\r\n") + resp(413), 12),
        _d(CLIENT, b"456", 12),
        _d(
            CLIENT, b"BREW /pot HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 13
        ),
        _d(SERVER, resp(418, reason="Teapot"), 14),
        ("gap", SERVER, 10, 15),
        _d(CLIENT, req("GET", "/z") + b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n\x16\x03\x01", 16),
        _d(SERVER, b"junk\r\n" + resp(body=b"z") + b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03", 17),
        ("close", "fin", 18),
    ]


def test_restore_anywhere_through_all_states(resumable: bool) -> None:
    events = _states_stream()
    out = run(events).out
    tags = {t for typ, f in out if typ == "http" for t in f["tags"]}
    assert {"gap", "resync", "missing_host", "lenient", "parse_error", "tunnel"} <= tags
    for seed in range(4):
        rng = random.Random(seed)
        _check_every_boundary(rechunk(events, rng, max_chunk=(61, 97, 300, 1000)[seed]))


def test_restore_with_pending_limit_and_decompression() -> None:
    import gzip

    events = [
        _d(CLIENT, b"".join(req("GET", f"/{i}") for i in range(8)), 1),
        _d(
            SERVER,
            b"".join(
                resp(body=gzip.compress(b"%d" % i * 5000), extra="Content-Encoding: gzip\r\n")
                for i in range(8)
            ),
            2,
        ),
        ("close", "fin", 3),
    ]
    opts = {"max_pending": 3, "max_decompressed": 7000}
    rng = random.Random(5)
    _check_every_boundary(rechunk(events, rng, max_chunk=120), opts)


def test_output_does_not_depend_on_chunking() -> None:
    events = [e for e in _states_stream() if e[0] != "close"] + [("close", "fin", 1)]
    flat = [(*e[:-1], 1) for e in events]
    base = canon(run(flat).out)
    for seed in range(3):
        rng = random.Random(seed)
        assert canon(run(rechunk(flat, rng, max_chunk=rng.choice([1, 5, 64]))).out) == base


def test_replay_cap_restores_partially_and_says_so() -> None:
    """A chunked body is rebuilt by replaying its bytes: beyond the replay cap they are not
    kept, and a restore resumes at the next message, tagged."""
    big = bytes(range(256)) * 64  # 16 KiB body, replay cap 2 KiB
    opts = {"max_header_bytes": 1024, "max_replay_bytes": 2048}
    wire = resp(extra="Transfer-Encoding: chunked\r\n") + chunked(big, 1000)
    events = [
        _d(CLIENT, req("GET", "/big") + req("GET", "/next"), 1),
        _d(SERVER, wire[:4000], 2),
        _d(SERVER, wire[4000:], 3),
        _d(SERVER, resp(body=b"next"), 4),
        ("close", "fin", 5),
    ]
    ctx = FakeCtx()
    dec = HttpDecoder(ctx, opts)
    for e in events[:2]:
        ctx.ts_ns = e[-1]
        dec.on_data(e[1], e[2])
    state = dec.snapshot()
    assert state["server"]["data"] is None  # the body in progress was not kept
    assert len(msgpack.packb(state)) < 4096
    ctx2 = FakeCtx(out=ctx.out)
    dec2 = HttpDecoder.restore(ctx2, opts, msgpack.unpackb(msgpack.packb(state)))
    for e in events[2:]:
        ctx2.ts_ns = e[-1]
        if e[0] == "data":
            dec2.on_data(e[1], e[2])
        else:
            dec2.on_close(e[1])
    recs = ctx2.http()
    assert recs[0]["request"]["uri"] == "/big"
    assert recs[0]["response"]["body_sha256"] is None
    assert "restored_partial" in recs[0]["tags"]
    assert recs[1]["request"]["uri"] == "/next"
    assert (
        recs[1]["response"]["body_sha256"] == run(events, opts).http()[1]["response"]["body_sha256"]
    )
    assert "restored_partial" in recs[1]["tags"]
    # Restores outside the oversized body are exact.
    for at in (0, 1, 3, 4):
        assert canon(run_with_restart(events, at, opts).out) == canon(run(events, opts).out)


@pytest.mark.parametrize("size", [16 * 1024, 200 * 1024])
def test_content_length_body_restores_exactly_without_its_bytes(size: int) -> None:
    assert http_body.RESUMABLE  # libcrypto is there where the tests run
    """An identity Content-Length body is hashed with a resumable SHA-256: a snapshot holds
    its digest state, not its bytes, and a restore anywhere in it is exact, across gaps and
    past the replay cap."""
    body = random.Random(size).randbytes(size)
    opts = {"max_header_bytes": 1024, "max_replay_bytes": 2048}
    upload = req("POST", "/up", body=body)
    download = resp(body=body)
    events = [_d(CLIENT, upload[:1500], 1)]
    events += [_d(CLIENT, upload[i : min(i + 1448, 5000)], 2) for i in range(1500, 5000, 1448)]
    events += [("gap", CLIENT, 3000, 3)]  # upload[5000:8000] is lost
    events += [_d(CLIENT, upload[i : i + 1448], 4) for i in range(8000, len(upload), 1448)]
    events += [_d(SERVER, download[i : i + 1448], 5) for i in range(0, len(download), 1448)]
    events += [_d(CLIENT, req("GET", "/next"), 6), _d(SERVER, resp(body=b"x"), 7)]
    events.append(("close", "fin", 8))
    base = run(events, opts)
    recs = base.http()
    head_len = upload.index(b"\r\n\r\n") + 4
    delivered = upload[head_len:5000] + upload[8000:]
    assert recs[0]["request"]["body_sha256"] == hashlib.sha256(delivered).hexdigest()
    assert recs[0]["request"]["missed_bytes"] == 3000
    assert recs[0]["response"]["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert "gap" in recs[0]["tags"] and "restored_partial" not in recs[0]["tags"]
    for at in range(len(events) + 1):
        assert canon(run_with_restart(events, at, opts).out) == canon(base.out), at
    # A snapshot inside the download body is small: no body bytes are kept.
    ctx = FakeCtx()
    dec = HttpDecoder(ctx, opts)
    for e in events[: len(events) - 4]:
        ctx.ts_ns = e[-1]
        (dec.on_data if e[0] == "data" else dec.on_gap)(e[1], e[2])
    state = dec.snapshot()
    assert state["server"]["mode"] == "body" and state["server"]["data"] == b""
    assert len(msgpack.packb(state)) < 4096


def _chunk_stream(rng: random.Random) -> list:
    """Chunked bodies (chunks of 1 byte to 20 KB, extensions, trailers, gzip), with gaps
    inside chunks and across chunk lines, an invalid chunk size, a 2^64 chunk size, a chunked
    upload and a body cut by the end of the flow."""
    import gzip

    def body(n: int) -> bytes:
        return rng.randbytes(n)

    def wire(data: bytes, sizes: list[int], trailer: bytes = b"") -> bytes:
        out, i = b"", 0
        while i < len(data):
            part = data[i : i + rng.choice(sizes)]
            i += len(part)
            ext = b";ext=1" if rng.random() < 0.2 else b""
            out += b"%x%s\r\n" % (len(part), ext) + part + b"\r\n"
        return out + b"0\r\n" + trailer + b"\r\n"

    te = "Transfer-Encoding: chunked\r\n"
    big, plain = body(50_000), body(9_000)
    r1 = resp(extra=te) + wire(big, [20_000, 1, 4096])
    r2 = resp(extra=te + "Content-Encoding: gzip\r\n") + wire(gzip.compress(plain * 3), [777])
    r3 = resp(extra=te) + wire(plain, [3000], trailer=b"X-Checksum: 1\r\n")
    upload = req("POST", "/up", extra=te) + wire(plain, [1000, 5])
    return [
        ("data", CLIENT, req("GET", "/1") + req("GET", "/2") + req("GET", "/3"), 1),
        ("data", SERVER, r1[:30_000], 2),
        ("gap", SERVER, 5_000, 3),  # inside the 20 KB chunk: absorbed
        ("data", SERVER, r1[35_000:], 4),
        ("data", SERVER, r2, 5),
        ("data", SERVER, r3[:5_000], 6),
        ("gap", SERVER, 3, 7),  # across the end of a chunk: the response is lost
        ("data", SERVER, r3[5_003:], 8),
        ("data", CLIENT, upload + req("GET", "/4") + req("GET", "/5") + req("GET", "/6"), 9),
        ("data", SERVER, resp(body=b"ok") + resp(extra=te) + b"zz\r\n" + plain[:100], 10),
        ("data", SERVER, resp(extra=te) + b"10000000000000000\r\n" + plain[:3000], 11),
        ("data", SERVER, resp(extra=te) + b"1000\r\n" + plain[:2000], 12),
        ("close", "fin", 13),
    ]


@pytest.mark.parametrize("seed", range(3))
def test_chunks_bypassing_h11_change_no_record(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rest of a chunk is consumed without h11 (CHUNK mode): the records are the ones h11
    alone gives, however the stream is cut, and a restore anywhere changes nothing."""
    from wirestream.decoders.http import side as http_side

    rng = random.Random(seed)
    events = rechunk(_chunk_stream(rng), rng, max_chunk=(1, 1500, 30_000)[seed])
    fast = canon(run(events).out)
    monkeypatch.setattr(http_side, "CHUNK_BYPASS", False)
    assert canon(run(events).out) == fast
    monkeypatch.setattr(http_side, "CHUNK_BYPASS", True)
    tags = {t for line in fast for t in json.loads(line)[1].get("tags", ())}
    assert {"gap", "parse_error", "truncated", "resync"} <= tags
    step = max(1, len(events) // (25 if seed == 0 else 60))
    for at in range(0, len(events) + 1, step):
        assert canon(run_with_restart(events, at).out) == fast, at


def _lossy_stream() -> list:
    """Loss markers in every state: a hole whose count is known (pairing goes on), a lost HEAD
    whose response waits for the bytes after its head (and the quiet point that waits on it),
    responses held at a marker then settled by a quiet point, a server-side loss."""
    return [
        ("gap", CLIENT, len(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"), 1),  # /b, /c pair by count
        _d(CLIENT, req("GET", "/b") + req("GET", "/c"), 2),
        _d(SERVER, resp(body=b"A") + resp(body=b"BB") + resp(body=b"CCC"), 3),
        ("gap", CLIENT, len(req("HEAD", "/h")), 4),  # a lost HEAD
        _d(SERVER, b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", 5),
        _d(CLIENT, req("GET", "/d"), 6),
        _d(SERVER, resp(body=b"DDDD"), 7),
        _d(CLIENT, req("GET", "/e"), 8),
        ("gap", CLIENT, 100, 9),  # pipelined: up to 6 requests lost
        _d(CLIENT, req("GET", "/f") + req("GET", "/g"), 10),
        _d(SERVER, resp(body=b"E" * 5) + resp(body=b"X" * 6), 11),
        _d(SERVER, resp(body=b"F" * 7) + resp(body=b"G" * 8), 12),
        _d(CLIENT, req("GET", "/i"), 13),  # quiet point: settles /f and /g
        _d(SERVER, resp(body=b"I" * 9), 14),
        _d(CLIENT, req("GET", "/j") + req("GET", "/k"), 15),
        _d(SERVER, b"HTTP/1.1 200 OK\r\nContent-", 16),
        ("gap", SERVER, 30, 17),
        _d(SERVER, resp(body=b"K" * 10), 18),
        _d(CLIENT, req("GET", "/l"), 19),
        _d(SERVER, resp(body=b"L" * 11), 20),
        ("close", "fin", 21),
    ]


def test_restore_through_losses(resumable: bool) -> None:
    events = _lossy_stream()
    recs = [f for typ, f in run(events).out if typ == "http"]
    pairs = {(r["request"] or {}).get("uri"): r for r in recs if r["request"] and r["response"]}
    got = {uri: r["response"]["body_len"] for uri, r in pairs.items()}
    assert got == {
        **{"/b": 2, "/c": 3, "/d": 4, "/e": 5, "/f": 7, "/g": 8, "/i": 9, "/l": 11},
        "/j": None,  # its response was cut by the server-side hole
    }
    unpaired = [(r["response"] or {}).get("body_len") for r in recs if not r["request"]]
    assert sorted(unpaired) == [0, 1, 6, 10]
    head = next(r for r in recs if not r["request"] and r["response"]["body_len"] == 0)
    assert "no_body_guessed" in head["tags"]
    for seed in range(4):
        rng = random.Random(seed)
        _check_every_boundary(rechunk(events, rng, max_chunk=(13, 41, 97, 300)[seed]))


def _random_lossy_stream(rng: random.Random) -> list:
    """Pipelined requests (GET/HEAD/POST), responses (with bodies, HEAD-like heads whose body
    never comes, 304s, chunked), holes on either side, in random order."""
    events: list = []
    ts = 1
    for _ in range(rng.randint(3, 12)):
        ts += 1
        n = rng.randint(1, 4)
        k = rng.random()
        if k < 0.45:
            msgs = []
            for _ in range(n):
                method = rng.choice(["GET", "HEAD", "POST"])
                body = b"x" * rng.randint(1, 50) if rng.random() < 0.3 else b""
                msgs.append(req(method, f"/{rng.randint(0, 99)}", body=body))
            events.append(_d(CLIENT, b"".join(msgs), ts))
        elif k < 0.85:
            msgs = []
            for _ in range(n):
                r = rng.random()
                if r < 0.2:
                    msgs.append(b"HTTP/1.1 200 OK\r\nContent-Length: 77\r\n\r\n")
                elif r < 0.3:
                    msgs.append(resp(304))
                elif r < 0.4:
                    msgs.append(resp(extra="Transfer-Encoding: chunked\r\n") + chunked(b"hello"))
                else:
                    msgs.append(resp(body=b"b" * rng.randint(0, 60)))
            events.append(_d(SERVER, b"".join(msgs), ts))
        else:
            events.append(("gap", rng.choice([CLIENT, SERVER]), rng.randint(1, 120), ts))
    if rng.random() < 0.7:
        events.append(("close", "fin", ts + 1))
    return events


@pytest.mark.parametrize("seed", range(0, 300, 30))
def test_random_losses_depend_on_bytes_only(seed: int) -> None:
    """Loss markers, held responses, quiet points and framing guesses: the records depend on
    the bytes and their order, not on how deliveries are cut, and survive a restore at any
    event."""
    for s in range(seed, seed + 30):
        events = _random_lossy_stream(random.Random(s))
        base = canon(run(events).out)
        assert canon(run(rechunk(events, random.Random(s), max_chunk=17)).out) == base, s
        _check_every_boundary(events)
