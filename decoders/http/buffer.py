"""The bytes a side keeps since its message boundary, and when each of them arrived.

A restore replays those bytes (snapshot in side.py) and records take their capture time and
decoder clock from the arrival that brought a message's first byte, so both live here. Like
h11's ReceiveBuffer, an object the side holds (`Side.buf`): positions are absolute stream
offsets of one direction; the kept bytes `rec` run from `base` to `end`.
"""

from __future__ import annotations


class ByteBuffer:
    """Kept bytes, message boundary and arrivals of one direction."""

    __slots__ = ("arr", "base", "boundary", "end", "gaps", "overflow", "rec")

    def __init__(self) -> None:
        self.rec = bytearray()  # bytes from abs offset `base` to `end`
        self.base = 0
        self.boundary = 0  # abs offset where the current message (or scan) starts
        self.end = 0
        self.arr: list[list[int]] = []  # [abs start, ts_ns, clock] of arrivals since boundary
        self.gaps: list[list[int]] = []  # absorbed gaps of the current message: [abs pos, len]
        self.overflow = False  # the message in progress is not kept (beyond the replay cap)

    def arrival_at(self, pos: int) -> list[int] | None:
        """[start, ts_ns, clock] of the arrival that brought byte `pos` (None: none kept)."""
        got = None
        for a in self.arr:
            if a[0] > pos:
                break
            got = a
        return got

    def last_ts(self, pos: int) -> int | None:
        """Capture time of the arrival that brought the byte before `pos` (None: no arrival
        kept); the first arrival's when `pos` comes before all of them."""
        arr = self.arr
        if not arr:
            return None
        last = pos - 1
        ts = arr[0][1]
        for start, t, _c in arr:
            if start > last:
                break
            ts = t
        return ts

    def prune_arrivals(self, pos: int) -> None:
        """Forget the arrivals wholly before the one that brought byte `pos`."""
        arr = self.arr
        if len(arr) < 2 or arr[1][0] > pos:
            return
        k = 1
        while k + 1 < len(arr) and arr[k + 1][0] <= pos:
            k += 1
        del arr[:k]

    def set_boundary(self, pos: int) -> None:
        """The current message (or scan) starts at `pos`: what is before it is not needed."""
        self.boundary = pos
        arr = self.arr
        if len(arr) > 1 and arr[1][0] <= pos:
            self.prune_arrivals(pos)
        if self.gaps:
            self.gaps = [g for g in self.gaps if g[0] > pos]
        off = pos - self.base
        if off > 0 and not self.overflow and (off >= len(self.rec) // 2 or off > 1 << 20):
            del self.rec[:off]
            self.base = pos

    def tail(self, start: int | None = None, limit: int | None = None) -> bytes:
        """The kept bytes from `start` (default: the boundary), at most `limit` of them."""
        s = (self.boundary if start is None else start) - self.base
        e = len(self.rec) if limit is None else min(len(self.rec), s + limit)
        return bytes(self.rec[s:e])

    def stop_keeping(self) -> None:
        """The message in progress outgrew the replay cap: stop keeping its bytes."""
        self.overflow = True
        self.rec = bytearray()
        self.base = self.end
