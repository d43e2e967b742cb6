"""Input records of the packets topic -> the task's packets: the member's one decoding step.

Both layouts (docs/wire-formats.md) are read: a packet record (the seed's one record per
packet) goes to `Task.process_record`; a bundle is framed (probe/bundle.py), its records
parsed and keyed like replay parses a capture (probe.source.PacketSource.keyed_batches:
the common frame parsed in place, endpoints cached) and handed to the task as one batch,
as replay does. A bundle is one input offset: the member commits, checkpoints and rewinds
at record boundaries, so a bundle is applied whole or not at all and a restart repeats it
whole (its state and outputs of the aborted attempt are never committed).

Nothing is dropped silently. A bundle this member cannot read at all (unknown version) is
dead-lettered whole with the reason; in a damaged bundle the good packets are processed
and each bad part is dead-lettered on its own (its bytes, the reason and its entry number):
a record that does not decode (too_short, unknown_version), a frame that does not parse,
a non-IP frame (the probe never sends one), an IP fragment (the probe reassembles them),
and what cannot be framed at all (bundle_truncated, bundle_trailing_bytes, and an empty
dead letter for bundle_count_mismatch).
"""

from __future__ import annotations

from collections.abc import Callable

from wirestream.probe.bundle import MAGIC, BundleError, encode_bundle, split_bundle
from wirestream.probe.defrag import Defragmenter
from wirestream.probe.errors import FlowKeyError, ParseError
from wirestream.probe.flowkey import flow_key
from wirestream.probe.packet import Packet
from wirestream.probe.parse import Fragment, parse_frame
from wirestream.probe.record import HEADER, RECORD_VERSION
from wirestream.probe.reorder import RawBatch
from wirestream.probe.source import KeyedPacket, PacketSource
from wirestream.streams.task import Task

# (reason, bytes, entry number; -1 = the whole input record)
BadPart = Callable[[str, bytes, int], None]

_HEADER_LEN = HEADER.size


class _NoDefrag(Defragmenter):
    """Fragments in a bundle are refused, not reassembled: the member keeps no fragment
    state (it is not in the changelog). The batch then takes the per-entry path, which
    dead-letters them."""

    def feed(self, frag: Fragment) -> None:  # type: ignore[override]
        return None


class PacketInput:
    """Feeds one partition's task from input record values."""

    def __init__(self, task: Task, bad_part: BadPart) -> None:
        self.task = task
        self.bad_part = bad_part
        self.vlan_in_key = task.config.vlan_in_flow_key
        self.source = PacketSource(_NoDefrag(), reorder_window_ns=0, vlan_in_key=self.vlan_in_key)
        self.bundles = 0
        self.packets = 0
        # The keyed packets of the last bundle processed (None: the last input was a
        # packet record), for the substreams' per-protocol copies.
        self.last: list[KeyedPacket] | None = None

    def process(self, value: bytes) -> None:
        """One input record value, whichever layout."""
        if value[:3] != MAGIC:
            self.last = None
            self.task.process_record(value)
            return
        self.last = []
        try:
            spans, damage = split_bundle(value)
        except BundleError as exc:
            self.bad_part(exc.reason, value, -1)
            return
        self.bundles += 1
        self.last = batch = self._keyed(value, spans)
        for d in damage:
            self.bad_part(d.reason, d.data, d.index)
        if batch:
            self.packets += len(batch)
            self.task.process_batch(batch)

    def _keyed(self, value: bytes, spans: list[tuple[int, int]]) -> list[KeyedPacket]:
        """Keyed packets of the bundle's records, in order; bad ones reported."""
        out: list[KeyedPacket] = []
        unpack = HEADER.unpack_from
        lts: list[int] = []
        tss: list[int] = []
        ols: list[int] = []
        starts: list[int] = []
        stops: list[int] = []
        first = 0  # entry number of the run's first record
        for index, (start, stop) in enumerate(spans):
            if stop - start >= _HEADER_LEN:
                version, flags, linktype, ts_ns, orig_len = unpack(value, start)
                if version == RECORD_VERSION and not flags:
                    if not lts:
                        first = index
                    lts.append(linktype)
                    tss.append(ts_ns)
                    ols.append(orig_len)
                    starts.append(start + _HEADER_LEN)
                    stops.append(stop)
                    continue
            # A flagged (reassembled) or undecodable record: ends the run, goes on its own.
            if lts:
                self._run(value, (lts, tss, ols, [value] * len(lts), starts, stops), first, out)
                lts, tss, ols, starts, stops = [], [], [], [], []
            kp = self._one(value, start, stop, index)
            if kp is not None:
                out.append(kp)
        if lts:
            self._run(value, (lts, tss, ols, [value] * len(lts), starts, stops), first, out)
        return out

    def _run(self, value: bytes, run: RawBatch, first: int, out: list[KeyedPacket]) -> None:
        """Plain records in a row: replay's batch parser; if it left any out (a frame that
        does not parse, non-IP, a fragment), the run again record by record to report
        them (rare: bad input only)."""
        keyed = next(self.source.keyed_batches([run]), [])
        if len(keyed) == len(run[1]):
            out.extend(keyed)
            return
        for i, (start, stop) in enumerate(zip(run[4], run[5], strict=True)):
            kp = self._one(value, start - _HEADER_LEN, stop, first + i)
            if kp is not None:
                out.append(kp)

    def _one(self, value: bytes, start: int, stop: int, index: int) -> KeyedPacket | None:
        """One record by the general path (the same checks as Task.process_record)."""
        record = value[start:stop]
        if len(record) < _HEADER_LEN:
            self.bad_part("too_short", record, index)
            return None
        version, flags, linktype, ts_ns, orig_len = HEADER.unpack_from(record)
        if version != RECORD_VERSION:
            self.bad_part("unknown_version", record, index)
            return None
        frame = record[_HEADER_LEN:]
        try:
            pkt = parse_frame(linktype, frame, ts_ns, orig_len)
        except ParseError as exc:
            self.bad_part(exc.kind, record, index)
            return None
        if pkt is None:
            self.bad_part("non_ip", record, index)
            return None
        if not isinstance(pkt, Packet):
            self.bad_part("ip_fragment_not_reassembled", record, index)
            return None
        pkt.flags = flags
        if not self.vlan_in_key:
            pkt.vlan = ()
        try:
            key, forward = flow_key(pkt)
        except FlowKeyError as exc:
            self.bad_part(f"flow_key_{exc.reason}", record, index)
            return None
        return KeyedPacket(key, forward, pkt, linktype, flags, frame, 0, len(frame), orig_len)


def split_by_protocol(batch: list[KeyedPacket]) -> list[tuple[bytes, bytes]]:
    """(key, bundle) per IP protocol of the flow keys, packets in their order; the key is
    the flow key of the bundle's first packet."""
    groups: dict[int, list[KeyedPacket]] = {}
    for kp in batch:
        groups.setdefault(kp.key[2], []).append(kp)
    return [(kps[0].key, encode_bundle([kp.record() for kp in kps])) for kps in groups.values()]
