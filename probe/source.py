"""Capture records -> keyed packets: parsing, IP defragmentation and flow keys.

The one place where the probe side turns captured frames into what the partitioned
pipeline consumes: replay and the Kafka probe both use it, so they key, defragment and
drop exactly the same packets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from probe.defrag import Defragmenter
from probe.errors import ParseError
from probe.flowkey import flow_key
from probe.packet import Packet
from probe.parse import Fragment, parse_frame
from probe.record import FLAG_FRAGMENT_CONFLICT, FLAG_REASSEMBLED, encode_record
from probe.reorder import ReorderStats, reorder

# Frames are put back in timestamp order within this much capture time (0: file order).
DEFAULT_REORDER_WINDOW_NS = 1_000_000_000


class KeyedPacket(NamedTuple):
    key: bytes
    forward: bool
    packet: Packet
    linktype: int
    flags: int
    frame: bytes
    orig_len: int

    def record(self) -> bytes:
        """The packet record (value of `wirestream.packets`) for this packet."""
        return encode_record(
            self.linktype, self.packet.ts_ns, self.orig_len, self.frame, self.flags
        )


class PacketSource:
    """Turns (linktype, ts_ns, orig_len, frame) tuples into keyed packets, counting the rest."""

    def __init__(
        self,
        defragmenter: Defragmenter | None = None,
        *,
        reorder_window_ns: int = DEFAULT_REORDER_WINDOW_NS,
        vlan_in_key: bool = True,
    ) -> None:
        self.defrag = defragmenter or Defragmenter()
        self.reorder_window_ns = reorder_window_ns
        self.reorder_stats = ReorderStats()
        # False: VLAN ids are left out of the flow key, for links where the two directions
        # of a connection carry different tags (Suricata's vlan.use-for-tracking: false).
        self.vlan_in_key = vlan_in_key
        self.frames = 0
        self.bytes = 0
        self.non_ip = 0
        self.bad: Counter[str] = Counter()

    def keyed(self, frames: Iterable[tuple[int, int, int, bytes]]) -> Iterator[KeyedPacket]:
        defrag = self.defrag
        bad = self.bad
        vlan_in_key = self.vlan_in_key
        frames = reorder(frames, self.reorder_window_ns, stats=self.reorder_stats)
        for linktype, ts_ns, orig_len, frame in frames:
            self.frames += 1
            self.bytes += orig_len
            try:
                pkt = parse_frame(linktype, frame, ts_ns, orig_len)
            except ParseError as exc:
                bad[exc.kind] += 1
                continue
            if pkt is None:
                self.non_ip += 1
                continue
            flags = 0
            if isinstance(pkt, Fragment):
                done = defrag.feed(pkt)
                if done is None:
                    continue
                linktype, frame, flags = done.linktype, done.frame, FLAG_REASSEMBLED
                if done.anomalies:
                    flags |= FLAG_FRAGMENT_CONFLICT
                orig_len = len(frame)
                try:
                    pkt = parse_frame(linktype, frame, done.ts_ns, orig_len)
                except ParseError as exc:
                    bad[exc.kind] += 1
                    continue
                if not isinstance(pkt, Packet):
                    bad["bad_reassembled_datagram"] += 1
                    continue
                pkt.flags = flags
            if not vlan_in_key:
                pkt.vlan = ()
            key, forward = flow_key(pkt)
            yield KeyedPacket(key, forward, pkt, linktype, flags, frame, orig_len)
