"""The http record's top-level fields (host, user_agent, referrer, content types, latency,
response_time, filename) against tshark's (fixtures/pcaps/oracles/*/http_fields_tshark.jsonl,
made by tests/field_oracles.py), and Content-Disposition file names (RFC 6266) by hand."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from wirestream.decoders.http.fields import disposition_filename, mime_type
from wirestream.streams.replay import replay_records

PCAPS = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
ORACLES = PCAPS / "oracles"

# Where tshark and the decoder do not see the same transactions (the differences are the
# subject of tests/test_oracles.py's KNOWN_DIFFERENCES, not of these fields).
SKIP = {
    "tcpflow__samplePcaps__jpegs.cap": "lost segments: tshark pairs fewer transactions",
    "sv__http-request-invalid__input.pcap": "invalid requests tshark reads differently",
    "zeek__http__http-11-request-then-cruft.pcap": "cruft after the request",
    "zeek__http__zero-length-bodies-with-drops.pcap": "drops: tshark pairs differently",
    "sv__http-gap-simple__input.pcap": "gap",
    "sv__http-gap-beyond-body__input.pcap": "gap",
    "zeek__http__connect-with-header.pcap": "CONNECT tunnel",
    "sv__http-connect__http-connect-fragmented__input.pcap": "CONNECT tunnel",
    "zeek__http__261__variant-01-chunk_2pow64_overflow.pcap": "malformed chunk size",
    "sv__tcp-rst-unacked-stream-07-http__input.pcap": "request only, reset",
    "zeek__tcp__miss_end_data.pcap": "lost end",
    "zeek__http__get_nosyn.pcap": "no handshake",
    "sv__alert-testmyids-midstream__input.pcap": "response only (midstream)",
    "sv__bug-4376__syn_retransmit_with_ts.pcap": "the request is not decoded (no_request)",
}
# Bodies read until the connection closes: tshark dates the response at the FIN frame, we at
# the last body byte (the FIN carries none). Their times are not compared.
UNTIL_CLOSE = {"zeek__tcp__tcp-fast-open.pcap"}


def _oracle(name: str) -> list[dict]:
    path = ORACLES / name / "http_fields_tshark.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


CAPTURES = sorted(
    p.name
    for p in PCAPS.iterdir()
    if p.suffix in (".pcap", ".pcapng", ".cap") and _oracle(p.name) and p.name not in SKIP
)


def _one(row: dict, key: str) -> str | None:
    v = row.get(key)
    return v[0] if v else None


def _src(row: dict) -> tuple[str | None, int]:
    return (_one(row, "ip.src") or _one(row, "ipv6.src"), int(_one(row, "tcp.srcport") or 0))


def _expected(name: str) -> tuple[Counter, Counter]:
    rows = _oracle(name)
    by_frame = {_one(r, "frame.number"): r for r in rows}
    reqs: Counter = Counter()
    resps: Counter = Counter()
    for r in rows:
        if _one(r, "http.request") and _one(r, "http.request.method"):
            reqs[
                (
                    *_src(r),
                    _one(r, "http.host"),
                    _one(r, "http.user_agent"),
                    _one(r, "http.referer"),
                    mime_type(_one(r, "http.content_type")),
                )
            ] += 1
        elif _one(r, "http.response") and _one(r, "http.request_in"):
            req = by_frame.get(_one(r, "http.request_in"))
            if req is None:
                continue
            # http.time runs from the frame completing the request to the one completing the
            # response: our response_time (request's first byte -> response's last byte)
            # when the request came in one segment.
            single = not _one(req, "tcp.segment.count") and name not in UNTIL_CLOSE
            t = _one(r, "http.time") if single else None
            resps[
                (
                    *_src(req),
                    mime_type(_one(r, "http.content_type")),
                    round(float(t), 6) if t is not None else None,
                )
            ] += 1
    return reqs, resps


def _ours(name: str) -> tuple[Counter, Counter, list[dict]]:
    recs = [r for r in replay_records([str(PCAPS / name)]) if r["type"] == "http"]
    reqs: Counter = Counter()
    resps: Counter = Counter()
    for r in recs:
        c = r["client"]
        if r["request"] is not None:
            reqs[
                (
                    c["ip"],
                    c["port"],
                    r["host"],
                    r["user_agent"],
                    r["referrer"],
                    r["request_content_type"],
                )
            ] += 1
        if r["request"] is not None and r["response"] is not None:
            resps[(c["ip"], c["port"], r["response_content_type"], r["response_time"])] += 1
            resps[(c["ip"], c["port"], r["response_content_type"], None)] += 1
    return reqs, resps, recs


@pytest.mark.parametrize("name", CAPTURES)
def test_fields_match_tshark(name: str) -> None:
    want_reqs, want_resps = _expected(name)
    reqs, resps, recs = _ours(name)
    assert want_reqs, "the oracle has requests"
    assert reqs == want_reqs
    # Every tshark response is ours with its content type and, where comparable, its time
    # (ours are counted twice: with the time and with None for tshark's multi-segment ones).
    assert not (want_resps - resps), want_resps - resps
    for r in recs:
        if r["latency"] is not None and r["response_time"] is not None:
            assert 0 <= r["latency"] <= r["response_time"]


def test_some_times_compared() -> None:
    """The timing check above is not vacuous: tshark times exist for most captures."""
    timed = sum(1 for name in CAPTURES for key in _expected(name)[1] if key[-1] is not None)
    assert timed >= 20


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ('attachment; filename="report.pdf"', "report.pdf"),
        ("attachment; filename=plain.txt", "plain.txt"),
        # RFC 6266 5: filename* wins over filename, whatever the order
        ("attachment; filename*=UTF-8''%e2%82%ac%20rates; filename=\"EURO rates\"", "€ rates"),
        ("attachment; filename=\"EURO rates\"; filename*=utf-8''%e2%82%ac%20rates", "€ rates"),
        ("attachment; filename*=iso-8859-1'en'%A3%20rates", "£ rates"),
        ('attachment; filename="a\\"b.txt"', 'a"b.txt'),
        ('inline; FILENAME="caps.bin"', "caps.bin"),
        # path information is dropped (RFC 6266 4.3): no directory ever reaches the record
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ('attachment; filename="..\\\\..\\\\win.ini"', "win.ini"),
        ("attachment; filename*=UTF-8''..%2F..%2Fx.sh", "x.sh"),
        ('attachment; filename="/"', None),
        ("attachment; filename*=bogus''x; filename=y", "y"),  # undecodable charset: fallback
        ("attachment", None),
        ('form-data; name="f"; filename="a;b.txt"', "a;b.txt"),
    ],
)
def test_disposition_filename(value: str, want: str | None) -> None:
    assert disposition_filename(value) == want


def test_mime_type() -> None:
    assert mime_type("Text/HTML; charset=UTF-8") == "text/html"
    assert mime_type("  ") is None
    assert mime_type(None) is None
