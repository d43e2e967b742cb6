"""Pairing after loss: clean captures replayed next to lossy copies made by tests/lossy.py.

For each capture and each kind of loss (tests.lossy.KINDS) and seed, the lossy copy must give:
- no mispairing: a record with both sides pairs a request with a response that the clean run
  paired with that request (same method/uri/headers -> same status/reason/headers, and the same
  body unless the record says bytes were lost); every side present is a message of the clean run;
- no unmarked damage: a record that differs from every clean record carries `gap`, `truncated`,
  `no_request`, `no_response` or `missed_bytes`;
- no collateral damage: transactions away from the loss are the clean run's, byte for byte
  (ids aside; a `resync` tag allowed). "Away": none of its bytes were lost, and it was not in
  flight together with one whose bytes were (pipelined: its first frame comes before the
  other's last one, or the other way round);
- at least as many complete, correctly paired transactions as tshark recovers from the same
  lossy file. A tshark pair counts when its request and response are the frames where a clean
  transaction's request and response complete, with that request's URI (found by tests/lossy.py
  in the original capture, mapped through the dropped frames).

Which messages a loss hit is known from the capture itself (tests/lossy.py's own HTTP framing),
never from wirestream. Generated captures have distinct URIs and bodies so that a mispairing
always shows. Known bugs are strict xfails, each with its cause.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import shutil
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dpkt
import pytest

from tests import lossy
from tests.flowgen import Conversation
from tests.pcapgen import write_pcap
from wirestream.streams.replay import replay_records

PCAPS = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
MARKS = {"gap", "truncated", "no_request", "no_response"}
WORK: Path | None = None  # set by the `workdir` fixture (lossy files and generated captures)


# ------------------------------------------------------------------ generated captures
SIZES = (0, 120, 1500, 2900, 5000, 700)


def body_for(uri: str, size: int) -> bytes:
    """Distinct bytes per URI (so a response paired with the wrong request shows)."""
    seed = hashlib.sha256(uri.encode()).digest()
    out = bytearray()
    while len(out) < size:
        out += seed
        seed = hashlib.sha256(seed).digest()
    return bytes(out[:size])


def gen_request(uri: str, i: int) -> bytes:
    if i % 4 == 3:  # a POST whose body spans two segments and ends without a newline
        body = body_for("req" + uri, 2000)
        head = f"POST {uri} HTTP/1.1\r\nHost: gen\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body
    return f"GET {uri} HTTP/1.1\r\nHost: gen\r\nUser-Agent: lossy-test\r\n\r\n".encode()


def gen_response(uri: str, i: int) -> bytes:
    body = body_for(uri, SIZES[i % len(SIZES)])
    etag = hashlib.sha256(uri.encode()).hexdigest()[:16]
    head = f'HTTP/1.1 200 OK\r\nETag: "{etag}"\r\nContent-Type: application/octet-stream\r\n'
    if i % 2:
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(body[p : p + 1000]), body[p : p + 1000])
            for p in range(0, len(body), 1000)
        )
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def gen_keepalive(path: Path, flows: int = 2, n: int = 16) -> Path:
    """Two keep-alive connections, one request at a time, Content-Length and chunked bodies."""
    frames: list[tuple[int, bytes]] = []
    for f in range(flows):
        c = Conversation(sport=41000 + f, ts_ns=1_700_000_000_000_000_000 + f * 10**9)
        c.handshake()
        for i in range(n):
            uri = f"/ka/{f}/{i}"
            c.send(True, gen_request(uri, i))
            c.send(False, gen_response(uri, i))
        c.close()
        frames += c.frames
    frames.sort(key=lambda r: r[0])
    return write_pcap(path, frames)


def gen_pipelined(path: Path, bursts: int = 6, per: int = 4) -> Path:
    """Bursts of 4 pipelined requests, answered by 4 responses sent back to back: message
    boundaries fall inside segments on both sides."""
    c = Conversation(sport=42000).handshake()
    for b in range(bursts):
        uris = [(f"/pl/{b * per + j}", b * per + j) for j in range(per)]
        c.send(True, b"".join(gen_request(u, i) for u, i in uris))
        c.send(False, b"".join(gen_response(u, i) for u, i in uris))
    c.close()
    return write_pcap(path, c.frames)


def gen_pipelined_get(path: Path, bursts: int = 3, per: int = 30) -> Path:
    """Bursts of 30 pipelined GETs (two segments each, split inside a request), answered by
    30 small responses: a lost segment takes whole requests, and the next one starts at a
    line start."""
    c = Conversation(sport=43000).handshake()
    for b in range(bursts):
        uris = [f"/g/{b * per + j}" for j in range(per)]
        reqs = (f"GET {u} HTTP/1.1\r\nHost: gen\r\nUser-Agent: lossy-test\r\n\r\n" for u in uris)
        c.send(True, "".join(reqs).encode())
        body = [body_for(u, 40 + 10 * (i % 7)) for i, u in enumerate(uris)]
        c.send(
            False,
            b"".join(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(x), x) for x in body
            ),
        )
    c.close()
    return write_pcap(path, c.frames)


GENERATED: dict[str, Callable[[Path], Path]] = {
    "gen_keepalive": gen_keepalive,
    "gen_pipelined": gen_pipelined,
    "gen_pipelined_get": gen_pipelined_get,
}
CAPTURES = {
    "own_nginx_keepalive_multi.pcap": 2,  # capture -> seeds per kind
    "own_nginx_head_and_get.pcap": 2,
    "own_echo_post_chunked_upload.pcap": 2,
    "own_wrk_small.pcap": 1,
    "zeek__http__pipelined-requests.pcap": 2,
    "gen_keepalive": 3,
    "gen_pipelined": 3,
    "gen_pipelined_get": 3,
}

# ------------------------------------------------------------------ known bugs
# (capture, kind) -> reason for every seed, or {seed: reason}; empty: no known bug left
XFAIL: dict[tuple[str, str], str | dict[int, str]] = {}


def known_bug(name: str, kind: str, seed: int) -> str | None:
    v = XFAIL.get((name, kind))
    return v.get(seed) if isinstance(v, dict) else v


# ------------------------------------------------------------------ running both tools
# The preferences fixtures/pcaps/oracles were made with (shared/tools/make_oracles.py): tshark
# at its best on these captures (HTTP on the loopback captures' ports, desegmentation on).
TSHARK_PREFS = [
    *("-o", "tcp.desegment_tcp_streams:TRUE", "-o", "tcp.check_checksum:FALSE"),
    *("-o", "http.desegment_headers:TRUE", "-o", "http.desegment_body:TRUE"),
    *("-o", "http.dechunk_body:TRUE", "--enable-heuristic", "http_tcp"),
    *("-d", "tcp.port==18080,http", "-d", "tcp.port==18081,http", "-d", "tcp.port==18082,http"),
]


def http_records(path: Path) -> list[dict[str, Any]]:
    return [r for r in replay_records([str(path)]) if r["type"] == "http"]


def tshark_pairs(path: Path) -> list[tuple[int, int, str | None]] | None:
    """(request frame, response frame, uri path) of each response tshark pairs with a request
    (`http.request_in`; frames numbered from 1 in `path`); None without tshark."""
    exe = shutil.which("tshark")
    if exe is None:
        return None
    cmd = [exe, "-r", str(path), *TSHARK_PREFS, "-Y", "http.response", "-T", "fields"]
    cmd += ["-E", "aggregator=|", "-e", "frame.number", "-e", "http.request_in"]
    cmd += ["-e", "http.response_for.uri"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    rows = []
    for line in out.splitlines():
        frame, req_in, uris = line.split("\t")
        ulist = uris.split("|") if uris else []
        for k, req in enumerate(req_in.split("|") if req_in else []):
            u = ulist[k] if k < len(ulist) else None
            path_q = None
            if u:
                parts = urlsplit(u)
                path_q = parts.path + ("?" + parts.query if parts.query else "")
            rows.append((int(req), int(frame), path_q))
    return rows


# ------------------------------------------------------------------ comparing records
def flow_of(r: dict[str, Any]) -> tuple:
    return ((r["client"]["ip"], r["client"]["port"]), (r["server"]["ip"], r["server"]["port"]))


def _headers(m: dict[str, Any]) -> tuple:
    return tuple(tuple(h) for h in m["headers"])


def first_line(m: dict[str, Any]) -> tuple:
    return (m["method"], m["uri"]) if "method" in m else (m["status"], m["reason"])


def req_fp(q: dict[str, Any]) -> tuple:
    return (q["method"], q["uri"], _headers(q))


def resp_fp(s: dict[str, Any]) -> tuple:
    return (s["status"], s["reason"], _headers(s))


def body(m: dict[str, Any]) -> tuple:
    return (m["body_len"], m["body_sha256"])


def lossy_mark(m: dict[str, Any], tags: list[str]) -> bool:
    """The record says this side's bytes may be incomplete or mis-framed."""
    return "missed_bytes" in m or bool({"gap", "truncated"} & set(tags))


def view(r: dict[str, Any]) -> str:
    """A record as compared across runs: ids differ (the flow uid hashes the first packet's
    time, which a lost SYN changes); `resync` only says a loss came before; `latency` and
    `response_time` are delivery times, and bytes parked behind a hole are delivered when the
    hole is declared, later than in the clean run."""
    drop = ("id", "uid", "trans_depth", "latency", "response_time")
    d = {k: v for k, v in r.items() if k not in drop}
    d["tags"] = [t for t in r["tags"] if t != "resync"]
    return json.dumps(d, sort_keys=True)


def same(lossy_m: dict[str, Any], clean_m: dict[str, Any], is_req: bool, marked: bool) -> bool:
    """Is `lossy_m` the clean run's `clean_m`? A side marked lossy may have lost the end of
    its head: its first line must match and its headers start the clean ones (the last one
    possibly cut)."""
    fp = req_fp if is_req else resp_fp
    a, b = fp(lossy_m), fp(clean_m)
    if not marked:
        return a == b
    ha, hb = a[2], b[2]
    if a[:2] != b[:2] or len(ha) > len(hb):
        return False
    if not ha:
        return True
    last_a, last_b = ha[-1], hb[len(ha) - 1]
    return ha[:-1] == hb[: len(ha) - 1] and last_b[0].startswith(last_a[0])


@dataclass
class Clean:
    name: str
    path: Path
    index: lossy.CaptureIndex
    records: dict[tuple, list[dict[str, Any]]]  # per flow, in trans_depth order
    by_first: dict[tuple, list[dict[str, Any]]] = field(default_factory=dict)
    # (request frame, response frame, uri) of each transaction, frames where the messages
    # complete (capture order, from 0): what tshark's pairing must match
    frame_pairs: Counter[tuple[int, int | None, str]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        for flow, recs in self.records.items():
            for r in recs:
                for side in ("request", "response"):
                    if r[side] is not None:
                        key = (flow, side, first_line(r[side]))
                        self.by_first.setdefault(key, []).append(r)
        for flow in self.index.flows:
            for q, s in self.index.transactions(flow):
                if q is not None and s is not None:
                    uri = q.first_line.split(" ")[1]
                    key = (self.index.done_frame(q), self.index.done_frame(s), uri)
                    self.frame_pairs[key] += 1

    def tshark_ok(self, rows: list[tuple[int, int, str | None]], dropped: list[int]) -> int:
        """How many of tshark's pairs are right; `dropped`: frames missing from its input."""
        gone = set(dropped)
        kept = [f.index for f in self.index.frames if f.index not in gone]
        got = Counter((kept[q - 1], kept[s - 1], uri) for q, s, uri in rows)
        return sum((got & self.frame_pairs).values())


@dataclass
class Outcome:
    problems: list[str]
    paired_ok: int  # records with both sides, correctly paired
    exact: int  # records identical to a clean record
    tshark_ok: int | None


def by_flow(records: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: r["trans_depth"]):
        out.setdefault(flow_of(r), []).append(r)
    return out


def affected(clean: Clean, loss: lossy.Loss) -> set[tuple[tuple, int]]:
    """(flow, transaction number) of the clean transactions a loss may change (module doc)."""
    idx = clean.index
    touched = {(m.flow, m.is_request, m.n) for m in loss.touched}
    out: set[tuple[tuple, int]] = set()
    for flow in idx.flows:
        txns = idx.transactions(flow)
        spans = []
        for q, s in txns:
            frames = [i for m in (q, s) if m is not None for i in idx.frames_of(m)]
            spans.append((min(frames), max(frames)) if frames else (0, 0))
        hit = [
            i
            for i, (q, s) in enumerate(txns)
            if any(m is not None and (m.flow, m.is_request, m.n) in touched for m in (q, s))
        ]
        for i in hit:
            out.add((flow, i))
            a, b = spans[i]
            out |= {(flow, j) for j, (c, d) in enumerate(spans) if c <= b and a <= d}
    return out


def judge(clean: Clean, loss: lossy.Loss, records: list[dict[str, Any]], tshark) -> Outcome:
    problems: list[str] = []
    clean_views = {view(r) for recs in clean.records.values() for r in recs}
    paired_ok = exact = 0
    for r in records:
        flow, tags, q, s = flow_of(r), r["tags"], r["request"], r["response"]
        what = f"{(q or {}).get('uri')} -> {(s or {}).get('status')} {tags}"
        if view(r) in clean_views:
            exact += 1
        elif not (MARKS & set(tags) or (q and "missed_bytes" in q) or (s and "missed_bytes" in s)):
            problems.append(f"changed but not marked: {what}")
        found: dict[str, list[dict[str, Any]]] = {}
        for side, m in (("request", q), ("response", s)):
            if m is None:
                continue
            marked = lossy_mark(m, tags)
            cands = clean.by_first.get((flow, side, first_line(m)), [])
            found[side] = [c for c in cands if same(m, c[side], side == "request", marked)]
            if not found[side]:
                problems.append(f"{side} not in the clean run: {what}")
            elif not marked and body(m) not in {body(c[side]) for c in found[side]}:
                problems.append(f"{side} body differs, unmarked: {what}")
        if q is not None and s is not None:
            # the clean transactions this request was; their responses are the right ones
            right = [c["response"] for c in found["request"] if c["response"] is not None]
            marked = lossy_mark(s, tags)
            ok = [a for a in right if same(s, a, False, marked)]
            if not ok:
                problems.append(f"MISPAIRED: {what}")
            elif not marked and body(s) not in {body(a) for a in ok}:
                problems.append(f"MISPAIRED (body): {what}")
            else:
                paired_ok += 1
    lossy_views = {view(r) for r in records}
    near = affected(clean, loss)
    for flow, recs in clean.records.items():
        for i, r in enumerate(recs):
            if (flow, i) not in near and view(r) not in lossy_views:
                problems.append(f"untouched transaction {i} changed: {r['request']['uri']}")
    tshark_ok = None
    if tshark is not None:
        tshark_ok = clean.tshark_ok(tshark, loss.dropped)
    return Outcome(problems, paired_ok, exact, tshark_ok)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    global WORK
    WORK = tmp_path_factory.mktemp("lossy")
    return WORK


def capture_path(name: str) -> Path:
    if name in GENERATED:
        assert WORK is not None
        path = WORK / f"{name}.pcap"
        if not path.exists():
            GENERATED[name](path)
        return path
    return PCAPS / name


@functools.cache
def clean_run(name: str) -> Clean:
    path = capture_path(name)
    return Clean(name, path, lossy.index_capture(path), by_flow(http_records(path)))


@functools.cache
def lossy_file(name: str, kind: str, seed: int) -> tuple[lossy.Loss, Path] | None:
    clean = clean_run(name)
    try:
        loss = lossy.choose_loss(clean.index, kind, seed)
    except lossy.NoCandidate:
        return None
    assert WORK is not None
    out = WORK / f"{Path(name).stem}.{kind}.{seed}.pcap"
    lossy.write_without(clean.path, out, clean.index.frames, loss.dropped)
    return loss, out


def _readdress(frame: bytes, k: int) -> bytes:
    """Ethernet/IPv4 `frame` with the first octet of both addresses set to 10 + k (so that
    copies of one connection become distinct connections), IP checksum recomputed."""
    assert frame[12:14] == b"\x08\x00" and frame[14] >> 4 == 4, "Ethernet/IPv4 only"
    ihl = (frame[14] & 15) * 4
    b = bytearray(frame)
    b[26] = b[30] = 10 + k
    b[24:26] = b"\0\0"
    words = struct.unpack(f"!{ihl // 2}H", bytes(b[14 : 14 + ihl]))
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    b[24:26] = struct.pack("!H", ~total & 0xFFFF)
    return bytes(b)


@functools.cache
def tshark_batch(name: str) -> dict[tuple[str, int], list[tuple[int, int, str | None]]] | None:
    """tshark's pairs for every lossy copy of `name`, from one tshark run: tshark costs
    ~0.2 s a file, mostly start-up, so the copies go into one file, each readdressed
    (_readdress) and numbered from its own first frame again."""
    if shutil.which("tshark") is None:
        return None
    copies = [(k, s) for n, k, s in CASES if n == name and lossy_file(n, k, s) is not None]
    records: list[tuple[int, bytes, int]] = []
    starts = []
    for i, (kind, seed) in enumerate(copies):
        starts.append(len(records))
        got = lossy_file(name, kind, seed)
        assert got is not None
        for f in lossy.read_frames(got[1]):
            records.append((f.ts_ns, _readdress(f.raw, i), f.orig_len))
    assert WORK is not None
    merged = write_pcap(WORK / f"{Path(name).stem}.all.pcap", records, nanosecond=True)
    out: dict[tuple[str, int], list[tuple[int, int, str | None]]] = {c: [] for c in copies}
    for req, resp, uri in tshark_pairs(merged) or []:
        i = bisect.bisect_right(starts, resp - 1) - 1
        assert starts[i] < req <= resp, "a pair across copies"
        out[copies[i]].append((req - starts[i], resp - starts[i], uri))
    return out


@functools.cache
def lossy_run(name: str, kind: str, seed: int) -> tuple[lossy.Loss, Outcome] | None:
    got = lossy_file(name, kind, seed)
    if got is None:
        return None
    loss, out = got
    batch = tshark_batch(name)
    rows = batch[(kind, seed)] if batch is not None else None
    return loss, judge(clean_run(name), loss, http_records(out), rows)


CASES = [
    (name, kind, seed)
    for name, seeds in CAPTURES.items()
    for kind in lossy.KINDS
    for seed in range(seeds)
]


def _params() -> list[Any]:
    out = []
    for case in CASES:
        bug = known_bug(*case)
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        out.append(pytest.param(*case, marks=marks, id="-".join(map(str, case))))
    return out


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("name", list(CAPTURES))
def test_clean_index_agrees_with_wirestream_and_tshark(workdir: Path, name: str):
    """The script's own HTTP framing finds the transactions wirestream and tshark find (so
    'which transactions a loss hit' is computed independently and right)."""
    clean = clean_run(name)
    for flow in clean.index.flows:
        txns = clean.index.transactions(flow)
        recs = clean.records.get(flow, [])
        assert len(recs) == len(txns), flow
        for (q, s), r in zip(txns, recs, strict=True):
            assert q is not None and r["request"]["uri"] == q.first_line.split(" ")[1]
            assert s is not None and r["response"]["status"] == s.status
    rows = tshark_pairs(clean.path)
    if rows is None:
        pytest.skip("tshark not installed")
    total = sum(len(r) for r in clean.records.values())
    if name.startswith("gen_pipelined"):  # tshark pairs these with the burst's last request
        assert clean.tshark_ok(rows, []) < total
    else:
        assert clean.tshark_ok(rows, []) == total


@pytest.mark.parametrize(("name", "kind", "seed"), _params())
def test_pairing_after_loss(workdir: Path, name: str, kind: str, seed: int):
    got = lossy_run(name, kind, seed)
    if got is None:
        pytest.skip("the capture has no segment this kind of loss can hit")
    loss, outcome = got
    if kind in ("syn", "fin"):
        assert loss.dropped
    else:
        assert loss.lost, "the loss must remove bytes"
    assert not outcome.problems, "\n".join(outcome.problems)
    if outcome.tshark_ok is not None:
        assert outcome.paired_ok >= outcome.tshark_ok


def test_batched_tshark_equals_one_file_runs(workdir: Path):
    """The merged-file shortcut (tshark_batch) gives what tshark gives on each file alone."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    name = "own_nginx_keepalive_multi.pcap"
    batch = tshark_batch(name)
    assert batch is not None
    for kind, seed in (("resp-whole", 0), ("req-head", 1)):
        got = lossy_file(name, kind, seed)
        assert got is not None
        assert batch[(kind, seed)] == tshark_pairs(got[1])
        assert batch[(kind, seed)]


def _totals(names: list[str]) -> tuple[int, int]:
    ours = theirs = 0
    for case in CASES:
        if case[0] in names and (got := lossy_run(*case)) is not None:
            ours += got[1].paired_ok
            theirs += got[1].tshark_ok or 0
    return ours, theirs


def test_more_recovered_than_tshark_on_generated_captures(workdir: Path):
    """Every lossy copy counted, known bugs included (their mispairings count for nothing)."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    ours, theirs = _totals(list(GENERATED))
    assert ours > theirs


def test_more_recovered_than_tshark_on_real_captures(workdir: Path):
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    ours, theirs = _totals([n for n in CAPTURES if n not in GENERATED])
    assert ours > theirs


@pytest.mark.parametrize("seed", range(3))
def test_each_kind_of_loss_takes_what_it_says(workdir: Path, seed: int):
    """On a capture where every kind applies: what each kind dropped, checked against the
    index (message ranges) and the frames' own flags."""
    idx = clean_run("gen_pipelined").index
    msgs = [m for ms in idx.messages.values() for m in ms]
    for kind in lossy.KINDS:
        loss = lossy.choose_loss(idx, kind, seed)
        frames = [idx.frames[i] for i in loss.dropped]
        assert (frames and all(f.flow == frames[0].flow for f in frames)) or kind == "random"
        if kind in ("syn", "fin"):
            bit = dpkt.tcp.TH_SYN if kind == "syn" else dpkt.tcp.TH_FIN
            assert all(f.flags & bit for f in frames) and not loss.lost
            continue
        ((key, ranges),) = loss.lost.items() if kind != "random" else [(None, [])]
        lost = ranges[0] if ranges else None
        if kind in ("body-length", "body-chunked"):
            (m,) = loss.touched
            assert m.framing == kind.split("-")[1] and not m.is_request
            assert m.head_end <= lost[0] and lost[1] < m.end
        elif kind in ("resp-head", "req-head"):
            assert any(m.is_request == (kind == "req-head") for m in loss.touched)
            assert any(lost[0] <= m.start < lost[1] and m.flow == key[0] for m in msgs)
        elif kind in ("resp-whole", "req-whole"):
            whole = [m for m in loss.touched if lost[0] <= m.start and m.end <= lost[1]]
            assert whole and all(m.is_request == (kind == "req-whole") for m in whole)
            later = [m for m in msgs if m.flow == whole[0].flow and m.start >= lost[1]]
            assert any(m.is_request == whole[0].is_request for m in later)
        elif kind == "boundary":
            ends = {m.end for m in loss.touched} & {m.start for m in loss.touched}
            assert any(lost[0] < e < lost[1] for e in ends)


def test_lossy_script_cli_is_deterministic(tmp_path: Path):
    src = PCAPS / "zeek__http__pipelined-requests.pcap"
    outs = []
    for run in range(2):
        out = tmp_path / f"out{run}.pcap"
        cmd = [sys.executable, "-m", "tests.lossy", str(src), str(out), "--drop", "random"]
        res = subprocess.run([*cmd, "--seed", "7"], capture_output=True, text=True, check=True)
        outs.append((out.read_bytes(), json.loads(res.stdout)))
    assert outs[0] == outs[1]
    dropped = outs[0][1]["dropped_frames"]
    assert len(dropped) >= lossy.RANDOM_COUNT
    frames = lossy.read_frames(src)
    kept = lossy.read_frames(tmp_path / "out0.pcap")
    assert [f.raw for f in kept] == [f.raw for f in frames if f.index + 1 not in dropped]


# ------------------------------------------------------------------ minimal repros of the bugs
def _resp(tag: str, n: int) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n{tag * n}".encode()


def _replay(tmp_path: Path, build: Callable[[Conversation], None]) -> list[tuple]:
    c = Conversation().handshake()
    build(c)
    c.close()
    path = write_pcap(tmp_path / "repro.pcap", c.frames)
    return [
        (r["request"] and r["request"]["uri"], r["response"] and r["response"]["body_len"])
        for r in http_records(path)
    ]


def test_pipelined_lost_request_segment(tmp_path: Path):
    """GET /a, /b, /c pipelined in three segments, /a's lost; responses come after all three.
    Right: /b with B (20 bytes), /c with C (30), A unpaired."""

    def build(c: Conversation) -> None:
        for i, uri in enumerate("abc"):
            req = f"GET /{uri} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            c.send(True, req, drop={0} if i == 0 else set(), ack=i == 2)
        c.send(False, _resp("a", 10) + _resp("b", 20) + _resp("c", 30))

    got = _replay(tmp_path, build)
    assert ("/b", 20) in got and ("/c", 30) in got, got


def test_pipelined_request_after_lost_post_head(tmp_path: Path):
    """POST /p (2000-byte body) whose head segment is lost, then GET /b and GET /c right
    after its body in one segment. Right: /b with B, /c with C (or unpaired), never /c with P."""

    def build(c: Conversation) -> None:
        post = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"z" * 2000
        c.send(True, post, drop={0}, ack=False)
        c.send(True, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        c.send(False, _resp("p", 10) + _resp("b", 20) + _resp("c", 30))

    got = _replay(tmp_path, build)
    wrong = {(u, n) for u, n in got if u and n} - {("/b", 20), ("/c", 30)}
    assert not wrong, got


def test_keepalive_lost_head_request(tmp_path: Path):
    """HEAD /h lost (keep-alive, one request at a time); its response has Content-Length: 50
    and no body. Right: /b with B (20), /c with C (30)."""

    def build(c: Conversation) -> None:
        c.send(True, b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n", drop={0})
        c.send(False, b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n")
        c.send(True, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        c.send(False, _resp("b", 20))
        c.send(True, b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        c.send(False, _resp("c", 30))

    got = _replay(tmp_path, build)
    wrong = {(u, n) for u, n in got if u and n} - {("/b", 20), ("/c", 30)}
    assert not wrong and ("/c", 30) in got, got


def test_keepalive_lost_response_acked_by_next_request(tmp_path: Path):
    """Response A (one segment) lost; GET /b's segment is the first to acknowledge it (no pure
    ACK in between, as nginx on loopback does). Right: /b with B (20), /c with C (30)."""

    def build(c: Conversation) -> None:
        c.send(True, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", ack=False)
        c.send(False, _resp("a", 10), drop={0}, ack=False)
        c.send(True, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n", ack=False)
        c.send(False, _resp("b", 20), ack=False)
        c.send(True, b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n", ack=False)
        c.send(False, _resp("c", 30))

    got = _replay(tmp_path, build)
    assert ("/b", 20) in got and ("/c", 30) in got, got


def test_pairing_agrees_with_tshark_on_zeek_drops_capture():
    """Zeek's zero-length-bodies-with-drops: a request and its response lost on a keep-alive
    connection, later a lost request whose response was captured. All bodies are empty, so
    only the timing tells which response has no request: tshark's oracle (request_in) says the
    one in frame 35; ours must be the same (by its capture time: pairing shifted by one after
    the first loss leaves frame 20's alone instead), and tshark's pairs must be ours."""
    name = "zeek__http__zero-length-bodies-with-drops.pcap"
    oracle = [
        json.loads(line)
        for line in (PCAPS / "oracles" / name / "http_tshark.jsonl").read_text().splitlines()
    ]
    times = [f.ts_ns for f in lossy.read_frames(PCAPS / name)]
    alone = [
        times[r["frame"] - 1] for r in oracle if r["type"] == "response" and not r.get("request_in")
    ]
    paired_frames = {
        int(r["request_in"]) for r in oracle if r["type"] == "response" and r.get("request_in")
    }
    paired_uris = [
        r["uri"] for r in oracle if r["type"] == "request" and r["frame"] in paired_frames
    ]
    recs = http_records(PCAPS / name)
    assert [r["ts"] for r in recs if r["request"] is None] == [(t // 1000) / 1e6 for t in alone]
    assert [r["request"]["uri"] for r in recs if r["request"] and r["response"]] == paired_uris
