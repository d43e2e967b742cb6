"""Helpers for the HTTP decoder tests (no tests here): a fake decoder context, a tiny TCP
stream extractor for pcaps (in-order delivery, retransmissions trimmed, holes reported as gaps
once the peer acknowledged past them), and drivers that run, chunk and snapshot/restore."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dpkt

from wirestream.decoders.api import CLIENT, SERVER, Endpoint, FlowInfo
from wirestream.decoders.http import HttpDecoder
from wirestream.testing import Event, run_events
from wirestream.testing import FakeContext as FakeCtx

PCAPS = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
ORACLES = PCAPS / "oracles"


def canon(out: list) -> list[str]:
    return [json.dumps([t, f], sort_keys=True) for t, f in out]


# ---------------------------------------------------------------- pcap -> stream events
class _Dir:
    def __init__(self) -> None:
        self.isn: int | None = None
        self.next = 0
        self.ooo: dict[int, bytes] = {}
        self.fin: int | None = None


def _ip_of(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


def _packets(path: Path) -> Iterable[tuple[float, Any]]:
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        link = reader.datalink()
        for ts, buf in reader:
            try:
                if link == dpkt.pcap.DLT_NULL or link == 0:
                    pkt = dpkt.loopback.Loopback(buf).data
                elif link == dpkt.pcap.DLT_RAW or link in (12, 101, 228):
                    pkt = dpkt.ip.IP(buf)
                elif link == 229:
                    pkt = dpkt.ip6.IP6(buf)
                elif link == 113:
                    pkt = dpkt.sll.SLL(buf).data
                else:
                    pkt = dpkt.ethernet.Ethernet(buf).data
            except (dpkt.UnpackError, IndexError, ValueError):
                continue
            if isinstance(pkt, dpkt.ip.IP | dpkt.ip6.IP6) and isinstance(pkt.data, dpkt.tcp.TCP):
                yield ts, pkt


def tcp_flows(path: Path) -> dict[tuple, list[Event]]:
    """{(client ip, client port, server ip, server port): events in capture order}."""
    flows: dict[tuple, dict[str, Any]] = {}
    for ts, ip in _packets(path):
        tcp = ip.data
        src, dst = _ip_of(ip.src), _ip_of(ip.dst)
        a, b = (src, tcp.sport), (dst, tcp.dport)
        key = (a, b) if (a, b) in flows else (b, a) if (b, a) in flows else None
        syn_only = tcp.flags & dpkt.tcp.TH_SYN and not tcp.flags & dpkt.tcp.TH_ACK
        if key is None:
            if (
                syn_only
                or tcp.dport in HttpDecoder.ports
                or (tcp.sport not in HttpDecoder.ports and tcp.dport < tcp.sport)
            ):
                key = (a, b)
            else:
                key = (b, a)
            flows[key] = {"dirs": (_Dir(), _Dir()), "events": []}
        fl = flows[key]
        d = CLIENT if (src, tcp.sport) == key[0] else SERVER
        me, peer = fl["dirs"][d], fl["dirs"][1 - d]
        ev = fl["events"]
        ts_ns = round(ts * 1_000_000) * 1000
        if tcp.flags & dpkt.tcp.TH_SYN:
            if me.isn is None:
                me.isn = (tcp.seq + 1) & 0xFFFFFFFF
            if tcp.data:  # TCP Fast Open
                _add(me, 0, bytes(tcp.data), d, ev, ts_ns)
        elif tcp.data:
            if me.isn is None:
                me.isn = tcp.seq
            _add(me, (tcp.seq - me.isn) & 0xFFFFFFFF, bytes(tcp.data), d, ev, ts_ns)
        if tcp.flags & (dpkt.tcp.TH_FIN | dpkt.tcp.TH_RST) and me.isn is not None:
            end = (tcp.seq - me.isn + len(tcp.data)) & 0xFFFFFFFF
            me.fin = end if me.fin is None else min(me.fin, end)
        _ack(peer, tcp, 1 - d, ev, ts_ns)
    out = {}
    for key, fl in flows.items():
        ev = fl["events"]
        for d in (CLIENT, SERVER):
            me = fl["dirs"][d]
            while me.ooo:
                start = min(me.ooo)
                if start > me.next:
                    ev.append(("gap", d, start - me.next, ev[-1][-1] if ev else 0))
                    me.next = start
                _drain(me, d, ev, ev[-1][-1] if ev else 0)
        ev.append(("close", "end_of_input", ev[-1][-1] if ev else 0))
        out[(key[0][0], key[0][1], key[1][0], key[1][1])] = ev
    return out


def _add(me: _Dir, rel: int, data: bytes, d: int, ev: list, ts_ns: int) -> None:
    if rel + len(data) <= me.next:
        return
    if rel < me.next:
        data = data[me.next - rel :]
        rel = me.next
    if len(data) > len(me.ooo.get(rel, b"")):
        me.ooo[rel] = data
    _drain(me, d, ev, ts_ns)


def _drain(me: _Dir, d: int, ev: list, ts_ns: int) -> None:
    while True:
        best = None
        for start, data in me.ooo.items():
            if start <= me.next < start + len(data):
                best = start
                break
        if best is None:
            me.ooo = {s: v for s, v in me.ooo.items() if s + len(v) > me.next}
            return
        data = me.ooo.pop(best)[me.next - best :]
        ev.append(("data", d, data, ts_ns))
        me.next += len(data)


def _ack(peer: _Dir, tcp: Any, peer_dir: int, ev: list, ts_ns: int) -> None:
    """The peer's bytes up to tcp.ack were received: a hole before that is lost for good."""
    if not tcp.flags & dpkt.tcp.TH_ACK or peer.isn is None:
        return
    ack = (tcp.ack - peer.isn) & 0xFFFFFFFF
    if ack > 1 << 31:
        return
    if peer.fin is not None:
        ack = min(ack, peer.fin)
    while ack > peer.next:
        if any(s <= peer.next < s + len(v) for s, v in peer.ooo.items()):
            _drain(peer, peer_dir, ev, ts_ns)
            continue
        starts = [s for s in peer.ooo if s > peer.next]
        hole_end = min([ack, *starts])
        ev.append(("gap", peer_dir, hole_end - peer.next, ts_ns))
        peer.next = hole_end
        _drain(peer, peer_dir, ev, ts_ns)


def flow_info(key: tuple) -> FlowInfo:
    return FlowInfo("Cflow", "tcp", Endpoint(key[0], key[1]), Endpoint(key[2], key[3]))


# ---------------------------------------------------------------- drivers
def run(events: list[Event], options: dict | None = None, flow: FlowInfo | None = None) -> FakeCtx:
    ctx = FakeCtx(flow)
    run_events(HttpDecoder, events, options=options, ctx=ctx)
    return ctx


def run_with_restart(
    events: list[Event], at: int, options: dict | None = None, flow: FlowInfo | None = None
) -> FakeCtx:
    """Run, and after `at` events snapshot -> msgpack -> restore (decoders.testing)."""
    ctx = FakeCtx(flow)
    run_events(HttpDecoder, events, options=options, restore_at=[at], ctx=ctx)
    return ctx


def req(method: str = "GET", uri: str = "/", extra: str = "", body: bytes = b"") -> bytes:
    head = f"{method} {uri} HTTP/1.1\r\nHost: example.com\r\n{extra}"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def resp(status: int = 200, body: bytes = b"", extra: str = "", reason: str = "OK") -> bytes:
    head = f"HTTP/1.1 {status} {reason}\r\n{extra}"
    if "Transfer-Encoding" not in extra and status not in (204, 304):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def chunked(body: bytes, size: int = 7) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        part = body[i : i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"
