"""Event-time windowed traffic statistics: a sans-IO aggregator and the TaskExtension.

Windows are tumbling (hop = size) or hopping (hop < size), aligned on the epoch, over
capture time. Per window and per (protocol, service) group: packets, bytes, flows
started, HTTP transactions by status class, and the top client IPs by bytes.

Time: stream time is the largest capture time this task has seen (or a wall-clock
punctuation). A window [start, end) is released when stream time >= end + grace. A
packet whose first window is already released is *late*: it is dropped from every
window and counted in the `late` field of the next record this task releases.

Why groups are resolved at release and not per packet: a flow's service (its decoder)
is only known once detection has seen its first bytes, after the handshake. Counting
each packet under the label of the moment would split one connection between "80" and
"http" depending on arrival order. So each pane keeps per-flow counters (keyed by uid)
and the flow's label (protocol, service or server port, client IP) is looked up when the
window is released. Beyond `max_entries` counters over all panes, new flows are labelled
at arrival instead, and server ports merge into "*" (bounded memory under a flood).

HTTP transactions count at the capture time of the packet whose processing emitted the
`http` record (the one completing the response): the task calls on_record before
on_packet for that packet, so records are noted and counted at the next on_packet.

Hopping windows are built from panes of gcd(size, hop) ns: a packet touches one pane,
whatever the overlap, and a released window merges its panes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from math import gcd
from typing import Any

import structlog

from wirestream.decoders.api import ts_seconds
from wirestream.probe.packet import PROTO_TCP, PROTO_UDP, Packet

RECORD_TYPE = "window_stats"
STATE_FORMAT = 1
MICRO = 1_000  # window geometry is kept on microsecond boundaries (record times are µs)
DEFAULT_TOP_N = 5
DEFAULT_GRACE_NS = 1_000_000_000
# Counters held across all panes (one per flow per pane, roughly): bounds memory and the
# snapshot the task writes to its changelog at every commit (~50 bytes each).
DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_GROUPS = 500  # groups per record; the smallest beyond are merged into "*"
OVERFLOW = "*"
STATUS_KEYS = ("1xx", "2xx", "3xx", "4xx", "5xx", "other", "none")
_NO_RESPONSE, _OTHER = 6, 5

# Label fields: [proto, service or None, server port, client ip, client side, finished]
_PROTO, _SERVICE, _PORT, _IP, _SIDE, _DONE = range(6)

Emit = Callable[[str, str, dict[str, Any]], None]


def status_slot(response: Any) -> int:
    """Index in STATUS_KEYS of a transaction's final response."""
    if not isinstance(response, dict):
        return _NO_RESPONSE
    status = response.get("status")
    if isinstance(status, int) and 100 <= status <= 599:
        return status // 100 - 1
    return _OTHER


class _Pane:
    """Counters of one gcd(size, hop) slice of time."""

    __slots__ = ("fixed", "fixed_http", "flows", "http")

    def __init__(self) -> None:
        self.flows: dict[str, list[int]] = {}  # uid -> [packets, bytes, started]
        self.http: dict[str, list[int]] = {}  # uid -> counts by STATUS_KEYS
        # Labelled at arrival (non-flow packets, and flows beyond max_pane_flows):
        self.fixed: dict[tuple[str, str, str], list[int]] = {}  # (proto, service, ip)
        self.fixed_http: dict[tuple[str, str], list[int]] = {}  # (proto, service)

    def size(self) -> int:
        return len(self.flows) + len(self.http) + len(self.fixed) + len(self.fixed_http)

    def dump(self) -> list[Any]:
        return [
            [[u, *v] for u, v in self.flows.items()],
            [[u, *v] for u, v in self.http.items()],
            [[*k, *v] for k, v in self.fixed.items()],
            [[*k, *v] for k, v in self.fixed_http.items()],
        ]

    @classmethod
    def load(cls, state: list[Any]) -> _Pane:
        pane = cls()
        flows, http, fixed, fixed_http = state
        pane.flows = {e[0]: list(e[1:]) for e in flows}
        pane.http = {e[0]: list(e[1:]) for e in http}
        pane.fixed = {(e[0], e[1], e[2]): list(e[3:]) for e in fixed}
        pane.fixed_http = {(e[0], e[1]): list(e[2:]) for e in fixed_http}
        return pane


class WindowAggregator:
    """Sans-IO: observations in (packets, transactions, flow labels), records out."""

    def __init__(
        self,
        partition: int,
        size_ns: int,
        hop_ns: int | None = None,
        grace_ns: int = 0,
        top_n: int = DEFAULT_TOP_N,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_groups: int = DEFAULT_MAX_GROUPS,
    ) -> None:
        hop_ns = size_ns if hop_ns is None else hop_ns
        check_geometry(size_ns, hop_ns, grace_ns)
        self.partition = partition
        self.size = size_ns
        self.hop = hop_ns
        self.grace = grace_ns
        self.top_n = top_n
        self.max_entries = max_entries
        self.max_groups = max_groups
        self.entries = 0  # counters held by all panes (flows, fixed keys, transactions)
        self.pane_ns = gcd(size_ns, hop_ns)
        self.stream_time: int | None = None
        self.frontier: int | None = None  # windows k < frontier are released
        self.next_release = 0  # stream time at which the frontier moves
        self.late = [0, 0, 0]  # packets, bytes, transactions since the last record
        self.panes: dict[int, _Pane] = {}
        self.labels: dict[str, list[Any]] = {}
        self.finished: set[str] = set()  # uids of finished flows whose label is kept
        # Transactions emitted while a packet is processed, counted at that packet's time.
        self.pending: list[list[Any]] = []  # [uid, status slot]
        self._q = -1 << 80  # index of the cached pane
        self._pane: _Pane | None = None

    # -- time --
    def _frontier_at(self, st: int) -> int:
        """First window index not yet releasable at stream time `st`."""
        return (st - self.grace - self.size) // self.hop + 1

    def _first_window(self, ts: int) -> int:
        return (ts - self.size) // self.hop + 1

    def is_late(self, ts: int) -> bool:
        return self.frontier is not None and self._first_window(ts) < self.frontier

    def advance(self, now_ns: int) -> list[dict[str, Any]]:
        """Stream time moves to `now_ns` (a packet, or punctuation): release what is due."""
        st = self.stream_time
        if self.pending and st is not None:
            self.flush_transactions(st)
        if st is None or now_ns > st:
            self.stream_time = st = now_ns
        if self.frontier is not None and st < self.next_release:
            return []
        return self._release(self._frontier_at(st))

    def close(self) -> list[dict[str, Any]]:
        """End of input: release every window holding data."""
        if self.pending and self.stream_time is not None:
            self.flush_transactions(self.stream_time)
        top = max((self._k_max(q) for q in self.panes), default=None)
        frontier = self.frontier
        if top is None:
            if not any(self.late) or self.stream_time is None:
                return []
            # Late input and no window left: report it in the (empty) current window.
            k = self.stream_time // self.hop
            if frontier is not None:
                k = max(k, frontier)
            self.frontier = k + 1
            self.next_release = (k + 1) * self.hop + self.size + self.grace
            return [self._record(k, [])]
        target = top + 1 if frontier is None else max(top + 1, frontier)
        return self._release(target)

    # -- observations --
    def pane(self, ts: int) -> _Pane:
        q = ts // self.pane_ns
        if q == self._q:
            return self._pane  # type: ignore[return-value]
        pane = self.panes.get(q)
        if pane is None:
            pane = self.panes[q] = _Pane()
        self._q, self._pane = q, pane
        return pane

    def add_flow_packet(self, ts: int, uid: str, nbytes: int, started: bool) -> None:
        """A packet of a flow whose label is in `labels` (not late: check is_late first)."""
        pane = self.pane(ts)
        entry = pane.flows.get(uid)
        if entry is not None:
            entry[0] += 1
            entry[1] += nbytes
            return
        if self.entries < self.max_entries:
            pane.flows[uid] = [1, nbytes, 1 if started else 0]
            self.entries += 1
            return
        lab = self.labels[uid]
        self.add_fixed(ts, lab[_PROTO], service_of(lab), lab[_IP], nbytes, started, pane)

    def add_fixed(
        self,
        ts: int,
        proto: str,
        service: str,
        ip: str,
        nbytes: int,
        started: bool,
        pane: _Pane | None = None,
    ) -> None:
        pane = pane or self.pane(ts)
        key = (proto, service, ip)
        entry = pane.fixed.get(key)
        if entry is None and self.entries >= self.max_entries:
            key = (proto, _overflow_service(service), OVERFLOW)
            entry = pane.fixed.get(key)
        if entry is None:
            pane.fixed[key] = [1, nbytes, 1 if started else 0]
            self.entries += 1
        else:
            entry[0] += 1
            entry[1] += nbytes
            entry[2] += 1 if started else 0

    def add_late(self, nbytes: int) -> None:
        self.late[0] += 1
        self.late[1] += nbytes

    def note_transaction(self, uid: str, slot: int) -> None:
        """An HTTP transaction completed by the packet being processed (or by a timeout)."""
        self.pending.append([uid, slot])

    def flush_transactions(self, ts: int) -> None:
        """The noted transactions happened at capture time `ts`."""
        pending, self.pending = self.pending, []
        for uid, slot in pending:
            self.add_transaction(ts, uid, slot)

    def add_transaction(self, ts: int, uid: str, slot: int) -> None:
        """An HTTP transaction of flow `uid` at capture time `ts` (late ones are counted)."""
        if self.is_late(ts):
            self.late[2] += 1
            return
        pane = self.pane(ts)
        counts = pane.http.get(uid)
        if counts is None:
            if self.entries < self.max_entries:
                counts = pane.http[uid] = [0] * len(STATUS_KEYS)
                self.entries += 1
            else:
                lab = self.labels.get(uid) or _UNKNOWN_HTTP
                key = (lab[_PROTO], _overflow_service(service_of(lab)))
                counts = pane.fixed_http.get(key)
                if counts is None:
                    counts = pane.fixed_http[key] = [0] * len(STATUS_KEYS)
                    self.entries += 1
        counts[slot] += 1

    def flow_finished(self, uid: str, label: list[Any]) -> None:
        """The flow left the table: its final label, kept while a pane refers to it."""
        label[_DONE] = True
        self.labels[uid] = label
        self.finished.add(uid)

    # -- release --
    def _k_min(self, q: int) -> int:
        """First window containing pane q."""
        return -((self.size - (q + 1) * self.pane_ns) // self.hop)

    def _k_max(self, q: int) -> int:
        return (q * self.pane_ns) // self.hop

    def _release(self, target: int) -> list[dict[str, Any]]:
        frontier = self.frontier
        self.frontier = target if frontier is None else max(frontier, target)
        self.next_release = self.frontier * self.hop + self.size + self.grace
        if frontier is not None and target <= frontier:
            return []
        due: set[int] = set()
        for q in self.panes:
            lo = self._k_min(q)
            if frontier is not None:
                lo = max(lo, frontier)
            due.update(range(lo, min(self._k_max(q), target - 1) + 1))
        records = []
        per_window = self.size // self.pane_ns
        for k in sorted(due):
            first = k * self.hop // self.pane_ns
            panes = [self.panes[q] for q in range(first, first + per_window) if q in self.panes]
            records.append(self._record(k, panes))
        for q in [q for q in self.panes if self._k_max(q) < target]:
            self.entries -= self.panes.pop(q).size()
        self._q, self._pane = -1 << 80, None
        self._forget_labels()
        return records

    def _forget_labels(self) -> None:
        if not self.finished:
            return
        used: set[str] = set()
        for pane in self.panes.values():
            used.update(pane.flows)
            used.update(pane.http)
        for uid in [u for u in self.finished if u not in used]:
            self.finished.discard(uid)
            self.labels.pop(uid, None)

    def _record(self, k: int, panes: list[_Pane]) -> dict[str, Any]:
        groups: dict[tuple[str, str], dict[str, Any]] = {}

        def group(proto: str, service: str) -> dict[str, Any]:
            g = groups.get((proto, service))
            if g is None:
                g = groups[(proto, service)] = {
                    "counts": [0, 0, 0],
                    "http": [0] * len(STATUS_KEYS),
                    "talkers": {},
                }
            return g

        def add(g: dict[str, Any], ip: str, values: list[int]) -> None:
            counts = g["counts"]
            counts[0] += values[0]
            counts[1] += values[1]
            counts[2] += values[2]
            talker = g["talkers"].get(ip)
            if talker is None:
                g["talkers"][ip] = [values[1], values[0]]
            else:
                talker[0] += values[1]
                talker[1] += values[0]

        labels = self.labels
        for pane in panes:
            for uid, values in pane.flows.items():
                lab = labels.get(uid) or _UNKNOWN
                add(group(lab[_PROTO], service_of(lab)), lab[_IP], values)
            for (proto, service, ip), values in pane.fixed.items():
                add(group(proto, service), ip, values)
            for uid, counts in pane.http.items():
                lab = labels.get(uid) or _UNKNOWN_HTTP
                _add_counts(group(lab[_PROTO], service_of(lab))["http"], counts)
            for (proto, service), counts in pane.fixed_http.items():
                _add_counts(group(proto, service)["http"], counts)
        if len(groups) > self.max_groups:
            _merge_smallest(groups, self.max_groups)
        out_groups = []
        totals = [0, 0, 0, 0]
        for (proto, service), g in sorted(groups.items()):
            packets, nbytes, started = g["counts"]
            http = g["http"]
            transactions = sum(http)
            talkers = sorted(g["talkers"].items(), key=lambda item: (-item[1][0], item[0]))
            out_groups.append(
                {
                    "proto": proto,
                    "service": service,
                    "packets": packets,
                    "bytes": nbytes,
                    "flows_started": started,
                    "transactions": transactions,
                    "http_status": dict(zip(STATUS_KEYS, http, strict=True)),
                    "top_talkers": [
                        {"ip": ip, "bytes": b, "packets": p} for ip, (b, p) in talkers[: self.top_n]
                    ],
                }
            )
            totals[0] += packets
            totals[1] += nbytes
            totals[2] += started
            totals[3] += transactions
        start = k * self.hop
        window_id = f"W{self.partition}-{start}"
        late, self.late = self.late, [0, 0, 0]
        return {
            "type": RECORD_TYPE,
            "id": f"{window_id}:{RECORD_TYPE}:1",
            "window_id": window_id,  # not a flow: no `uid` (that names flows everywhere else)
            "ts": ts_seconds(start),  # every record has a `ts`: here the window's start
            "window_start": ts_seconds(start),
            "window_end": ts_seconds(start + self.size),
            "grace": ts_seconds(self.grace),
            "partition": self.partition,
            "groups": out_groups,
            "late": {"packets": late[0], "bytes": late[1], "transactions": late[2]},
            "packets": totals[0],
            "bytes": totals[1],
            "flows_started": totals[2],
            "transactions": totals[3],
        }

    # -- state --
    def snapshot(self) -> list[Any]:
        used: set[str] = set()
        for pane in self.panes.values():
            used.update(pane.flows)
            used.update(pane.http)
        labels = [[uid, *self.labels[uid]] for uid in sorted(used) if uid in self.labels]
        return [
            STATE_FORMAT,
            [self.size, self.hop, self.grace],
            self.stream_time,
            self.frontier,
            self.late,
            self.pending,
            [[q, *pane.dump()] for q, pane in sorted(self.panes.items())],
            labels,
        ]

    def restore(self, state: list[Any]) -> bool:
        """Rebuild from a snapshot; False (and a fresh start) if its geometry differs."""
        if state[0] != STATE_FORMAT or list(state[1]) != [self.size, self.hop, self.grace]:
            return False
        _, _, self.stream_time, frontier, late, pending, panes, labels = state
        self.pending = [list(p) for p in pending]
        self.frontier = frontier
        if frontier is not None:
            self.next_release = frontier * self.hop + self.size + self.grace
        self.late = list(late)
        self.panes = {entry[0]: _Pane.load(entry[1:]) for entry in panes}
        self.entries = sum(pane.size() for pane in self.panes.values())
        self.labels = {entry[0]: list(entry[1:]) for entry in labels}
        self.finished = {uid for uid, lab in self.labels.items() if lab[_DONE]}
        self._q, self._pane = -1 << 80, None
        return True


_UNKNOWN = ["tcp", None, 0, "?", -1, True]
_UNKNOWN_HTTP = ["tcp", "http", 0, "?", -1, True]


def _merge_smallest(groups: dict[tuple[str, str], dict[str, Any]], keep: int) -> None:
    """Keep the `keep - 1` largest groups (by bytes, then key); merge the rest into
    ("*", "*") so a record stays small whatever the traffic."""
    ranked = sorted(groups.items(), key=lambda item: (-item[1]["counts"][1], item[0]))
    merged = groups.pop((OVERFLOW, OVERFLOW), None) or {
        "counts": [0, 0, 0],
        "http": [0] * len(STATUS_KEYS),
        "talkers": {},
    }
    for key, g in ranked[keep - 1 :]:
        if key == (OVERFLOW, OVERFLOW):
            continue
        del groups[key]
        for i in range(3):
            merged["counts"][i] += g["counts"][i]
        _add_counts(merged["http"], g["http"])
        for ip, (b, p) in g["talkers"].items():
            talker = merged["talkers"].setdefault(ip, [0, 0])
            talker[0] += b
            talker[1] += p
    groups[(OVERFLOW, OVERFLOW)] = merged


def _add_counts(into: list[int], counts: list[int]) -> None:
    for i, n in enumerate(counts):
        into[i] += n


def _overflow_service(service: str) -> str:
    """Beyond the entry budget: decoders keep their group, server ports merge into "*"
    (a port scan must not create a group per port)."""
    return OVERFLOW if service.isdigit() else service


def service_of(label: list[Any]) -> str:
    """The group's service: the flow's first decoder, else its server port."""
    service = label[_SERVICE]
    return service if service else str(label[_PORT])


def check_geometry(size_ns: int, hop_ns: int, grace_ns: int) -> None:
    if size_ns <= 0 or hop_ns <= 0 or grace_ns < 0:
        raise ValueError("window size and hop must be > 0, grace >= 0")
    if hop_ns > size_ns:
        raise ValueError("window hop must not exceed the window size")
    if size_ns % MICRO or hop_ns % MICRO or grace_ns % MICRO:
        raise ValueError("window size, hop and grace must be whole microseconds")


def to_ns(seconds: float) -> int:
    """Seconds to ns, rounded to the microsecond (record times have µs precision)."""
    return round(seconds * 1_000_000) * MICRO


# ---------------------------------------------------------------- the task extension


class WindowStats:
    """TaskExtension: feeds a WindowAggregator from a task's packets and records."""

    name = RECORD_TYPE
    packets = True

    def __init__(self, partition: int, emit: Emit, options: dict[str, Any]) -> None:
        self.agg = WindowAggregator(
            partition,
            int(options["size_ns"]),
            int(options.get("hop_ns") or options["size_ns"]),
            int(options.get("grace_ns", 0)),
            int(options.get("top_n", DEFAULT_TOP_N)),
            int(options.get("max_entries", DEFAULT_MAX_ENTRIES)),
            int(options.get("max_groups", DEFAULT_MAX_GROUPS)),
        )
        self._emit = emit
        self.restored_mismatch = False

    def _out(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self._emit(RECORD_TYPE, record["window_id"], record)

    # -- hot path --
    def on_packet(self, pkt: Packet, flow: Any) -> None:
        agg = self.agg
        ts = pkt.ts_ns
        nbytes = pkt.wire_len or len(pkt.payload)
        if pkt.proto != PROTO_TCP and pkt.proto != PROTO_UDP:
            flow = None  # ICMP and other flows: grouped by protocol number, as before
        if flow is not None:
            uid = flow.uid
            lab = agg.labels.get(uid)
            if (
                lab is None
                or lab[_SIDE] != flow.client_side
                or (lab[_SERVICE] is None and flow.sink is not None and flow.sink.services)
            ):
                lab = flow_label(flow)
                agg.labels[uid] = lab
        if agg.pending:
            agg.flush_transactions(ts)
        st = agg.stream_time
        if st is not None and ts < st and agg.is_late(ts):
            agg.add_late(nbytes)
            return
        if flow is not None:
            halves = flow.halves
            agg.add_flow_packet(ts, uid, nbytes, halves[0].packets + halves[1].packets == 1)
        else:
            # Not TCP/UDP (the tracker keeps no flow): labelled now, sender as "client".
            ip = str(ipaddress.ip_address(pkt.src))
            agg.add_fixed(ts, "other", str(pkt.proto), ip, nbytes, False)
        if st is None or ts >= agg.next_release:
            self._out(agg.advance(ts))
        elif ts > st:
            agg.stream_time = ts

    def on_record(self, record_type: str, record: dict[str, Any]) -> None:
        if record_type == "http":
            self.agg.note_transaction(record["uid"], status_slot(record.get("response")))
        elif record_type == "flow":
            self.agg.flow_finished(record["uid"], record_label(record))

    def advance(self, now_ns: int) -> None:
        self._out(self.agg.advance(now_ns))

    def close(self) -> None:
        self._out(self.agg.close())

    def snapshot(self) -> Any:
        return self.agg.snapshot()

    def restore(self, state: Any) -> None:
        if not self.agg.restore(state):
            self.restored_mismatch = True  # other window settings: the old windows are lost
            structlog.get_logger("wirestream.stats").warning(
                "window_state_discarded", partition=self.agg.partition,
                reason="saved with other window settings",
            )  # fmt: skip


def flow_label(flow: Any) -> list[Any]:
    from wirestream.streams.session import flow_info

    info = flow_info(flow)
    services = getattr(flow.sink, "services", None)
    return [
        info.transport,
        services[0] if services else None,
        info.server.port,
        info.client.ip,
        flow.client_side,
        False,
    ]


def record_label(record: dict[str, Any]) -> list[Any]:
    """A flow's label from its `flow` record (final service, roles)."""
    service = record.get("service")
    client = record.get("client") or {}
    server = record.get("server") or {}
    return [
        record.get("proto", "tcp"),
        service.split(",")[0] if service else None,
        server.get("port", 0),
        client.get("ip", "?"),
        -2,  # roles are final
        True,
    ]


def configure(
    config: Any,
    size_s: float,
    hop_s: float | None = None,
    grace_s: float | None = None,
    top_n: int = DEFAULT_TOP_N,
) -> None:
    """Add windowed statistics to a RuntimeConfig (raises ValueError on bad settings)."""
    size = to_ns(size_s)
    hop = to_ns(hop_s) if hop_s else size
    grace = to_ns(grace_s) if grace_s is not None else DEFAULT_GRACE_NS
    check_geometry(size, hop, grace)
    if WindowStats not in config.extensions:
        config.extensions.append(WindowStats)
    config.extension_options[RECORD_TYPE] = {
        "size_ns": size,
        "hop_ns": hop,
        "grace_ns": grace,
        "top_n": top_n,
    }
