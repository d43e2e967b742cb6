"""One TCP connection: roles, handshake/teardown tracking, history, two half streams.

Roles: the SYN's sender is the client (a SYN-ACK's receiver, if only that was seen).
Without a handshake, the first packet's sender is the client unless its port is a likely
server port and the other is not, or the content of the first payload says otherwise
(Zeek's '^' history flag marks such a flip). Roles are fixed once data is delivered.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from wirestream.probe.packet import ACK, FIN, RST, SYN, Packet
from wirestream.reassembly.halfstream import (
    ADD_INCONSISTENT,
    ADD_NEW,
    ADD_RETRANSMIT,
    ADD_REXMIT_INCONSISTENT,
    HALF,
    M32,
    HalfStream,
    ParkingBudget,
)
from wirestream.reassembly.limits import Limits, likely_server
from wirestream.reassembly.sink import StreamSink

CLIENT, SERVER = 0, 1

# Phases of a connection, for timeouts.
PHASE_SYN = 0  # only SYNs from one side so far
PHASE_ACTIVE = 1
PHASE_CLOSED = 2  # streams closed (FIN both ways, or reset and lingered); late packets
PHASE_RESET = 3  # a valid RST was seen: streams stay open for the linger time (Zeek's
# tcp_reset_delay), so data sent after an injected RST is still seen (evasion), then close

RST_BEHIND = 1 << 16  # how far before the delivery point an RST's seq may be
RST_AHEAD = 1 << 24  # ... and how far beyond the highest byte seen (window, unscaled)

# Bits of `seen` per orientation.
SEEN_SYN, SEEN_SYNACK, SEEN_FIN, SEEN_RST, SEEN_DATA = 1, 2, 4, 8, 16
SEEN_BAD_RST, SEEN_DATA_AFTER_RST, SEEN_BAD_ACK = 32, 64, 128


_LETTER_BITS = {letter: 2 * i for i, letter in enumerate("SHADFRTGI")}
# History bits of 'D' and 'A' per orientation, for the fast path's "already marked?" test.
_DATA_BITS = (1 << _LETTER_BITS["D"], 1 << (_LETTER_BITS["D"] + 1))
_ACK_BITS = (1 << _LETTER_BITS["A"], 1 << (_LETTER_BITS["A"] + 1))


class TcpFlow:
    """A TCP connection's state; packets in, stream events out through a StreamSink."""

    __slots__ = (
        "_callbacks",
        "client_side",
        "close_reason",
        "flipped",
        "halves",
        "hist",
        "hist_seen",
        "key",
        "phase",
        "roles_fixed",
        "seen",
        "sink",
        "ts_first",
        "ts_last",
        "uid",
    )

    def __init__(
        self,
        key: bytes,
        uid: str,
        ts_ns: int,
        sink: StreamSink,
        budget: ParkingBudget | None = None,
    ) -> None:
        self.key = key
        self.uid = uid
        self.sink = sink
        self._callbacks: tuple[tuple[Any, Any], tuple[Any, Any]] | None = None
        # By key orientation: 0 = the lower endpoint's bytes, 1 = the higher's.
        self.halves = (HalfStream(budget), HalfStream(budget))
        self.client_side = -1  # key orientation of the client; -1 = not decided yet
        self.roles_fixed = False  # True once a SYN decided or data was delivered
        self.flipped = False
        # First occurrence of each history letter: upper case = orientation 0, lower = 1
        # (swapped at rendering when the client is orientation 1); bits say what is in.
        self.hist = ""
        self.hist_seen = 0
        # Flags seen per orientation: bit 0 SYN, 1 SYN-ACK, 2 FIN, 3 RST, 4 data.
        self.seen = [0, 0]
        self.phase = PHASE_SYN
        self.close_reason = ""
        self.ts_first = ts_ns
        self.ts_last = ts_ns

    # -- history (Zeek conn.log letters; upper case = client) --
    def _mark(self, letter: str, side: int) -> None:
        bit = 1 << (_LETTER_BITS[letter] + side)
        if not self.hist_seen & bit:
            self.hist_seen |= bit
            self.hist += letter if side == 0 else letter.lower()

    def history(self) -> str:
        letters = self.hist if self.client_side != 1 else self.hist.swapcase()
        return ("^" if self.flipped else "") + letters

    def direction(self, side: int) -> int:
        return CLIENT if side == self.client_side else SERVER

    def _set_client(self, side: int) -> None:
        self.client_side = side
        self._callbacks = None  # directions changed

    def callbacks(self, side: int) -> tuple[Any, Any]:
        """(deliver, gap) for one orientation, built once (not per packet)."""
        return (self._callbacks or self._make_callbacks())[side]

    def _make_callbacks(self) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
        on_data = self.sink.on_data

        def make(s: int) -> tuple[Any, Any]:
            return (
                partial(on_data, self.direction(s)),
                lambda length: self._gap(s, length),
            )

        cbs = self._callbacks = (make(0), make(1))
        return cbs

    # -- packets --
    def on_packet(self, pkt: Packet, side: int, limits: Limits) -> None:
        self.ts_last = pkt.ts_ns
        half = self.halves[side]
        half.packets += 1
        half.ip_bytes += pkt.ip_len
        phase = self.phase
        if phase == PHASE_CLOSED:
            return
        flags = pkt.tcp_flags
        if (
            flags & (SYN | FIN | RST)
            or phase != PHASE_ACTIVE
            or not self.roles_fixed
            or not half.started
            or self.client_side < 0
        ):
            self._on_packet_full(pkt, side, half, flags, limits)
            return
        # The common case, inlined: an established connection, no SYN, FIN or RST (the
        # same steps as _on_packet_full, with the branches that cannot apply left out).
        # The ACK first: it tells what the sender had received of the peer before it sent
        # this payload, so a gap it reveals in the peer's stream comes before the payload
        # (a request whose segment acknowledges a lost response follows that loss; Zeek
        # also processes the ACK before the data).
        payload = pkt.payload
        if flags & ACK:
            if not payload and not self.hist_seen & _ACK_BITS[side]:
                self._mark("A", side)
            peer = self.halves[1 - side]
            if peer.started:
                nxt = peer.next
                d = ((pkt.ack - peer.base) - nxt) & M32
                if d >= HALF:
                    d -= 1 << 32
                if d > 0:
                    self._ack_ahead(side, nxt + d, limits)
                elif nxt + d > peer.acked:
                    peer.acked = nxt + d
        if payload:
            self.seen[side] |= SEEN_DATA
            deliver, gap = (self._callbacks or self._make_callbacks())[side]
            nxt = half.next
            d = ((pkt.seq - half.base) - nxt) & M32
            if d >= HALF:
                d -= 1 << 32
            outcome = half.add(nxt + d, payload, deliver, gap, limits)
            if outcome == ADD_NEW:
                if not self.hist_seen & _DATA_BITS[side]:
                    self._mark("D", side)
            else:
                self._payload_outcome(side, outcome)
        seen = self.seen
        if seen[0] & seen[1] & SEEN_FIN and self._both_finished():
            self.close("fin")

    def _on_packet_full(
        self, pkt: Packet, side: int, half: HalfStream, flags: int, limits: Limits
    ) -> None:
        seq = pkt.seq
        if self.client_side < 0:
            self._orient_first(pkt, side)
        if flags & SYN:
            self._on_syn(pkt, side, half)
            seq = (seq + 1) & 0xFFFFFFFF
        elif not half.started:
            half.set_base(seq)
        payload = pkt.payload
        if flags & ACK and not flags & RST:
            self._on_ack(pkt, side, flags, limits)  # before the payload: see on_packet
        if payload:
            self._on_payload(side, half, seq, payload, limits)
        if flags & FIN:
            self._mark("F", side)
            self.seen[side] |= SEEN_FIN
            if half.fin_off is None:
                # A frame cut short by the snap length still occupied its full length.
                half.fin_off = half.offset(seq) + len(payload) + pkt.truncated
        if flags & RST and (not self._on_rst(pkt, side, half) or self.phase == PHASE_RESET):
            return  # an invalid RST is ignored whole; a valid one ends the packet's effect
        if flags & ACK and flags & RST:
            self._on_ack(pkt, side, flags, limits)  # a valid RST returned above
        if self.phase == PHASE_SYN and (self.seen[0] | self.seen[1]) & ~SEEN_SYN:
            self.phase = PHASE_ACTIVE
        if self.seen[0] & self.seen[1] & SEEN_FIN and self._both_finished():
            self.close("fin")

    def _orient_first(self, pkt: Packet, side: int) -> None:
        flags = pkt.tcp_flags
        if flags & SYN:
            self._set_client(side if not flags & ACK else 1 - side)
            self.flipped = bool(flags & ACK)  # the first packet came from the server
            return
        self._set_client(side)
        if likely_server(pkt.sport) and not likely_server(pkt.dport):
            self._set_client(1 - side)
            self.flipped = True

    def _on_syn(self, pkt: Packet, side: int, half: HalfStream) -> None:
        synack = bool(pkt.tcp_flags & ACK)
        self._mark("H" if synack else "S", side)
        self.seen[side] |= SEEN_SYNACK if synack else SEEN_SYN
        if not self.roles_fixed:
            wanted = 1 - side if synack else side
            if wanted != self.client_side:
                self._set_client(wanted)
                self.flipped = False
            self.roles_fixed = True
        if not half.started or (half.bytes == 0 and not half.parked and not half.missed):
            half.set_base(pkt.seq + 1)

    def _on_payload(
        self, side: int, half: HalfStream, seq: int, payload: bytes, limits: Limits
    ) -> None:
        if not self.roles_fixed:
            hint = self.sink.role_hint(payload)
            if hint is not None:
                wanted = side if hint == CLIENT else 1 - side
                if wanted != self.client_side:
                    self._set_client(wanted)
                    self.flipped = not self.flipped
            self.roles_fixed = True
        self.seen[side] |= SEEN_DATA
        if self.phase == PHASE_RESET and not self.seen[side] & SEEN_DATA_AFTER_RST:
            self.seen[side] |= SEEN_DATA_AFTER_RST
            self.sink.anomaly("data_after_reset", f"direction={self.direction(side)}")
        deliver, gap = self.callbacks(side)
        outcome = half.add(half.offset(seq), payload, deliver, gap, limits)
        if outcome == ADD_NEW:
            self._mark("D", side)
        else:
            self._payload_outcome(side, outcome)

    def _payload_outcome(self, side: int, outcome: int) -> None:
        """History letters and anomalies of a segment that was not simply new data."""
        if outcome == ADD_RETRANSMIT:
            self._mark("T", side)
        elif outcome == ADD_INCONSISTENT:
            self._mark("I", side)
            self.sink.anomaly("overlap_different_data", f"direction={self.direction(side)}")
        elif outcome == ADD_REXMIT_INCONSISTENT:
            self._mark("T", side)
            self._mark("I", side)
            self.sink.anomaly("rexmit_inconsistency", f"direction={self.direction(side)}")

    def parked_bytes(self) -> int:
        return self.halves[0].parked_bytes + self.halves[1].parked_bytes

    def give_up_first_hole(self) -> bool:
        """Memory pressure: declare the first hole of the direction with most parked data
        lost, delivering what it held back. False when nothing is parked."""
        side = 0 if self.halves[0].parked_bytes >= self.halves[1].parked_bytes else 1
        half = self.halves[side]
        if not half.parked_offsets:
            return False
        deliver, gap = self.callbacks(side)
        half.skip_to(half.parked_offsets[0], gap)
        half.drain(deliver)
        return True

    def _gap(self, side: int, length: int) -> None:
        self.roles_fixed = True
        self._mark("G", side)
        self.sink.on_gap(self.direction(side), length)

    def _on_ack(self, pkt: Packet, side: int, flags: int, limits: Limits) -> None:
        peer_side = 1 - side
        peer = self.halves[peer_side]
        if not pkt.payload and not flags & (SYN | FIN):
            self._mark("A", side)
        if not peer.started:
            return
        ack_off = peer.offset(pkt.ack)
        if ack_off > peer.next:
            self._ack_ahead(side, ack_off, limits)
        elif ack_off > peer.acked:
            peer.acked = ack_off

    def _ack_ahead(self, side: int, ack_off: int, limits: Limits) -> None:
        """The peer of `side` is acknowledged beyond what was delivered of it: a gap, unless
        the ACK is implausible."""
        peer_side = 1 - side
        peer = self.halves[peer_side]
        if ack_off > peer.max_end + limits.max_ack_ahead:
            # Acknowledges far more than was ever sent (RFC 793: an ACK of unsent data
            # is ignored): a forged or broken ACK must not declare gigabytes lost.
            if not self.seen[side] & SEEN_BAD_ACK:
                self.seen[side] |= SEEN_BAD_ACK
                self.sink.anomaly("ack_above_data", f"direction={self.direction(side)}")
            return
        self.roles_fixed = True  # a gap may be delivered: directions are final now
        peer.on_peer_ack(ack_off, *self.callbacks(peer_side))

    def _on_rst(self, pkt: Packet, side: int, half: HalfStream) -> bool:
        """Accept an RST only if it is plausible for the receiver (RFC 5961 in spirit): in
        the sender's sequence window, or, before the sender spoke, acknowledging the SYN.
        Others are reported and ignored (Zeek/Suricata treat them as injection attempts)."""
        if self._rst_valid(pkt, side, half):
            self._mark("R", side)
            self.seen[side] |= SEEN_RST
            self.phase = PHASE_RESET
            return True
        if not self.seen[side] & SEEN_BAD_RST:
            self.seen[side] |= SEEN_BAD_RST
            self.sink.anomaly("rst_invalid", f"direction={self.direction(side)} seq={pkt.seq}")
        return False

    def _rst_valid(self, pkt: Packet, side: int, half: HalfStream) -> bool:
        peer = self.halves[1 - side]
        if not half.started or (half.bytes == 0 and not self.seen[side] & (SEEN_SYN | 2)):
            # The sender has not spoken yet: its RST must acknowledge what the peer sent.
            return bool(pkt.tcp_flags & ACK) and peer.started and peer.offset(pkt.ack) >= 0
        off = half.offset(pkt.seq)
        return half.next - RST_BEHIND <= off <= half.max_end + RST_AHEAD

    def _both_finished(self) -> bool:
        return all(h.fin_off is not None and h.next >= h.fin_off for h in self.halves)

    # -- end --
    def close(self, reason: str) -> None:
        """Close both streams: deliver parked data across holes, then tell the sink."""
        if self.phase == PHASE_CLOSED:
            return
        if self.client_side < 0:
            self._set_client(0)
        for side in (self.client_side, 1 - self.client_side):
            self.halves[side].flush(*self.callbacks(side))
        self.phase = PHASE_CLOSED
        self.close_reason = reason
        self.sink.on_close(reason)

    def release(self) -> None:
        """Drop references to the sink once the flow is gone."""
        self._callbacks = None
        self.sink = None  # type: ignore[assignment]

    def conn_state(self) -> str:
        """Zeek's conn_state, from the flags seen on each side."""
        c, s = self.client_side, 1 - self.client_side
        cf, sf = self.seen[c], self.seen[s]
        c_syn, s_synack = cf & 1, sf & 2
        c_fin, s_fin = cf & 4, sf & 4
        c_rst, s_rst = cf & 8, sf & 8
        if not c_syn and not s_synack:
            return "OTH"
        if c_syn and not s_synack:
            if s_rst:
                return "REJ"
            if c_rst:
                return "RSTOS0"
            if c_fin:
                return "SH"
            return "S0" if not sf else "OTH"
        if s_synack and not c_syn and not self.halves[c].packets:
            if s_rst:
                return "RSTRH"
            if s_fin:
                return "SHR"
        if c_rst:
            return "RSTO"
        if s_rst:
            return "RSTR"
        if c_fin and s_fin:
            return "SF"
        if c_fin:
            return "S2"
        if s_fin:
            return "S3"
        return "S1"

    # -- persistence --
    # The snapshot: these fields' values in this order (as the tracker's _META_FIELDS);
    # "halves" holds the two HalfStream snapshots.
    _STATE_FIELDS = (
        "uid",
        "halves",
        "client_side",
        "roles_fixed",
        "flipped",
        "hist",
        "seen",
        "phase",
        "close_reason",
        "ts_first",
        "ts_last",
    )
    _PLAIN_FIELDS = ("client_side", "roles_fixed", "flipped", "phase", "close_reason", "ts_last")

    def snapshot(self) -> list[Any]:
        values = {name: getattr(self, name) for name in self._STATE_FIELDS}
        values["halves"] = [half.snapshot() for half in self.halves]
        values["seen"] = list(self.seen)
        return [values[name] for name in self._STATE_FIELDS]

    @classmethod
    def restore(
        cls, key: bytes, state: list[Any], sink: StreamSink, budget: ParkingBudget | None = None
    ) -> TcpFlow:
        values = dict(zip(cls._STATE_FIELDS, state, strict=True))
        flow = cls(key, values["uid"], values["ts_first"], sink)
        first, second = values["halves"]
        flow.halves = (HalfStream.restore(first, budget), HalfStream.restore(second, budget))
        for name in cls._PLAIN_FIELDS:
            setattr(flow, name, values[name])
        flow.hist = values["hist"]
        flow.hist_seen = 0
        for letter in flow.hist:
            flow.hist_seen |= 1 << (_LETTER_BITS[letter.upper()] + (letter.islower()))
        flow.seen = list(values["seen"])
        return flow
