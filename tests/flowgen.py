"""Whole synthetic TCP conversations as Ethernet frames, for tests and generated captures.

`Conversation` plays a client and a server: handshake, data in MSS-sized segments with
the peer's ACKs, FIN teardown; `frames` collects (ts_ns, frame) records ready for
tests.pcapgen.write_pcap. Knobs allow drops, reordering and overlaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dpkt

from tests.pcapgen import ether, ipv4, tcp

SYN, ACK, FIN, RST, PSH = (
    dpkt.tcp.TH_SYN,
    dpkt.tcp.TH_ACK,
    dpkt.tcp.TH_FIN,
    dpkt.tcp.TH_RST,
    dpkt.tcp.TH_PUSH,
)


@dataclass
class Conversation:
    client: str = "10.0.0.1"
    server: str = "10.0.0.2"
    sport: int = 40000
    dport: int = 80
    isn_c: int = 1000
    isn_s: int = 5000
    ts_ns: int = 1_700_000_000_000_000_000
    step_ns: int = 1_000_000
    mss: int = 1460
    frames: list[tuple[int, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.seq = {True: self.isn_c, False: self.isn_s}

    def _emit(self, from_client: bool, flags: int, payload: bytes = b"", seq: int | None = None):
        me, peer = from_client, not from_client
        src, dst = (self.client, self.server) if me else (self.server, self.client)
        sp, dp = (self.sport, self.dport) if me else (self.dport, self.sport)
        s = self.seq[me] if seq is None else seq
        ack = self.seq[peer] if flags & ACK else 0
        seg = tcp(sp, dp, payload, flags=flags, seq=s & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF)
        frame = ether(ipv4(seg, src, dst))
        self.frames.append((self.ts_ns, frame))
        self.ts_ns += self.step_ns
        return frame

    def handshake(self) -> Conversation:
        self._emit(True, SYN)
        self.seq[True] += 1
        self._emit(False, SYN | ACK)
        self.seq[False] += 1
        self._emit(True, ACK)
        return self

    def send(
        self, from_client: bool, data: bytes, *, drop: set[int] = frozenset(), ack: bool = True
    ) -> Conversation:
        """Send `data` in MSS segments (indices in `drop` are not captured), then an ACK."""
        for i, pos in enumerate(range(0, len(data), self.mss)):
            chunk = data[pos : pos + self.mss]
            if i in drop:
                self.seq[from_client] += len(chunk)
                continue
            self._emit(from_client, ACK | PSH, chunk)
            self.seq[from_client] += len(chunk)
        if ack:
            self._emit(not from_client, ACK)
        return self

    def close(self) -> Conversation:
        self._emit(True, FIN | ACK)
        self.seq[True] += 1
        self._emit(False, FIN | ACK)
        self.seq[False] += 1
        self._emit(True, ACK)
        return self

    def reset(self, from_client: bool) -> Conversation:
        self._emit(from_client, RST | ACK)
        return self


def http_exchange(path: str, body: bytes, *, keepalive: bool = True) -> tuple[bytes, bytes]:
    """One request and its response, as bytes on the wire."""
    request = f"GET {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: flowgen\r\n\r\n".encode()
    conn = b"keep-alive" if keepalive else b"close"
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: "
        + conn
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    return request, response
