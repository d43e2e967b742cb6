"""Interactive queries: a small read-only HTTP API over this member's flow statistics.

Like Kafka Streams' interactive queries, each member answers from its own stores and
knows, from the group map the assignor distributes (streams/kafka_assignor.py), which
member serves every partition. A question about a key this member does not hold is
answered with HTTP 307 to the owner (`Location`), and the same pointer as JSON in the
body (`owner`, `partition`) for clients that do not follow redirects.

  GET /flows/<uid>                       one flow's entry (streams/flowstats.py)
  GET /flows?src=&sport=&dst=&dport=&proto=[&vlan=]
                                         the flows of a 5-tuple, either direction,
                                         newest first (port reuse gives several)
  GET /flows/top?by=bytes|packets|duration&n=10[&scope=local]
                                         the largest flows, over the group (default;
                                         asks every member) or this member only
  GET /owner?key=<uid or proto,src,sport,dst,dport>
                                         partition and member serving a key
  GET /members                           the group map as this member sees it

Where a key lives: a 5-tuple's partition is Kafka's partitioner on its flow key (what the
probe does), so its owner comes from the map. A uid is a hash: its partition cannot be
computed, so a member that does not hold it asks the others (`?local=1` lookups, in
parallel, bounded by a timeout) and points to the one that has it.

Consistency: answers come from the committed table (streams/flowstats.py FlowStatsView):
at most one commit interval old, never ahead of what a crash would keep.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import structlog

from wirestream.probe.flowkey import flow_key, kafka_partition
from wirestream.probe.packet import Packet
from wirestream.streams.flowstats import TOP_BY, ViewRegistry, canonical_ip, entry_json, tuple_key
from wirestream.streams.kafka_assignor import GroupMember

log = structlog.get_logger("wirestream.kafka.queries")

UID = re.compile(r"^C[a-z2-7]{16}$")
PROTOS = {"tcp": 6, "udp": 17, "6": 6, "17": 17}
PROTO_NAMES = {6: "tcp", 17: "udp"}
MAX_TOP = 1000
FANOUT_TIMEOUT = 2.0


class QueryError(Exception):
    """A malformed question (HTTP 400)."""


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    location: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class GroupMap:
    """Who serves what, from the last assignment (written on the consumer's IO thread)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self.generation = -1
        self.members: list[GroupMember] = []
        self._owners: dict[int, tuple[str, str]] = {}

    def update(self, generation: int, members: list[GroupMember]) -> None:
        owners = {
            p: (member, endpoint)
            for member, endpoint, assignment in members
            for topic, parts in assignment
            if topic == self.topic
            for p in parts
        }
        with self._lock:
            self.generation, self.members, self._owners = generation, members, owners

    def owner(self, partition: int) -> tuple[str, str] | None:
        """(member id, endpoint) serving `partition`, or None if unknown."""
        with self._lock:
            return self._owners.get(partition)

    def endpoints(self) -> list[str]:
        with self._lock:
            return sorted({e for _, e, _ in self.members if e})

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "generation": self.generation,
                "members": [
                    {
                        "member_id": m,
                        "endpoint": e or None,
                        "partitions": sorted(p for t, ps in a if t == self.topic for p in ps),
                    }
                    for m, e, a in self.members
                ],
            }


def parse_tuple(q: dict[str, str], vlan_in_key: bool) -> tuple[bytes, tuple[Any, ...]]:
    """(flow key, direction-free 5-tuple) from src/sport/dst/dport/proto[/vlan]."""
    try:
        src = ipaddress.ip_address(q["src"])
        dst = ipaddress.ip_address(q["dst"])
        sport, dport = int(q["sport"]), int(q["dport"])
        proto = PROTOS[q.get("proto", "tcp").lower()]
        vlan = tuple(int(v) for v in q.get("vlan", "").split(",") if v)
    except KeyError as exc:
        raise QueryError(f"missing or unknown parameter {exc}") from None
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    if src.version != dst.version:
        raise QueryError("src and dst must be of the same IP version")
    if not (0 <= sport <= 65535 and 0 <= dport <= 65535) or len(vlan) > 2:
        raise QueryError("ports must be 0..65535, at most two VLAN ids")
    pkt = Packet(0, src.version, proto, src.packed, dst.packed, sport, dport, b"",
                 vlan=vlan if vlan_in_key else ())  # fmt: skip
    key, _ = flow_key(pkt)
    name = PROTO_NAMES[proto]
    return key, tuple_key(name, (canonical_ip(q["src"]), sport), (canonical_ip(q["dst"]), dport))


def _tuple_query(text: str) -> dict[str, str]:
    """`proto,src,sport,dst,dport` -> query parameters."""
    parts = text.split(",")
    if len(parts) != 5:
        raise QueryError("key: a uid or proto,src,sport,dst,dport")
    return dict(zip(("proto", "src", "sport", "dst", "dport"), parts, strict=True))


class QueryService:
    """Routing and answers, independent of the HTTP server (unit-testable)."""

    def __init__(
        self,
        views: ViewRegistry,
        group: GroupMap,
        partitions: Callable[[], int],
        advertised: str,
        vlan_in_key: bool = True,
        timeout: float = FANOUT_TIMEOUT,
    ) -> None:
        self.views = views
        self.group = group
        self.partitions = partitions
        self.advertised = advertised
        self.vlan_in_key = vlan_in_key
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="query-fanout")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- routing --
    def handle(self, target: str) -> Reply:
        url = urlsplit(target)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path.rstrip("/") or "/"
        try:
            if path == "/flows/top":
                return self.top(q)
            if path.startswith("/flows/"):
                return self.flow(path[len("/flows/") :], q)
            if path == "/flows":
                return self.by_tuple(q, target)
            if path == "/owner":
                return self.owner(q)
            if path == "/members":
                body = self.group.snapshot()
                body["self"] = self.advertised
                body["local_partitions"] = [v.partition for v in self.views.all()]
                return Reply(200, body)
        except QueryError as exc:
            return Reply(400, {"error": str(exc)})
        return Reply(404, {"error": f"no such endpoint {path}"})

    # -- answers --
    def _local(self, uid: str) -> tuple[int, Any] | None:
        for view in self.views.all():
            entry = view.get(uid)
            if entry is not None:
                return view.partition, entry
        return None

    def flow(self, uid: str, q: dict[str, str]) -> Reply:
        found = self._local(uid)
        if found is not None:
            return Reply(200, entry_json(uid, found[1], found[0]))
        if q.get("local") == "1":
            return Reply(404, {"error": "not held by this member", "uid": uid})
        owner = self._find_uid(uid)
        if owner is None:
            return Reply(404, {"error": "unknown uid", "uid": uid})
        endpoint, partition = owner
        return self._redirect(endpoint, f"/flows/{quote(uid)}", partition)

    def by_tuple(self, q: dict[str, str], target: str) -> Reply:
        key, five = parse_tuple(q, self.vlan_in_key)
        partition = kafka_partition(key, self.partitions())
        view = self.views.get(partition)
        if view is None:
            return self._elsewhere(partition, target)
        flows = [entry_json(uid, e, partition) for uid, e in view.find(five)]
        status = 200 if flows else 404
        return Reply(status, {"partition": partition, "flows": flows})

    def top(self, q: dict[str, str]) -> Reply:
        by = q.get("by", "bytes")
        if by not in TOP_BY:
            raise QueryError(f"by: one of {', '.join(TOP_BY)}")
        try:
            n = int(q.get("n", "10"))
        except ValueError:
            raise QueryError("n: a number") from None
        if not 1 <= n <= MAX_TOP:
            raise QueryError(f"n: 1..{MAX_TOP}")
        flows = [
            entry_json(uid, e, view.partition)
            for view in self.views.all()
            for uid, e in view.top(by, n)
        ]
        body: dict[str, Any] = {"by": by, "scope": "local"}
        if q.get("scope", "all") != "local":
            body["scope"] = "all"
            others = [e for e in self.group.endpoints() if e != self.advertised]
            answers = self._ask(others, f"/flows/top?scope=local&by={by}&n={n}")
            body["missing"] = sorted(e for e, (status, _) in answers.items() if status != 200)
            for status, data in answers.values():
                if status == 200:
                    flows.extend(data.get("flows", []))
        metric = SCORES[by]
        flows.sort(key=lambda f: (metric(f), f["uid"]), reverse=True)
        body["flows"] = flows[:n]
        return Reply(200, body)

    def owner(self, q: dict[str, str]) -> Reply:
        key = q.get("key")
        if key is not None and UID.match(key):
            found = self._local(key)
            if found is not None:
                return Reply(200, self._owner_body(key, found[0], self.advertised))
            remote = self._find_uid(key)
            if remote is None:
                return Reply(404, {"error": "unknown uid", "key": key})
            return Reply(200, self._owner_body(key, remote[1], remote[0]))
        params = _tuple_query(key) if key is not None else q
        flow, _ = parse_tuple(params, self.vlan_in_key)
        partition = kafka_partition(flow, self.partitions())
        owner = self.group.owner(partition)
        endpoint = owner[1] if owner is not None else None
        if self.views.get(partition) is not None:
            endpoint = self.advertised
        return Reply(200, self._owner_body(key or "", partition, endpoint))

    def _owner_body(self, key: str, partition: int, endpoint: str | None) -> dict[str, Any]:
        owner = self.group.owner(partition)
        return {
            "key": key,
            "topic": self.group.topic,
            "partition": partition,
            "owner": endpoint or None,
            "member_id": owner[0] if owner is not None else None,
            "local": self.views.get(partition) is not None,
            "generation": self.group.generation,
        }

    # -- other members --
    def _elsewhere(self, partition: int, target: str) -> Reply:
        owner = self.group.owner(partition)
        if owner is None or not owner[1]:
            return Reply(503, {"error": "partition owner unknown", "partition": partition})
        if owner[1] == self.advertised:  # ours by the map, not ready yet (restoring)
            return Reply(503, {"error": "partition being restored", "partition": partition},
                         headers={"Retry-After": "1"})  # fmt: skip
        return self._redirect(owner[1], target, partition)

    def _redirect(self, endpoint: str, target: str, partition: int) -> Reply:
        location = f"http://{endpoint}{target}"
        body = {"owner": endpoint, "partition": partition, "location": location}
        return Reply(307, body, location=location)

    def _find_uid(self, uid: str) -> tuple[str, int] | None:
        """(endpoint, partition) of the member holding `uid`, asking the others."""
        others = [e for e in self.group.endpoints() if e != self.advertised]
        for endpoint, (status, data) in self._ask(others, f"/flows/{quote(uid)}?local=1").items():
            if status == 200:
                return endpoint, int(data.get("partition", -1))
        return None

    def _ask(self, endpoints: list[str], path: str) -> dict[str, tuple[int, dict[str, Any]]]:
        futures = {e: self._pool.submit(fetch, e, path, self.timeout) for e in endpoints}
        out: dict[str, tuple[int, dict[str, Any]]] = {}
        for endpoint, future in futures.items():
            try:
                out[endpoint] = future.result(timeout=self.timeout + 1)
            except Exception as exc:
                out[endpoint] = (0, {"error": str(exc)})
        return out


def _bytes(f: dict[str, Any]) -> int:  # the JSON twins of flowstats.TOP_BY
    return int(f["client_to_server"]["bytes"] + f["server_to_client"]["bytes"])


def _packets(f: dict[str, Any]) -> int:
    return int(f["client_to_server"]["packets"] + f["server_to_client"]["packets"])


def _duration(f: dict[str, Any]) -> int:
    return round((f["ts_end"] - f["ts_start"]) * 1_000_000)


SCORES = {"bytes": _bytes, "packets": _packets, "duration": _duration}


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def fetch(endpoint: str, path: str, timeout: float) -> tuple[int, dict[str, Any]]:
    """GET another member's API (no redirects followed): (status, JSON body)."""
    host, port = split_endpoint(endpoint)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        try:
            body = json.loads(data) if data else {}
        except ValueError:
            body = {}
        return resp.status, body
    finally:
        conn.close()


def serve(service: QueryService, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve the API on a daemon thread; `server.server_address[1]` is the port bound."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                reply = service.handle(self.path)
            except Exception as exc:  # a bug must not kill the server thread
                log.error("query_failed", path=self.path[:200], error=str(exc)[:300])
                reply = Reply(500, {"error": "internal error"})
            body = (json.dumps(reply.body, separators=(",", ":")) + "\n").encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if reply.location is not None:
                self.send_header("Location", reply.location)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="queries", daemon=True).start()
    return server
