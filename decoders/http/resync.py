"""RESYNC mode: after a loss or a protocol error, find where messages start again.

Bytes are discarded until a line that looks like a request line (client side) or a status
line (server side) starts at a line start (the first position after a gap counts as one), or
mid-line where a body that ended without a newline puts it (`Resync.scan`). The scanner is an
object the side holds (`Side.resync`): it reads the side's kept bytes (buffer.ByteBuffer) and
moves their boundary; the side enters RESYNC and resumes parsing where `scan` says.
"""

from __future__ import annotations

from wirestream.decoders.http.buffer import ByteBuffer
from wirestream.decoders.http.lines import (
    KNOWN_METHODS,
    MIDLINE_MAX,
    is_message_line,
    line_state,
    midline_request_start,
)


class Resync:
    """Where messages start again in one direction's bytes (client side: request lines)."""

    __slots__ = ("is_request", "max_header", "skip_lf", "soft")

    def __init__(self, is_request: bool, max_header: int) -> None:
        self.is_request = is_request
        self.max_header = max_header
        self.skip_lf = False  # the boundary is not a line start
        self.soft = False  # the boundary follows a gap (a line start, or not)

    def start(self, skip_lf: bool, soft: bool) -> None:
        self.skip_lf = skip_lf
        self.soft = soft

    def scan(self, buf: ByteBuffer) -> int | None:
        """Find where messages start again. Candidates: line starts (and the position right
        after a gap); mid-line, a body without a final newline can put the next message
        there: on the server side any `HTTP/1.`, on the client side a known method followed
        by a target and ` HTTP/x.y` ending the line (lines.midline_request_start). A
        candidate is taken when its whole line is a request/status line; the decision
        depends on the bytes only, never on chunking. Returns where messages start again, or
        None: not found yet (the boundary is moved past what cannot be a start)."""
        limit = self.max_header
        marker = b"HTTP/1."
        while True:
            rec = buf.rec
            off = buf.boundary - buf.base
            if off >= len(rec):
                return None
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
                        return buf.base + lo + h
                if cand < 0:
                    keep = MIDLINE_MAX if self.is_request else len(marker) - 1
                    buf.set_boundary(buf.base + max(off, len(rec) - keep))
                    return None
                self.skip_lf = self.soft = False
                buf.set_boundary(cand + buf.base)
                continue
            j = rec.find(b"\n", off, off + limit + 1)
            if j < 0:
                if line_state(self.is_request, rec[off : off + limit + 1], limit) is not False:
                    return None  # may still become a message line: wait for its end
            else:
                line = bytes(rec[off:j])
                if is_message_line(self.is_request, line):
                    pos = buf.boundary
                    if self.soft and line.split(b" ", 1)[0] not in KNOWN_METHODS:
                        # Right after a gap (maybe mid-line): "<body tail>GET / ..." is a GET.
                        h = midline_request_start(line)
                        if h > 0:
                            pos += h
                    self.soft = False
                    return pos
            self.soft = False
            buf.set_boundary(buf.boundary + 1)
            self.skip_lf = True
