"""One direction of an HTTP/1.x flow: bytes in, messages out, driven by an h11 connection.

Each side is a small state machine:

- MSG: bytes go to an h11 connection (SERVER role for the client's bytes, CLIENT role for the
  server's, which is first sent a stand-in request whose method gives the response framing:
  HEAD, CONNECT or anything else). After each complete message the connection is cycled
  (`start_next_cycle`) or, when h11 refuses (HTTP/1.0, Connection: close, stray CRLF), replaced
  by a fresh one fed the leftover bytes: pipelined messages never stall. A response whose
  request is not known waits, before parsing, for the few bytes after its head that tell
  whether it has a body (ResponseSide._ready).
- WAIT (client side): after a request proposing a protocol switch (CONNECT, Upgrade), bytes are
  held until the response tells whether the flow switched.
- RESYNC: after a loss or a protocol error, bytes are discarded until a line that looks like a
  request line (client side) or a status line (server side) starts at a line start (the first
  position after a gap counts as one), or mid-line where a body that ended without a newline
  puts it (`_scan`).
- TUNNEL / DONE: bytes are ignored.
- BODY: the rest of a Content-Length body, consumed without h11 (the hot path: a body segment
  costs a length check and a hash update). The message then ends at a known position and the
  next one is parsed from there, by a fresh h11 connection if need be.
- CHUNK: the rest of one chunk of a chunked body, consumed without h11 (h11 still parses the
  chunk-size lines, extensions and trailers, so every tag and anomaly is its own). Entered when
  h11 has handed out a chunk's first bytes and holds nothing unparsed; at the chunk's end the
  ChunkedReader is set to where it would be (chunk done, CRLF expected) and gets the bytes
  after it. Any other event (gap, close) first puts the countdown back into the reader, so
  h11's paths run unchanged. The body's bytes are kept for replay as in MSG mode.

Fast heads: at a message start, a complete head in the clean subset of HTTP/1.x
(decoders/http_fast.py) is parsed without h11 and yields the very fields h11 would; any other
head (incomplete, odd, or needing another framing) goes to h11 as before. A fresh connection
and a cycled one parse the next message alike, so the choice never shows in the records.

Restartability: a side remembers every byte since its last message boundary (`rec`), the
capture time and decoder clock of each arrival, and where absorbed gaps fell. The decoder's
snapshot stores those; a restore feeds them again to a fresh h11 connection with every side
effect (records, anomalies, queue changes) suppressed, which rebuilds the parser and body-hash
state exactly. Memory cost: a body in progress is kept up to `max_replay` bytes; beyond, the
side stops keeping it ("overflow") and a restore resumes at the next message line instead.
An identity Content-Length body (BODY mode) is not kept at all: its digest state and the bytes
left are saved instead (resumable SHA-256), so its restore is always exact.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import h11
from h11._readers import ChunkedReader, ContentLengthReader, Http10Reader

from decoders.http_body import PIECE, BodyDigest, content_codings
from decoders.http_fast import request_head, response_head
from decoders.http_lines import (
    KNOWN_METHODS,
    MIDLINE_MAX,
    is_message_line,
    line_state,
    midline_request_start,
    parse_head_leniently,
    status_line_state,
)
from decoders.http_msg import UPGRADE, Msg, Txn, framing_class, header_pairs, new_head_msg

if TYPE_CHECKING:
    from decoders.http import HttpDecoder

MSG, WAIT, RESYNC, TUNNEL, DONE, BODY = "msg", "wait", "resync", "tunnel", "done", "body"
CHUNK = "chunk"
GUESSED = "no_body_guessed"  # tag: no request known, taken as bodiless (a status line followed)
CHUNK_BYPASS = True  # CHUNK mode on (tests turn it off to compare with h11 alone)
_ZEROS = bytes(PIECE)
_CRLF = (10, 13)
CHUNK_SIZE_SANITY = 1 << 62
_HOST_LINE = b"Host: \r\n"
_BLANK = re.compile(rb"\n\r?\n")
_CL_LINE = re.compile(
    rb"(?im)^content-length[ \t]*:([^\r\n]*)"
)  # larger chunk sizes are overflow attacks, not bodies


def _h11_buffered(conn: h11.Connection) -> int:
    """Bytes h11 holds unparsed (private attribute: h11 is pinned; the public trailing_data
    copies the buffer, which would make long pipelines quadratic)."""
    return len(conn._receive_buffer)


class Side:
    is_request = True

    def __init__(self, dec: HttpDecoder) -> None:
        self.dec = dec
        self.cfg = dec.cfg
        self.mode = MSG
        self.rec = bytearray()  # bytes from abs offset `base` to `end`
        self.base = 0
        self.boundary = 0  # abs offset where the current message (or scan) starts
        self.end = 0
        self.arr: list[list[int]] = []  # [abs start, ts_ns, clock] of arrivals since boundary
        self.gaps: list[list[int]] = []  # absorbed gaps of the current message: [abs pos, len]
        self.overflow = False
        self.conn: h11.Connection | None = None
        self.started = False  # the h11 connection holds bytes of the current message
        self.line_ok = False  # first line of the current message looks right
        self.skip_lf = False  # RESYNC: current position is not a line start
        self.soft = False  # RESYNC: current position follows a gap (a line start, or not)
        self.tags_next: set[str] = set()
        self.skip_hash = 0  # filler bytes (for a gap) still to pass through h11 unhashed
        self.closing = False
        self.head_seen = False  # h11 produced the current message's head
        self.body_left = 0  # BODY: bytes of the Content-Length body still to come
        self.body_keep = False  # BODY: the body's bytes are kept for replay (digest not savable)
        self.body_digest: BodyDigest | None = None  # BODY, CHUNK: the current message's digest
        self.chunk_left = 0  # CHUNK: bytes of the current chunk still to come
        self._reset_conn()

    # ---- hooks for the two roles
    def _new_conn(self) -> h11.Connection:
        raise NotImplementedError

    def _reset_conn(self) -> None:
        self.conn = self._new_conn()

    def _drop_conn(self) -> None:
        """The message ended without h11: a connection is made when one is needed again."""
        self.conn = None

    def _cycle(self) -> bool:
        raise NotImplementedError

    def _fast_message(self, head: bytes, head_end: int) -> bool:
        """Handle a complete head without h11 if it is a clean one (else False, untouched)."""
        raise NotImplementedError

    def _done(self, pos: int | None = None) -> None:
        """The current message is complete; `pos`: where it ended, when h11 was not used."""
        raise NotImplementedError

    def _before_next(self) -> None:
        pass

    def _event(self, ev: Any) -> None:
        raise NotImplementedError

    def _cur_msg(self) -> Msg | None:
        raise NotImplementedError

    def _give_up_cur(self, tags: set[str]) -> None:
        """The message in progress ends here (truncated): finish it and pass it on."""
        raise NotImplementedError

    def _accept_lenient(self, msg: Msg) -> None:
        raise NotImplementedError

    def _on_loss(self, lost: int, at_boundary: bool) -> None:
        raise NotImplementedError

    def _ready(self) -> bool:
        """May the message at the boundary be parsed now? (ResponseSide: see _ready there.)"""
        return True

    # ---- positions, times
    def ts_at(self, pos: int) -> int:
        ts = None
        for start, t, _c in self.arr:
            if start > pos:
                break
            ts = t
        return ts if ts is not None else self.dec.ctx.ts_ns

    def clock_at(self, pos: int) -> int:
        ck = None
        for start, _t, c in self.arr:
            if start > pos:
                break
            ck = c
        return ck if ck is not None else self.dec.clock

    def arrival_at(self, pos: int) -> tuple[int, int]:
        """(ts_at(pos), clock_at(pos)) in one pass."""
        got = None
        for a in self.arr:
            if a[0] > pos:
                break
            got = a
        return (got[1], got[2]) if got is not None else (self.dec.ctx.ts_ns, self.dec.clock)

    def _prune_arrivals(self, pos: int) -> None:
        arr = self.arr
        if len(arr) < 2 or arr[1][0] > pos:
            return
        k = 1
        while k + 1 < len(arr) and arr[k + 1][0] <= pos:
            k += 1
        del arr[:k]

    def _set_boundary(self, pos: int) -> None:
        self.boundary = pos
        arr = self.arr
        if len(arr) > 1 and arr[1][0] <= pos:
            self._prune_arrivals(pos)
        if self.gaps:
            self.gaps = [g for g in self.gaps if g[0] > pos]
        off = pos - self.base
        if off > 0 and not self.overflow and (off >= len(self.rec) // 2 or off > 1 << 20):
            del self.rec[:off]
            self.base = pos

    def tail(self, start: int | None = None, limit: int | None = None) -> bytes:
        s = (self.boundary if start is None else start) - self.base
        e = len(self.rec) if limit is None else min(len(self.rec), s + limit)
        return bytes(self.rec[s:e])

    # ---- input
    def data(self, data: bytes, ts_ns: int, clock: int, replay: bool = False) -> None:
        mode = self.mode
        if mode == BODY:
            n = len(data)
            if n < self.body_left and not replay and n:
                # Hot path: inside a Content-Length body (same effect as the general path).
                start = self.end
                self.end = end = start + n
                self.body_left -= n
                self.arr = [[start, ts_ns, clock]]
                self.body_digest.feed(data)  # type: ignore[union-attr]
                if not self.body_keep:
                    self.boundary = self.base = end
                elif not self.overflow:
                    self.rec += data
                    if end - self.boundary > self.cfg.max_replay:
                        self._overflow()
                return
        elif mode == CHUNK:
            n = len(data)
            if n < self.chunk_left and not replay and n:
                # Hot path: inside a chunk (same effect as the general path).
                start = self.end
                self.end = end = start + n
                self.chunk_left -= n
                self.arr = [[start, ts_ns, clock]]
                self.body_digest.feed(data)  # type: ignore[union-attr]
                if not self.overflow:
                    self.rec += data
                    if end - self.boundary > self.cfg.max_replay:
                        self._overflow()
                return
        elif mode in (TUNNEL, DONE):
            return
        if not data:
            return
        if not replay:
            self.arr.append([self.end, ts_ns, clock])
        if mode == BODY:
            self._body_input(data)
        else:
            if not self.overflow:
                self.rec += data
            self.end += len(data)
        if self.mode == MSG:
            if self.started:
                assert self.conn is not None
                self.conn.receive_data(data)
            self._pump()
        elif self.mode == CHUNK:
            self._chunk_input(data)
        elif self.mode == WAIT:
            self._check_wait()
        elif self.mode == RESYNC:
            self._scan()
        if not replay:
            self._after_input()

    def _after_input(self) -> None:
        if self.mode == CHUNK:  # h11 holds nothing unparsed
            self._prune_arrivals(self.end)
            if not self.overflow and self.end - self.boundary > self.cfg.max_replay:
                self._overflow()
            return
        if self.mode == BODY:
            self._prune_arrivals(self.end)
            keep = self.body_keep and not self.overflow
            if keep and self.end - self.boundary > self.cfg.max_replay:
                self._overflow()
            return
        if self.mode != MSG or self.conn is None:
            return
        if self._cur_msg() is not None:
            self._prune_arrivals(self.end - _h11_buffered(self.conn))
            if not self.overflow and self.end - self.boundary > self.cfg.max_replay:
                self._overflow()

    def _overflow(self) -> None:
        """The message in progress outgrew the replay cap: stop keeping its bytes."""
        self.overflow = True
        self.rec = bytearray()
        self.base = self.end

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
            self._enter_body(self.end - _h11_buffered(conn), r._remaining)

    def gap(self, length: int, replay: bool = False) -> None:
        if self.mode in (TUNNEL, DONE) or length <= 0:
            return
        if self.mode == MSG and self._cur_msg() is None and self.end > self.boundary:
            self._settle_waiting()
        if self.mode == CHUNK:
            self._chunk_sync()
        if self.mode == BODY:
            room = self.body_left
            if length <= room:
                self._absorb_body(length, replay)
                return
            self._absorb_body(room, replay)  # the body ends inside the hole
            length -= room
        elif self.mode == MSG and self._cur_msg() is not None:
            room = self._body_room()
            if room is None or 0 < length <= room:
                self._absorb(length, replay)
                return
            if room and self._known_length():
                # The hole runs past the end of a Content-Length body: finish that message
                # with the bytes it missed, then the rest is a loss at the next message.
                self._absorb(room, replay)
                length -= room
        if not replay:
            self._lose(length)

    def _settle_waiting(self) -> None:
        """Bytes held back before parsing (ResponseSide._ready) are parsed now, as they are."""

    def _body_room(self) -> int | None:
        """Bytes of the current body whose framing is known: a gap this size can be skipped.
        None: unlimited (close-delimited body). Reads h11 reader internals (h11 is pinned)."""
        conn = self.conn
        if conn is None or _h11_buffered(conn):
            return 0
        r = getattr(conn, "_reader", None)
        try:
            if isinstance(r, ContentLengthReader):
                return r._remaining
            if isinstance(r, ChunkedReader):
                if r._reading_trailer or r._bytes_to_discard:
                    return 0
                return r._bytes_in_chunk
            if isinstance(r, Http10Reader):
                return None
        except AttributeError:
            return 0
        return 0

    def _known_length(self) -> bool:
        return isinstance(getattr(self.conn, "_reader", None), ContentLengthReader)

    def _absorb_body(self, n: int, replay: bool) -> None:
        """BODY mode: `n` lost body bytes are counted, never hashed."""
        msg = self._cur_msg()
        assert msg is not None and msg.digest is not None
        if not replay and self.body_keep:
            self.gaps.append([self.end, n])
        msg.digest.skip(n)
        msg.tags.add("gap")
        self.body_left -= n
        if self.body_left == 0:
            self._body_done(self.end)

    def _absorb(self, n: int, replay: bool) -> None:
        """Skip `n` lost body bytes: h11 is fed filler that is counted, never hashed."""
        msg = self._cur_msg()
        assert msg is not None and msg.digest is not None and self.conn is not None
        if not replay:
            self.gaps.append([self.end, n])
        msg.digest.skip(n)
        msg.tags.add("gap")
        self.skip_hash += n
        conn = self.conn
        while n and self.conn is conn and self.mode == MSG:
            k = min(n, PIECE)
            conn.receive_data(_ZEROS[:k])
            n -= k
            self._pump()

    def _lose(self, lost: int) -> None:
        """`lost` bytes lost where the framing cannot absorb them: give up what is in progress
        and resynchronise right after the hole."""
        at_boundary = (
            self.mode in (MSG, BODY)
            and self._cur_msg() is None
            and not (self.started and self.end > self.boundary)
        )
        if self.mode in (MSG, BODY):
            if self._cur_msg() is not None:
                self._give_up_cur({"gap", "truncated"})
            elif self.started and self.end > self.boundary:
                self._lenient(self.tail(limit=self.cfg.max_header), {"gap", "truncated"})
        self._on_loss(lost, at_boundary)
        self._enter_resync(self.end, skip_lf=False, soft=True)

    # ---- the h11 loop
    def _start_message(self) -> bool:
        rec, i, n = self.rec, self.boundary - self.base, len(self.rec)
        while i < n and rec[i] in _CRLF:
            i += 1
        if i + self.base != self.boundary:
            self._set_boundary(i + self.base)
        if self.boundary >= self.end:
            return False
        self.started = True
        self.line_ok = False
        if self.conn is None:
            self._reset_conn()
        assert self.conn is not None
        self.conn.receive_data(self.tail())
        return True

    def _fast_head(self) -> bool:
        """At a message start: parse a complete, clean head without h11 (see module doc)."""
        rec, base = self.rec, self.base
        off, n = self.boundary - base, len(rec)
        if off < n and rec[off] in _CRLF:
            i = off
            while i < n and rec[i] in _CRLF:
                i += 1
            self._set_boundary(i + base)
            rec, base = self.rec, self.base
            off, n = self.boundary - base, len(rec)
        if off >= n:
            return False
        m = _BLANK.search(rec, off, off + self.cfg.max_header)
        if m is None:
            return False
        return self._fast_message(bytes(rec[off : m.end()]), base + m.end())

    def _pump(self) -> None:
        while self.mode == MSG:
            if not self._ready():
                return
            if not self.started:
                if self.boundary >= self.end:
                    return
                if self._fast_head():
                    continue
                if not self._start_message():
                    return
            conn = self.conn
            assert conn is not None
            if not self.line_ok and not self.head_seen:
                st = line_state(
                    self.is_request, self.tail(limit=self.cfg.max_header + 1), self.cfg.max_header
                )
                if st is None and not self.closing:
                    return
                if not st:
                    what = "request" if self.is_request else "status"
                    self._protocol_error(f"not a {what} line")
                    continue
                self.line_ok = True
                self._check_first_line()
                conn = self.conn
                assert conn is not None
            if not self.head_seen and not self._head_fits():
                self._protocol_error("head larger than the header byte limit")
                continue
            self._before_next()
            try:
                ev = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._protocol_error(str(exc))
                continue
            if ev is h11.NEED_DATA or type(ev) is h11.ConnectionClosed:
                r = conn._reader
                if type(r) is ChunkedReader and r._bytes_in_chunk > CHUNK_SIZE_SANITY:
                    # The size line ended the delivery: h11 will not flag the chunk's first
                    # bytes as its start, so check the size now (same outcome as below).
                    self._chunk_overflow(r._bytes_in_chunk, self.end - _h11_buffered(conn))
                    continue
                return
            if ev is h11.PAUSED:
                self._paused()
                continue
            self._event(ev)

    def _body_data(self, ev: h11.Data) -> None:
        msg = self._cur_msg()
        assert msg is not None and msg.digest is not None and self.conn is not None
        data = ev.data
        if ev.chunk_start:
            size = getattr(self.conn._reader, "_bytes_in_chunk", 0) + len(data)
            if size > CHUNK_SIZE_SANITY:
                self._chunk_overflow(size, self.end - _h11_buffered(self.conn) - len(data))
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
            and not _h11_buffered(self.conn)
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

    def _check_first_line(self) -> None:
        pass

    def _wire_lengths(self, raw: list[tuple[bytes, bytes]]) -> list[bytes] | None:
        """Content-Length values as on the wire (h11 drops identical duplicates)."""
        if not any(n.lower() == b"content-length" for n, _ in raw):
            return None
        off = self.boundary - self.base
        m = _BLANK.search(self.rec, off, off + self.cfg.max_header + 3)
        head = bytes(self.rec[off : m.end() if m else off + self.cfg.max_header])
        return [v.strip() for v in _CL_LINE.findall(head)]

    def _head_fits(self) -> bool:
        """Position-based head limit (h11 only checks when it runs out of data, so the
        outcome would depend on chunking): the blank line must come within max_header."""
        limit = self.cfg.max_header
        if self.end - self.boundary <= limit:
            return True
        return (
            _BLANK.search(self.rec, self.boundary - self.base, self.boundary - self.base + limit)
            is not None
        )

    def _paused(self) -> None:
        # Only reachable if h11 switched protocols on its own; treat like an error.
        self._protocol_error("h11 paused")

    def _next_message(self, pos: int | None = None) -> None:
        """The current message is complete: move the boundary and get h11 ready for the next.
        `pos`: where the message ended when h11 did not parse it to the end (no connection)."""
        if pos is not None:
            self._set_boundary(pos)
            self.line_ok = self.head_seen = self.started = False
            self.skip_hash = 0
            self._on_boundary()
            self._drop_conn()
            return
        conn = self.conn
        assert conn is not None
        buffered = _h11_buffered(conn)
        if self.overflow:
            self.rec = bytearray(conn.trailing_data[0])
            self.base = self.end - buffered
            self.overflow = False
        self._set_boundary(self.end - buffered)
        self.line_ok = False
        self.head_seen = False
        self.skip_hash = 0
        self._on_boundary()
        if buffered and self.rec[self.boundary - self.base] in _CRLF:
            cycled = False
        else:
            cycled = self._cycle()
        if not cycled:
            self._reset_conn()
        self.started = cycled and buffered > 0

    def _protocol_error(self, detail: str) -> None:
        if self._retry(detail):
            return
        if self.closing:
            tags = {"truncated"}
        else:
            tags = {"parse_error"}
            self.dec.anomaly("http_parse_error", detail)
        if self._cur_msg() is not None:
            assert self.conn is not None
            pos = self.end - _h11_buffered(self.conn)
            self._give_up_cur(tags | {"truncated"})
            self._enter_resync(pos, skip_lf=False)
            return
        head = self.tail(limit=self.cfg.max_header + 1)
        if not self._head_fits():
            tags = tags | {"header_limit", "truncated"}
            self.dec.anomaly("http_header_limit", f"head longer than {self.cfg.max_header} bytes")
        self._lenient(head[: self.cfg.max_header], tags)
        # Whether the bad line is complete yet or not, the next message may start on it
        # (mid-line, `_scan`) or at a later line: the same candidates either way.
        self._enter_resync(self.boundary + 1, skip_lf=True)

    def _on_boundary(self) -> None:
        pass

    def _retry(self, detail: str) -> bool:
        """A second chance for an error h11 is stricter about than real servers."""
        return False

    def _lenient(self, buf: bytes, tags: set[str]) -> None:
        head, _span = parse_head_leniently(self.is_request, buf, self.cfg.max_headers)
        if head is None:
            return
        dec = self.dec
        if self.is_request:
            first = {
                "method": head.method.decode("latin-1"),
                "uri": head.target.decode("latin-1"),
                "version": head.version.decode("latin-1"),
            }
            clock = dec.clock
        else:
            first = {
                "status": head.status,
                "reason": head.reason.decode("latin-1"),
                "version": head.version.decode("latin-1"),
            }
            clock = self.clock_at(self.boundary)
        msg = new_head_msg(
            dec.next_rid(),
            self.is_request,
            self.ts_at(self.boundary),
            clock,
            first,
            header_pairs(head.headers),
            self.cfg.max_headers,
            content_codings(head.headers),
        )
        msg.framing = framing_class(head.method)
        msg.tags |= tags | self.tags_next | {"lenient"}
        if not head.complete:
            msg.tags.add("truncated")
        self.tags_next.clear()
        dec.check_headers(msg, head.headers, head.header_count)
        msg.finish()
        self._accept_lenient(msg)

    # ---- resynchronisation
    def _enter_resync(self, pos: int, skip_lf: bool, soft: bool = False) -> None:
        """Resynchronise from `pos`; `soft`: it follows a gap, so it may be mid-line."""
        self.mode = RESYNC
        self.body_left = 0
        self.started = False
        self.line_ok = False
        self.head_seen = False
        self.skip_hash = 0
        if self.overflow:  # the body was not kept: what h11 did not consume is all we have
            rest = self.conn.trailing_data[0] if self.conn is not None else b""
            self.rec = bytearray(rest)
            self.base = self.end - len(rest)
            self.overflow = False
            pos = max(pos, self.base)
        self.conn = None
        self._set_boundary(pos)
        self.skip_lf = skip_lf
        self.soft = soft
        self.tags_next.add("resync")
        self._scan()

    def _scan(self) -> None:
        """Find where messages start again. Candidates: line starts (and the position right
        after a gap); mid-line, a body without a final newline can put the next message
        there: on the server side any `HTTP/1.`, on the client side a known method followed
        by a target and ` HTTP/x.y` ending the line (http_lines.midline_request_start). A
        candidate is taken when its whole line is a request/status line; the decision
        depends on the bytes only, never on chunking."""
        limit = self.cfg.max_header
        marker = b"HTTP/1."
        while self.mode == RESYNC:
            rec = self.rec
            off = self.boundary - self.base
            if off >= len(rec):
                return
            if self.skip_lf:
                j = rec.find(b"\n", off)
                cand = j + 1 if j >= 0 else -1
                if not self.is_request:
                    h = rec.find(marker, off, cand if cand >= 0 else len(rec))
                    if h >= 0:
                        cand = h
                elif j >= 0:
                    lo = max(off, j - MIDLINE_MAX)
                    h = midline_request_start(bytes(rec[lo:j]))
                    if h >= 0:  # a request right after a body that ended mid-line
                        self.skip_lf = self.soft = False
                        self._resume(self.base + lo + h)
                        return
                if cand < 0:
                    keep = MIDLINE_MAX if self.is_request else len(marker) - 1
                    self._set_boundary(self.base + max(off, len(rec) - keep))
                    return
                self.skip_lf = self.soft = False
                self._set_boundary(cand + self.base)
                continue
            j = rec.find(b"\n", off, off + limit + 1)
            if j < 0:
                if line_state(self.is_request, rec[off : off + limit + 1], limit) is not False:
                    return  # may still become a message line: wait for its end
            else:
                line = bytes(rec[off:j])
                if is_message_line(self.is_request, line):
                    pos = self.boundary
                    if self.soft and line.split(b" ", 1)[0] not in KNOWN_METHODS:
                        # Right after a gap (maybe mid-line): "<body tail>GET / ..." is a GET.
                        h = midline_request_start(line)
                        if h > 0:
                            pos += h
                    self.soft = False
                    self._resume(pos)
                    return
            self.soft = False
            self._set_boundary(self.boundary + 1)
            self.skip_lf = True

    def _resume(self, pos: int) -> None:
        """Start parsing messages again at `pos` with a fresh h11 connection."""
        self._on_boundary()
        self.mode = MSG
        self._set_boundary(pos)
        self._reset_conn()
        self.started = False
        self.line_ok = False
        self.head_seen = False
        self._pump()

    def _check_wait(self) -> None:
        pass

    def to_tunnel(self) -> None:
        if self._cur_msg() is not None:
            self._give_up_cur({"truncated"})
        self.mode = TUNNEL
        self.body_left = self.chunk_left = 0
        self.body_digest = None
        self.conn = None
        self.started = False
        self.overflow = False
        self.rec = bytearray()
        self.base = self.boundary = self.end
        self.arr = []
        self.gaps = []

    # ---- close
    def close(self) -> None:
        self.closing = True
        if self.mode == CHUNK:
            self._chunk_sync()
        if self.mode == BODY:  # as h11 at EOF inside a Content-Length body
            self._give_up_cur({"truncated"})
            self._enter_resync(self.end, skip_lf=False)
        if self.mode == MSG and not self.started and self.end > self.boundary:
            self._pump()  # bytes held back by _ready: no more will come
        for _ in range(1000):
            if self.mode != MSG or not self.started:
                break
            conn = self.conn
            assert conn is not None
            conn.receive_data(b"")
            self._pump()
            if self.conn is conn and self.mode == MSG:
                break
        self.mode = DONE
        self.conn = None

    # ---- snapshot
    def state(self) -> dict[str, Any]:
        rel = self.boundary
        mode = self.mode
        st = {
            "mode": mode,
            "data": None if self.overflow else self.tail(),
            "gaps": [[p - rel, n] for p, n in self.gaps],
            "arr": [[p - rel, t, c] for p, t, c in self.arr],
            "skip_lf": self.skip_lf,
            "soft": self.soft,
            "tags_next": sorted(self.tags_next),
        }
        if mode == CHUNK:  # replayed from the message's start, through h11
            st["mode"] = MSG
        if mode == BODY:
            if self.body_keep:  # the message's bytes are replayed from its start
                st["mode"] = MSG
            else:
                msg = self._cur_msg()
                assert msg is not None and msg.digest is not None
                st["body"] = [self.body_left, msg.digest.save()]
        return st

    def load(self, st: dict[str, Any]) -> None:
        """Rebuild from `state()`: the caller has set up the shared objects (cur etc.)."""
        self.mode = st["mode"]
        self.arr = [list(a) for a in st["arr"]]
        self.skip_lf = st["skip_lf"]
        self.soft = st.get("soft", False)
        self.tags_next = set(st["tags_next"])
        self.rec = bytearray()
        self.base = self.boundary = self.end = 0
        self.gaps = []
        data = st["data"]
        if data is None:  # overflowed body: resume at the next message line
            self._restored_partial()
            return
        if self.mode == BODY:  # saved digest: continue the body where it was
            msg = self._cur_msg()
            assert msg is not None
            left, digest = st["body"]
            msg.digest = self.body_digest = BodyDigest.load(digest, self.cfg.max_decoded)
            self.body_left = left
            self.body_keep = False
            self.head_seen = self.line_ok = True
            self.conn = None
            self.started = False
            self._load_body()
            return
        if self.mode == MSG:
            self._reset_conn()
            self._prime()
            pos = 0
            for gpos, glen in st["gaps"]:
                if gpos > pos:
                    self.data(data[pos:gpos], 0, 0, replay=True)
                    pos = gpos
                self.gaps.append([gpos, glen])
                self.gap(glen, replay=True)
            self.data(data[pos:], 0, 0, replay=True)
        else:
            self.rec = bytearray(data)
            self.end = len(data)
            if self.mode in (TUNNEL, DONE):
                self.conn = None

    def _prime(self) -> None:
        pass

    def _load_body(self) -> None:
        pass

    def _restored_partial(self) -> None:
        self._give_up_cur({"restored_partial"})
        self.mode = RESYNC
        self.conn = None
        self.started = False
        self.skip_lf = True
        self.tags_next.add("restored_partial")


class RequestSide(Side):
    """Client -> server bytes: requests."""

    is_request = True

    def __init__(self, dec: HttpDecoder) -> None:
        self.cur: Msg | None = None
        self.wait_rid: int | None = None
        self.host_injected = False
        # [position, 1 | 2]: a request starting at `position` is at a quiet point (1), or is
        # if the server's undecided response turns out bodiless (2) (HttpDecoder._quiet)
        self.quiet: list[int] | None = None
        super().__init__(dec)

    def _new_conn(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.cfg.max_header)

    def _reset_conn(self) -> None:
        self.conn = self._new_conn()
        self.host_injected = False

    def _on_boundary(self) -> None:
        self.host_injected = False

    def _retry(self, detail: str) -> bool:
        """HTTP/1.1 without Host is common (scanners, CONNECT, IoT) and h11 refuses it: parse
        the same head with an empty Host added after the request line, so the body framing
        is known; the record keeps the wire headers and gets tag missing_host."""
        if self.host_injected or self.closing or self.head_seen:
            return False
        if detail != "Missing mandatory Host: header":
            return False
        head = self.tail()
        lf = head.find(b"\n")
        if lf < 0:
            return False
        self._reset_conn()
        self.host_injected = True
        assert self.conn is not None
        self.conn.receive_data(head[: lf + 1] + _HOST_LINE + head[lf + 1 :])
        self.dec.anomaly("http_missing_host", "")
        return True

    def _cycle(self) -> bool:
        conn = self.conn
        assert conn is not None
        try:
            conn.send(h11.Response(status_code=404, headers=[(b"content-length", b"0")]))
            conn.send(h11.EndOfMessage())
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return False
        return True

    def _cur_msg(self) -> Msg | None:
        return self.cur

    def _event(self, ev: Any) -> None:
        t = type(ev)
        if t is h11.Data:
            self._body_data(ev)
        elif t is h11.Request:
            self._h11_head(ev)
            self._take_body()
        elif t is h11.EndOfMessage:
            self._done()

    def _fast_message(self, head: bytes, head_end: int) -> bool:
        parsed = request_head(head)
        if parsed is None:
            return False
        first, headers, length, codings, method = parsed
        self.line_ok = True
        self._head(method, first, headers, None, None, codings)
        if length:
            self._enter_body(head_end, length)
        else:
            self._done(head_end)
        return True

    def _h11_head(self, ev: h11.Request) -> None:
        raw = list(ev.headers.raw_items())
        if self.host_injected and raw and raw[0] == (b"Host", b""):
            raw = raw[1:]
        if self.dec.replaying and self.cur is not None:
            self._head(ev.method, {}, [], raw, None, None)
            return
        first = {
            "method": ev.method.decode("latin-1"),
            "uri": ev.target.decode("latin-1"),
            "version": "HTTP/" + ev.http_version.decode("latin-1"),
        }
        lengths = self._wire_lengths(raw)
        self._head(ev.method, first, header_pairs(raw), raw, lengths, content_codings(raw))

    def _head(
        self,
        method: bytes,
        first: dict[str, Any],
        headers: list[list[str]],
        raw: list[tuple[bytes, bytes]] | None,
        lengths: list[bytes] | None,
        codings: list[str] | None,
    ) -> None:
        """A request head: record fields, text headers; `raw`: the headers as parsed by h11,
        None from the fast parser (a clean head: one Content-Length at most, no
        Transfer-Encoding, no Upgrade)."""
        dec = self.dec
        self.head_seen = True
        if dec.replaying and self.cur is not None:
            self.cur.open_body(self.cfg.max_decoded)
            return
        msg = new_head_msg(
            dec.next_rid(),
            True,
            self.ts_at(self.boundary),
            dec.clock,
            first,
            headers,
            self.cfg.max_headers,
            codings,
        )
        upgrade = raw is not None and any(n.lower() == b"upgrade" for n, _ in raw)
        msg.framing = framing_class(method, upgrade)
        msg.switch = method == b"CONNECT" or upgrade
        msg.tags |= self.tags_next
        if self.host_injected:
            msg.tags.add("missing_host")
        self.tags_next.clear()
        if raw is None:
            dec.check_headers(msg, [], len(headers), None, True)
        else:
            dec.check_headers(msg, raw, len(raw), lengths)
        msg.open_body(self.cfg.max_decoded)
        self.cur = msg
        dec.push_request(msg, self.boundary)

    def _done(self, pos: int | None = None) -> None:
        msg = self.cur
        assert msg is not None
        msg.finish()
        self.cur = None
        if msg.switch and not msg.paired:
            assert pos is None  # switch proposals are parsed by h11 to the end
            assert self.conn is not None
            self._set_boundary(self.end - _h11_buffered(self.conn))
            self.mode = WAIT
            self.conn = None
            self.started = False
            self.line_ok = False
            self.head_seen = False
            self.wait_rid = msg.rid
        else:
            self._next_message(pos)
        self.dec.request_complete(msg)
        if self.mode == WAIT:
            self._check_wait()

    def _check_wait(self) -> None:
        if self.mode == WAIT and self.end - self.boundary > self.cfg.max_header:
            self.resume_after_wait()

    def resume_after_wait(self) -> None:
        if self.mode == WAIT:
            self.wait_rid = None
            self._resume(self.boundary)

    def _give_up_cur(self, tags: set[str]) -> None:
        msg = self.cur
        if msg is None:
            return
        self.cur = None
        msg.tags |= tags
        msg.finish()
        self.dec.request_complete(msg)

    def _accept_lenient(self, msg: Msg) -> None:
        self.dec.push_request(msg, self.boundary)

    def _on_loss(self, lost: int, at_boundary: bool) -> None:
        self.wait_rid = None
        self.dec.client_loss(lost, at_boundary)

    def state(self) -> dict[str, Any]:
        st = super().state()
        st["cur"] = self.cur.rid if self.cur is not None else None
        st["wait_rid"] = self.wait_rid
        q = self.quiet
        st["quiet"] = [q[0] - self.boundary, q[1]] if q and q[0] >= self.boundary else None
        return st

    def load_refs(self, st: dict[str, Any], reqs: dict[int, Msg]) -> None:
        self.cur = reqs[st["cur"]] if st["cur"] is not None else None
        self.wait_rid = st["wait_rid"]
        self.quiet = list(st["quiet"]) if st.get("quiet") is not None else None


class ResponseSide(Side):
    """Server -> client bytes: responses, framed by a stand-in request of the right method."""

    is_request = False

    def __init__(self, dec: HttpDecoder) -> None:
        self.cur: Txn | None = None
        self.framing: bytes | None = None  # stand-in request sent on the current connection
        self.info: list[dict[str, Any]] = []  # 1xx responses waiting for the final one
        self.first: list[int] | None = None  # [ts_ns, clock] of the first 1xx
        self.pending_pair: tuple[Msg | None, set[str], bool] | None = None
        self._framing_state: bytes | None = None
        self.lowercase = False  # the current status line spells HTTP in lower case
        # The framing chosen for the message at the boundary (_ready), whether it was guessed
        # (no request known: bodiless because a status line follows the head), and where the
        # head ends while that guess waits for the bytes after it.
        self.want: bytes | None = None
        self.guessed = False
        self.waiting_at: int | None = None
        self.force = False  # decide with the bytes there are (a gap follows)
        super().__init__(dec)

    def _new_conn(self) -> h11.Connection:
        return h11.Connection(h11.CLIENT, max_incomplete_event_size=self.cfg.max_header)

    def _reset_conn(self) -> None:
        self.conn = self._new_conn()
        self.framing = None

    def _drop_conn(self) -> None:
        self.conn = None
        self.framing = None

    def _load_body(self) -> None:
        self.framing = self._framing_state

    def _send_framing(self, method: bytes) -> None:
        conn = self.conn
        assert conn is not None
        self.framing = method
        target = b"x:0" if method == b"CONNECT" else b"/"
        headers = [(b"host", b"x")]
        if method == UPGRADE:
            method = b"GET"
            headers += [(b"upgrade", b"x"), (b"connection", b"upgrade")]
        conn.send(h11.Request(method=method, target=target, headers=headers))
        conn.send(h11.EndOfMessage())

    def _check_first_line(self) -> None:
        """`http/1.1 200` (seen from real servers) is refused by h11: parse it as `HTTP/`."""
        head = self.tail(limit=5)
        if head != b"HTTP/":
            self.lowercase = True
            self._reset_conn()
            assert self.conn is not None
            self.conn.receive_data(self._message_bytes())

    def _message_bytes(self) -> bytes:
        data = self.tail()
        return b"HTTP/" + data[5:] if self.lowercase else data

    def _on_boundary(self) -> None:
        self.lowercase = False
        self.want = None
        self.guessed = False
        self.waiting_at = None

    def _before_next(self) -> None:
        if self.framing is None:
            self._send_framing(self.want or b"GET")

    def _start_clock(self) -> int:
        return self.first[1] if self.first else self.clock_at(self.boundary)

    def _ready(self) -> bool:
        """Choose the framing of a new response before parsing it: its request's, when the
        decoder knows it. When it does not (the request was lost, or is not settled yet), a
        response with a body as a GET's answer is taken as bodiless (a HEAD's answer) if a
        status line follows its head: wait for the bytes that decide (few: status_line_state
        says no at the first byte that cannot start `HTTP/1.x NNN`), or for the end."""
        if self.want is not None or self.framing is not None or self.boundary >= self.end:
            return True
        framing = self.dec.framing_for(self._start_clock())
        if framing is not None:
            if self.waiting_at is not None:  # no longer undecided: not a quiet point's proof
                self.waiting_at = None
                if not self.dec.replaying:
                    self.dec.gate_decided(False)
            self.want = framing
            return True
        got = self._guess_framing()
        if got is None:
            return False
        self.want = got
        return True

    def _guess_framing(self) -> bytes | None:
        rec, base, end = self.rec, self.base, len(self.rec)
        i = self.boundary - base
        while i < end and rec[i] in _CRLF:
            i += 1
        final = self.closing or self.force
        first = status_line_state(rec[i : i + 13])
        if not first:
            return b"GET" if first is False or final else None  # not ours to decide
        m = _BLANK.search(rec, i, i + self.cfg.max_header)
        if m is None:
            return b"GET" if final or end - i > self.cfg.max_header else None
        status = int(rec[i + 9 : i + 12])
        head = bytes(rec[i : m.end()])
        lengths = _CL_LINE.findall(head)
        if (
            100 <= status < 200
            or status in (204, 304)
            or (
                lengths
                and all(v.strip() == b"0" for v in lengths)
                and b"transfer-encoding" not in head.lower()
            )
        ):
            return b"GET"  # no body either way
        after = status_line_state(rec[m.end() : m.end() + 13])
        if after is None and not final:
            self.waiting_at = base + m.end()
            return None
        self.waiting_at = None
        if not self.dec.replaying:
            self.dec.gate_decided(bool(after))
        # Undecidable (a hole or the end follows): bodiless too, so that a hole is a loss at
        # the next message and the side resynchronises, rather than a body that might
        # swallow the responses after it.
        self.guessed = after is not False
        return b"HEAD" if self.guessed else b"GET"

    def _settle_waiting(self) -> None:
        self.force = True
        try:
            self._pump()
        finally:
            self.force = False

    def idle_state(self) -> int:
        """1: no response in progress (resynchronising counts: what is skipped belongs to no
        response we know); 2: one whose head ended here waits for the bytes that decide its
        framing (idle if it is bodiless); 0: busy."""
        if self.mode not in (MSG, RESYNC) or self.cur is not None or self.info:
            return 0
        if self.end == self.boundary or self.mode == RESYNC:
            return 1
        return 2 if self.mode == MSG and self.waiting_at == self.end else 0

    def _cycle(self) -> bool:
        conn = self.conn
        assert conn is not None
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return False
        self.framing = None
        return True

    def _cur_msg(self) -> Msg | None:
        return self.cur.resp if self.cur is not None else None

    def _event(self, ev: Any) -> None:
        t = type(ev)
        if t is h11.Data:
            self._body_data(ev)
        elif t is h11.Response:
            self._final(ev)
            self._take_body()
        elif t is h11.EndOfMessage:
            self._done()
        elif t is h11.InformationalResponse:
            if ev.status_code == 101:
                self._final(ev)
            else:
                self._informational(ev)

    def _fast_message(self, head: bytes, head_end: int) -> bool:
        framing = self.framing
        if framing is None:
            if (self.want or b"GET") != b"GET":
                return False
        elif framing != b"GET":
            return False
        parsed = response_head(head)
        if parsed is None:
            return False
        first, headers, length, codings, status = parsed
        self.framing = b"GET"  # the stand-in h11 would have parsed this head with
        self.line_ok = True
        self._final_head(status, first, headers, None, None, codings)
        if self.pending_pair is not None:
            # The paired request needs another framing: _final_head handed the message to a
            # fresh h11 connection with the right stand-in; h11 takes it from here.
            self.started = True
            return True
        if length:
            self._enter_body(head_end, length)
        else:
            self._done(head_end)
        return True

    def _informational(self, ev: h11.InformationalResponse) -> None:
        if self.first is None:
            self.first = [self.ts_at(self.boundary), self.clock_at(self.boundary)]
        self.info.append({"status": ev.status_code, "reason": ev.reason.decode("latin-1")})
        assert self.conn is not None
        self._set_boundary(self.end - _h11_buffered(self.conn))
        self.line_ok = False
        self.head_seen = False

    def _final(self, ev: h11.Response | h11.InformationalResponse) -> None:
        raw = list(ev.headers.raw_items())
        first = {
            "status": ev.status_code,
            "reason": ev.reason.decode("latin-1"),
            "version": "HTTP/" + ev.http_version.decode("latin-1"),
        }
        lengths = self._wire_lengths(raw)
        headers = header_pairs(raw)
        self._final_head(ev.status_code, first, headers, raw, lengths, content_codings(raw))

    def _final_head(
        self,
        status: int,
        first: dict[str, Any],
        headers: list[list[str]],
        raw: list[tuple[bytes, bytes]] | None,
        lengths: list[bytes] | None,
        codings: list[str] | None,
    ) -> None:
        """A final response head: record fields, text headers; `raw`: the headers as parsed
        by h11, None from the fast parser (a clean head); `lengths`: Content-Length values as
        on the wire."""
        dec = self.dec
        if dec.replaying and self.cur is not None:
            self.head_seen = True
            assert self.cur.resp is not None
            self.cur.resp.open_body(self.cfg.max_decoded)
            return
        ts, clock = self.first or self.arrival_at(self.boundary)
        if self.pending_pair is not None:
            req, ptags, hold = self.pending_pair
            self.pending_pair = None
        else:
            req, ptags, hold = dec.pair(clock)
            want = req.framing if req is not None else (self.want or b"GET")
            if want != self.framing:
                # Framing depends on the request method: re-parse with the right stand-in.
                self.pending_pair = (req, ptags, hold)
                self._reset_conn()
                self._send_framing(want)
                assert self.conn is not None
                self.conn.receive_data(self._message_bytes())
                return
        self.head_seen = True
        cap = self.cfg.max_headers
        resp = new_head_msg(dec.next_rid(), False, ts, clock, first, headers, cap, codings)
        resp.framing = self.framing or b"GET"
        resp.tags |= self.tags_next
        if self.lowercase:
            resp.tags.add("lenient")
        if self.guessed and req is None:
            resp.tags.add(GUESSED)
        self.tags_next.clear()
        if raw is None:
            dec.check_headers(resp, [], len(headers), None, True)
        else:
            dec.check_headers(resp, raw, len(raw), lengths)
        txn = Txn(req, resp, ptags, self.info, hold)
        self.info = []
        self.first = None
        if req is not None:
            req.paired = True
        self.cur = txn
        switch = None
        if status == 101:
            switch = "upgrade"
        elif self.framing == b"CONNECT" and 200 <= status < 300:
            switch = "tunnel"
        if switch is not None:
            resp.open_body(self.cfg.max_decoded)  # no body: empty digest
            resp.finish()
            self.cur = None
            # What came after the head belongs to the new protocol (switches are parsed by
            # h11: the fast parser takes no 1xx and no CONNECT framing).
            rest = self.conn.trailing_data[0] if self.conn is not None else b""
            dec.switch(txn, switch, rest)
            return
        resp.open_body(self.cfg.max_decoded)
        dec.response_head(txn)

    def _done(self, pos: int | None = None) -> None:
        txn = self.cur
        assert txn is not None and txn.resp is not None
        txn.resp.finish()
        self.cur = None
        self._next_message(pos)
        self.dec.txn_done(txn)
        self.dec.response_done()

    def _give_up_cur(self, tags: set[str]) -> None:
        txn = self.cur
        if txn is None:
            return
        self.cur = None
        assert txn.resp is not None
        txn.resp.tags |= tags
        txn.resp.finish()
        self.dec.txn_done(txn)

    def _accept_lenient(self, msg: Msg) -> None:
        ts, clock = self.first or (msg.ts_ns, msg.clock)
        msg.ts_ns, msg.clock = ts, clock
        req, ptags, hold = self.dec.pair(clock)
        if req is not None:
            req.paired = True
        txn = Txn(req, msg, ptags, self.info, hold)
        self.info = []
        self.first = None
        self.dec.response_head(txn)
        self.dec.txn_done(txn)
        self.dec.response_done()

    def _on_loss(self, lost: int, at_boundary: bool) -> None:
        self.info = []
        self.first = None
        self.dec.server_loss()

    def _prime(self) -> None:
        if self._framing_state is not None:
            self._send_framing(self._framing_state)

    def state(self) -> dict[str, Any]:
        st = super().state()
        st["cur"] = self.cur.to_state() if self.cur is not None else None
        st["framing"] = self.framing
        st["info"] = self.info
        st["first"] = self.first
        return st

    def load_refs(self, st: dict[str, Any], reqs: dict[int, Msg]) -> None:
        self.cur = Txn.from_state(st["cur"], reqs) if st["cur"] is not None else None
        self._framing_state = st["framing"]
        self.info = list(st["info"])
        self.first = list(st["first"]) if st["first"] is not None else None
