"""The bytes a side keeps since its message boundary, and when each of them arrived.

A restore replays those bytes (snapshot.py) and records take their capture time and
decoder clock from the arrival that brought a message's first byte, so both live here.
"""

from __future__ import annotations


class SideBuffer:
    """Mixed into Side (decoders/http/side.py), whose __init__ sets the fields used here."""

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

    def _overflow(self) -> None:
        """The message in progress outgrew the replay cap: stop keeping its bytes."""
        self.overflow = True
        self.rec = bytearray()
        self.base = self.end
