"""Opt-in body fields (-O http.md5 / http.sha1 / http.sniff_mime): MD5 and SHA-1 of each
body's content, the MIME type sniffed from its first bytes; checked on hand-made bodies
(identity, chunked, gzip), against the declared Content-Type of the JPEG downloads tshark
exports from a real capture, that they change nothing else, and across restores."""

from __future__ import annotations

import gzip
import hashlib
import json
import random

from tests.test_http_support import (
    PCAPS,
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
from wirestream.streams.config import RuntimeConfig
from wirestream.streams.replay import replay_records
from wirestream.testing import rechunk

ALL = {"md5": True, "sha1": True, "sniff_mime": True}
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + bytes(200)


def _d(direction: int, payload: bytes, ts: int) -> tuple:
    return ("data", direction, payload, ts)


def test_identity_chunked_and_gzip_bodies() -> None:
    upload = b"name=value&" * 500
    zipped = gzip.compress(PNG)
    pdf = b"%PDF-1.4\n" + b"x" * 3000
    events = [
        _d(CLIENT, req("POST", "/u", body=upload), 1),
        _d(SERVER, resp(body=PNG, extra="Content-Type: image/png\r\n"), 2),
        _d(CLIENT, req("GET", "/c"), 3),
        _d(SERVER, resp(extra="Transfer-Encoding: chunked\r\n") + chunked(pdf, 700), 4),
        _d(CLIENT, req("GET", "/z"), 5),
        _d(SERVER, resp(body=zipped, extra="Content-Encoding: gzip\r\n"), 6),
    ]
    recs = run(events, ALL).http()
    assert len(recs) == 3
    q, r = recs[0]["request"], recs[0]["response"]
    assert q["body_md5"] == hashlib.md5(upload).hexdigest()
    assert q["body_sha1"] == hashlib.sha1(upload).hexdigest()
    assert r["body_md5"] == hashlib.md5(PNG).hexdigest() and r["body_mime"] == "image/png"
    assert recs[1]["response"]["body_sha1"] == hashlib.sha1(pdf).hexdigest()
    assert recs[1]["response"]["body_mime"] == "application/pdf"
    z = recs[2]["response"]
    # the content: the decoded bytes (as Zeek's files.log), the raw ones keep body_sha256
    assert z["body_md5"] == hashlib.md5(PNG).hexdigest() and z["body_mime"] == "image/png"
    assert z["body_sha256"] == hashlib.sha256(zipped).hexdigest()
    assert list(z)[-3:] == ["body_md5", "body_sha1", "body_mime"]
    empty = recs[1]["request"]
    assert empty["body_md5"] == hashlib.md5(b"").hexdigest() and empty["body_mime"] is None


def test_options_off_add_nothing() -> None:
    events = [_d(CLIENT, req("GET", "/"), 1), _d(SERVER, resp(body=PNG), 2)]
    (rec,) = run(events).http()
    assert "body_md5" not in rec["response"] and "body_mime" not in rec["response"]
    (one,) = run(events, {"md5": True}).http()
    assert "body_md5" in one["response"] and "body_sha1" not in one["response"]


def test_sniffed_type_of_real_jpeg_downloads() -> None:
    """tcpflow's jpegs capture: every 200 body that tshark exports as a .jpg and whose
    Content-Type says image/jpeg sniffs as image/jpeg; the sha256 ties ours to tshark's."""
    name = "tcpflow__samplePcaps__jpegs.cap"
    objects = [
        json.loads(line)
        for line in (PCAPS / "oracles" / name / "objects_tshark.jsonl").read_text().splitlines()
    ]
    jpg = {o["sha256"] for o in objects if o["filename"].lower().endswith((".jpg", ".jpeg"))}
    config = RuntimeConfig(decoder_options={"http": dict(ALL)})
    recs = [r for r in replay_records([str(PCAPS / name)], config=config) if r["type"] == "http"]
    checked = 0
    for r in recs:
        s = r["response"]
        if s and s.get("body_sha256") in jpg and r["response_content_type"] == "image/jpeg":
            assert s["body_mime"] == "image/jpeg"
            checked += 1
    assert checked >= 5


def test_extras_change_no_other_field() -> None:
    for name in ("zeek__http__get-gzip.pcap", "tcpflow__tests__test-gzip.pcap"):
        plain = replay_records([str(PCAPS / name)])
        config = RuntimeConfig(decoder_options={"http": dict(ALL)})
        extra = replay_records([str(PCAPS / name)], config=config)
        assert len(plain) == len(extra)
        for a, b in zip(plain, extra, strict=True):
            for side in ("request", "response"):
                if a["type"] == "http" and b[side] is not None:
                    for k in ("body_md5", "body_sha1", "body_mime"):
                        b[side].pop(k, None)
            assert a == b


def test_restore_anywhere_with_extras() -> None:
    name = "own_nginx_keepalive_multi.pcap"
    rng = random.Random(name)
    total = 0
    for key, events in tcp_flows(PCAPS / name).items():
        chunks = rechunk(events, rng, max_chunk=1500)[:200]
        base = canon(run(chunks, ALL, flow_info(key)).out)
        for at in range(len(chunks) + 1):
            got = canon(run_with_restart(chunks, at, ALL, flow_info(key)).out)
            assert got == base, f"restore after event {at} changed the output"
        total += len(base)
    assert total > 0
