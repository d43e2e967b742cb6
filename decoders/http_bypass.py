"""BODY and CHUNK modes: body bytes whose framing is known are consumed without h11.

- BODY: the rest of a Content-Length body, consumed without h11 (the hot path: a body segment
  costs a length check and a hash update). The message then ends at a known position and the
  next one is parsed from there, by a fresh h11 connection if need be.
- CHUNK: the rest of one chunk of a chunked body, consumed without h11 (h11 still parses the
  chunk-size lines, extensions and trailers, so every tag and anomaly is its own). Entered when
  h11 has handed out a chunk's first bytes and holds nothing unparsed; at the chunk's end the
  ChunkedReader is set to where it would be (chunk done, CRLF expected) and gets the bytes
  after it. Any other event (gap, close) first puts the countdown back into the reader, so
  h11's paths run unchanged. The body's bytes are kept for replay as in MSG mode.

The per-segment fast paths themselves are inlined in Side.data (and HttpDecoder.on_data).
"""

from __future__ import annotations

import h11
from h11._readers import ChunkedReader, ContentLengthReader

from wirestream.decoders.http_modes import BODY, CHUNK, CHUNK_SIZE_SANITY, MSG, h11_buffered

CHUNK_BYPASS = True  # CHUNK mode on (tests turn it off to compare with h11 alone)


class BodyBypass:
    """Mixed into Side (decoders/http_side.py)."""

    # ---- BODY mode: a Content-Length body without h11
    def _enter_body(self, pos: int, length: int) -> None:
        """The current message's head ended at `pos`; a body of `length` > 0 bytes follows."""
        msg = self._cur_msg()
        assert msg is not None and msg.digest is not None and length > 0
        self.mode = BODY
        self.body_left = length
        self.body_digest = msg.digest
        self.body_keep = not msg.digest.resumable
        self.conn = None  # (the response side keeps `framing`: a replay needs it)
        self.started = False
        avail = self.end - pos
        if avail > 0:
            off = pos - self.base
            k = min(avail, length)
            msg.digest.feed(bytes(self.rec[off : off + k]))
            self.body_left = length - k
            if self.body_left == 0:
                self._body_done(pos + k)
                return
        if not self.body_keep:
            self._set_boundary(self.end)  # nothing of this message is needed again

    def _body_input(self, data: bytes) -> None:
        """BODY mode, general path: `data` continues the body and may end it."""
        n = len(data)
        k = min(n, self.body_left)
        assert self.body_digest is not None
        self.body_digest.feed(data if k == n else data[:k])
        self.body_left -= k
        if self.overflow:
            if self.body_left == 0:
                self.rec = bytearray(data[k:])
                self.base = self.end + k
                self.overflow = False
        else:
            self.rec += data
        self.end += n
        if self.body_left == 0:
            self._body_done(self.end - (n - k))
        elif not self.body_keep:
            self._set_boundary(self.end)

    def _body_done(self, pos: int) -> None:
        self.mode = MSG
        self.body_left = 0
        self.body_digest = None
        if self.overflow:  # ended by an absorbed gap: nothing after it was delivered yet
            self.rec = bytearray()
            self.base = self.end
            self.overflow = False
        self._done(pos)

    # ---- CHUNK mode: the rest of a chunk without h11
    def _chunk_input(self, data: bytes) -> None:
        """CHUNK mode, general path: `data` continues the chunk and may end it."""
        n = len(data)
        k = min(n, self.chunk_left)
        assert self.body_digest is not None
        self.body_digest.feed(data if k == n else data[:k])
        self.chunk_left -= k
        if self.chunk_left:
            return
        self._chunk_sync()
        if k < n:
            assert self.conn is not None
            self.conn.receive_data(data[k:])
            self._pump()

    def _chunk_sync(self) -> None:
        """Leave CHUNK mode: the ChunkedReader takes over where the countdown is (h11 internals;
        h11 is pinned)."""
        r = self.conn._reader  # type: ignore[union-attr]
        r._bytes_in_chunk = self.chunk_left
        if not self.chunk_left:
            r._bytes_to_discard = b"\r\n"  # as h11 after a chunk's last byte
        self.mode = MSG
        self.chunk_left = 0
        self.body_digest = None

    def _take_body(self) -> None:
        """After h11 produced a head: take a Content-Length body over from h11."""
        msg = self._cur_msg()
        conn = self.conn
        if msg is None or conn is None or self.mode != MSG or msg.switch:
            return
        r = getattr(conn, "_reader", None)
        if type(r) is ContentLengthReader and r._remaining > 0:
            self._enter_body(self.end - h11_buffered(conn), r._remaining)

    def _body_data(self, ev: h11.Data) -> None:
        msg = self._cur_msg()
        assert msg is not None and msg.digest is not None and self.conn is not None
        data = ev.data
        if ev.chunk_start:
            size = getattr(self.conn._reader, "_bytes_in_chunk", 0) + len(data)
            if size > CHUNK_SIZE_SANITY:
                self._chunk_overflow(size, self.end - h11_buffered(self.conn) - len(data))
                return
        if self.skip_hash:
            k = min(self.skip_hash, len(data))
            self.skip_hash -= k
            data = data[k:]
        msg.digest.feed(data)
        r = self.conn._reader
        if (
            CHUNK_BYPASS
            and type(r) is ChunkedReader
            and r._bytes_in_chunk
            and not self.skip_hash
            and not h11_buffered(self.conn)
        ):
            self.mode = CHUNK  # the rest of this chunk bypasses h11
            self.chunk_left = r._bytes_in_chunk
            self.body_digest = msg.digest

    def _chunk_overflow(self, size: int, pos: int) -> None:
        """A chunk size beyond any real body (2^64 overflow attacks): give the message up and
        resynchronise where the chunk's data begins (`pos`)."""
        self.dec.anomaly("http_chunk_size_overflow", f"chunk size {size:#x}")
        self._give_up_cur({"parse_error", "truncated"})
        self._enter_resync(pos, skip_lf=False)
