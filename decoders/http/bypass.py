"""BODY and CHUNK modes: body bytes whose framing is known are consumed without h11.

- BODY: the rest of a Content-Length body, consumed without h11 (the hot path: a body segment
  costs a length check and a hash update). The message then ends at a known position and the
  next one is parsed from there, by a fresh h11 connection if need be.
- CHUNK: the rest of one chunk of a chunked body, consumed without h11 (h11 still parses the
  chunk-size lines, extensions and trailers, so every tag and anomaly is its own). Entered when
  h11 has handed out a chunk's first bytes and holds nothing unparsed; at the chunk's end h11's
  chunked reader is set to where it would be (chunk done, CRLF expected) and gets the bytes
  after it (h11_access.set_chunk_left). Any other event (gap, close) first puts the countdown
  back into the reader, so h11's paths run unchanged. The body's bytes are kept for replay as
  in MSG mode.

This module holds the countdown, an object the side holds (`Side.count`); the side decides
when a mode begins and ends (side.py). Its `take` is the one per-segment hot path: Side.data
and the guard in HttpDecoder.on_data both reach it through Side.take_segment. The bypasses
are flags (side.BODY_BYPASS, side.CHUNK_BYPASS; tests/test_http_fast_paths.py compares the
records on and off).
"""

from __future__ import annotations

from wirestream.decoders.http.body import BodyDigest
from wirestream.decoders.http.buffer import ByteBuffer


class Countdown:
    """What is left of the body (BODY) or chunk (CHUNK) being consumed without h11."""

    __slots__ = ("digest", "keep", "left")

    def __init__(self) -> None:
        self.left = 0  # bytes of the body / chunk still to come
        self.digest: BodyDigest | None = None  # the current message's digest
        self.keep = False  # the bytes are kept for a replay (BODY: digest not savable)

    def start(self, left: int, digest: BodyDigest, keep: bool) -> None:
        self.left = left
        self.digest = digest
        self.keep = keep

    def clear(self) -> None:
        self.left = 0
        self.digest = None

    def take(self, buf: ByteBuffer, data: bytes, ts_ns: int, clock: int, max_replay: int) -> bool:
        """`data` (an arrival at `ts_ns`, decoder clock `clock`) falls strictly inside what is
        left: hash it, keep it in `buf` when it must be replayable (up to `max_replay` bytes of
        the message), nothing else happens. False, untouched: not such an arrival."""
        n = len(data)
        if not n or n >= self.left:
            return False
        start = buf.end
        buf.end = end = start + n
        self.left -= n
        buf.arr = [[start, ts_ns, clock]]
        self.digest.feed(data)  # type: ignore[union-attr]
        if not self.keep:
            buf.boundary = buf.base = end
        elif not buf.overflow:
            buf.rec += data
            if end - buf.boundary > max_replay:
                buf.stop_keeping()
        return True

    def feed(self, data: bytes) -> int:
        """Hash the part of `data` that is left (general path); returns its length."""
        n = len(data)
        k = min(n, self.left)
        assert self.digest is not None
        self.digest.feed(data if k == n else data[:k])
        self.left -= k
        return k
