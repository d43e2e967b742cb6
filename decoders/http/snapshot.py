"""Snapshot and restore of one side: the saved form (named fields) and how it is replayed.

A side remembers every byte since its last message boundary (buffer.ByteBuffer), the capture
time and decoder clock of each arrival, and where absorbed gaps fell. The decoder's snapshot
stores those; a restore feeds them again to a fresh h11 connection with every side effect
(records, anomalies, queue changes) suppressed, which rebuilds the parser and body-hash state
exactly (Side.load). Memory cost: a body in progress is kept up to `max_replay` bytes; beyond,
the side stops keeping it ("overflow") and a restore resumes at the next message line
instead. An identity Content-Length body (BODY mode) is not kept at all: its digest state and
the bytes left are saved instead (resumable SHA-256), so its restore is always exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from wirestream.decoders.http.buffer import ByteBuffer


class SideState(NamedTuple):
    """One side's saved state; positions are relative to the message boundary."""

    mode: str  # BODY only with `body`; CHUNK is saved as MSG (replayed through h11)
    data: bytes | None  # the kept bytes from the boundary; None: overflowed, not kept
    gaps: list[list[int]]  # absorbed gaps: [pos, len]
    arr: list[list[int]]  # arrivals: [pos, ts_ns, clock]
    skip_lf: bool  # resync: the boundary is not a line start
    soft: bool  # resync: the boundary follows a gap
    tags_next: list[str]  # tags for the next message
    body: list[Any] | None  # BODY: [bytes left, saved digest]

    @classmethod
    def of(
        cls,
        mode: str,
        buf: ByteBuffer,
        skip_lf: bool,
        soft: bool,
        tags_next: set[str],
        body: list[Any] | None,
    ) -> SideState:
        rel = buf.boundary
        return cls(
            mode,
            None if buf.overflow else buf.tail(),
            [[p - rel, n] for p, n in buf.gaps],
            [[p - rel, t, c] for p, t, c in buf.arr],
            skip_lf,
            soft,
            sorted(tags_next),
            body,
        )

    def to_dict(self) -> dict[str, Any]:
        st = self._asdict()
        if st["body"] is None:
            del st["body"]
        return st

    @classmethod
    def from_dict(cls, st: dict[str, Any]) -> SideState:
        return cls(
            st["mode"],
            st["data"],
            st["gaps"],
            st["arr"],
            st["skip_lf"],
            st.get("soft", False),
            st["tags_next"],
            st.get("body"),
        )

    def reset(self, buf: ByteBuffer) -> None:
        """Empty `buf` at position 0 with the saved arrivals (the bytes are fed again)."""
        buf.arr = [list(a) for a in self.arr]
        buf.rec = bytearray()
        buf.base = buf.boundary = buf.end = 0
        buf.gaps = []

    def pieces(self) -> Iterator[tuple[bytes, list[int] | None]]:
        """The saved bytes in order, cut at the absorbed gaps: (bytes, None) to feed, then
        (b"", [pos, len]) for a gap (in MSG mode a restore replays both)."""
        data = self.data or b""
        pos = 0
        for gpos, glen in self.gaps:
            if gpos > pos:
                yield data[pos:gpos], None
                pos = gpos
            yield b"", [gpos, glen]
        yield data[pos:], None
