"""One UDP flow: each datagram is delivered whole; the first sender is the client unless
its port is a likely server port and the other is not."""

from __future__ import annotations

from typing import Any

from wirestream.probe.packet import Packet
from wirestream.reassembly.limits import Limits, likely_server
from wirestream.reassembly.sha256 import ResumableSha256, hexdigest_of
from wirestream.reassembly.sink import StreamSink

CLIENT, SERVER = 0, 1
PHASE_ACTIVE, PHASE_CLOSED = 1, 2


class UdpSide:
    __slots__ = ("bytes", "hasher", "ip_bytes", "packets")

    def __init__(self) -> None:
        self.packets = 0
        self.ip_bytes = 0
        self.bytes = 0
        self.hasher: ResumableSha256 | None = None

    def digest(self) -> str:
        return hexdigest_of(self.hasher)

    # The flow record reads these like a TCP half stream's: datagrams are never lost or cut.
    missed = 0
    beyond_depth = 0


class UdpFlow:
    __slots__ = (
        "client_side",
        "close_reason",
        "flipped",
        "halves",
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
        self.halves = (UdpSide(), UdpSide())
        self.client_side = -1
        self.flipped = False
        self.phase = PHASE_ACTIVE
        self.close_reason = ""
        self.ts_first = ts_ns
        self.ts_last = ts_ns

    def direction(self, side: int) -> int:
        return CLIENT if side == self.client_side else SERVER

    def on_packet(self, pkt: Packet, side: int, limits: Limits) -> None:
        self.ts_last = pkt.ts_ns
        if self.client_side < 0:
            self.client_side = side
            if likely_server(pkt.sport) and not likely_server(pkt.dport):
                self.client_side = 1 - side
                self.flipped = True
        half = self.halves[side]
        half.packets += 1
        half.ip_bytes += pkt.ip_len
        if self.phase == PHASE_CLOSED:
            return
        payload = pkt.payload
        half.bytes += len(payload)
        if half.hasher is None:
            half.hasher = ResumableSha256()
        half.hasher.update(payload)
        self.sink.on_data(self.direction(side), payload)

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
        out = "^" if self.flipped else ""
        c, s = self.halves[self.client_side], self.halves[1 - self.client_side]
        if c.packets:
            out += "D"
        if s.packets:
            out += "d"
        return out

    def conn_state(self) -> str:
        return "SF" if all(h.packets for h in self.halves) else "S0"

    # The snapshot: these fields' values in this order (as the tracker's _META_FIELDS);
    # "halves" holds [packets, bytes, saved hasher or None] per direction.
    _STATE_FIELDS = (
        "uid",
        "halves",
        "client_side",
        "flipped",
        "phase",
        "close_reason",
        "ts_first",
        "ts_last",
    )
    _PLAIN_FIELDS = ("client_side", "flipped", "phase", "close_reason", "ts_last")

    def snapshot(self) -> list[Any]:
        values = {name: getattr(self, name) for name in self._STATE_FIELDS}
        values["halves"] = [
            [h.packets, h.bytes, h.hasher.save() if h.hasher else None, h.ip_bytes]
            for h in self.halves
        ]
        return [values[name] for name in self._STATE_FIELDS]

    @classmethod
    def restore(
        cls, key: bytes, state: list[Any], sink: StreamSink, budget: object = None
    ) -> UdpFlow:
        values = dict(zip(cls._STATE_FIELDS, state, strict=True))
        flow = cls(key, values["uid"], values["ts_first"], sink)
        for half, (packets, nbytes, hasher, *rest) in zip(
            flow.halves, values["halves"], strict=True
        ):
            half.packets, half.bytes = packets, nbytes
            half.ip_bytes = rest[0] if rest else 0  # (states saved before ip_bytes existed)
            half.hasher = ResumableSha256.load(hasher) if hasher is not None else None
        for name in cls._PLAIN_FIELDS:
            setattr(flow, name, values[name])
        return flow
