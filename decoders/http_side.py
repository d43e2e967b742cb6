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
  again (decoders/http_resync.py).
- TUNNEL / DONE: bytes are ignored.
- BODY / CHUNK: the rest of a Content-Length body, or of one chunk, consumed without h11
  (decoders/http_bypass.py).

Fast heads: at a message start, a complete head in the clean subset of HTTP/1.x
(decoders/http_fast.py) is parsed without h11 and yields the very fields h11 would; any other
head (incomplete, odd, or needing another framing) goes to h11 as before. A fresh connection
and a cycled one parse the next message alike, so the choice never shows in the records.

This module holds the input and the h11 loop; the other parts are mixed in, one job each:
the kept bytes and arrival times (http_side_buffer.py), the h11 bypass (http_bypass.py),
gaps (http_gaps.py), resynchronisation (http_resync.py) and snapshots (http_side_state.py,
which also says how a restore stays exact). The two roles: http_request_side.py and
http_response_side.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import h11
from h11._readers import ChunkedReader

from wirestream.decoders.http_body import BodyDigest, content_codings
from wirestream.decoders.http_bypass import BodyBypass
from wirestream.decoders.http_gaps import GapHandling
from wirestream.decoders.http_lines import line_state, parse_head_leniently
from wirestream.decoders.http_modes import (
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
    h11_buffered,
)
from wirestream.decoders.http_msg import Msg, framing_class, header_pairs, new_head_msg
from wirestream.decoders.http_resync import Resync
from wirestream.decoders.http_side_buffer import SideBuffer
from wirestream.decoders.http_side_state import SideSnapshot

if TYPE_CHECKING:
    from wirestream.decoders.http import HttpDecoder


class Side(SideBuffer, BodyBypass, GapHandling, Resync, SideSnapshot):
    """One direction's state machine; the roles fill in the hooks (RequestSide, ResponseSide)."""

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

    def end_ts(self, pos: int | None = None) -> int:
        """Capture time of the arrival that brought the current message's last byte (`pos`:
        where it ended; None: where h11 stopped reading, or the last byte delivered). From the
        saved arrivals, so a restore gives the same value."""
        if pos is None:
            conn = self.conn
            pos = self.end - (h11_buffered(conn) if conn is not None else 0)
        arr = self.arr
        if not arr:
            return self.dec.ctx.ts_ns
        last = pos - 1
        ts = arr[0][1]
        for start, t, _c in arr:
            if start > last:
                break
            ts = t
        return ts

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
            self._prune_arrivals(self.end - h11_buffered(self.conn))
            if not self.overflow and self.end - self.boundary > self.cfg.max_replay:
                self._overflow()

    # ---- the h11 loop
    def _start_message(self) -> bool:
        rec, i, n = self.rec, self.boundary - self.base, len(self.rec)
        while i < n and rec[i] in CRLF:
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
        if off < n and rec[off] in CRLF:
            i = off
            while i < n and rec[i] in CRLF:
                i += 1
            self._set_boundary(i + base)
            rec, base = self.rec, self.base
            off, n = self.boundary - base, len(rec)
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
                    self._chunk_overflow(r._bytes_in_chunk, self.end - h11_buffered(conn))
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
        off = self.boundary - self.base
        m = BLANK.search(self.rec, off, off + self.cfg.max_header + 3)
        head = bytes(self.rec[off : m.end() if m else off + self.cfg.max_header])
        return [v.strip() for v in CL_LINE.findall(head)]

    def _head_fits(self) -> bool:
        """Position-based head limit (h11 only checks when it runs out of data, so the
        outcome would depend on chunking): the blank line must come within max_header."""
        limit = self.cfg.max_header
        if self.end - self.boundary <= limit:
            return True
        return (
            BLANK.search(self.rec, self.boundary - self.base, self.boundary - self.base + limit)
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
        buffered = h11_buffered(conn)
        if self.overflow:
            self.rec = bytearray(conn.trailing_data[0])
            self.base = self.end - buffered
            self.overflow = False
        self._set_boundary(self.end - buffered)
        self.line_ok = False
        self.head_seen = False
        self.skip_hash = 0
        self._on_boundary()
        if buffered and self.rec[self.boundary - self.base] in CRLF:
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
            pos = self.end - h11_buffered(self.conn)
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
