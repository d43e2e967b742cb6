"""WebSocket (RFC 6455): the handshake record the HTTP decoder emits after a 101 with
`Upgrade: websocket`, and a frame decoder the runtime attaches to the flow right after it.

Handshake (Zeek 6's websocket.log): `{"type": "websocket"}` with host, uri, user_agent, origin,
version, the client's offered subprotocols and extensions, the server's chosen subprotocol and
extensions, and whether Sec-WebSocket-Accept is right for Sec-WebSocket-Key.

Frames: the decoder `websocket` never claims a flow by content or port (a frame header is two
arbitrary bytes); the HTTP decoder names it in `ctx.hand_off(..., "websocket")`. It parses
frame headers per direction, skips payloads without keeping them (only a close frame's payload,
at most 125 bytes, is kept to read its status code and reason), and emits one
`{"type": "websocket_frames"}` record when the flow ends, with per-direction counts. State is a
few counters and at most 14 + 125 bytes per direction, all in the snapshot.

Protocol errors (reserved opcode or bits, fragmented or oversized control frame, continuation
without a message, data frame inside a fragmented message, unmasked client or masked server
frame, bad close payload) are counted and reported as violations; the frame boundaries stay
known, so parsing goes on. A length field with its top bit set, or a gap outside a payload,
loses the framing: that direction is not parsed any further (`desync`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from wirestream.decoders.api import CLIENT, Decoder, DecoderContext, ts_seconds

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPCODES = {
    0x0: "continuation",
    0x1: "text",
    0x2: "binary",
    0x8: "close",
    0x9: "ping",
    0xA: "pong",
}
_CLOSE = 0x8
MAX_CONTROL = 125


# ---------------------------------------------------------------- handshake
def _values(headers: list[list[str]], name: str) -> list[str]:
    """Comma-separated values of every `name` header, in order (RFC 9110 list syntax)."""
    out: list[str] = []
    for n, v in headers:
        if n.lower() == name:
            out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def _first(headers: list[list[str]], name: str) -> str | None:
    for n, v in headers:
        if n.lower() == name:
            return v.strip()
    return None


def is_websocket(resp_headers: list[list[str]]) -> bool:
    """A 101 response switching to WebSocket (`Upgrade: websocket`, any case)."""
    return any(v.lower() == "websocket" for v in _values(resp_headers, "upgrade"))


def accept_for(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    digest = hashlib.sha1(key.encode("latin-1") + _GUID).digest()  # the RFC's hash
    return base64.b64encode(digest).decode("ascii")


def handshake_fields(
    req_headers: list[list[str]] | None, uri: str | None, resp_headers: list[list[str]]
) -> dict[str, Any]:
    """The `websocket` record's fields (after ts/client/server), from the request's and the
    101's headers (request None: not seen). `accept_valid` is null when the key or the
    accept is missing."""
    rq = req_headers or []
    key = _first(rq, "sec-websocket-key")
    accept = _first(resp_headers, "sec-websocket-accept")
    valid = None if key is None or accept is None else accept == accept_for(key)
    protocols = _values(rq, "sec-websocket-protocol")
    return {
        "host": _first(rq, "host"),
        "uri": uri,
        "user_agent": _first(rq, "user-agent"),
        "origin": _first(rq, "origin"),
        "version": _first(rq, "sec-websocket-version"),
        "subprotocol": _first(resp_headers, "sec-websocket-protocol"),
        "client_protocols": protocols if req_headers is not None else None,
        "client_extensions": _values(rq, "sec-websocket-extensions")
        if req_headers is not None
        else None,
        "server_extensions": _values(resp_headers, "sec-websocket-extensions"),
        "accept_valid": valid,
    }


# ---------------------------------------------------------------- frames
def close_code_valid(code: int) -> bool:
    """Status codes allowed in a close frame (RFC 6455 7.4.1, 7.4.2; IANA registry)."""
    if 3000 <= code <= 4999:
        return True
    return 1000 <= code <= 1014 and code not in (1004, 1005, 1006)


class _Dir:
    """One direction's parser state and counters."""

    __slots__ = (
        "bad",
        "close_code",
        "close_reason",
        "closes",
        "compressed",
        "ctl",
        "desync",
        "frames",
        "hdr",
        "in_msg",
        "left",
        "mask",
        "messages",
        "missed",
        "opcodes",
        "payload",
        "violation",
    )

    def __init__(self) -> None:
        self.hdr = bytearray()  # partial frame header (at most 14 bytes)
        self.left = 0  # payload bytes of the current frame still to come
        self.mask = b""  # masking key of the current frame
        self.ctl: bytearray | None = None  # close payload being collected
        self.in_msg = False  # a fragmented data message is open
        self.desync = False
        self.frames = 0
        self.messages = 0
        self.payload = 0
        self.compressed = 0  # frames with RSV1 (permessage-deflate)
        self.closes = 0
        self.opcodes: dict[str, int] = {}
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.bad = 0
        self.violation: str | None = None  # the first one
        self.missed = 0

    def record(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "messages": self.messages,
            "payload_bytes": self.payload,
            "opcodes": dict(sorted(self.opcodes.items())),
            "compressed_frames": self.compressed,
            "close_code": self.close_code,
            "close_reason": self.close_reason,
            "bad_frames": self.bad,
            "first_violation": self.violation,
            "missed_bytes": self.missed,
            "desync": self.desync,
        }

    def state(self) -> list[Any]:
        return [
            bytes(self.hdr), self.left, self.mask,
            None if self.ctl is None else bytes(self.ctl), self.in_msg, self.desync,
            self.frames, self.messages, self.payload, self.compressed, self.closes,
            sorted([k, v] for k, v in self.opcodes.items()), self.close_code,
            self.close_reason, self.bad, self.violation, self.missed,
        ]  # fmt: skip

    @classmethod
    def load(cls, st: list[Any]) -> _Dir:
        d = cls()
        (hdr, d.left, mask, ctl, d.in_msg, d.desync, d.frames, d.messages, d.payload,
         d.compressed, d.closes, opcodes, d.close_code, d.close_reason, d.bad, d.violation,
         d.missed) = st  # fmt: skip
        d.hdr = bytearray(hdr)
        d.mask = bytes(mask)
        d.ctl = None if ctl is None else bytearray(ctl)
        d.opcodes = {k: v for k, v in opcodes}
        return d


def _header_size(b1: int) -> int:
    n = b1 & 0x7F
    return 2 + (2 if n == 126 else 8 if n == 127 else 0) + (4 if b1 & 0x80 else 0)


class WebSocketDecoder(Decoder):
    """RFC 6455 frames after a WebSocket handshake (attached by the HTTP decoder's hand-off)."""

    name = "websocket"
    option_defaults: Mapping[str, Any] = {}

    @classmethod
    def probe(cls, direction: int, data: bytes) -> bool | None:
        return False  # attached by name after a handshake, never by content

    def __init__(self, ctx: DecoderContext, options: Mapping[str, Any]) -> None:
        super().__init__(ctx, options)
        self.dirs = [_Dir(), _Dir()]
        self.ts_ns: int | None = None  # capture time of the first frame byte
        self.done = False

    # ---- input
    def on_data(self, direction: int, data: bytes) -> None:
        if self.done or not data:
            return
        if self.ts_ns is None:
            self.ts_ns = self.ctx.ts_ns
        d = self.dirs[direction]
        i, n = 0, len(data)
        while i < n and not (d.desync or self.done):
            if d.left:
                k = min(d.left, n - i)
                if d.ctl is not None:
                    d.ctl += data[i : i + k]
                d.left -= k
                i += k
                if not d.left:
                    self._end_frame(d, direction)
                continue
            h = d.hdr
            if len(h) < 2:
                k = min(2 - len(h), n - i)
                h += data[i : i + k]
                i += k
                if len(h) < 2:
                    return
            k = min(_header_size(h[1]) - len(h), n - i)
            h += data[i : i + k]
            i += k
            if len(h) < _header_size(h[1]):
                return
            self._start_frame(d, direction, bytes(h))
            h.clear()

    def on_gap(self, direction: int, length: int) -> None:
        if self.done or length <= 0:
            return
        d = self.dirs[direction]
        d.missed += length
        if d.desync:
            return
        if not d.hdr and d.left >= length:  # inside a payload: the framing survives
            d.ctl = None  # a close payload with a hole says nothing reliable
            d.left -= length
            if not d.left:
                self._end_frame(d, direction)
            return
        d.desync = True
        d.hdr.clear()
        d.ctl = None

    def on_close(self, reason: str) -> None:
        if self.done:
            return
        self.done = True
        flow = self.ctx.flow
        ts = self.ts_ns if self.ts_ns is not None else self.ctx.ts_ns
        self.ctx.emit(
            "websocket_frames",
            {
                "ts": ts_seconds(ts),
                "client": flow.client.as_json(),
                "server": flow.server.as_json(),
                "client_to_server": self.dirs[CLIENT].record(),
                "server_to_client": self.dirs[1 - CLIENT].record(),
            },
        )

    # ---- frames
    def _bad(self, d: _Dir, direction: int, reason: str) -> None:
        d.bad += 1
        side = "client" if direction == CLIENT else "server"
        if d.violation is None:
            d.violation = reason
        self.ctx.violation(f"websocket {side} frame {d.frames}: {reason}")

    def _start_frame(self, d: _Dir, direction: int, h: bytes) -> None:
        b0, b1 = h[0], h[1]
        fin, op, masked = b0 & 0x80, b0 & 0x0F, b1 & 0x80
        length = b1 & 0x7F
        off = 2
        if length == 126:
            length, off = int.from_bytes(h[2:4], "big"), 4
        elif length == 127:
            length, off = int.from_bytes(h[2:10], "big"), 10
        d.frames += 1
        name = OPCODES.get(op, "reserved")
        d.opcodes[name] = d.opcodes.get(name, 0) + 1
        if length >> 63:
            self._bad(d, direction, "64-bit length with its top bit set")
            d.desync = True
            return
        d.payload += length
        d.mask = h[off : off + 4] if masked else b""
        bad = []
        if b0 & 0x40:
            d.compressed += 1
        if b0 & 0x30:
            bad.append("reserved bits RSV2/RSV3 set")
        if name == "reserved":
            bad.append(f"reserved opcode {op:#x}")
        if direction == CLIENT and not masked:
            bad.append("unmasked client frame")
        elif direction != CLIENT and masked:
            bad.append("masked server frame")
        if op >= 0x8:
            if not fin or length > MAX_CONTROL:
                bad.append("fragmented or oversized control frame")
            elif op == _CLOSE:
                d.closes += 1
                d.ctl = bytearray()
        elif op in (0x1, 0x2):
            if d.in_msg:
                bad.append("data frame inside a fragmented message")
            d.in_msg = not fin
            if fin:
                d.messages += 1
        elif op == 0x0:
            if not d.in_msg:
                bad.append("continuation without a message")
            elif fin:
                d.messages += 1
                d.in_msg = False
        for reason in bad:
            self._bad(d, direction, reason)
            if self.done:  # detached (the runtime flushed us): stop here
                return
        d.left = length
        if not length:
            self._end_frame(d, direction)

    def _end_frame(self, d: _Dir, direction: int) -> None:
        ctl, d.ctl = d.ctl, None
        if ctl is None or d.closes != 1:
            return  # not a close frame, or not the first one: its status is not recorded
        if d.mask:
            m = d.mask
            ctl = bytearray(b ^ m[i & 3] for i, b in enumerate(ctl))
        if len(ctl) == 1:
            self._bad(d, direction, "close payload of one byte")
        elif len(ctl) >= 2:
            code = int.from_bytes(ctl[:2], "big")
            d.close_code = code
            d.close_reason = bytes(ctl[2:]).decode("utf-8", "replace")
            if not close_code_valid(code):
                self._bad(d, direction, f"invalid close code {code}")

    # ---- state
    def snapshot(self) -> Any:
        return [self.dirs[0].state(), self.dirs[1].state(), self.ts_ns, self.done]

    @classmethod
    def restore(
        cls, ctx: DecoderContext, options: Mapping[str, Any], state: Any
    ) -> WebSocketDecoder:
        self = cls(ctx, options)
        self.dirs = [_Dir.load(state[0]), _Dir.load(state[1])]
        self.ts_ns, self.done = state[2], state[3]
        return self
