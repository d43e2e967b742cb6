"""IPv4/IPv6 defragmentation, sans-IO: fragments (with capture time) in, whole frames out.

A completed datagram comes out as a frame of the original link type: the link-layer header
of the first fragment (so VLAN ids, and with them the flow key, are kept) followed by the
reassembled IP packet (MF/offset cleared, lengths fixed, IPv4 checksum recomputed; IPv6
fragment header removed). `parse_frame(r.linktype, r.frame, r.ts_ns, len(r.frame))` parses
it with the same code as any other frame.

Policy (limits as Linux's, overlaps as BSD/Windows/Zeek): datagrams are keyed by (src, dst,
id, proto, VLAN ids); overlapping bytes keep the first copy received (overlaps are counted,
and flagged as an anomaly when the data differ; Linux drops such datagrams, Wireshark keeps
the last copy: `overlap_policy="last"`); a datagram not completed within `timeout_ns` of
capture time after its first fragment is dropped; at most `max_datagrams` are pending and
`max_bytes` buffered (the oldest are evicted); at most `max_fragments` fragments feed one
datagram; one with more than `max_size` bytes of IP payload is dropped. Dropped datagrams
are counted, never delivered.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from wirestream.probe.parse import Fragment

__all__ = ["DefragStats", "Defragmenter", "Reassembled"]

_U16 = struct.Struct("!H")


class Reassembled(NamedTuple):
    """A completed datagram: `frame` = l2 header + IP packet, `ip_offset` = len(l2)."""

    linktype: int
    ts_ns: int  # capture time of the fragment that completed it
    frame: bytes
    ip_offset: int
    fragments: int
    anomalies: tuple[str, ...]  # e.g. ("fragment_overlap_conflict",)


@dataclass(slots=True)
class DefragStats:
    fragments: int = 0  # fragments fed
    reassembled: int = 0  # datagrams delivered
    timeouts: int = 0  # incomplete datagrams dropped after timeout_ns
    evictions: int = 0  # incomplete datagrams dropped to stay under max_datagrams
    overlaps: int = 0  # fragments overlapping bytes already received (duplicates included)
    overlap_conflicts: int = 0  # ... whose overlapping bytes differed (first copy kept)
    too_many_fragments: int = 0  # datagrams dropped for exceeding max_fragments
    oversize: int = 0  # datagrams dropped for exceeding max_size
    bad_fragments: int = 0  # fragments ignored: misaligned, beyond the known end, empty
    flushed: int = 0  # incomplete datagrams dropped by flush()

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class _Datagram:
    first_ts: int
    buf: bytearray = field(default_factory=bytearray)
    spans: list[list[int]] = field(default_factory=list)  # sorted, merged [start, end)
    total: int = -1  # payload length, known once the last fragment (MF=0) arrived
    first: Fragment | None = None  # the offset-0 fragment (its header is reused)
    count: int = 0
    conflict: bool = False


class Defragmenter:
    """Feed `Fragment`s from `probe.parse.parse_frame`; completed datagrams come back."""

    def __init__(
        self,
        *,
        max_datagrams: int = 8192,
        max_fragments: int = 64,
        timeout_ns: int = 30_000_000_000,
        max_size: int = 65535,
        max_bytes: int = 64 * 1024 * 1024,
        overlap_policy: str = "first",
    ) -> None:
        if overlap_policy not in ("first", "last"):
            raise ValueError("overlap_policy must be 'first' or 'last'")
        self._last_wins = overlap_policy == "last"
        self.max_datagrams = max_datagrams
        self.max_fragments = max_fragments
        self.timeout_ns = timeout_ns
        self.max_size = max_size
        # Buffer memory of all pending datagrams (a fragment at a high offset reserves the
        # bytes before it); past the budget the oldest datagrams are evicted.
        self.max_bytes = max(max_bytes, max_size)
        self.buffered = 0
        self.stats = DefragStats()
        # Insertion order = creation order: the first entries are the oldest.
        self._pending: dict[tuple, _Datagram] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def feed(self, frag: Fragment) -> Reassembled | None:
        """Add one fragment; return the datagram it completes, if any."""
        stats = self.stats
        stats.fragments += 1
        self.expire(frag.ts_ns)
        start = frag.offset
        end = start + len(frag.data)
        if (frag.more and len(frag.data) % 8) or (not frag.data and frag.more):
            stats.bad_fragments += 1  # only the last fragment may end off an 8-byte boundary
            return None
        key = (frag.ip_version, frag.src, frag.dst, frag.ident, frag.proto, frag.vlan)
        pending = self._pending
        dg = pending.get(key)
        if dg is None:
            if len(pending) >= self.max_datagrams:
                self._drop(next(iter(pending)))
                stats.evictions += 1
            dg = pending[key] = _Datagram(frag.ts_ns)
        dg.count += 1
        if dg.count > self.max_fragments:
            self._drop(key)
            stats.too_many_fragments += 1
            return None
        if end > self.max_size:
            self._drop(key)
            stats.oversize += 1
            return None
        if dg.total >= 0 and (end > dg.total or (not frag.more and end != dg.total)):
            stats.bad_fragments += 1  # disagrees with the last fragment already seen
            return None
        if not frag.more:
            if dg.spans and dg.spans[-1][1] > end:
                stats.bad_fragments += 1  # data already received beyond this "last" one
                return None
            dg.total = end
        growth = end - len(dg.buf)
        while growth > 0 and self.buffered + growth > self.max_bytes:
            oldest = next(iter(pending))
            self._drop(oldest)
            stats.evictions += 1
            if oldest == key:
                return None
        if start == 0 and dg.first is None:
            dg.first = frag
        self._add(dg, start, end, frag.data)
        if dg.total >= 0 and dg.first is not None and dg.spans == [[0, dg.total]]:
            self._drop(key)
            return self._build(dg, frag.ts_ns)
        return None

    def expire(self, now_ns: int) -> int:
        """Drop datagrams whose first fragment is older than timeout_ns; return how many."""
        pending = self._pending
        deadline = now_ns - self.timeout_ns
        n = 0
        while pending:
            key = next(iter(pending))
            if pending[key].first_ts >= deadline:
                break
            self._drop(key)
            n += 1
        self.stats.timeouts += n
        return n

    def flush(self) -> int:
        """End of input: drop every incomplete datagram; return how many."""
        n = len(self._pending)
        self._pending.clear()
        self.buffered = 0
        self.stats.flushed += n
        return n

    def _drop(self, key: tuple) -> None:
        self.buffered -= len(self._pending.pop(key).buf)

    def _add(self, dg: _Datagram, start: int, end: int, data: bytes) -> None:
        """Copy the bytes of [start, end) not yet covered (or all of them, last-wins)."""
        buf = dg.buf
        if len(buf) < end:
            self.buffered += end - len(buf)
            buf.extend(bytes(end - len(buf)))
        cursor = start
        overlapped = False
        for s, e in dg.spans:
            if e <= cursor:
                continue
            if s >= end:
                break
            if s > cursor:
                buf[cursor:s] = data[cursor - start : s - start]
            lo, hi = max(s, cursor), min(e, end)
            overlapped = True
            if buf[lo:hi] != data[lo - start : hi - start]:
                dg.conflict = True
                self.stats.overlap_conflicts += 1
            cursor = hi
            if cursor >= end:
                break
        if cursor < end:
            buf[cursor:end] = data[cursor - start :]
        if self._last_wins:
            buf[start:end] = data
        if overlapped:
            self.stats.overlaps += 1
        # merge [start, end) into the sorted span list
        spans = [sp for sp in dg.spans if sp[1] < start or sp[0] > end]
        merged = [start, end]
        for sp in dg.spans:
            if sp[1] >= start and sp[0] <= end:
                merged[0] = min(merged[0], sp[0])
                merged[1] = max(merged[1], sp[1])
        spans.append(merged)
        spans.sort()
        dg.spans = spans

    def _build(self, dg: _Datagram, ts_ns: int) -> Reassembled | None:
        first = dg.first
        assert first is not None
        payload = bytes(dg.buf[: dg.total])
        hdr = bytearray(first.header)
        if first.ip_version == 4:
            total = len(hdr) + len(payload)
            if total > 0xFFFF:
                self.stats.oversize += 1
                return None
            hdr[2:4] = _U16.pack(total)
            hdr[6:8] = _U16.pack(_U16.unpack_from(hdr, 6)[0] & 0x4000)  # keep DF only
            hdr[10:12] = b"\0\0"
            hdr[10:12] = _U16.pack(_ipv4_checksum(hdr))
        else:
            plen = len(hdr) - 40 + len(payload)
            if plen > 0xFFFF:
                self.stats.oversize += 1
                return None
            hdr[4:6] = _U16.pack(plen)
            hdr[first.nh_offset] = first.proto  # unlink the (removed) fragment header
        self.stats.reassembled += 1
        anomalies = ("fragment_overlap_conflict",) if dg.conflict else ()
        frame = first.l2 + bytes(hdr) + payload
        return Reassembled(first.linktype, ts_ns, frame, len(first.l2), dg.count, anomalies)


def _ipv4_checksum(hdr: bytes | bytearray) -> int:
    s = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
