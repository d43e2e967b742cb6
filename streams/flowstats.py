"""Per-flow packet and byte statistics kept as a table (KTable-like), sans-IO.

One table per task (input partition), keyed by flow uid: the 5-tuple (client and server
endpoints as the `flow` record has them), first and last capture time, packets, bytes and
missed bytes per direction, connection state, whether the flow is still in the flow
table, why it closed, and its service.

Why the table costs nothing per packet: the counters already live on the flow objects,
which reassembly updates per packet anyway. At each commit the table copies them for the
flows touched since the last commit (the tracker's dirty set, the same set the task
snapshots), and a flow leaving the table contributes its final `flow` record. The result
is a small delta of entries (uid -> value, None = deleted) that goes, like the task's own
changes, to a RocksDB store with its changelog and, once the commit succeeded, to the
read view the interactive queries use. Closed flows stay in the table for a retention
time of stream time (and up to a maximum count), then are deleted (a tombstone).

Entries are tuples (compact for 100k+ flows); `entry_json` gives the JSON form.
"""

from __future__ import annotations

import heapq
import ipaddress
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import msgpack

from wirestream.reassembly.tracker import Flow
from wirestream.streams.session import flow_info

FORMAT = 1
# Entry fields, in tuple order (the stored value is [FORMAT, *entry]).
FIELDS = (
    "proto", "client_ip", "client_port", "server_ip", "server_port", "ts_start_us",
    "ts_end_us", "c2s_packets", "c2s_bytes", "c2s_missed", "s2c_packets", "s2c_bytes",
    "s2c_missed", "state", "open", "close_reason", "service",
)  # fmt: skip
(PROTO, C_IP, C_PORT, S_IP, S_PORT, TS_START, TS_END, C_PKTS, C_BYTES, C_MISSED, S_PKTS,
 S_BYTES, S_MISSED, STATE, OPEN, CLOSE_REASON, SERVICE) = range(len(FIELDS))  # fmt: skip
Entry = tuple[Any, ...]
Delta = dict[str, Entry | None]
TupleKey = tuple[str, tuple[str, int], tuple[str, int]]

DEFAULT_RETENTION_SECONDS = 3600.0
DEFAULT_MAX_CLOSED = 100_000
TOP_BY = {
    "bytes": lambda e: e[C_BYTES] + e[S_BYTES],
    "packets": lambda e: e[C_PKTS] + e[S_PKTS],
    "duration": lambda e: e[TS_END] - e[TS_START],
}


def entry_from_flow(flow: Flow) -> Entry:
    """The entry of a flow still in the flow table (its live counters)."""
    info = flow_info(flow)
    side = flow.client_side if flow.client_side >= 0 else 0
    c, s = flow.halves[side], flow.halves[1 - side]
    service = getattr(flow.sink, "service", None)
    return (
        info.transport, info.client.ip, info.client.port, info.server.ip, info.server.port,
        flow.ts_first // 1000, flow.ts_last // 1000, c.packets, c.bytes, c.missed,
        s.packets, s.bytes, s.missed, flow.conn_state(), True, None, service,
    )  # fmt: skip


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def entry_from_record(record: dict[str, Any]) -> Entry:
    """The entry of a flow that left the table, from its `flow` record."""
    c, s = record["client_to_server"], record["server_to_client"]
    return (
        record["proto"], record["client"]["ip"], record["client"]["port"],
        record["server"]["ip"], record["server"]["port"], _us(record["ts_start"]),
        _us(record["ts_end"]), c["packets"], c["bytes"], c["missed_bytes"], s["packets"],
        s["bytes"], s["missed_bytes"], record["state"], False, record["close_reason"],
        record["service"],
    )  # fmt: skip


def encode_entry(entry: Entry) -> bytes:
    return msgpack.packb([FORMAT, *entry], use_bin_type=True)


def decode_entry(value: bytes) -> Entry | None:
    """None for a value of another format (skipped, not fatal)."""
    try:
        data = msgpack.unpackb(value, raw=False)
    except Exception:
        return None
    if not isinstance(data, list) or not data or data[0] != FORMAT:
        return None
    if len(data) != len(FIELDS) + 1:
        return None
    return tuple(data[1:])


def entry_json(uid: str, entry: Entry, partition: int | None = None) -> dict[str, Any]:
    """The JSON form (query answers and the upsert topic), shaped like the `flow` record."""
    out: dict[str, Any] = {
        "uid": uid,
        "proto": entry[PROTO],
        "client": {"ip": entry[C_IP], "port": entry[C_PORT]},
        "server": {"ip": entry[S_IP], "port": entry[S_PORT]},
        "ts_start": entry[TS_START] / 1_000_000,
        "ts_end": entry[TS_END] / 1_000_000,
        "state": entry[STATE],
        "open": entry[OPEN],
        "close_reason": entry[CLOSE_REASON],
        "service": entry[SERVICE],
        "client_to_server": {
            "packets": entry[C_PKTS],
            "bytes": entry[C_BYTES],
            "missed_bytes": entry[C_MISSED],
        },
        "server_to_client": {
            "packets": entry[S_PKTS],
            "bytes": entry[S_BYTES],
            "missed_bytes": entry[S_MISSED],
        },
    }
    if partition is not None:
        out["partition"] = partition
    return out


def tuple_key(proto: str, a: tuple[str, int], b: tuple[str, int]) -> TupleKey:
    """Direction-free 5-tuple: both orders of the endpoints give the same key. Addresses
    must be in `ipaddress`'s text form (entries are; `canonical_ip` for user input)."""
    return (proto, a, b) if a <= b else (proto, b, a)


def canonical_ip(text: str) -> str:
    """The text form entries use (raises ValueError for a non-address)."""
    return str(ipaddress.ip_address(text))


class FlowStatsTable:
    """The write side, on the runtime's main thread: collects the delta of each commit."""

    def __init__(
        self,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        max_closed: int = DEFAULT_MAX_CLOSED,
    ) -> None:
        self.retention_us = int(retention_seconds * 1_000_000)
        self.max_closed = max_closed
        # Closed entries in closing order (uid -> last capture time, µs): retention.
        self.closed: OrderedDict[str, int] = OrderedDict()
        self._delta: Delta = {}
        self.expired = 0

    def flow_finished(self, record: dict[str, Any]) -> None:
        """A `flow` record was emitted: the flow left the table; its entry is final."""
        uid = record["uid"]
        entry = entry_from_record(record)
        self._delta[uid] = entry
        self.closed[uid] = entry[TS_END]
        self.closed.move_to_end(uid)

    def collect(self, flows: Iterable[Flow], stream_time_ns: int) -> Delta:
        """At commit: entries of the flows touched since the last commit, the finished
        ones, and deletions past retention. Returns the delta and starts a new one."""
        delta = self._delta
        for flow in flows:
            uid = flow.uid
            if uid not in self.closed:  # a closed flow's final entry wins
                delta[uid] = entry_from_flow(flow)
        cutoff = stream_time_ns // 1000 - self.retention_us
        closed = self.closed
        while closed:
            uid, ts_end = next(iter(closed.items()))
            if ts_end >= cutoff and len(closed) <= self.max_closed:
                break
            closed.popitem(last=False)
            delta[uid] = None
            self.expired += 1
        self._delta = {}
        return delta

    def load(self, items: Iterable[tuple[str, Entry]]) -> None:
        """After a restore: rebuild the retention order of the closed entries."""
        closed = sorted((e[TS_END], uid) for uid, e in items if not e[OPEN])
        self.closed = OrderedDict((uid, ts) for ts, uid in closed)


def encode_delta(delta: Delta) -> dict[bytes, bytes | None]:
    """Store/changelog form: key = uid (UTF-8), value = msgpack entry, None = tombstone."""
    return {uid.encode(): (None if e is None else encode_entry(e)) for uid, e in delta.items()}


def decode_items(items: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[str, Entry]]:
    for key, value in items:
        entry = decode_entry(value)
        if entry is not None:
            yield key.decode(), entry


class FlowStatsView:
    """The read side: the committed table of one partition, for the query threads.

    The main thread applies each commit's delta under the lock (after the commit
    succeeded); readers take the lock for a lookup or to copy the entries, so they never
    see half a commit nor anything a crash could take back.
    """

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._by_tuple: dict[TupleKey, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _tuple(entry: Entry) -> TupleKey:
        return tuple_key(entry[PROTO], (entry[C_IP], entry[C_PORT]), (entry[S_IP], entry[S_PORT]))

    def apply(self, delta: Delta) -> None:
        if not delta:
            return
        keyed = [(uid, e, None if e is None else self._tuple(e)) for uid, e in delta.items()]
        with self._lock:
            entries, index = self._entries, self._by_tuple
            for uid, entry, key in keyed:
                old = entries.pop(uid, None)
                if old is not None:
                    old_key = self._tuple(old)
                    if old_key != key:
                        uids = index.get(old_key)
                        if uids is not None:
                            uids.discard(uid)
                            if not uids:
                                del index[old_key]
                if entry is not None:
                    entries[uid] = entry
                    index.setdefault(key, set()).add(uid)  # type: ignore[arg-type]

    def get(self, uid: str) -> Entry | None:
        with self._lock:
            return self._entries.get(uid)

    def find(self, key: TupleKey) -> list[tuple[str, Entry]]:
        """Every flow of a 5-tuple (port reuse gives several), newest first."""
        with self._lock:
            found = [(uid, self._entries[uid]) for uid in self._by_tuple.get(key, ())]
        found.sort(key=lambda item: (item[1][TS_START], item[0]), reverse=True)
        return found

    def top(self, by: str, n: int) -> list[tuple[str, Entry]]:
        score = TOP_BY[by]
        with self._lock:
            items = list(self._entries.items())  # a C-level copy: the lock is held briefly
        return heapq.nlargest(n, items, key=lambda item: (score(item[1]), item[0]))

    def items(self) -> list[tuple[str, Entry]]:
        with self._lock:
            return list(self._entries.items())


class ViewRegistry:
    """The views of the partitions this member serves (registered when a partition is
    ready, dropped when it is revoked)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._views: dict[int, FlowStatsView] = {}

    def register(self, view: FlowStatsView) -> None:
        with self._lock:
            self._views[view.partition] = view

    def drop(self, partition: int) -> None:
        with self._lock:
            self._views.pop(partition, None)

    def get(self, partition: int) -> FlowStatsView | None:
        with self._lock:
            return self._views.get(partition)

    def all(self) -> list[FlowStatsView]:
        with self._lock:
            return [self._views[p] for p in sorted(self._views)]
