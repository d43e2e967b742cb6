"""The flow table of one task (partition): creation, port reuse, limits, timeouts.

Everything is measured in stream time (the largest capture time seen by this task) and
counted per task, so a replay with N virtual partitions and a consumer group reading an
N-partition topic make the same decisions at the same packets, however fast they run.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from wirestream.probe.packet import ACK, PROTO_TCP, PROTO_UDP, SYN, Packet
from wirestream.reassembly.halfstream import ParkingBudget
from wirestream.reassembly.ipflow import IpFlow
from wirestream.reassembly.limits import Limits
from wirestream.reassembly.sink import StreamSink
from wirestream.reassembly.tcpflow import (
    PHASE_ACTIVE,
    PHASE_CLOSED,
    PHASE_RESET,
    PHASE_SYN,
    TcpFlow,
)
from wirestream.reassembly.udpflow import UdpFlow

Flow = TcpFlow | UdpFlow | IpFlow


def make_uid(key: bytes, ts_ns: int) -> str:
    """Deterministic flow uid: the same capture always gives the same uids (and a reused
    5-tuple, started at another time, a new one)."""
    digest = hashlib.sha256(key + ts_ns.to_bytes(8, "big", signed=True)).digest()
    return "C" + base64.b32encode(digest[:10]).decode("ascii").lower()


class FlowTracker:
    """Owns the flows of one task; calls `finished(flow)` when a flow leaves the table."""

    def __init__(
        self,
        limits: Limits,
        new_sink: Callable[[Flow], StreamSink],
        finished: Callable[[Flow], None],
        anomaly: Callable[[Flow, str, str], None],
    ) -> None:
        self.limits = limits
        self._new_sink = new_sink
        self._finished = finished
        self._anomaly = anomaly
        self.flows: OrderedDict[bytes, Flow] = OrderedDict()  # least recently active first
        self.stream_time = 0
        self._next_expiry = 0
        self._deadlines: list[tuple[int, str, bytes]] = []
        self.dirty: set[bytes] = set()  # flows changed since the last snapshot
        self.removed: set[bytes] = set()  # flows gone since the last snapshot
        self.evicted = 0
        self.expired = 0
        # Out-of-order bytes parked by all flows of this task, and the reassembly depth.
        self.budget = ParkingBudget(depth=limits.max_depth)
        self._task_cap = limits.max_parked_bytes_task  # (limits are frozen)
        self._process_cap = limits.max_parked_bytes_process
        self.memcap_hits = 0
        self.touches = 0  # packets processed; a flow's last touch orders it after a restore
        self.last_touch: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self.flows)

    # -- packets --
    def process(self, pkt: Packet, key: bytes, forward: bool) -> Flow | None:
        ts = pkt.ts_ns
        if ts > self.stream_time:
            self.stream_time = ts
            if ts >= self._next_expiry:
                self.expire()
        proto = pkt.proto
        flows = self.flows
        flow = flows.get(key)
        if flow is None:
            flow = self._create(pkt, key)
        elif (
            flow.phase >= PHASE_CLOSED and proto == PROTO_TCP and pkt.tcp_flags & (SYN | ACK) == SYN
        ):  # port reuse: a new connection on a closed 5-tuple
            self._close(flow, "rst")  # no-op unless it was still lingering after a reset
            self._remove(key, flow)
            flow = self._create(pkt, key)
        else:
            flows.move_to_end(key)
        phase = flow.phase
        flow.on_packet(pkt, 0 if forward else 1, self.limits)
        budget = self.budget
        if budget.bytes > self._task_cap or budget.process.bytes > self._process_cap:
            self._relieve(flow)
        if flow.phase != phase:
            # A new phase may have a shorter timeout: keep a heap entry at or before the
            # real deadline, so expiry happens at the first scan past it (restore-exact).
            heapq.heappush(self._deadlines, (self._deadline(flow), flow.uid, key))
        self.touches = touches = self.touches + 1
        self.last_touch[key] = touches
        self.dirty.add(key)
        return flow

    def _create(self, pkt: Packet, key: bytes) -> Flow:
        if len(self.flows) >= self.limits.max_flows:
            old_key, old = next(iter(self.flows.items()))
            self.evicted += 1
            self._anomaly(old, "flow_evicted", f"max_flows={self.limits.max_flows}")
            self._close(old, "evicted")
            self._remove(old_key, old)
        proto = pkt.proto
        cls = TcpFlow if proto == PROTO_TCP else UdpFlow if proto == PROTO_UDP else IpFlow
        flow = cls(key, make_uid(key, pkt.ts_ns), pkt.ts_ns, None, self.budget)  # type: ignore[arg-type]
        flow.sink = self._new_sink(flow)
        self.flows[key] = flow
        self.removed.discard(key)
        heapq.heappush(self._deadlines, (self._deadline(flow), flow.uid, key))
        return flow

    def _relieve(self, flow: Flow) -> None:
        """A parking cap is exceeded: the flow that parked gives up holes until under it."""
        self.memcap_hits += 1
        lim = self.limits
        if self.budget.bytes > lim.max_parked_bytes_task:
            self._anomaly(flow, "task_memcap", f"max_parked_bytes_task={lim.max_parked_bytes_task}")
        else:
            self._anomaly(
                flow,
                "process_memcap",
                f"max_parked_bytes_process={lim.max_parked_bytes_process}",
            )
        while (
            self.budget.bytes > lim.max_parked_bytes_task
            or self.budget.process.bytes > lim.max_parked_bytes_process
        ):
            if not flow.give_up_first_hole():  # type: ignore[union-attr]
                break

    def _close(self, flow: Flow, reason: str) -> None:
        flow.close(reason)

    def _remove(self, key: bytes, flow: Flow) -> None:
        del self.flows[key]
        self.last_touch.pop(key, None)
        self.dirty.discard(key)
        self.removed.add(key)
        self._finished(flow)
        flow.release()  # break flow <-> sink cycles: refcounting frees it, not the cyclic GC

    # -- time --
    def _deadline(self, flow: Flow) -> int:
        lim = self.limits
        if flow.phase == PHASE_CLOSED or flow.phase == PHASE_RESET:
            return flow.ts_last + lim.closed_linger_ns
        if not isinstance(flow, TcpFlow):  # UDP, ICMP, others: Zeek's 1 min inactivity too
            return flow.ts_last + lim.udp_idle_timeout_ns
        if flow.phase == PHASE_SYN:
            return flow.ts_last + lim.syn_only_timeout_ns
        return flow.ts_last + lim.tcp_idle_timeout_ns

    def expire(self, now: int | None = None) -> int:
        """Close and remove the flows whose timeout has passed at `now` (default: stream
        time). Also the wall-clock entry point: the Kafka runtime calls it with a time
        derived from the wall clock for partitions that receive nothing more."""
        now = self.stream_time if now is None else now
        self._next_expiry = now + self.limits.expiry_interval_ns
        heap = self._deadlines
        due: list[tuple[int, str, bytes, Flow]] = []
        taken: set[bytes] = set()
        while heap and heap[0][0] <= now:
            _, uid, key = heapq.heappop(heap)
            flow = self.flows.get(key)
            if flow is None or flow.uid != uid or key in taken:
                continue  # stale entry of a flow already gone, or a second entry of one
            real = self._deadline(flow)
            if real <= now:
                due.append((real, uid, key, flow))
                taken.add(key)
            else:
                heapq.heappush(heap, (real, uid, key))
        due.sort(key=lambda item: (item[0], item[1]))  # independent of the heap's history
        # Past stream time, only the wall clock can have moved us: say so (liveness closes
        # are the one output a replay of the same capture does not reproduce).
        timeout = "timeout" if now <= self.stream_time else "wallclock_timeout"
        for _, _, key, flow in due:
            if flow.phase == PHASE_RESET:
                self._close(flow, "rst")
            elif flow.phase != PHASE_CLOSED:
                self._close(flow, timeout)
            self.expired += 1
            self._remove(key, flow)
        return len(due)

    def close_all(self, reason: str) -> None:
        """End of input (or `--exit-when-idle`): close and remove every flow, oldest first."""
        for key, flow in list(self.flows.items()):
            self._close(flow, "rst" if flow.phase == PHASE_RESET else reason)
            self._remove(key, flow)

    # -- persistence --
    def take_changes(self) -> tuple[Iterator[tuple[bytes, Flow]], set[bytes]]:
        """Flows changed and removed since the last call, to be saved by the runtime."""
        dirty, removed = self.dirty, self.removed
        self.dirty, self.removed = set(), set()
        changed = ((key, self.flows[key]) for key in sorted(dirty) if key in self.flows)
        return changed, removed

    # The table's own state, saved beside its flows (one list, so save and load agree).
    _META_FIELDS = ("stream_time", "_next_expiry", "evicted", "expired", "touches", "memcap_hits")

    def meta_snapshot(self) -> list[Any]:
        return [getattr(self, name) for name in self._META_FIELDS]

    def restore(self, meta: list[Any], flows: list[tuple[bytes, Flow, int]]) -> None:
        """Rebuild the table from saved flows; `flows` carry their activity order."""
        for name, value in zip(self._META_FIELDS, meta, strict=True):
            setattr(self, name, value)
        for key, flow, order in sorted(flows, key=lambda item: item[2]):
            self.flows[key] = flow
            self.last_touch[key] = order
            heapq.heappush(self._deadlines, (self._deadline(flow), flow.uid, key))


__all__ = ["PHASE_ACTIVE", "Flow", "FlowTracker", "make_uid"]
