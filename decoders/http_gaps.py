"""Holes in a side's bytes: absorbed when the body's framing spans them, else a loss.

An absorbed gap keeps the message (tag `gap`, the digest counts the bytes it never saw);
a loss gives up what is in progress and resynchronises right after the hole
(decoders/http_resync.py).
"""

from __future__ import annotations

from h11._readers import ChunkedReader, ContentLengthReader, Http10Reader

from wirestream.decoders.http_body import PIECE
from wirestream.decoders.http_modes import BODY, CHUNK, DONE, MSG, TUNNEL, h11_buffered

_ZEROS = bytes(PIECE)


class GapHandling:
    """Mixed into Side (decoders/http_side.py)."""

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
        if conn is None or h11_buffered(conn):
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
