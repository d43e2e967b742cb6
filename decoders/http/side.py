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
- RESYNC: after a loss or a protocol error, bytes are discarded until a message line starts
  again (decoders/http/resync.py).
- TUNNEL / DONE: bytes are ignored.
- BODY / CHUNK: the rest of a Content-Length body, or of one chunk, consumed without h11
  (decoders/http/bypass.py).

Fast heads: at a message start, a complete head in the clean subset of HTTP/1.x
(decoders/http/fast.py) is parsed without h11 and yields the very fields h11 would; any other
head (incomplete, odd, or needing another framing) goes to h11 as before. A fresh connection
and a cycled one parse the next message alike, so the choice never shows in the records.

This module holds the input, the h11 loop and the mode changes; the side HOLDS its parts,
each an object or pure functions with one job, given what they need as arguments (no mixins):
the kept bytes and arrival times (buffer.ByteBuffer, `buf`), the countdown of a body or chunk
consumed without h11 (bypass.Countdown, `count`), the resync scanner (resync.Resync,
`resync`), how a gap splits into absorbed and lost bytes (gaps.py), the saved form of a
snapshot (snapshot.SideState, which also says how a restore stays exact). h11's internals are
reached only through h11_access.py. The two roles: request.py and response.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import h11

from wirestream.decoders.http.body import PIECE, BodyDigest, content_codings
from wirestream.decoders.http.buffer import ByteBuffer
from wirestream.decoders.http.bypass import Countdown
from wirestream.decoders.http.gaps import FILLER, split_gap
from wirestream.decoders.http.h11_access import buffered as h11_buffered
from wirestream.decoders.http.h11_access import (
    chunk_left,
    content_length_left,
    reads_content_length,
    set_chunk_left,
    skippable_body_bytes,
)
from wirestream.decoders.http.lines import line_state, parse_head_leniently
from wirestream.decoders.http.modes import (
    BLANK,
    BODY,
    CHUNK,
    CHUNK_SIZE_SANITY,
    CL_LINE,
    CRLF,
    DONE,
    MSG,
    RESYNC,
    TUNNEL,
    WAIT,
)
from wirestream.decoders.http.msg import Msg, framing_class, header_pairs, new_head_msg
from wirestream.decoders.http.resync import Resync
from wirestream.decoders.http.snapshot import SideState

# Fast paths, each a flag (tests/test_http_fast_paths.py compares the records on and off):
FAST_HEADS = True  # clean heads parsed by fast.py, not h11
BODY_BYPASS = True  # BODY mode: Content-Length bodies consumed without h11
CHUNK_BYPASS = True  # CHUNK mode: the data of each chunk consumed without h11

if TYPE_CHECKING:
    from wirestream.decoders.http.decoder import HttpDecoder


class Side:
    """One direction's state machine; the roles fill in the hooks (RequestSide, ResponseSide)."""

    is_request = True

    def __init__(self, dec: HttpDecoder) -> None:
        self.dec = dec
        self.cfg = dec.cfg
        self.mode = MSG
        self.buf = ByteBuffer()
        self.conn: h11.Connection | None = None
        self.started = False  # the h11 connection holds bytes of the current message
        self.line_ok = False  # first line of the current message looks right
        self.resync = Resync(self.is_request, self.cfg.max_header)
        self.tags_next: set[str] = set()
        self.skip_hash = 0  # filler bytes (for a gap) still to pass through h11 unhashed
        self.closing = False
        self.head_seen = False  # h11 produced the current message's head
        self.count = Countdown()  # BODY, CHUNK: what is left of the body / chunk (bypass.py)
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

    def end_ts(self, pos: int | None = None) -> int:
        """Capture time of the arrival that brought the current message's last byte (`pos`:
        where it ended; None: where h11 stopped reading, or the last byte delivered). From the
        saved arrivals, so a restore gives the same value."""
        if pos is None:
            conn = self.conn
            pos = self.buf.end - (h11_buffered(conn) if conn is not None else 0)
        ts = self.buf.last_ts(pos)
        return ts if ts is not None else self.dec.ctx.ts_ns

    def ts_at(self, pos: int) -> int:
        """Capture time of the arrival that brought byte `pos` (now, if none is kept)."""
        a = self.buf.arrival_at(pos)
        return a[1] if a is not None else self.dec.ctx.ts_ns

    def clock_at(self, pos: int) -> int:
        """Decoder clock of the arrival that brought byte `pos` (now, if none is kept)."""
        a = self.buf.arrival_at(pos)
        return a[2] if a is not None else self.dec.clock

    def arrival_at(self, pos: int) -> tuple[int, int]:
        """(ts_at(pos), clock_at(pos)) in one pass."""
        a = self.buf.arrival_at(pos)
        return (a[1], a[2]) if a is not None else (self.dec.ctx.ts_ns, self.dec.clock)

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

    # ---- input
    def data(self, data: bytes, ts_ns: int, clock: int, replay: bool = False) -> None:
        mode = self.mode
        if mode in (BODY, CHUNK):
            if not replay and self.count.take(self.buf, data, ts_ns, clock, self.cfg.max_replay):
                return  # (Side.take_segment, inlined)
        elif mode in (TUNNEL, DONE):
            return
        if not data:
            return
        if not replay:
            self.buf.arr.append([self.buf.end, ts_ns, clock])
        if mode == BODY:
            self._body_input(data)
        else:
            if not self.buf.overflow:
                self.buf.rec += data
            self.buf.end += len(data)
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
            self.buf.prune_arrivals(self.buf.end)
            if not self.buf.overflow and self.buf.end - self.buf.boundary > self.cfg.max_replay:
                self.buf.stop_keeping()
            return
        if self.mode == BODY:
            self.buf.prune_arrivals(self.buf.end)
            keep = self.count.keep and not self.buf.overflow
            if keep and self.buf.end - self.buf.boundary > self.cfg.max_replay:
                self.buf.stop_keeping()
            return
        if self.mode != MSG or self.conn is None:
            return
        if self._cur_msg() is not None:
            self.buf.prune_arrivals(self.buf.end - h11_buffered(self.conn))
            if not self.buf.overflow and self.buf.end - self.buf.boundary > self.cfg.max_replay:
                self.buf.stop_keeping()

    # ---- the h11 loop
    def _start_message(self) -> bool:
        rec, i, n = self.buf.rec, self.buf.boundary - self.buf.base, len(self.buf.rec)
        while i < n and rec[i] in CRLF:
            i += 1
        if i + self.buf.base != self.buf.boundary:
            self.buf.set_boundary(i + self.buf.base)
        if self.buf.boundary >= self.buf.end:
            return False
        self.started = True
        self.line_ok = False
        if self.conn is None:
            self._reset_conn()
        assert self.conn is not None
        self.conn.receive_data(self.buf.tail())
        return True

    def _fast_head(self) -> bool:
        """At a message start: parse a complete, clean head without h11 (see module doc)."""
        rec, base = self.buf.rec, self.buf.base
        off, n = self.buf.boundary - base, len(rec)
        if off < n and rec[off] in CRLF:
            i = off
            while i < n and rec[i] in CRLF:
                i += 1
            self.buf.set_boundary(i + base)
            rec, base = self.buf.rec, self.buf.base
            off, n = self.buf.boundary - base, len(rec)
        if off >= n:
            return False
        m = BLANK.search(rec, off, off + self.cfg.max_header)
        if m is None:
            return False
        return self._fast_message(bytes(rec[off : m.end()]), base + m.end())

    def _pump(self) -> None:
        while self.mode == MSG:
            if not self._ready():
                return
            if not self.started:
                if self.buf.boundary >= self.buf.end:
                    return
                if FAST_HEADS and self._fast_head():
                    continue
                if not self._start_message():
                    return
            conn = self.conn
            assert conn is not None
            if not self.line_ok and not self.head_seen:
                st = line_state(
                    self.is_request,
                    self.buf.tail(limit=self.cfg.max_header + 1),
                    self.cfg.max_header,
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
                left = chunk_left(conn)
                if left > CHUNK_SIZE_SANITY:
                    # The size line ended the delivery: h11 will not flag the chunk's first
                    # bytes as its start, so check the size now (same outcome as below).
                    self._chunk_overflow(left, self.buf.end - h11_buffered(conn))
                    continue
                return
            if ev is h11.PAUSED:
                self._paused()
                continue
            self._event(ev)

    def _check_first_line(self) -> None:
        pass

    def _wire_lengths(self, raw: list[tuple[bytes, bytes]]) -> list[bytes] | None:
        """Content-Length values as on the wire (h11 drops identical duplicates)."""
        if not any(n.lower() == b"content-length" for n, _ in raw):
            return None
        off = self.buf.boundary - self.buf.base
        m = BLANK.search(self.buf.rec, off, off + self.cfg.max_header + 3)
        head = bytes(self.buf.rec[off : m.end() if m else off + self.cfg.max_header])
        return [v.strip() for v in CL_LINE.findall(head)]

    def _head_fits(self) -> bool:
        """Position-based head limit (h11 only checks when it runs out of data, so the
        outcome would depend on chunking): the blank line must come within max_header."""
        limit = self.cfg.max_header
        if self.buf.end - self.buf.boundary <= limit:
            return True
        return (
            BLANK.search(
                self.buf.rec,
                self.buf.boundary - self.buf.base,
                self.buf.boundary - self.buf.base + limit,
            )
            is not None
        )

    def _paused(self) -> None:
        # Only reachable if h11 switched protocols on its own; treat like an error.
        self._protocol_error("h11 paused")

    def _next_message(self, pos: int | None = None) -> None:
        """The current message is complete: move the boundary and get h11 ready for the next.
        `pos`: where the message ended when h11 did not parse it to the end (no connection)."""
        if pos is not None:
            self.buf.set_boundary(pos)
            self.line_ok = self.head_seen = self.started = False
            self.skip_hash = 0
            self._on_boundary()
            self._drop_conn()
            return
        conn = self.conn
        assert conn is not None
        buffered = h11_buffered(conn)
        if self.buf.overflow:
            self.buf.rec = bytearray(conn.trailing_data[0])
            self.buf.base = self.buf.end - buffered
            self.buf.overflow = False
        self.buf.set_boundary(self.buf.end - buffered)
        self.line_ok = False
        self.head_seen = False
        self.skip_hash = 0
        self._on_boundary()
        if buffered and self.buf.rec[self.buf.boundary - self.buf.base] in CRLF:
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
            pos = self.buf.end - h11_buffered(self.conn)
            self._give_up_cur(tags | {"truncated"})
            self._enter_resync(pos, skip_lf=False)
            return
        head = self.buf.tail(limit=self.cfg.max_header + 1)
        if not self._head_fits():
            tags = tags | {"header_limit", "truncated"}
            self.dec.anomaly("http_header_limit", f"head longer than {self.cfg.max_header} bytes")
        self._lenient(head[: self.cfg.max_header], tags)
        # Whether the bad line is complete yet or not, the next message may start on it
        # (mid-line, `_scan`) or at a later line: the same candidates either way.
        self._enter_resync(self.buf.boundary + 1, skip_lf=True)

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
            clock = self.clock_at(self.buf.boundary)
        msg = new_head_msg(
            dec.next_rid(),
            self.is_request,
            self.ts_at(self.buf.boundary),
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

    def _check_wait(self) -> None:
        pass

    def to_tunnel(self) -> None:
        if self._cur_msg() is not None:
            self._give_up_cur({"truncated"})
        self.mode = TUNNEL
        self.count.clear()
        self.conn = None
        self.started = False
        self.buf.overflow = False
        self.buf.rec = bytearray()
        self.buf.base = self.buf.boundary = self.buf.end
        self.buf.arr = []
        self.buf.gaps = []

    # ---- RESYNC mode (the scanner: resync.py)
    def _enter_resync(self, pos: int, skip_lf: bool, soft: bool = False) -> None:
        """Resynchronise from `pos`; `soft`: it follows a gap, so it may be mid-line."""
        self.mode = RESYNC
        self.count.left = 0
        self.started = False
        self.line_ok = False
        self.head_seen = False
        self.skip_hash = 0
        if self.buf.overflow:  # the body was not kept: what h11 did not consume is all we have
            rest = self.conn.trailing_data[0] if self.conn is not None else b""
            self.buf.rec = bytearray(rest)
            self.buf.base = self.buf.end - len(rest)
            self.buf.overflow = False
            pos = max(pos, self.buf.base)
        self.conn = None
        self.buf.set_boundary(pos)
        self.resync.start(skip_lf, soft)
        self.tags_next.add("resync")
        self._scan()

    def _scan(self) -> None:
        pos = self.resync.scan(self.buf)
        if pos is not None:
            self._resume(pos)

    def _resume(self, pos: int) -> None:
        """Start parsing messages again at `pos` with a fresh h11 connection."""
        self._on_boundary()
        self.mode = MSG
        self.buf.set_boundary(pos)
        self._reset_conn()
        self.started = False
        self.line_ok = False
        self.head_seen = False
        self._pump()

    # ---- close
    def close(self) -> None:
        self.closing = True
        if self.mode == CHUNK:
            self._chunk_sync()
        if self.mode == BODY:  # as h11 at EOF inside a Content-Length body
            self._give_up_cur({"truncated"})
            self._enter_resync(self.buf.end, skip_lf=False)
        if self.mode == MSG and not self.started and self.buf.end > self.buf.boundary:
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

    # ---- BODY and CHUNK modes (the countdown: bypass.py)
    def take_segment(self, data: bytes, ts_ns: int, clock: int) -> bool:
        """The hot path: `data` falls strictly inside the current body or chunk (Countdown.take).
        False, untouched: not such an arrival (or not in BODY/CHUNK mode: nothing is left)."""
        return self.count.take(self.buf, data, ts_ns, clock, self.cfg.max_replay)

    # ---- BODY mode: a Content-Length body without h11
    def _enter_body(self, pos: int, length: int) -> None:
        """The current message's head ended at `pos`; a body of `length` > 0 bytes follows."""
        msg = self._cur_msg()
        assert msg is not None and msg.digest is not None and length > 0
        self.mode = BODY
        self.count.start(length, msg.digest, not msg.digest.resumable)
        self.conn = None  # (the response side keeps `framing`: a replay needs it)
        self.started = False
        avail = self.buf.end - pos
        if avail > 0:
            off = pos - self.buf.base
            k = min(avail, length)
            msg.digest.feed(bytes(self.buf.rec[off : off + k]))
            self.count.left = length - k
            if self.count.left == 0:
                self._body_done(pos + k)
                return
        if not self.count.keep:
            self.buf.set_boundary(self.buf.end)  # nothing of this message is needed again

    def _body_input(self, data: bytes) -> None:
        """BODY mode, general path: `data` continues the body and may end it."""
        n = len(data)
        k = self.count.feed(data)
        if self.buf.overflow:
            if self.count.left == 0:
                self.buf.rec = bytearray(data[k:])
                self.buf.base = self.buf.end + k
                self.buf.overflow = False
        else:
            self.buf.rec += data
        self.buf.end += n
        if self.count.left == 0:
            self._body_done(self.buf.end - (n - k))
        elif not self.count.keep:
            self.buf.set_boundary(self.buf.end)

    def _body_done(self, pos: int) -> None:
        self.mode = MSG
        self.count.clear()
        if self.buf.overflow:  # ended by an absorbed gap: nothing after it was delivered yet
            self.buf.rec = bytearray()
            self.buf.base = self.buf.end
            self.buf.overflow = False
        self._done(pos)

    # ---- CHUNK mode: the rest of a chunk without h11
    def _chunk_input(self, data: bytes) -> None:
        """CHUNK mode, general path: `data` continues the chunk and may end it."""
        n = len(data)
        k = self.count.feed(data)
        if self.count.left:
            return
        self._chunk_sync()
        if k < n:
            assert self.conn is not None
            self.conn.receive_data(data[k:])
            self._pump()

    def _chunk_sync(self) -> None:
        """Leave CHUNK mode: h11's chunked reader takes over where the countdown is."""
        assert self.conn is not None
        set_chunk_left(self.conn, self.count.left)
        self.mode = MSG
        self.count.clear()

    def _take_body(self) -> None:
        """After h11 produced a head: take a Content-Length body over from h11."""
        msg = self._cur_msg()
        conn = self.conn
        if msg is None or conn is None or self.mode != MSG or msg.switch or not BODY_BYPASS:
            return
        left = content_length_left(conn)
        if left > 0:
            self._enter_body(self.buf.end - h11_buffered(conn), left)

    def _body_data(self, ev: h11.Data) -> None:
        msg = self._cur_msg()
        assert msg is not None and msg.digest is not None and self.conn is not None
        data = ev.data
        if ev.chunk_start:
            size = chunk_left(self.conn) + len(data)
            if size > CHUNK_SIZE_SANITY:
                self._chunk_overflow(size, self.buf.end - h11_buffered(self.conn) - len(data))
                return
        if self.skip_hash:
            k = min(self.skip_hash, len(data))
            self.skip_hash -= k
            data = data[k:]
        msg.digest.feed(data)
        if CHUNK_BYPASS and not self.skip_hash and not h11_buffered(self.conn):
            left = chunk_left(self.conn)
            if left:
                self.mode = CHUNK  # the rest of this chunk bypasses h11
                self.count.start(left, msg.digest, True)

    def _chunk_overflow(self, size: int, pos: int) -> None:
        """A chunk size beyond any real body (2^64 overflow attacks): give the message up and
        resynchronise where the chunk's data begins (`pos`)."""
        self.dec.anomaly("http_chunk_size_overflow", f"chunk size {size:#x}")
        self._give_up_cur({"parse_error", "truncated"})
        self._enter_resync(pos, skip_lf=False)

    # ---- gaps (the split: gaps.py)
    def gap(self, length: int, replay: bool = False) -> None:
        if self.mode in (TUNNEL, DONE) or length <= 0:
            return
        if self.mode == MSG and self._cur_msg() is None and self.buf.end > self.buf.boundary:
            self._settle_waiting()
        if self.mode == CHUNK:
            self._chunk_sync()
        if self.mode == BODY:
            absorbed, length = split_gap(length, self.count.left, True)
            self._absorb_body(absorbed, replay)  # (all of it, or the body ends in the hole)
            if not length:
                return
        elif self.mode == MSG and self._cur_msg() is not None:
            conn = self.conn
            absorbed, length = split_gap(
                length, skippable_body_bytes(conn), reads_content_length(conn)
            )
            if absorbed:
                self._absorb(absorbed, replay)
            if not length:
                return
        if not replay:
            self._lose(length)

    def _settle_waiting(self) -> None:
        """Bytes held back before parsing (ResponseSide._ready) are parsed now, as they are."""

    def _absorb_body(self, n: int, replay: bool) -> None:
        """BODY mode: `n` lost body bytes are counted, never hashed."""
        msg = self._cur_msg()
        assert msg is not None and msg.digest is not None
        if not replay and self.count.keep:
            self.buf.gaps.append([self.buf.end, n])
        msg.digest.skip(n)
        msg.tags.add("gap")
        self.count.left -= n
        if self.count.left == 0:
            self._body_done(self.buf.end)

    def _absorb(self, n: int, replay: bool) -> None:
        """Skip `n` lost body bytes: h11 is fed filler that is counted, never hashed."""
        msg = self._cur_msg()
        assert msg is not None and msg.digest is not None and self.conn is not None
        if not replay:
            self.buf.gaps.append([self.buf.end, n])
        msg.digest.skip(n)
        msg.tags.add("gap")
        self.skip_hash += n
        conn = self.conn
        while n and self.conn is conn and self.mode == MSG:
            k = min(n, PIECE)
            conn.receive_data(FILLER[:k])
            n -= k
            self._pump()

    def _lose(self, lost: int) -> None:
        """`lost` bytes lost where the framing cannot absorb them: give up what is in progress
        and resynchronise right after the hole."""
        at_boundary = (
            self.mode in (MSG, BODY)
            and self._cur_msg() is None
            and not (self.started and self.buf.end > self.buf.boundary)
        )
        if self.mode in (MSG, BODY):
            if self._cur_msg() is not None:
                self._give_up_cur({"gap", "truncated"})
            elif self.started and self.buf.end > self.buf.boundary:
                self._lenient(self.buf.tail(limit=self.cfg.max_header), {"gap", "truncated"})
        self._on_loss(lost, at_boundary)
        self._enter_resync(self.buf.end, skip_lf=False, soft=True)

    # ---- snapshot and restore (the saved form: snapshot.py)
    def state(self) -> dict[str, Any]:
        mode, body = self.mode, None
        if mode == CHUNK:  # replayed from the message's start, through h11
            mode = MSG
        if mode == BODY:
            if self.count.keep:  # the message's bytes are replayed from its start
                mode = MSG
            else:
                msg = self._cur_msg()
                assert msg is not None and msg.digest is not None
                body = [self.count.left, msg.digest.save()]
        rs = self.resync
        return SideState.of(mode, self.buf, rs.skip_lf, rs.soft, self.tags_next, body).to_dict()

    def load(self, saved: dict[str, Any]) -> None:
        """Rebuild from `state()`: the caller has set up the shared objects (cur etc.)."""
        st = SideState.from_dict(saved)
        self.mode = st.mode
        st.reset(self.buf)
        self.resync.start(st.skip_lf, st.soft)
        self.tags_next = set(st.tags_next)
        if st.data is None:  # overflowed body: resume at the next message line
            self._restored_partial()
            return
        if self.mode == BODY:  # saved digest: continue the body where it was
            msg = self._cur_msg()
            assert msg is not None and st.body is not None
            left, digest = st.body
            msg.digest = BodyDigest.load(digest, self.cfg.max_decoded)
            self.count.start(left, msg.digest, False)
            self.head_seen = self.line_ok = True
            self.conn = None
            self.started = False
            self._load_body()
            return
        if self.mode == MSG:
            self._reset_conn()
            self._prime()
            for data, gap in st.pieces():
                if gap is None:
                    self.data(data, 0, 0, replay=True)
                else:
                    self.buf.gaps.append(list(gap))
                    self.gap(gap[1], replay=True)
        else:
            self.buf.rec = bytearray(st.data)
            self.buf.end = len(st.data)
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
        self.resync.skip_lf = True
        self.tags_next.add("restored_partial")
