"""One direction of a TCP connection: sequence space -> 64-bit stream offsets, in-order delivery.

Out-of-order segments are parked until the hole before them fills, is declared lost by
the peer's ACK (the receiver got bytes we never saw), overflows the parking caps, or the
flow ends. Overlaps: the first copy of a byte wins (what tshark's follow does, and
Suricata's default for unknown targets); a later copy with different bytes is reported.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, insort
from collections.abc import Callable
from typing import Any

from crc32c import crc32c  # hardware CRC-32C: ~3x zlib's crc32 on a segment

from wirestream.reassembly.limits import Limits
from wirestream.reassembly.sha256 import ResumableSha256, hexdigest_of

M32 = 0xFFFFFFFF
HALF = 1 << 31

# Gap bytes per direction that the stream hash counts as zeros before it gives up.
MAX_HASHED_GAP_BYTES = 64 << 20

OVERLAP_POLICIES = ("first", "last", "linux", "bsd", "windows", "solaris")


def new_wins(policy: str, new_start: int, new_end: int, old_start: int, old_end: int) -> bool:
    """Whose bytes a target keeps where a new segment overlaps one it already holds,
    following Suricata's target-based policies (stream-tcp-list.c DoHandleDataOverlap,
    after Novak & Sturges, "Target-Based TCP Stream Reassembly", 2007):
    first: the old; last: the new; bsd/windows (also macOS, HP-UX 10, IRIX): the new when
    it starts before the old; linux: the new when it starts before the old, or at the same
    place and ends after it; solaris (HP-UX 11): the new when it starts before or at the
    old and covers its end, or ends after it."""
    if policy == "first":
        return False
    if policy == "last":
        return True
    if policy in ("bsd", "windows"):
        return new_start < old_start
    if policy == "linux":
        return new_start < old_start or (new_start == old_start and new_end > old_end)
    if policy == "solaris":
        return new_end > old_end or (new_start <= old_start and new_end >= old_end)
    raise ValueError(f"unknown overlap policy {policy!r}; choose from {OVERLAP_POLICIES}")


# Outcomes of add(), for the flow's history letters and counters.
ADD_NEW = 0
ADD_RETRANSMIT = 1
ADD_PARKED = 2
ADD_INCONSISTENT = 3
ADD_REXMIT_INCONSISTENT = 4

RECENT_SEGMENTS = 8
_RECENT = struct.Struct(">QII")
_RECENT_BYTES = RECENT_SEGMENTS * _RECENT.size


class ProcessParking:
    """Out-of-order bytes parked by every task of this process (the safety cap)."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0


PROCESS_PARKING = ProcessParking()


class ParkingBudget:
    """What the half streams of one task share: the bytes they park (the task memcap, and
    through `process` the process-wide cap) and the reassembly depth."""

    __slots__ = ("bytes", "depth", "process")

    def __init__(self, depth: int = 0, process: ProcessParking = PROCESS_PARKING) -> None:
        self.bytes = 0
        self.depth = depth  # stream bytes delivered per direction; 0 = no limit
        self.process = process


class HalfStream:
    """Sequence and delivery state of one direction; delivers through two callbacks."""

    __slots__ = (
        "acked",
        "base",
        "beyond_depth",
        "budget",
        "bytes",
        "fin_off",
        "hasher",
        "ip_bytes",
        "max_end",
        "missed",
        "next",
        "packets",
        "parked",
        "parked_bytes",
        "parked_offsets",
        "pending_zeros",
        "recent",
        "started",
        "zero_budget",
    )

    def __init__(self, budget: ParkingBudget | None = None) -> None:
        self.budget = budget if budget is not None else ParkingBudget()
        self.beyond_depth = 0  # stream bytes past the reassembly depth: not delivered
        # (offset, length, crc32c) of the last RECENT_SEGMENTS segments delivered whole, packed:
        # a retransmission of one of them with other bytes is an inconsistency (Zeek's
        # rexmit_inconsistency) at 16 bytes per segment instead of keeping the bytes.
        self.recent = b""
        self.started = False
        self.base = 0  # sequence number of stream offset 0
        self.next = 0  # next stream offset to deliver
        self.parked: dict[int, bytes] = {}
        self.parked_offsets: list[int] = []
        self.parked_bytes = 0
        self.fin_off: int | None = None
        self.acked = 0  # highest stream offset acknowledged by the peer
        self.max_end = 0  # highest stream offset seen in any segment
        self.packets = 0
        self.ip_bytes = 0  # IP total lengths of the packets seen (conn.log's *_ip_bytes)
        self.bytes = 0  # payload bytes delivered in order
        self.missed = 0  # bytes declared lost (gaps)
        self.pending_zeros = 0  # gap bytes not yet hashed (trailing gaps are never hashed)
        self.hasher: ResumableSha256 | None = None  # created at the first byte
        # Gap bytes the stream hash may still count as zeros; -1: over it, no hash (an
        # attacker's 2 GiB gap must not cost seconds of CPU to hash).
        self.zero_budget = MAX_HASHED_GAP_BYTES

    # -- sequence space --
    def set_base(self, seq: int) -> None:
        self.base = seq & M32
        self.started = True

    def offset(self, seq: int) -> int:
        """The stream offset of `seq`, unwrapped to the one nearest the delivery point."""
        d = ((seq - self.base) - self.next) & M32
        if d >= HALF:
            d -= 1 << 32
        return self.next + d

    # -- data --
    def add(
        self,
        off: int,
        data: bytes,
        deliver: Callable[[bytes], None],
        gap: Callable[[int], None],
        limits: Limits,
    ) -> int:
        """Take a segment's payload at stream offset `off`; returns one of the ADD_* codes."""
        if off < 0:  # bytes before offset 0 (e.g. before a midstream pickup point)
            if off + len(data) <= 0:
                return ADD_RETRANSMIT
            data = data[-off:]
            off = 0
        end = off + len(data)
        if end > self.max_end:
            self.max_end = end
        nxt = self.next
        if end <= nxt:
            return self._retransmitted(off, data)
        offsets = self.parked_offsets
        if off == nxt and (not offsets or offsets[0] >= end):  # the next segment, whole
            hasher = self.hasher
            if hasher is not None and not self.pending_zeros and not self.budget.depth:
                hasher.update(data)  # _deliver's common case, inlined
                self.next = end
                self.bytes += end - off
                deliver(data)
            else:
                self._deliver(data, deliver)
            self.recent = (self.recent + _RECENT.pack(off, end - off, crc32c(data)))[
                -_RECENT_BYTES:
            ]
            if offsets and offsets[0] == end:
                self.drain(deliver)  # the segment filled the hole before parked data exactly
            return ADD_NEW
        if off < nxt and (not self.parked_offsets or self.parked_offsets[0] >= end):
            self._deliver(data[nxt - off :], deliver)
            if self.parked_offsets and self.parked_offsets[0] == end:
                self.drain(deliver)  # the segment filled the hole before parked data exactly
            return ADD_NEW
        if off < nxt:
            data, off = data[nxt - off :], nxt
        outcome = self._park(off, data, limits.overlap_policy)
        if off == nxt:
            self.drain(deliver)
            outcome = ADD_INCONSISTENT if outcome == ADD_INCONSISTENT else ADD_NEW
        while self.parked and (
            self.parked_bytes > limits.max_parked_bytes
            or len(self.parked) > limits.max_parked_segments
        ):
            # Parking overflow: the hole before the first parked segment is given up.
            self.skip_to(self.parked_offsets[0], gap)
            self.drain(deliver)
        return outcome

    def _retransmitted(self, off: int, data: bytes) -> int:
        """A segment wholly before the delivery point: a retransmission, checked against
        the segments remembered with the same offset and length."""
        for r_off, r_len, r_crc in _RECENT.iter_unpack(self.recent):
            if r_off == off and r_len == len(data):
                return ADD_REXMIT_INCONSISTENT if crc32c(data) != r_crc else ADD_RETRANSMIT
        return ADD_RETRANSMIT

    def _deliver(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        depth = self.budget.depth
        if depth and self.next + len(data) > depth:  # Suricata's stream depth
            keep = max(0, depth - self.next)
            self.beyond_depth += len(data) - keep
            if not keep:
                self.next += len(data)
                return
            self.next += len(data) - keep
            data = data[:keep]
        if self.zero_budget >= 0:
            hasher = self.hasher
            if hasher is None:
                hasher = self.hasher = ResumableSha256()
            if self.pending_zeros:
                if self.pending_zeros > self.zero_budget:
                    self.zero_budget = -1
                    self.hasher = None
                else:
                    self.zero_budget -= self.pending_zeros
                    hasher.update_zeros(self.pending_zeros)
                    hasher.update(data)
                self.pending_zeros = 0
            else:
                hasher.update(data)
        self.next += len(data)
        self.bytes += len(data)
        deliver(data)

    def _park(self, off: int, data: bytes, policy: str) -> int:
        """Park [off, off+len): parts nobody holds yet are added; where parked data is
        already there, the overlap policy says whose bytes stay (see `new_wins`)."""
        end = off + len(data)
        offsets = self.parked_offsets
        parked = self.parked
        i = bisect_left(offsets, off)
        if i > 0:
            i -= 1  # the previous segment may overlap our start
        pieces: list[tuple[int, int]] = []
        cur = off
        inconsistent = False
        while i < len(offsets) and offsets[i] < end:
            po = offsets[i]
            seg = parked[po]
            pe = po + len(seg)
            if pe > cur:
                if po > cur:
                    pieces.append((cur, po))
                lo, hi = max(po, off), min(pe, end)
                if hi > lo and seg[lo - po : hi - po] != data[lo - off : hi - off]:
                    inconsistent = True
                    if new_wins(policy, off, end, po, pe):
                        parked[po] = seg[: lo - po] + data[lo - off : hi - off] + seg[hi - po :]
                cur = max(cur, pe)
            i += 1
        if cur < end:
            pieces.append((cur, end))
        for lo, hi in pieces:
            parked[lo] = data[lo - off : hi - off]
            insort(offsets, lo)
            self.parked_bytes += hi - lo
            self.budget.bytes += hi - lo
            self.budget.process.bytes += hi - lo
        if inconsistent:
            return ADD_INCONSISTENT
        return ADD_PARKED if pieces else ADD_RETRANSMIT

    def drain(self, deliver: Callable[[bytes], None]) -> None:
        offsets = self.parked_offsets
        while offsets and offsets[0] <= self.next:
            po = offsets.pop(0)
            seg = self.parked.pop(po)
            self.parked_bytes -= len(seg)
            self.budget.bytes -= len(seg)
            self.budget.process.bytes -= len(seg)
            end = po + len(seg)
            if end > self.next:
                self._deliver(seg[self.next - po :], deliver)

    def skip_to(self, target: int, gap: Callable[[int], None]) -> None:
        """Declare [next, target) lost: a gap event, counted in `missed`."""
        length = target - self.next
        if length <= 0:
            return
        self.next = target
        self.missed += length
        self.pending_zeros += length
        gap(length)

    def on_peer_ack(
        self, ack_off: int, deliver: Callable[[bytes], None], gap: Callable[[int], None]
    ) -> bool:
        """The peer acknowledged up to `ack_off`: the receiver has every byte before it, so
        bytes before it that we have not seen are lost to us (Zeek's AckReceived ->
        Undelivered): skip them as a gap and deliver what was parked behind them. The FIN's
        sequence number is not data. Returns True when a gap was declared."""
        if self.fin_off is not None and ack_off > self.fin_off:
            ack_off = self.fin_off
        if ack_off > self.acked:
            self.acked = ack_off
        gapped = False
        while ack_off > self.next:
            first = self.parked_offsets[0] if self.parked_offsets else ack_off
            if first > self.next:
                self.skip_to(min(ack_off, first), gap)
                gapped = True
            self.drain(deliver)
        return gapped

    def flush(self, deliver: Callable[[bytes], None], gap: Callable[[int], None]) -> None:
        """End of this direction: deliver what is parked across its holes, then count the
        bytes the peer acknowledged (or the FIN claims) that we never saw."""
        while self.parked_offsets:
            self.skip_to(self.parked_offsets[0], gap)
            self.drain(deliver)
        end = self.fin_off if self.fin_off is not None else self.acked
        if end > self.next:
            self.skip_to(end, gap)

    def digest(self) -> str | None:
        """sha256 of the delivered stream, gaps as zeros (trailing gaps not included);
        None when the gaps exceeded MAX_HASHED_GAP_BYTES."""
        if self.zero_budget < 0:
            return None
        return hexdigest_of(self.hasher)

    # -- persistence --
    def snapshot(self) -> list[Any]:
        return [
            self.started,
            self.base,
            self.next,
            [[o, self.parked[o]] for o in self.parked_offsets],
            self.fin_off,
            self.acked,
            self.max_end,
            self.packets,
            self.bytes,
            self.missed,
            self.pending_zeros,
            self.hasher.save() if self.hasher is not None else None,
            self.zero_budget,
            self.beyond_depth,
            self.recent,
            self.ip_bytes,
        ]

    @classmethod
    def restore(cls, state: list[Any], budget: ParkingBudget | None = None) -> HalfStream:
        h = cls(budget)
        (
            h.started,
            h.base,
            h.next,
            parked,
            h.fin_off,
            h.acked,
            h.max_end,
            h.packets,
            h.bytes,
            h.missed,
            h.pending_zeros,
            hasher,
            h.zero_budget,
            h.beyond_depth,
            recent,
            *rest,
        ) = state
        h.ip_bytes = rest[0] if rest else 0  # (states saved before ip_bytes existed)
        h.recent = bytes(recent)
        h.parked = {o: bytes(d) for o, d in parked}
        h.parked_offsets = [o for o, _ in parked]
        h.parked_bytes = sum(len(d) for _, d in parked)
        h.budget.bytes += h.parked_bytes
        h.budget.process.bytes += h.parked_bytes
        h.hasher = ResumableSha256.load(hasher) if hasher is not None else None
        return h
