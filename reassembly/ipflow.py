"""One flow of a protocol without streams (ICMP, ICMPv6, GRE, ESP, ...): counted, not
decoded, so that conn.log's ICMP and other-protocol rows have their flow record.

The first sender is the originator. For ICMP the flow key's ports are Zeek's port
equivalents (probe.icmptypes), so an echo request and its reply are one flow whose
originator port is the request's type, as in Zeek's conn.log.
"""

from __future__ import annotations

from typing import Any

from wirestream.probe.packet import PROTO_ICMP, PROTO_ICMP6, Packet
from wirestream.reassembly.limits import Limits
from wirestream.reassembly.sink import StreamSink

CLIENT, SERVER = 0, 1
PHASE_ACTIVE, PHASE_CLOSED = 1, 2
ICMP_HEADER = 8  # Zeek counts an ICMP message's bytes after its 8-byte header


class IpSide:
    __slots__ = ("bytes", "ip_bytes", "packets")

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.ip_bytes = 0

    def digest(self) -> None:
        return None  # no stream: nothing is delivered, nothing hashed

    missed = 0
    beyond_depth = 0


class IpFlow:
    __slots__ = (
        "client_side",
        "close_reason",
        "halves",
        "header",
        "key",
        "phase",
        "sink",
        "ts_first",
        "ts_last",
        "uid",
    )

    def __init__(
        self, key: bytes, uid: str, ts_ns: int, sink: StreamSink, budget: object = None
    ) -> None:
        self.key = key
        self.uid = uid
        self.sink = sink
        self.halves = (IpSide(), IpSide())
        self.client_side = -1
        self.phase = PHASE_ACTIVE
        self.close_reason = ""
        self.ts_first = ts_ns
        self.ts_last = ts_ns
        self.header = ICMP_HEADER if key[2] in (PROTO_ICMP, PROTO_ICMP6) else 0

    def direction(self, side: int) -> int:
        return CLIENT if side == self.client_side else SERVER

    def on_packet(self, pkt: Packet, side: int, limits: Limits) -> None:
        self.ts_last = pkt.ts_ns
        if self.client_side < 0:
            self.client_side = side
        half = self.halves[side]
        half.packets += 1
        half.ip_bytes += pkt.ip_len
        half.bytes += max(0, len(pkt.payload) + pkt.truncated - self.header)

    def parked_bytes(self) -> int:
        return 0

    def close(self, reason: str) -> None:
        if self.phase == PHASE_CLOSED:
            return
        self.phase = PHASE_CLOSED
        self.close_reason = reason
        self.sink.on_close(reason)

    def release(self) -> None:
        self.sink = None  # type: ignore[assignment]

    def history(self) -> str:
        return ""  # Zeek's history letters are TCP and UDP only

    def conn_state(self) -> str:
        return "OTH"  # Zeek's state for ICMP and every protocol without a handshake

    # The snapshot: these fields in this order, restored by name (as the tracker's
    # _META_FIELDS); `halves` holds [packets, bytes, ip_bytes] per side.
    _STATE_FIELDS = ("uid", "halves", "client_side", "phase", "close_reason", "ts_first", "ts_last")
    _PLAIN_FIELDS = ("client_side", "phase", "close_reason", "ts_last")

    def snapshot(self) -> list[Any]:
        values = {name: getattr(self, name) for name in self._STATE_FIELDS}
        values["halves"] = [[h.packets, h.bytes, h.ip_bytes] for h in self.halves]
        return [values[name] for name in self._STATE_FIELDS]

    @classmethod
    def restore(
        cls, key: bytes, state: list[Any], sink: StreamSink, budget: object = None
    ) -> IpFlow:
        values = dict(zip(cls._STATE_FIELDS, state, strict=True))
        flow = cls(key, values["uid"], values["ts_first"], sink)
        for half, (packets, nbytes, ip_bytes) in zip(flow.halves, values["halves"], strict=True):
            half.packets, half.bytes, half.ip_bytes = packets, nbytes, ip_bytes
        for name in cls._PLAIN_FIELDS:
            setattr(flow, name, values[name])
        return flow
