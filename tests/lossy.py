"""Make lossy copies of clean captures: drop chosen TCP segments, by kind, deterministic per seed.

    python -m tests.lossy IN.pcap OUT.pcap --drop KIND --seed N     (prints what was dropped)

The capture is indexed independently of wirestream: frames are parsed with dpkt, each TCP
direction is laid out by sequence number, and HTTP/1.x messages are found by walking the
reassembled bytes with a small framing parser of our own (request and status lines, headers,
Content-Length, chunked, HEAD/1xx/204/304, close-delimited). Dropping "a segment" means losing
its byte range: every frame of that direction whose payload overlaps the range is left out
(retransmissions too, else the loss would not happen), the peer's ACKs stay (so the capture
looks like a capture drop: the receiver got bytes we never will).

Kinds (KINDS): body-length, body-chunked (a segment inside a Content-Length / chunked response
body), resp-head, resp-whole (every segment of one response; a later one exists on the same
connection), req-head, req-whole, boundary (a segment holding the end of one message and the
start of the next: pipelining), syn (SYN and SYN-ACK of one connection: mid-stream pickup),
fin (the FINs of one connection), random (three random payload segments).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

from tests.pcapgen import write_pcap
from wirestream.probe.capture import open_capture

KINDS = (
    "body-length",
    "body-chunked",
    "resp-head",
    "resp-whole",
    "req-head",
    "req-whole",
    "boundary",
    "syn",
    "fin",
    "random",
)
RANDOM_COUNT = 3
_M32 = 1 << 32

Endpoint = tuple[str, int]
FlowId = tuple[Endpoint, Endpoint]  # (client, server)
Range = tuple[int, int]  # [start, end) stream offsets

_REQUEST_LINE = re.compile(rb"([A-Za-z][A-Za-z0-9_.!#$%&'*+^`|~-]*) (\S+) HTTP/1\.[01]\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?\r?\n", re.IGNORECASE)
_HEAD_END = re.compile(rb"\r?\n\r?\n")


# ---------------------------------------------------------------------------------- frames
@dataclass
class Frame:
    """One captured record; TCP fields are set when it is an unfragmented TCP segment."""

    index: int
    linktype: int
    ts_ns: int
    orig_len: int
    raw: bytes
    src: Endpoint | None = None
    dst: Endpoint | None = None
    seq: int = 0
    flags: int = 0
    payload: bytes = b""
    flow: FlowId | None = None
    to_server: bool = True
    start: int = 0  # stream offset of the payload (set by index_capture)

    @property
    def end(self) -> int:
        return self.start + len(self.payload)


def _ip_of(linktype: int, raw: bytes):
    if linktype == 1:
        return dpkt.ethernet.Ethernet(raw).data
    if linktype == 0:
        return dpkt.loopback.Loopback(raw).data
    if linktype == 113:
        return dpkt.sll.SLL(raw).data
    if linktype == 276:
        return dpkt.sll2.SLL2(raw).data
    if linktype in (12, 14, 101):
        return dpkt.ip6.IP6(raw) if raw and raw[0] >> 4 == 6 else dpkt.ip.IP(raw)
    return None


def _parse(frame: Frame) -> None:
    try:
        ip = _ip_of(frame.linktype, frame.raw)
    except (dpkt.UnpackError, IndexError, ValueError):
        return
    if isinstance(ip, dpkt.ip.IP):
        if ip.mf or ip.offset:
            return  # a fragment: left alone
        family = socket.AF_INET
    elif isinstance(ip, dpkt.ip6.IP6):
        family = socket.AF_INET6
    else:
        return
    seg = ip.data
    if not isinstance(seg, dpkt.tcp.TCP):
        return
    src_ip, dst_ip = socket.inet_ntop(family, ip.src), socket.inet_ntop(family, ip.dst)
    frame.src, frame.dst = (src_ip, seg.sport), (dst_ip, seg.dport)
    frame.seq, frame.flags, frame.payload = seg.seq, seg.flags, bytes(seg.data)


def read_frames(path: str | Path) -> list[Frame]:
    frames = []
    with open_capture(path) as cap:
        for i, (linktype, ts_ns, orig_len, raw) in enumerate(cap):
            f = Frame(i, linktype, ts_ns, orig_len, bytes(raw))
            _parse(f)
            frames.append(f)
    return frames


# ---------------------------------------------------------------------------- HTTP framing
@dataclass
class Message:
    """One HTTP/1.x message found in a reassembled direction."""

    flow: FlowId
    is_request: bool
    n: int  # 0, 1, ... among the direction's messages (1xx responses included)
    start: int
    head_end: int
    end: int
    first_line: str
    framing: str  # "length", "chunked", "close", "none"
    method: str = ""  # requests
    status: int = 0  # responses

    @property
    def final(self) -> bool:
        return self.is_request or not (100 <= self.status < 200) or self.status == 101

    def to_json(self) -> dict:
        return {
            "request" if self.is_request else "response": self.first_line,
            "range": [self.start, self.end],
            "framing": self.framing,
        }


def _headers(head: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in re.split(rb"\r?\n", head)[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out.setdefault(name.strip().lower().decode("latin-1"), []).append(
                value.strip().decode("latin-1")
            )
    return out


def _chunked_end(data: bytes, pos: int) -> int | None:
    """End of a chunked body starting at `pos` (after trailers), None if it runs off."""
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return None
        size_text = data[pos:nl].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return None
        pos = nl + 1
        if size == 0:
            while True:  # trailers, then an empty line
                nl = data.find(b"\n", pos)
                if nl < 0:
                    return None
                line = data[pos:nl].strip()
                pos = nl + 1
                if not line:
                    return pos
        pos += size
        if data[pos : pos + 2] == b"\r\n":
            pos += 2
        elif data[pos : pos + 1] == b"\n":
            pos += 1
        else:
            return None


def walk_messages(
    flow: FlowId, is_request: bool, data: bytes, methods: Sequence[str] = ()
) -> list[Message]:
    """The messages of one direction's bytes; `methods`: the requests' methods, in order
    (response framing depends on them: HEAD, CONNECT)."""
    out: list[Message] = []
    pos, final_n = 0, 0
    line_re = _REQUEST_LINE if is_request else _STATUS_LINE
    while pos < len(data):
        while data[pos : pos + 1] in (b"\r", b"\n"):
            pos += 1
        m = line_re.match(data, pos)
        if m is None:
            break
        he = _HEAD_END.search(data, m.end() - 2 if m.end() >= 2 else m.end())
        if he is None:
            break
        head_end = he.end()
        hdrs = _headers(data[pos : he.start()])
        first = m.group(0).rstrip(b"\r\n").decode("latin-1")
        te = ",".join(hdrs.get("transfer-encoding", [])).lower()
        cl = hdrs.get("content-length")
        method, status = "", 0
        req_method = ""
        if is_request:
            method = m.group(1).decode("latin-1")
            no_body = False
        else:
            status = int(m.group(1))
            req_method = methods[final_n] if final_n < len(methods) else "GET"
            no_body = (
                req_method == "HEAD"
                or 100 <= status < 200
                or status in (204, 304)
                or (req_method == "CONNECT" and 200 <= status < 300)
            )
        if no_body:
            framing, end = "none", head_end
        elif "chunked" in te:
            framing, end = "chunked", _chunked_end(data, head_end)
        elif cl:
            framing, end = "length", head_end + int(cl[0])
        elif is_request:
            framing, end = "none", head_end
        else:
            framing, end = "close", len(data)
        if end is None or end > len(data):
            end = len(data)
        msg = Message(
            flow, is_request, len(out), pos, head_end, end, first, framing, method, status
        )
        out.append(msg)
        if msg.final:
            final_n += 1
        tunnel = (
            status == 101
            or method == "CONNECT"
            or (no_body and 200 <= status < 300 and req_method == "CONNECT")
        )
        if tunnel or framing == "close":
            break  # the bytes after are not HTTP messages (or not framed)
        pos = end
    return out


# ------------------------------------------------------------------------------- the index
@dataclass
class Direction:
    flow: FlowId
    to_server: bool
    base: int | None = None  # sequence number of stream offset 0
    frames: list[Frame] = field(default_factory=list)
    data: bytes = b""

    def layout(self) -> None:
        buf = bytearray()
        for f in sorted((f for f in self.frames if f.payload), key=lambda f: f.start):
            if f.start > len(buf):
                break  # a hole in the clean capture: stop there
            if f.end > len(buf):
                buf += f.payload[len(buf) - f.start :]
        self.data = bytes(buf)


@dataclass
class CaptureIndex:
    frames: list[Frame]
    dirs: dict[tuple[FlowId, bool], Direction]
    messages: dict[tuple[FlowId, bool], list[Message]]

    @property
    def flows(self) -> list[FlowId]:
        return sorted({flow for flow, _ in self.dirs})

    def payload_frames(self, flow: FlowId, to_server: bool) -> list[Frame]:
        d = self.dirs.get((flow, to_server))
        return [f for f in d.frames if f.payload] if d else []

    def frames_of(self, m: Message) -> list[int]:
        """Indices of the frames carrying bytes of `m` (capture order)."""
        r = (m.start, max(m.end, m.start + 1))
        return [
            f.index
            for f in self.payload_frames(m.flow, m.is_request)
            if overlaps((f.start, f.end), r)
        ]

    def done_frame(self, m: Message) -> int | None:
        """Index of the frame that completes `m` (every byte of it captured by then): where a
        dissector reports the message."""
        seen: list[Range] = []
        for f in sorted(self.payload_frames(m.flow, m.is_request), key=lambda f: f.index):
            seen = _merge([*seen, (f.start, f.end)])
            if any(a <= m.start and m.end <= b for a, b in seen):
                return f.index
        return None

    def transactions(self, flow: FlowId) -> list[tuple[Message | None, Message | None]]:
        """(request, final response) pairs in order."""
        reqs = self.messages.get((flow, True), [])
        resps = [m for m in self.messages.get((flow, False), []) if m.final]
        n = max(len(reqs), len(resps))
        return [
            (reqs[i] if i < len(reqs) else None, resps[i] if i < len(resps) else None)
            for i in range(n)
        ]


def _roles(frames: Iterable[Frame]) -> dict[frozenset[Endpoint], FlowId]:
    """(client, server) of each connection: the SYN's sender, else the side whose first
    payload is a request line (or the peer of a status line), else the higher port."""
    by_syn: dict[frozenset[Endpoint], FlowId] = {}
    by_content: dict[frozenset[Endpoint], FlowId] = {}
    for f in frames:
        if f.src is None or f.dst is None:
            continue
        key = frozenset((f.src, f.dst))
        if f.flags & dpkt.tcp.TH_SYN and key not in by_syn:
            by_syn[key] = (f.dst, f.src) if f.flags & dpkt.tcp.TH_ACK else (f.src, f.dst)
        elif f.payload and key not in by_content:
            if _REQUEST_LINE.match(f.payload):
                by_content[key] = (f.src, f.dst)
            elif _STATUS_LINE.match(f.payload):
                by_content[key] = (f.dst, f.src)
    roles: dict[frozenset[Endpoint], FlowId] = {}
    for f in frames:
        if f.src is None or f.dst is None:
            continue
        key = frozenset((f.src, f.dst))
        if key not in roles:
            by_port = (f.src, f.dst) if f.src[1] > f.dst[1] else (f.dst, f.src)
            roles[key] = by_syn.get(key) or by_content.get(key) or by_port
    return roles


def index_frames(frames: list[Frame]) -> CaptureIndex:
    roles = _roles(frames)
    dirs: dict[tuple[FlowId, bool], Direction] = {}
    for f in frames:
        if f.src is None or f.dst is None:
            continue
        flow = roles[frozenset((f.src, f.dst))]
        f.flow, f.to_server = flow, f.src == flow[0]
        d = dirs.setdefault((flow, f.to_server), Direction(flow, f.to_server))
        if d.base is None and f.flags & dpkt.tcp.TH_SYN:
            d.base = (f.seq + 1) % _M32
        if d.base is None and f.payload:
            d.base = f.seq
        d.frames.append(f)
    for d in dirs.values():
        base = d.base if d.base is not None else 0
        for f in d.frames:
            off = (f.seq - base) % _M32
            if off >= _M32 // 2:
                off -= _M32
            f.start = off
            if f.flags & dpkt.tcp.TH_SYN:
                f.start += 1  # the SYN's own sequence number is not data
        d.layout()
    messages: dict[tuple[FlowId, bool], list[Message]] = {}
    for (flow, to_server), d in sorted(dirs.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        if to_server:
            messages[(flow, True)] = walk_messages(flow, True, d.data)
    for (flow, to_server), d in dirs.items():
        if not to_server:
            reqs = messages.get((flow, True), [])
            messages[(flow, False)] = walk_messages(flow, False, d.data, [m.method for m in reqs])
    return CaptureIndex(frames, dirs, messages)


def index_capture(path: str | Path) -> CaptureIndex:
    return index_frames(read_frames(path))


# -------------------------------------------------------------------------------- the loss
@dataclass
class Loss:
    kind: str
    seed: int
    dropped: list[int]  # frame indices
    lost: dict[tuple[FlowId, bool], list[Range]]  # bytes no kept frame carries
    flows: list[FlowId]  # connections whose frames were dropped
    touched: list[Message]  # messages with lost bytes

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "seed": self.seed,
            "dropped_frames": [i + 1 for i in self.dropped],  # 1-based, as tshark numbers them
            "lost": [
                {
                    "client": list(flow[0]),
                    "server": list(flow[1]),
                    "direction": "to_server" if ts else "to_client",
                    "ranges": [list(r) for r in ranges],
                }
                for (flow, ts), ranges in self.lost.items()
            ],
            "touched": [m.to_json() for m in self.touched],
        }


def _merge(ranges: Iterable[Range]) -> list[Range]:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _subtract(ranges: list[Range], cover: list[Range]) -> list[Range]:
    out = []
    for a, b in ranges:
        pieces = [(a, b)]
        for c, d in cover:
            nxt = []
            for x, y in pieces:
                if d <= x or c >= y:
                    nxt.append((x, y))
                    continue
                if x < c:
                    nxt.append((x, c))
                if d < y:
                    nxt.append((d, y))
            pieces = nxt
        out += pieces
    return out


def overlaps(a: Range, b: Range) -> bool:
    return a[0] < b[1] and b[0] < a[1]


class NoCandidate(LookupError):
    """The capture has nothing this kind of loss can hit."""


Target = tuple[FlowId, bool, Range]  # bytes of one direction to lose


def _targets(idx: CaptureIndex, kind: str, rng: random.Random) -> list[Target]:
    """The byte ranges a payload kind of loss takes, picked among its candidates by `rng`."""

    def pick(cands: list):
        if not cands:
            raise NoCandidate(kind)
        return cands[rng.randrange(len(cands))]

    def segs(flow: FlowId, to_server: bool) -> list[Range]:
        """The distinct payload ranges of one direction (a retransmission is one segment)."""
        return sorted({(f.start, f.end) for f in idx.payload_frames(flow, to_server)})

    def msgs(is_request: bool) -> list[Message]:
        return [m for flow in idx.flows for m in idx.messages.get((flow, is_request), [])]

    if kind in ("body-length", "body-chunked"):
        framing = "length" if kind == "body-length" else "chunked"
        return [
            pick(
                [
                    (m.flow, False, r)
                    for m in msgs(False)
                    if m.framing == framing
                    for r in segs(m.flow, False)
                    if r[0] >= m.head_end and r[1] < m.end
                ]
            )
        ]
    if kind in ("resp-head", "req-head"):
        is_req = kind == "req-head"
        return [
            pick(
                [
                    (m.flow, is_req, r)
                    for m in msgs(is_req)
                    if m.final
                    for r in segs(m.flow, is_req)
                    if r[0] <= m.start < r[1]
                ]
            )
        ]
    if kind in ("resp-whole", "req-whole"):
        is_req = kind == "req-whole"
        cands, aligned = [], []
        for flow in idx.flows:
            ms = [m for m in idx.messages.get((flow, is_req), []) if m.final]
            for m in ms[:-1]:  # a later message exists: the connection goes on
                rs = [r for r in segs(flow, is_req) if overlaps(r, (m.start, m.end))]
                if rs:
                    cands.append([(flow, is_req, r) for r in rs])
                    if rs[0][0] == m.start and rs[-1][1] == m.end:  # takes nothing else
                        aligned.append(cands[-1])
        return pick(aligned or cands)
    if kind == "boundary":
        cands = []
        for (flow, ts), ms in sorted(idx.messages.items()):
            inner = {m.end for m in ms} & {m.start for m in ms}  # one message ends, next starts
            cands += [(flow, ts, r) for r in segs(flow, ts) if any(r[0] < e < r[1] for e in inner)]
        return [pick(cands)]
    if kind == "random":
        cands = [(flow, ts, r) for (flow, ts) in sorted(idx.dirs) for r in segs(flow, ts)]
        if len(cands) < RANDOM_COUNT:
            raise NoCandidate(kind)
        return rng.sample(cands, RANDOM_COUNT)
    raise ValueError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")


def choose_loss(idx: CaptureIndex, kind: str, seed: int) -> Loss:
    """Which frames to drop for `kind`, chosen by a PRNG seeded with (kind, seed)."""
    rng = random.Random(f"{kind}:{seed}")
    if kind in ("syn", "fin"):  # every SYN (FIN) of one connection, retransmissions too
        bit = dpkt.tcp.TH_SYN if kind == "syn" else dpkt.tcp.TH_FIN
        flows = sorted({f.flow for f in idx.frames if f.flow is not None and f.flags & bit})
        if not flows:
            raise NoCandidate(kind)
        flow = flows[rng.randrange(len(flows))]
        drop = {f.index for f in idx.frames if f.flow == flow and f.flags & bit}
    else:  # every frame carrying any of the bytes: retransmissions too
        drop = {
            f.index
            for flow, ts, r in _targets(idx, kind, rng)
            for f in idx.payload_frames(flow, ts)
            if overlaps((f.start, f.end), r)
        }
    lost: dict[tuple[FlowId, bool], list[Range]] = {}
    for key, d in idx.dirs.items():
        gone = _merge((f.start, f.end) for f in d.frames if f.index in drop and f.payload)
        kept = _merge((f.start, f.end) for f in d.frames if f.index not in drop and f.payload)
        left = _merge(_subtract(gone, kept))
        if left:
            lost[key] = left
    touched = [
        m
        for (flow, ts), ms in idx.messages.items()
        for m in ms
        if any(overlaps((m.start, m.end), r) for r in lost.get((flow, ts), []))
    ]
    flows = sorted({flow for i in drop if (flow := idx.frames[i].flow) is not None})
    return Loss(kind, seed, sorted(drop), lost, flows, touched)


def write_without(
    path: str | Path, out: str | Path, frames: list[Frame], drop: Iterable[int]
) -> Path:
    """A nanosecond pcap of every frame but `drop` (one link type: the input's)."""
    gone = set(drop)
    linktypes = {f.linktype for f in frames}
    if len(linktypes) != 1:
        raise ValueError(f"{path}: several link types {sorted(linktypes)}, cannot write one pcap")
    records = [(f.ts_ns, f.raw, f.orig_len) for f in frames if f.index not in gone]
    return write_pcap(out, records, linktype=linktypes.pop(), nanosecond=True)


def make_lossy(src: str | Path, out: str | Path, kind: str, seed: int) -> Loss:
    idx = index_capture(src)
    loss = choose_loss(idx, kind, seed)
    write_without(src, out, idx.frames, loss.dropped)
    return loss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lossy", description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--drop", required=True, choices=KINDS, metavar="KIND", help=", ".join(KINDS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        loss = make_lossy(args.input, args.output, args.drop, args.seed)
    except NoCandidate:
        print(f"{args.input}: nothing for --drop {args.drop} to hit", file=sys.stderr)
        return 2
    print(json.dumps(loss.to_json()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
