"""HttpDecoder: records compared with tshark's oracle on real captures, plus hand-made streams
for framing, limits, loss, pairing and protocol switches."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import time
import zlib

import brotli
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import fuzz
from tests.test_http_support import (
    ORACLES,
    PCAPS,
    FakeCtx,
    chunked,
    flow_info,
    req,
    resp,
    run,
    tcp_flows,
)
from wirestream.decoders.api import CLIENT, SERVER
from wirestream.decoders.http import HttpDecoder
from wirestream.decoders.http.body import PIECE, BodyDigest


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def data(direction: int, payload: bytes, ts: int = 1) -> tuple:
    return ("data", direction, payload, ts)


def gap(direction: int, n: int, ts: int = 1) -> tuple:
    return ("gap", direction, n, ts)


CLOSE = ("close", "fin", 99)


# ------------------------------------------------------------------ probe
@pytest.mark.parametrize(
    ("direction", "payload", "expected"),
    [
        (CLIENT, b"GET / HTTP/1.1\r\n", True),
        (CLIENT, b"PROPFIND /x HTTP/1.1", True),
        (CLIENT, b"FOO-BAR /x HTTP/1.0", True),  # token-shaped method
        (CLIENT, b"GET /ind", None),
        (CLIENT, b"GE", None),
        (CLIENT, b"\r\nGET / HTTP/1.1", True),
        (CLIENT, b"\x16\x03\x01\x02\x00", False),
        (CLIENT, b"GET /\r\n", False),  # HTTP/0.9
        (CLIENT, b"SSH-2.0-OpenSSH_8.9\r\n", False),
        (SERVER, b"HTTP/1.1 200 OK\r\n", True),
        (SERVER, b"HTTP/1.0 404", None),
        (SERVER, b"HTTP/1.", None),
        (SERVER, b"HTTP/2 200\r\n", False),
        (SERVER, b"220 smtp ready\r\n", False),
    ],
)
def test_probe(direction: int, payload: bytes, expected: bool | None) -> None:
    assert HttpDecoder.probe(direction, payload) is expected


# ------------------------------------------------------------------ oracle comparison
ORACLE_CAPTURES = [
    "own_nginx_keepalive_multi.pcap",
    "own_echo_post_chunked_upload.pcap",
    "own_nginx_head_and_get.pcap",
    "own_pyhttp_server_http10.pcap",
    "zeek__http__pipelined-requests.pcap",
    "zeek__http__100-continue.pcap",
    "tcpflow__tests__test-gzip.pcap",
    "zeek__http__get.pcap",
    "zeek__http__post.pcap",
    "zeek__http__get-gzip.pcap",
    "zeek__http__http-post-large.pcap",
    "zeek__wikipedia.pcap",
    "dpkt__examples__data__http.pcap",
    "zeek__tcp__tcp-fast-open.pcap",
    "sv__http-ipv6__input.pcap",
]


def _oracle(name: str) -> list[dict]:
    with open(ORACLES / name / "http_tshark.jsonl") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("name", ORACLE_CAPTURES)
def test_matches_tshark(name: str) -> None:
    oracle = _oracle(name)
    flows = tcp_flows(PCAPS / name)
    checked = 0
    for key, events in flows.items():
        ctx = run(events, flow=flow_info(key))
        recs = ctx.http()
        o_req = [
            o
            for o in oracle
            if o["type"] == "request" and (o["src"], o["sport"], o["dport"]) == key[:2] + key[3:]
        ]
        o_resp = [
            o
            for o in oracle
            if o["type"] == "response" and (o["dst"], o["dport"], o["sport"]) == key[:2] + key[3:]
        ]
        if not (o_req or o_resp or recs):
            continue
        assert all(r["tags"] == [] for r in recs), [r["tags"] for r in recs]
        assert [(r["request"]["method"], r["request"]["uri"]) for r in recs] == [
            (o["method"], o["uri"]) for o in o_req
        ]
        finals = [o for o in o_resp if o["code"] >= 200]
        infos = [o["code"] for o in o_resp if o["code"] < 200]
        assert [r["response"]["status"] for r in recs] == [o["code"] for o in finals]
        assert [i["status"] for r in recs for i in r["response"]["informational"]] == infos
        for r, o in zip(recs, o_req, strict=True):
            if o.get("body_sha256"):
                assert r["request"]["body_sha256"] == o["body_sha256"]
                assert r["request"]["body_len"] == o["body_len"]
        for r, o in zip(recs, finals, strict=True):
            got = r["response"]
            if o.get("content_encoding"):
                assert "decoded_body_sha256" in got
                if o.get("body_sha256"):  # tshark: de-chunked and decompressed
                    assert got["decoded_body_sha256"] == o["body_sha256"]
                    assert got["decoded_body_len"] == o["body_len"]
            elif o.get("body_sha256"):
                assert got["body_sha256"] == o["body_sha256"]
                assert got["body_len"] == o["body_len"]
            if o.get("body_raw_sha256"):  # de-chunked only
                assert got["body_sha256"] == o["body_raw_sha256"]
            checked += 1
    assert checked > 0


def test_chunk_size_overflow_matches_zeek() -> None:
    """Zeek logs POST / then the smuggled GET (and weird HTTP_bad_chunk_size)."""
    base = ORACLES / "zeek__http__261__variant-01-chunk_2pow64_overflow.pcap" / "zeek_baseline"
    lines = [ln.split("\t") for ln in (base / "http.log").read_text().splitlines()[2:]]
    expected = sorted((int(f[1]), f[2], f[4]) for f in lines)
    ((key, events),) = tcp_flows(
        PCAPS / "zeek__http__261__variant-01-chunk_2pow64_overflow.pcap"
    ).items()
    ctx = run(events, flow=flow_info(key))
    got = sorted(
        (r["trans_depth"], r["request"]["method"], r["request"]["uri"]) for r in ctx.http()
    )
    assert got == expected
    assert "http_chunk_size_overflow" in ctx.anomalies()
    assert "resync" in ctx.http()[1]["tags"]


def test_stacked_encodings_capture() -> None:
    """identity, identity, gzip, identity, gzip, gzip: three gunzips give the page."""
    name = "sv__bug-2511__response_identity_identity_gzip_identity_gzip_gzip.pcap"
    ((key, events),) = tcp_flows(PCAPS / name).items()
    body = b"".join(e[2] for e in events if e[0] == "data" and e[1] == SERVER).split(
        b"\r\n\r\n", 1
    )[1]
    r = run(events, flow=flow_info(key)).http()[0]["response"]
    decoded = gzip.decompress(gzip.decompress(gzip.decompress(body)))
    assert r["body_sha256"] == sha(body)
    assert r["decoded_body_sha256"] == sha(decoded)
    assert r["decoded_body_len"] == len(decoded)


# ------------------------------------------------------------------ framing
def test_record_shape_and_order() -> None:
    ctx = run(
        [
            data(CLIENT, req("POST", "/a", body=b"hello"), 5_000_001_999),
            data(SERVER, resp(body=b"x"), 7),
        ]
    )
    (rec,) = ctx.http()
    assert list(rec) == [
        "ts",
        "client",
        "server",
        "trans_depth",
        "request",
        "response",
        "tags",
        # issue 15's convenience fields, after the original ones (docs/http.md)
        "host",
        "user_agent",
        "referrer",
        "request_content_type",
        "response_content_type",
        "filename",
        "latency",
        "response_time",
    ]
    assert rec["ts"] == 5.000001  # capture time of the request's first byte
    assert rec["client"] == {"ip": "10.0.0.1", "port": 40000}
    assert list(rec["request"]) == [
        "method",
        "uri",
        "version",
        "headers",
        "body_len",
        "body_sha256",
    ]
    assert list(rec["response"]) == [
        "status",
        "reason",
        "version",
        "headers",
        "informational",
        "body_len",
        "body_sha256",
    ]
    assert rec["request"]["headers"] == [["Host", "example.com"], ["Content-Length", "5"]]
    assert rec["request"]["body_sha256"] == sha(b"hello")
    assert rec["response"]["body_sha256"] == sha(b"x")


def test_pipelining_head_chunked_204_304() -> None:
    body = b"chunky body " * 20
    reqs = req("GET", "/1") + req("HEAD", "/2") + req("GET", "/3") + req("GET", "/4")
    resps = (
        resp(extra="Transfer-Encoding: chunked\r\n")
        + chunked(body)
        + resp(extra="Transfer-Encoding: chunked\r\n")  # HEAD: no body despite chunked
        + resp(204, reason="No Content")
        + resp(304, reason="Not Modified", extra="ETag: x\r\n")
    )
    trailer = req("GET", "/5")
    ctx = run([data(CLIENT, reqs + trailer), data(SERVER, resps), data(SERVER, resp(body=b"5"))])
    recs = ctx.http()
    assert [r["request"]["uri"] for r in recs] == ["/1", "/2", "/3", "/4", "/5"]
    assert [r["response"]["status"] for r in recs] == [200, 200, 204, 304, 200]
    assert recs[0]["response"]["body_len"] == len(body)
    assert recs[0]["response"]["body_sha256"] == sha(body)
    assert recs[1]["response"]["body_len"] == 0
    assert recs[4]["response"]["body_sha256"] == sha(b"5")
    assert [r["trans_depth"] for r in recs] == [1, 2, 3, 4, 5]


def test_http10_close_delimited_body_ends_on_close() -> None:
    events = [
        data(CLIENT, b"GET /old HTTP/1.0\r\n\r\n"),
        data(SERVER, b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\npart one,"),
        data(SERVER, b" part two"),
    ]
    ctx = run(events)
    assert ctx.http() == []  # the body has no end yet
    ctx = run([*events, CLOSE])
    (rec,) = ctx.http()
    assert rec["response"]["body_sha256"] == sha(b"part one, part two")
    assert rec["tags"] == []


def test_100_continue_collected_into_final_response() -> None:
    ctx = run(
        [
            data(CLIENT, req("PUT", "/up", extra="Expect: 100-continue\r\nContent-Length: 4\r\n")),
            data(SERVER, b"HTTP/1.1 100 Continue\r\n\r\n"),
            data(CLIENT, b"data"),
            data(SERVER, resp(201, reason="Created")),
        ]
    )
    (rec,) = ctx.http()
    assert rec["response"]["informational"] == [{"status": 100, "reason": "Continue"}]
    assert rec["response"]["status"] == 201
    assert rec["request"]["body_sha256"] == sha(b"data")


def test_response_before_request_body_ends_waits_for_it() -> None:
    ctx = run(
        [
            data(CLIENT, req("POST", "/big", extra="Content-Length: 6\r\n")),
            data(SERVER, resp(413, reason="Too Large")),
            data(CLIENT, b"abc"),
        ]
    )
    assert ctx.http() == []
    ctx.out.clear()
    ctx2 = run(
        [
            data(CLIENT, req("POST", "/big", extra="Content-Length: 6\r\n")),
            data(SERVER, resp(413, reason="Too Large")),
            data(CLIENT, b"abcdef"),
        ]
    )
    (rec,) = ctx2.http()
    assert rec["request"]["body_sha256"] == sha(b"abcdef")


def test_gzip_and_deflate_variants() -> None:
    text = b"hello hello hello " * 100
    raw_deflate = zlib.compressobj(wbits=-15)
    raw = raw_deflate.compress(text) + raw_deflate.flush()
    cases = [
        ("gzip", gzip.compress(text)),
        ("x-gzip", gzip.compress(text)),
        ("deflate", zlib.compress(text)),
        ("deflate", raw),
        ("gzip, gzip", gzip.compress(gzip.compress(text))),
        ("identity, deflate", zlib.compress(text)),
        ("br", brotli.compress(text)),
        ("br, gzip", gzip.compress(brotli.compress(text))),  # applied br first, then gzip
        ("deflate, br", brotli.compress(zlib.compress(text))),
    ]
    for coding, body in cases:
        ctx = run(
            [
                data(CLIENT, req()),
                data(SERVER, resp(body=body, extra=f"Content-Encoding: {coding}\r\n")),
            ]
        )
        r = ctx.http()[0]["response"]
        assert r["body_sha256"] == sha(body), coding
        assert r["decoded_body_sha256"] == sha(text), coding
        assert r["decoded_body_len"] == len(text), coding
    ctx = run(
        [data(CLIENT, req()), data(SERVER, resp(body=b"x", extra="Content-Encoding: zstd\r\n"))]
    )
    assert "decoded_body_len" not in ctx.http()[0]["response"]  # unsupported coding


GIB = 1 << 30


def _brotli_bomb() -> bytes:
    """1 GiB of zeros, brotli-compressed in 1 MiB steps (under a kilobyte)."""
    c = brotli.Compressor(quality=5, lgwin=24)
    block = bytes(1 << 20)
    return b"".join([*(c.process(block) for _ in range(GIB >> 20)), c.finish()])


def test_brotli_bomb_inflates_only_up_to_the_limit(tmp_path) -> None:
    """A ~1 GiB br bomb, alone and under gzip (Content-Encoding: br, gzip), replayed by the CLI
    in a child process: decoded bodies cut at the default cap, tagged, memory bounded."""
    from tests import adversarial as adv
    from tests.flowgen import Conversation
    from tests.pcapgen import write_pcap

    bomb = _brotli_bomb()
    assert len(bomb) < 4096
    frames = []
    ts = 1_700_000_000_000_000_000
    for i, (coding, body) in enumerate([("br", bomb), ("br, gzip", gzip.compress(bomb))]):
        c = Conversation("10.7.0.1", "10.7.0.2", 45000 + i, 80, ts_ns=ts)
        c.handshake().send(True, req("GET", f"/br{i}"))
        c.send(False, resp(body=body, extra=f"Content-Encoding: {coding}\r\n")).close()
        frames += c.frames
        ts = c.ts_ns
    path = write_pcap(tmp_path / "br_bomb.pcap", frames)
    run = adv.replay_child(path, (), 120, adv.scratch_env())
    assert run.exit == 0, run.stderr[-2000:]
    cap = HttpDecoder.option_defaults["max_decompressed"]
    recs = [r for r in run.records() if r["type"] == "http"]
    assert [r["request"]["uri"] for r in recs] == ["/br0", "/br1"]
    for r in recs:
        assert r["response"]["decoded_body_len"] == cap
        assert r["response"]["decoded_body_sha256"] == adv.sha_of_zeros(cap)
        assert r["tags"] == ["decompression_limit"]
    assert run.peak_rss_mib < 150  # ~66 MiB measured, ~50 MiB for a plain replay


def test_chunk_size_overflow_whatever_the_segmentation() -> None:
    """A 2^64 chunk size is caught whether its line ends a segment or not (h11 flags a chunk's
    start only when its first bytes come with the size line)."""
    head = resp(extra="Transfer-Encoding: chunked\r\n") + b"10000000000000000\r\n"
    rest = b"x" * 100 + resp(body=b"next")
    outs = []
    for cut in (len(head) - 3, len(head), len(head) + 1):
        wire = head + rest
        ctx = run(
            [
                data(CLIENT, req("GET", "/a") + req("GET", "/b")),
                data(SERVER, wire[:cut]),
                data(SERVER, wire[cut:]),
                CLOSE,
            ]
        )
        outs.append(ctx.out)
    assert outs[0] == outs[1] == outs[2]
    assert [f["name"] for t, f in outs[0] if t == "anomaly"] == ["http_chunk_size_overflow"]


_ENCODE = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}


@fuzz(200)
@given(
    st.lists(st.sampled_from(sorted(_ENCODE)), min_size=1, max_size=3),
    st.binary(max_size=2000),
    st.integers(0, 150_000),
    st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), max_size=3),
    st.sampled_from([100, 5000, 1 << 20]),
    st.lists(st.integers(1, 3000), min_size=1, max_size=4),
)
def test_decoded_body_depends_on_its_bytes_only(codings, head, zeros, flips, limit, cuts) -> None:
    """Stacked gzip/deflate/br bodies, intact or corrupted, fed whole or cut anyhow: the same
    fields; intact ones decode to the plain body's first min(len, limit) bytes."""
    plain = head + bytes(zeros)
    body, forms = plain, []
    for c in codings:
        forms.append(body)
        body = _ENCODE[c](body)
    wire = bytearray(body)
    for pos, bit in flips:
        wire[pos % len(wire)] ^= 1 << bit
    whole, cut = BodyDigest(codings[::-1], limit), BodyDigest(codings[::-1], limit)
    whole.feed(bytes(wire))
    i = k = 0
    while i < len(wire):
        n = cuts[k % len(cuts)]
        cut.feed(bytes(wire[i : i + n]))
        i, k = i + n, k + 1
    assert (whole.fields(), whole.tags()) == (cut.fields(), cut.tags())
    got = whole.fields()
    assert got["decoded_body_len"] <= limit
    if flips:
        return
    n = got["decoded_body_len"]
    assert got["decoded_body_sha256"] == sha(plain[:n])
    if all(len(f) <= 2 * limit + PIECE for f in forms[1:]):
        assert n == min(len(plain), limit)
        assert whole.tags() == (["decompression_limit"] if len(plain) > limit else [])


def test_gzip_bomb_is_bounded() -> None:
    inflated = 20 * 1024 * 1024
    bomb = gzip.compress(bytes(inflated), compresslevel=9)
    assert len(bomb) < 100_000
    cap = 1024 * 1024
    body = resp(body=bomb, extra="Content-Encoding: gzip\r\n")
    ctx = run([data(CLIENT, req()), data(SERVER, body)], {"max_decompressed": cap})
    r = ctx.http()[0]
    assert r["response"]["decoded_body_len"] == cap
    assert r["response"]["decoded_body_sha256"] == sha(bytes(cap))
    assert r["response"]["body_len"] == len(bomb)
    assert "decompression_limit" in r["tags"]


# ------------------------------------------------------------------ strictness, limits
def test_missing_host_still_frames_the_body() -> None:
    ctx = run(
        [
            data(CLIENT, b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" + req("GET", "/next")),
            data(SERVER, resp(body=b"1") + resp(body=b"2")),
        ]
    )
    recs = ctx.http()
    assert [r["request"]["uri"] for r in recs] == ["/x", "/next"]
    assert recs[0]["request"]["headers"] == [["Content-Length", "3"]]
    assert recs[0]["request"]["body_sha256"] == sha(b"abc")
    assert "missing_host" in recs[0]["tags"]
    assert "http_missing_host" in ctx.anomalies()
    assert recs[1]["tags"] == []


def test_lowercase_method_is_fine() -> None:
    ctx = run([data(CLIENT, b"get /lc HTTP/1.1\r\nHost: a\r\n\r\n"), data(SERVER, resp())])
    assert ctx.http()[0]["request"]["method"] == "get"
    assert ctx.http()[0]["tags"] == []


def test_garbage_then_request_resyncs() -> None:
    ctx = run(
        [
            data(CLIENT, b"\x00\x01garbage that is not http\r\nmore junk\r\n" + req("GET", "/ok")),
            data(SERVER, resp(body=b"ok")),
        ]
    )
    (rec,) = ctx.http()
    assert rec["request"]["uri"] == "/ok"
    assert "resync" in rec["tags"]
    assert "http_parse_error" in ctx.anomalies()


def test_lenient_fallback_for_refused_request() -> None:
    # Transfer-Encoding other than chunked: h11 refuses; the record still names the request.
    bad = b"POST /smuggle HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    ctx = run([data(CLIENT, bad + req("GET", "/after")), data(SERVER, resp(400) + resp())])
    recs = ctx.http()
    assert recs[0]["request"]["uri"] == "/smuggle"
    assert {"parse_error", "lenient"} <= set(recs[0]["tags"])
    assert recs[0]["response"]["status"] == 400
    assert recs[1]["request"]["uri"] == "/after"


def test_smuggling_signals() -> None:
    both = req("POST", "/", extra="Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")
    dup = req("POST", "/", extra="Content-Length: 1\r\nContent-Length: 1\r\n") + b"x"
    ctx = run([data(CLIENT, both + b"0\r\n\r\n" + dup)])
    assert "http_content_length_with_transfer_encoding" in ctx.anomalies()
    assert "http_duplicate_content_length" in ctx.anomalies()
    conflict = req("POST", "/", extra="Content-Length: 1\r\nContent-Length: 2\r\n")
    ctx = run([data(CLIENT, conflict + b"xy"), CLOSE])
    assert "http_conflicting_content_length" in ctx.anomalies()


def test_50k_headers_capped_and_tagged() -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(50_000))
    ctx = run(
        [
            data(CLIENT, b"GET /many HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n" + req("GET", "/n")),
            data(SERVER, resp() + resp()),
            CLOSE,
        ]
    )
    recs = ctx.http()
    assert recs[0]["request"]["uri"] == "/many"
    assert {"header_limit", "lenient", "parse_error"} <= set(recs[0]["tags"])
    assert len(recs[0]["request"]["headers"]) == 500
    assert recs[1]["request"]["uri"] == "/n"
    assert "http_header_limit" in ctx.anomalies()
    # Within the byte limit h11 parses it; the record still keeps only the first 500.
    some = b"".join(b"a%d:b\r\n" % i for i in range(600))
    ctx = run([data(CLIENT, b"GET / HTTP/1.1\r\nHost: a\r\n" + some + b"\r\n"), CLOSE])
    (rec,) = ctx.http()
    assert rec["tags"] == ["header_limit", "no_response"]
    assert len(rec["request"]["headers"]) == 500


def test_5000_pipelined_requests_pending_limit() -> None:
    n = 5000
    reqs = b"".join(req("GET", f"/{i}") for i in range(n))
    resps = b"".join(resp(body=str(i).encode()) for i in range(n))
    t0 = time.monotonic()
    ctx = run([data(CLIENT, reqs), data(SERVER, resps), CLOSE])
    assert time.monotonic() - t0 < 30
    recs = ctx.http()
    paired = [r for r in recs if r["request"] and r["response"]]
    # Zeek-like: beyond 100 pending, the oldest goes out unanswered, its response unpaired.
    assert len(paired) == 100
    for r in paired:  # never mispaired
        assert r["request"]["uri"][1:].encode() == _body_of(r, resps)
    assert sum(1 for r in recs if r["response"] is None) == n - 100
    assert all("pending_limit" in r["tags"] for r in recs if r not in paired)
    assert ctx.anomalies().count("http_pending_limit") >= 1


def _body_of(rec: dict, resps: bytes) -> bytes:
    digest = rec["response"]["body_sha256"]
    for i in range(5000):
        if sha(str(i).encode()) == digest:
            return str(i).encode()
    raise AssertionError("unknown body")


def test_pipelined_within_limit_all_paired() -> None:
    n = 300
    reqs = b"".join(req("GET", f"/{i}") for i in range(n))
    resps = b"".join(resp(body=b"r%d" % i) for i in range(n))
    ctx = run([data(CLIENT, reqs), data(SERVER, resps)], {"max_pending": 1000})
    recs = ctx.http()
    assert len(recs) == n
    assert all(r["response"]["body_sha256"] == sha(b"r%d" % i) for i, r in enumerate(recs))


# ------------------------------------------------------------------ loss and pairing
def test_gap_inside_content_length_body_keeps_going() -> None:
    body = b"0123456789" * 10
    r2 = resp(body=b"second")
    ctx = run(
        [
            data(CLIENT, req("GET", "/1") + req("GET", "/2")),
            data(SERVER, resp(body=body)[: -len(body)] + body[:30]),
            gap(SERVER, 40),
            data(SERVER, body[70:] + r2),
        ]
    )
    recs = ctx.http()
    assert [r["request"]["uri"] for r in recs] == ["/1", "/2"]
    first = recs[0]["response"]
    assert first["missed_bytes"] == 40
    assert first["body_len"] == 60
    assert first["body_sha256"] == sha(body[:30] + body[70:])  # delivered bytes only
    assert recs[0]["tags"] == ["gap"]
    assert recs[1]["response"]["body_sha256"] == sha(b"second")
    assert recs[1]["tags"] == []


def test_gap_inside_chunk_keeps_going() -> None:
    payload = b"A" * 50 + b"B" * 50
    wire = resp(extra="Transfer-Encoding: chunked\r\n") + chunked(payload, 100)
    cut = wire.index(b"A" * 50) + 10
    ctx = run(
        [
            data(CLIENT, req()),
            data(SERVER, wire[:cut]),
            gap(SERVER, 20),
            data(SERVER, wire[cut + 20 :]),
        ]
    )
    r = ctx.http()[0]["response"]
    assert r["missed_bytes"] == 20
    assert r["body_len"] == 80


def test_gap_beyond_body_end_then_resync_pairs_only_newer_requests() -> None:
    ctx = run(
        [
            data(CLIENT, req("GET", "/1")),
            data(SERVER, resp(body=b"x" * 10)[:-10]),
            gap(SERVER, 25),  # the body (10) and the start of a response we never see
            data(CLIENT, req("GET", "/2")),  # arrives after the loss: its response is below
            data(SERVER, b"tail of something\r\n" + resp(body=b"two")),
        ]
    )
    recs = ctx.http()
    assert recs[0]["request"]["uri"] == "/1"
    assert recs[0]["response"]["missed_bytes"] == 10
    assert recs[1]["request"]["uri"] == "/2"
    assert recs[1]["response"]["body_sha256"] == sha(b"two")
    assert "resync" in recs[1]["tags"]


def test_server_loss_flushes_older_pending_requests() -> None:
    """Responses 1 and 2 vanish in a hole: request 3's response must not pair with 2."""
    ctx = run(
        [
            data(CLIENT, req("GET", "/1") + req("GET", "/2") + req("GET", "/3")),
            data(SERVER, b"HTTP/1.1 200 OK\r\nContent-Len"),
            gap(SERVER, 500),
            data(SERVER, b"gth: 3\r\n\r\n" + resp(body=b"three")),
            data(CLIENT, req("GET", "/4")),
            data(SERVER, resp(body=b"four")),
        ]
    )
    recs = ctx.http()
    by_uri = {r["request"]["uri"]: r for r in recs if r["request"]}
    for uri in ("/1", "/2", "/3"):
        assert by_uri[uri]["response"] is None or by_uri[uri]["response"]["status"] == 200
        assert "gap" in by_uri[uri]["tags"]
    assert by_uri["/1"]["response"] is not None and "lenient" in by_uri["/1"]["tags"]
    assert by_uri["/2"]["response"] is None and by_uri["/3"]["response"] is None
    unpaired = [r for r in recs if r["request"] is None]
    assert [r["response"]["body_sha256"] for r in unpaired] == [sha(b"three")]
    assert by_uri["/4"]["response"]["body_sha256"] == sha(b"four")


def test_client_loss_causality() -> None:
    """A request lost whole: its response arrives before the next request -> unpaired."""
    ctx = run(
        [
            data(CLIENT, req("GET", "/1")),
            data(SERVER, resp(body=b"one")),
            gap(CLIENT, 60),  # request /lost
            data(SERVER, resp(body=b"lost")),
            data(CLIENT, req("GET", "/3")),
            data(SERVER, resp(body=b"three")),
        ]
    )
    recs = ctx.http()
    assert [(r["request"] or {}).get("uri") for r in recs] == ["/1", None, "/3"]
    assert recs[1]["response"]["body_sha256"] == sha(b"lost")
    assert {"gap", "no_request"} <= set(recs[1]["tags"])
    assert recs[2]["response"]["body_sha256"] == sha(b"three")
    assert "resync" in recs[2]["tags"]


def test_gap_in_request_headers_then_resync() -> None:
    """The hole (15 bytes) is too short to hold a whole request besides the end of /cut's
    head, so the count after it is known: /next pairs with its response."""
    full = req("GET", "/cut", extra="X-Long: " + "y" * 50 + "\r\n")
    ctx = run(
        [
            data(CLIENT, full[:-15]),
            gap(CLIENT, 15),
            data(CLIENT, req("GET", "/next")),
            data(SERVER, resp(body=b"cut") + resp(body=b"next")),
        ]
    )
    recs = ctx.http()
    assert recs[0]["request"]["uri"] == "/cut"
    assert {"gap", "lenient", "truncated"} <= set(recs[0]["tags"])
    assert recs[0]["response"]["body_sha256"] == sha(b"cut")
    assert recs[1]["request"]["uri"] == "/next"
    assert recs[1]["response"]["body_sha256"] == sha(b"next")


def test_pipelined_requests_after_a_large_hole_stay_unpaired() -> None:
    """A 60-byte hole after /cut's head may hold up to 3 lost requests (MIN_REQUEST): the
    responses after /cut's cannot be paired by position (libhtp#403), and no quiet point
    (pipelining) settles the count, so they are emitted without request."""
    full = req("GET", "/cut", extra="X-Long: " + "y" * 50 + "\r\n")
    ctx = run(
        [
            data(CLIENT, full[:30]),
            gap(CLIENT, len(full) - 30),
            data(CLIENT, req("GET", "/next")),
            data(SERVER, resp(body=b"cut") + resp(body=b"lost!") + resp(body=b"next")),
            CLOSE,
        ]
    )
    recs = ctx.http()
    got = [((r["request"] or {}).get("uri"), (r["response"] or {}).get("body_len")) for r in recs]
    assert got[0] == ("/cut", 3)
    assert sorted(got[1:], key=str) == sorted([("/next", None), (None, 5), (None, 4)], key=str)
    assert all({"gap", "no_request"} <= set(r["tags"]) for r in recs if r["request"] is None)


def test_midstream_response_without_request() -> None:
    ctx = run([data(SERVER, b"dy of an earlier response\r\n" + resp(body=b"z")), CLOSE])
    (rec,) = ctx.http()
    assert rec["request"] is None
    assert {"no_request", "resync"} <= set(rec["tags"])


def test_unanswered_requests_on_close() -> None:
    ctx = run([data(CLIENT, req("GET", "/a") + req("GET", "/b")), CLOSE])
    assert [r["tags"] for r in ctx.http()] == [["no_response"], ["no_response"]]


# ------------------------------------------------------------------ protocol switches
def test_connect_tunnel_stops_parsing() -> None:
    ctx = run(
        [
            data(CLIENT, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
            data(CLIENT, b"\x16\x03\x01\x00\x10client hello"),  # sent before the 200 arrives
            data(SERVER, b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03server"),
            data(CLIENT, b"GET /inside HTTP/1.1\r\nHost: a\r\n\r\n"),
            CLOSE,
        ]
    )
    (rec,) = ctx.http()
    assert rec["request"]["method"] == "CONNECT"
    assert rec["tags"] == ["tunnel"]
    assert ctx.anomalies() == []


def test_refused_connect_goes_on_with_http() -> None:
    ctx = run(
        [
            data(CLIENT, b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n" + req("GET", "/after")),
            data(SERVER, resp(407, reason="Proxy Auth") + resp(body=b"a")),
        ]
    )
    assert [r["response"]["status"] for r in ctx.http()] == [407, 200]


def test_upgrade_101() -> None:
    ctx = run(
        [
            data(CLIENT, req("GET", "/ws", extra="Upgrade: websocket\r\nConnection: Upgrade\r\n")),
            data(
                SERVER,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
            ),
            data(CLIENT, b"\x81\x85abcd\x00\x00\x00\x00\x00"),
            CLOSE,
        ]
    )
    (rec,) = ctx.http()
    assert rec["response"]["status"] == 101
    assert rec["tags"] == ["upgrade", "websocket"]
    ((kind, hs),) = [(t, f) for t, f in ctx.out if t != "http"]
    assert kind == "websocket"
    assert (hs["uri"], hs["accept_valid"], hs["subprotocol"]) == ("/ws", None, None)


def test_upgrade_to_another_protocol_is_not_websocket() -> None:
    ctx = run(
        [
            data(CLIENT, req("GET", "/", extra="Upgrade: h2c\r\nConnection: Upgrade\r\n")),
            data(SERVER, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
            CLOSE,
        ]
    )
    assert [(t, f["tags"]) for t, f in ctx.out] == [("http", ["upgrade"])]


def test_bad_input_never_raises() -> None:
    import random

    rng = random.Random(7)
    alphabet = [
        b"GET / HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"\r\n",
        b"Content-Length: 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"5\r\n",
        b"zz",
        b"\x00\xff",
        b"Host: a\r\n",
    ]
    for _ in range(200):
        ctx = FakeCtx()
        dec = HttpDecoder(ctx, {})
        for _ in range(rng.randint(1, 30)):
            d = rng.choice((CLIENT, SERVER))
            if rng.random() < 0.1:
                dec.on_gap(d, rng.randint(1, 50))
            else:
                dec.on_data(d, b"".join(rng.choices(alphabet, k=rng.randint(1, 6))))
        dec.on_close("fin")


# ---------------------------------------------------------------- pairing across losses
def _pairs(ctx) -> list[tuple]:
    return [
        ((r["request"] or {}).get("uri"), (r["response"] or {}).get("body_len")) for r in ctx.http()
    ]


def test_request_right_after_a_body_that_ended_mid_line() -> None:
    """A POST's head is lost; its body ends without a newline and the next request follows
    it on the same line (short tail: right at the hole; long tail: mid-line)."""
    for tail in (b"zz", b"z" * 700):
        ctx = run(
            [
                gap(CLIENT, 60),
                data(CLIENT, tail + req("GET", "/b") + req("GET", "/c")),
                CLOSE,
            ]
        )
        reqs = [r["request"] for r in ctx.http() if r["request"]]
        assert [(q["method"], q["uri"]) for q in reqs] == [("GET", "/b"), ("GET", "/c")]
        assert "resync" in ctx.http()[0]["tags"]


def test_lost_request_in_lock_step_is_settled_by_the_next_request() -> None:
    """Keep-alive without pipelining: a lost request (any size) is answered before the client
    sends the next one; that request starts at a quiet point and pairs with its response."""
    ctx = run(
        [
            data(CLIENT, req("GET", "/a"), 1),
            data(SERVER, resp(body=b"A"), 2),
            gap(CLIENT, 400, 3),
            data(SERVER, resp(body=b"LL"), 4),
            data(CLIENT, req("GET", "/b"), 5),
            data(SERVER, resp(body=b"BBB"), 6),
            CLOSE,
        ]
    )
    assert _pairs(ctx) == [("/a", 1), (None, 2), ("/b", 3)]


def test_quiet_points_are_not_trusted_after_pipelining_was_seen() -> None:
    """The client sent /y after hearing /x's response while /x2 was still unanswered: it
    pipelines, so a later quiet point says nothing about the count, and the responses after
    a large hole stay unpaired (without that history, /r's quiet point settles them: see
    the second run)."""
    history = [
        data(CLIENT, req("GET", "/x") + req("GET", "/x2"), 1),
        data(SERVER, resp(body=b"X"), 2),
        data(CLIENT, req("GET", "/y"), 3),
        data(SERVER, resp(body=b"X2") + resp(body=b"YYY"), 4),
    ]
    lossy = [
        data(CLIENT, req("GET", "/p"), 5),
        gap(CLIENT, 200, 6),
        data(CLIENT, req("GET", "/q"), 7),
        data(SERVER, resp(body=b"P" * 4) + resp(body=b"lost!") + resp(body=b"Q" * 6), 8),
        data(CLIENT, req("GET", "/r"), 9),
        data(SERVER, resp(body=b"R" * 7), 10),
        CLOSE,
    ]
    right = {("/x", 1), ("/x2", 2), ("/y", 3), ("/p", 4), ("/q", 6), ("/r", 7)}
    got = _pairs(run(history + lossy))
    assert all(p in right for p in got if p[0] and p[1] is not None)
    assert got[:4] == [("/x", 1), ("/x2", 2), ("/y", 3), ("/p", 4)]
    assert not {("/q", 6), ("/r", 7)} & set(got)
    settled = _pairs(run(lossy))
    assert {("/p", 4), ("/q", 6), ("/r", 7), (None, 5)} <= set(settled)


def test_response_without_request_is_bodiless_when_a_status_line_follows_its_head() -> None:
    """No request known (capture started mid-connection): a Content-Length or chunked head
    directly followed by a status line answered a HEAD; a body that merely starts with "H"
    is a body. Same records however the bytes are cut."""
    stream = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"  # a HEAD's answer
        + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"  # a HEAD's answer too
        + resp(body=b"Hello")  # a GET's answer whose body starts like "HTTP"
        + resp(body=b"HTTP/1.0 is old")
        + b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"  # undecided at the end: bodiless
    )
    want = [(None, 0), (None, 0), (None, 5), (None, 15), (None, 0)]
    rng = random.Random(7)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(stream)), 6))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        ctx = run([*(data(SERVER, p) for p in pieces), CLOSE])
        recs = ctx.http()
        assert _pairs(ctx) == want
        guessed = ["no_body_guessed" in r["tags"] for r in recs]
        assert guessed == [True, True, False, False, True]


def test_loss_markers_stay_bounded() -> None:
    """Hole after hole between pipelined requests, never settled: the queue of markers and
    requests stays within the pending limit, and every request is emitted in the end."""
    ctx = FakeCtx()
    dec = HttpDecoder(ctx, {"max_pending": 10})
    for i in range(300):
        dec.on_gap(CLIENT, 100)
        dec.on_data(CLIENT, req("GET", f"/{i}"))
        assert len(dec.queue) <= 2 * 10 + 1
    dec.on_close("fin")
    assert sorted(r["request"]["uri"] for r in ctx.http()) == sorted(f"/{i}" for i in range(300))
