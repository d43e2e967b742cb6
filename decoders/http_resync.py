"""RESYNC mode: after a loss or a protocol error, find where messages start again.

Bytes are discarded until a line that looks like a request line (client side) or a status
line (server side) starts at a line start (the first position after a gap counts as one), or
mid-line where a body that ended without a newline puts it (`_scan`).
"""

from __future__ import annotations

from wirestream.decoders.http_lines import (
    KNOWN_METHODS,
    MIDLINE_MAX,
    is_message_line,
    line_state,
    midline_request_start,
)
from wirestream.decoders.http_modes import MSG, RESYNC


class Resync:
    """Mixed into Side (decoders/http_side.py)."""

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
