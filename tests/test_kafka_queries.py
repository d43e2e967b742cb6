"""Flow statistics and interactive queries across a consumer group, on real brokers.

Oracle: the `flow` records of `replay --partitions N` on the same captures give each
flow's endpoints, capture times and per-direction packets/bytes; the flow's partition is
kafka-python's own partitioner on the probe's flow key; who owns a partition is what the
members log. Two members: member A is asked about every flow; for flows on B's partitions
it must point to B (HTTP 307), and B must answer with the oracle's numbers. A member
started later with an empty state directory restores the table from its changelog and
serves the same answers.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from kafka.partitioner.default import murmur2

from wirestream.probe.flowkey import flow_key
from wirestream.probe.packet import Packet
from wirestream.streams.replay import replay_records

try:
    from tests import brokers
except ImportError:
    import brokers

pytestmark = pytest.mark.kafka

PCAPS = Path(__file__).resolve().parents[1] / "fixtures" / "pcaps"
CAPTURES = [
    "own_nginx_keepalive_multi.pcap",
    "own_wrk_small.pcap",
    "zeek__http__pipelined-requests.pcap",
    "zeek__dns-edns-ecs.pcap",
    "sv__http-ipv6__input.pcap",
]
PARTITIONS = 4
# The captures are years apart: retention (stream time) must not drop the older flows.
FEATURES = ("--query-port", "0", "--query-host", "127.0.0.1", "--commit-interval", "0.5",
            "--flow-stats-retention", "1e10")  # fmt: skip


def get(endpoint: str, path: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One GET, redirects not followed."""
    host, _, port = endpoint.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def follow(endpoint: str, path: str) -> tuple[str, int, dict[str, Any]]:
    """GET, following one redirect; (endpoint that answered, status, body)."""
    status, headers, body = get(endpoint, path)
    if status == 307:
        url = urlsplit(headers["Location"])
        assert body["owner"] == url.netloc
        target = url.path + (f"?{url.query}" if url.query else "")
        status, _, body = get(url.netloc, target)
        return url.netloc, status, body
    return endpoint, status, body


def partition_of(flow: dict[str, Any]) -> int:
    c, s = flow["client"], flow["server"]
    a, b = ipaddress.ip_address(c["ip"]), ipaddress.ip_address(s["ip"])
    proto = 6 if flow["proto"] == "tcp" else 17
    pkt = Packet(0, a.version, proto, a.packed, b.packed, c["port"], s["port"], b"")
    key, _ = flow_key(pkt)
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def numbers(flow: dict[str, Any]) -> tuple[Any, ...]:
    """What the table must agree on with the flow record."""
    return (
        flow["proto"], flow["client"], flow["server"], flow["ts_start"], flow["ts_end"],
        flow["client_to_server"]["packets"], flow["client_to_server"]["bytes"],
        flow["server_to_client"]["packets"], flow["server_to_client"]["bytes"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def oracle() -> dict[str, Any]:
    paths = [str(PCAPS / name) for name in CAPTURES]
    flows = {
        r["uid"]: r for r in replay_records(paths, partitions=PARTITIONS) if r["type"] == "flow"
    }
    parts = {uid: partition_of(f) for uid, f in flows.items()}
    assert set(parts.values()) == set(range(PARTITIONS))  # every partition has flows
    return {"paths": paths, "flows": flows, "partitions": parts}


def owned(member: brokers.Member) -> set[int]:
    parts: set[int] = set()
    for event in member.events():
        if event.get("event") == "partition_ready":
            parts.add(event["partition"])
        elif event.get("event") in ("partitions_revoked", "partitions_lost"):
            parts -= set(event["partitions"])
    return parts


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def check_all_flows(endpoint: str, oracle: dict[str, Any], serving: dict[str, set[int]]) -> int:
    """Ask `endpoint` about every flow; returns how many answers came by redirect."""
    redirected = 0
    for uid, want in oracle["flows"].items():
        p = oracle["partitions"][uid]
        answered_by, status, got = follow(endpoint, f"/flows/{uid}")
        assert status == 200, (uid, got)
        assert p in serving[answered_by]  # the member that owns the partition answered
        assert got["partition"] == p and got["uid"] == uid
        assert numbers(got) == numbers(want)
        if not got["open"]:
            assert (got["state"], got["close_reason"]) == (want["state"], want["close_reason"])
        redirected += answered_by != endpoint
        # By 5-tuple, either direction, with the owner's pointer if needed.
        c, s = want["client"], want["server"]
        path = (f"/flows?proto={want['proto']}&src={s['ip']}&sport={s['port']}"
                f"&dst={c['ip']}&dport={c['port']}")  # fmt: skip
        answered_by, status, got = follow(endpoint, path)
        assert status == 200 and p in serving[answered_by]
        assert uid in {f["uid"] for f in got["flows"]}
    return redirected


def check_metrics(port: int, packets: int, flows: int) -> None:
    """The Prometheus endpoint of a member that consumed everything, alone."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)

    def total(metric: str) -> float:
        return sum(v for k, v in samples.items() if k == metric or k.startswith(metric + "{"))

    assert total("wirestream_input_records_total") == packets
    for p in range(PARTITIONS):
        assert samples[f'wirestream_consumer_lag_records{{partition="{p}"}}'] == 0
        assert f'wirestream_parked_bytes{{partition="{p}"}}' in samples
        assert f'wirestream_open_flows{{partition="{p}"}}' in samples
    assert total("wirestream_flowstats_entries") == flows
    assert samples["wirestream_commit_duration_seconds_count"] >= 1
    assert samples["wirestream_restore_duration_seconds_count"] == PARTITIONS
    assert "# TYPE wirestream_limit_hits_total counter" in text


def test_flow_stats_and_queries_across_members(
    broker: brokers.Broker, oracle: dict[str, Any], tmp_path: Path
) -> None:
    bs = broker.bootstrap
    prefix = brokers.unique("iq") + "."
    topic = prefix + "packets"
    app = brokers.unique("app")
    brokers.create_topic(bs, topic, PARTITIONS)
    done = brokers.cli("probe", *oracle["paths"], "--bootstrap-servers", bs, "--topic", topic)
    assert done.returncode == 0, done.stderr
    packets = len(brokers.read_all(bs, [topic]))

    args = ("--input-topic", topic, "--topic-prefix", prefix, *FEATURES)
    metrics_port = brokers.free_port()
    a = brokers.Member(bs, app, tmp_path / "a", *args, "--state-cleanup-delay", "1",
                       "--metrics-port", str(metrics_port))  # fmt: skip
    members = [a]
    try:
        ea = a.wait_event("query_server_started", 30)["endpoint"]
        brokers.wait_committed(bs, app, packets, timeout=180)
        wait_for(lambda: len(owned(a)) == PARTITIONS, 30, "A owning every partition")
        time.sleep(1.2)  # a commit interval: the committed table is what is served
        assert check_all_flows(ea, oracle, {ea: owned(a)}) == 0
        check_metrics(metrics_port, packets, len(oracle["flows"]))
        a_dirs = {p for p in range(PARTITIONS) if (tmp_path / "a" / app / f"flows-{p}").exists()}
        assert a_dirs == set(range(PARTITIONS))

        b = brokers.Member(bs, app, tmp_path / "b", *args)
        members.append(b)
        eb = b.wait_event("query_server_started", 30)["endpoint"]
        wait_for(lambda: owned(a) and owned(b) and owned(a) | owned(b) == set(range(PARTITIONS))
                 and not owned(a) & owned(b), 60, "the partitions split")  # fmt: skip
        serving = {ea: owned(a), eb: owned(b)}
        # Both members know the group map (from the assignment) before answering for B.
        wait_for(lambda: all(
            {m["endpoint"] for m in get(e, "/members")[2]["members"]} == {ea, eb} for e in serving
        ), 30, "the group map")  # fmt: skip
        wait_for(lambda: len(b.events("flowstats_ready")) >= len(serving[eb]), 30, "B ready")
        assert check_all_flows(ea, oracle, serving) > 0  # some answers came from B

        # Who owns a key: by uid (asks the others) and by 5-tuple (the partitioner).
        for uid, want in list(oracle["flows"].items())[:10]:
            p = oracle["partitions"][uid]
            owner = ea if p in serving[ea] else eb
            status, _, body = get(ea, f"/owner?key={uid}")
            assert status == 200 and (body["partition"], body["owner"]) == (p, owner)
            c, s = want["client"], want["server"]
            key = f"{want['proto']},{c['ip']},{c['port']},{s['ip']},{s['port']}"
            status, _, body = get(eb, f"/owner?key={key}")
            assert status == 200 and (body["partition"], body["owner"]) == (p, owner)
        status, _, body = get(ea, "/flows/Caaaaaaaaaaaaaaaa")
        assert status == 404

        # Top flows over the group, ordered like the oracle.
        def total_bytes(f: dict[str, Any]) -> int:
            return int(f["client_to_server"]["bytes"] + f["server_to_client"]["bytes"])

        want_top = sorted(oracle["flows"].values(), key=lambda f: (total_bytes(f), f["uid"]))
        want_top = [f["uid"] for f in reversed(want_top)][:5]
        status, _, body = get(eb, "/flows/top?by=bytes&n=5")
        assert status == 200 and body["missing"] == []
        assert [f["uid"] for f in body["flows"]] == want_top

        # A lost partitions to B: their local state goes after the cleanup delay.
        lost = set(range(PARTITIONS)) - serving[ea]
        removed = wait_for(
            lambda: {e["partition"] for e in a.events("state_dir_removed")} >= lost or None,
            15, "A removing the state of the partitions it lost")  # fmt: skip
        assert removed
        for p in range(PARTITIONS):
            gone = not (tmp_path / "a" / app / f"flows-{p}").exists()
            assert gone == (p in lost)
            assert gone == (not (tmp_path / "a" / app / f"flowstats-{p}").exists())
        for m in members:
            m.signal(signal.SIGTERM)
        for m in members:
            assert m.wait(30) == 0, m.log()[-2000:]
    finally:
        for m in members:
            m.kill()

    # A new member with no local state restores the table from the changelog.
    c = brokers.Member(bs, app, tmp_path / "c", *args)
    try:
        ec = c.wait_event("query_server_started", 30)["endpoint"]
        wait_for(lambda: len(c.events("flowstats_ready")) == PARTITIONS, 60, "C restored")
        restored = c.events("flowstats_ready")
        assert sum(e["restored_records"] for e in restored) > 0
        assert sum(e["entries"] for e in restored) == len(oracle["flows"])
        assert check_all_flows(ec, oracle, {ec: set(range(PARTITIONS))}) == 0
        c.signal(signal.SIGTERM)
        assert c.wait(30) == 0
    finally:
        c.kill()
