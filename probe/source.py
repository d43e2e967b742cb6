"""Capture records -> keyed packets: parsing, IP defragmentation and flow keys.

The one place where the probe side turns captured frames into what the partitioned
pipeline consumes: replay and the Kafka probe both use it, so they key, defragment and
drop exactly the same packets.

Hot path: a capture file is read in column batches whose frames stay in the blocks they
were read in (probe.capture.Capture.raw_batches), put in order batch by batch
(probe.reorder.reorder_batches), and the common frame (Ethernet, option-less IPv4, TCP)
is recognised in place by probe.parse.common_tcp4 (the parser's fast-path guard, one
precompiled struct that skips the addresses and ports): those twelve bytes are sliced
whole and looked up in a small cache holding the flow key, orientation, addresses and
ports of recently seen endpoints (learnt from the general parser). A packet costs the
guard, two slices (the payload is the only copy), a dict lookup and its Packet.
Everything else goes through probe.parse.parse_frame.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any, NamedTuple

from wirestream.probe.defrag import Defragmenter
from wirestream.probe.errors import ParseError
from wirestream.probe.flowkey import flow_key
from wirestream.probe.packet import Packet
from wirestream.probe.parse import (
    LINKTYPE_ETHERNET,
    Fragment,
    common_tcp4,
    parse_frame,
    parse_general,
)
from wirestream.probe.record import FLAG_FRAGMENT_CONFLICT, FLAG_REASSEMBLED, encode_record
from wirestream.probe.reorder import RawBatch, ReorderStats, reorder, reorder_batches

# Frames are put back in timestamp order within this much capture time (0: file order).
DEFAULT_REORDER_WINDOW_NS = 1_000_000_000

# Endpoints (bytes 26-37 of such a frame) -> (key, forward, src, dst, sport, dport, kept).
_Endpoints = tuple[bytes, bool, bytes, bytes, int, int, bool]
_ENDPOINTS_CACHE = 1 << 16

_tuple_new = tuple.__new__


class KeyedPacket(NamedTuple):
    """A packet with its flow key, and where its frame is: `buffer[start:stop]` (the read
    block it came in, so that the common packet is never copied whole)."""

    key: bytes
    forward: bool
    packet: Packet
    linktype: int
    flags: int
    buffer: bytes
    start: int
    stop: int
    orig_len: int

    @property
    def frame(self) -> bytes:
        return self.buffer[self.start : self.stop]

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
        self._endpoints: dict[bytes, _Endpoints] = {}
        self._keep: Callable[[bytes], bool] | None = None

    def keyed(self, frames: Iterable[tuple[int, int, int, bytes]] | Any) -> Iterator[KeyedPacket]:
        """Keyed packets of `frames`: a Capture (read in batches) or any iterable of
        records (a live capture, a paced one, a test's list)."""
        if hasattr(frames, "raw_batches"):
            return chain.from_iterable(self.keyed_batches(frames.raw_batches()))
        return self._keyed_frames(frames)

    def _keyed_frames(self, frames: Iterable[tuple[int, int, int, bytes]]) -> Iterator[KeyedPacket]:
        one = self._one
        for linktype, ts_ns, orig_len, frame in reorder(
            frames, self.reorder_window_ns, stats=self.reorder_stats
        ):
            self.frames += 1
            self.bytes += orig_len
            kp = one(linktype, ts_ns, orig_len, frame)
            if kp is not None:
                yield kp

    def keyed_batches(
        self, batches: Iterable[RawBatch], keep: Callable[[bytes], bool] | None = None
    ) -> Iterator[list[KeyedPacket]]:
        """Keyed packets of column batches, a list per batch (the replay hot path).

        `keep(key)`: only packets of the flows it accepts are returned (a replay worker's
        partitions); the others are still counted, and fragments still defragmented, but
        common frames of other flows cost no Packet."""
        if keep is not self._keep:  # cached endpoints carry the verdict
            self._keep = keep
            self._endpoints.clear()
        guard = common_tcp4
        one = self._one
        endpoints = self._endpoints
        new = _tuple_new
        for lts, tss, ols, bufs, starts, stops in reorder_batches(
            batches, self.reorder_window_ns, stats=self.reorder_stats
        ):
            self.frames += len(tss)
            self.bytes += sum(ols)
            out: list[KeyedPacket] = []
            add = out.append
            for linktype, ts_ns, orig_len, buf, start, stop in zip(
                lts, tss, ols, bufs, starts, stops, strict=True
            ):
                if linktype == LINKTYPE_ETHERNET:
                    common = guard(buf, start, stop)
                    if common is not None:
                        seq, ack, flags, win, payload, end = common
                        ends = buf[start + 26 : start + 38]
                        known = endpoints.get(ends)
                        if known is None:
                            known = self._learn(ends, buf[start:stop], ts_ns, orig_len)
                        key, forward, src, dst, sport, dport, wanted = known
                        if not wanted:
                            continue
                        pkt = Packet(
                            ts_ns,
                            4,
                            6,
                            src,
                            dst,
                            sport,
                            dport,
                            buf[payload:end],
                            flags,
                            seq,
                            ack,
                            win,
                            (),
                            orig_len,
                            0,
                            0,
                            end - start - 14,  # ip_len
                        )
                        add(
                            new(
                                KeyedPacket,
                                (key, forward, pkt, linktype, 0, buf, start, stop, orig_len),
                            )
                        )
                        continue
                kp = one(linktype, ts_ns, orig_len, buf[start:stop])
                if kp is not None and (keep is None or keep(kp.key)):
                    add(kp)
            if out:
                yield out

    def _learn(self, ends: bytes, frame: bytes, ts_ns: int, orig_len: int) -> _Endpoints:
        """Cache entry for a new pair of endpoints, computed by the general parser."""
        pkt = parse_general(LINKTYPE_ETHERNET, frame, ts_ns, orig_len)
        assert isinstance(pkt, Packet)
        key, forward = flow_key(pkt)
        if len(self._endpoints) >= _ENDPOINTS_CACHE:
            self._endpoints.clear()  # a cache: only speed depends on what it holds
        wanted = self._keep is None or self._keep(key)
        entry = (key, forward, pkt.src, pkt.dst, pkt.sport, pkt.dport, wanted)
        self._endpoints[ends] = entry
        return entry

    def _one(self, linktype: int, ts_ns: int, orig_len: int, frame: bytes) -> KeyedPacket | None:
        """One frame by the general path: any link type, VLANs, IPv6, fragments, UDP."""
        try:
            pkt = parse_frame(linktype, frame, ts_ns, orig_len)
        except ParseError as exc:
            self.bad[exc.kind] += 1
            return None
        if pkt is None:
            self.non_ip += 1
            return None
        flags = 0
        if isinstance(pkt, Fragment):
            done = self.defrag.feed(pkt)
            if done is None:
                return None
            linktype, frame, flags = done.linktype, done.frame, FLAG_REASSEMBLED
            if done.anomalies:
                flags |= FLAG_FRAGMENT_CONFLICT
            orig_len = len(frame)
            try:
                pkt = parse_frame(linktype, frame, done.ts_ns, orig_len)
            except ParseError as exc:
                self.bad[exc.kind] += 1
                return None
            if not isinstance(pkt, Packet):
                self.bad["bad_reassembled_datagram"] += 1
                return None
            pkt.flags = flags
        if not self.vlan_in_key:
            pkt.vlan = ()
        key, forward = flow_key(pkt)
        return KeyedPacket(key, forward, pkt, linktype, flags, frame, 0, len(frame), orig_len)
