"""Broker-free parts of the Kafka mode: settings layering, the assignor, the changelog
restore rule, the metrics endpoint, the partitioner, the flow statistics table, query
routing and the stale state cleaner."""

from __future__ import annotations

import argparse
import dataclasses
import os
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from wirestream import runner
from wirestream.probe.flowkey import kafka_partition
from wirestream.state.changelog import (
    EMPTY,
    INPUT_OFFSET_HEADER,
    ChangelogRestorer,
    Checkpoint,
    header_input_offset,
    offset_headers,
)
from wirestream.state.store import StateStore
from wirestream.streams.kafka_assignor import decode_userdata, encode_userdata, plan
from wirestream.streams.kafka_metrics import Metrics, serve
from wirestream.streams.settings_source import ConfigError

PCAPS = Path(__file__).resolve().parents[1] / "fixtures" / "pcaps"

# --------------------------------------------------------------------------- settings

REQUIRED = ["--bootstrap-servers", "b:1", "--application-id", "a"]


def _parse(argv: list[str], env: dict[str, str]) -> tuple[object, dict[str, str]]:
    """Parse and layer like runner.main; every setting of the command as one namespace."""
    inv = runner.build_commands().parse(argv, env)
    merged: dict[str, object] = {}
    for settings in inv.settings.values():
        merged.update({f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)})
    return argparse.Namespace(**merged), dict(inv.sources)


def test_precedence_cli_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    config = tmp_path / "ws.toml"
    config.write_text(
        'bootstrap_servers = "file:9092"\n'
        'application-id = "from-file"\n'
        "commit_interval = 5\n"
        "max_flows = 77\n"
        'decoders = ["http"]\n'
        "[run]\n"
        'topic_prefix = "run-table."\n'
        "[probe]\n"
        "partitions = 3\n"
    )
    env = {
        "WIRESTREAM_CONFIG": str(config),
        "WIRESTREAM_BOOTSTRAP_SERVERS": "env:9092",
        "WIRESTREAM_COMMIT_INTERVAL": "2.5",
        "WIRESTREAM_PROCESSING_GUARANTEE": "exactly_once",
    }
    args, sources = _parse(["run", "--commit-interval", "0.25"], env)
    assert args.commit_interval == 0.25 and sources["commit_interval"] == "command line"
    assert args.bootstrap_servers == "env:9092" and sources["bootstrap_servers"] == "environment"
    assert args.processing_guarantee == "exactly_once"
    assert args.application_id == "from-file" and sources["application_id"] == "config file"
    assert args.topic_prefix == "run-table."
    assert args.max_flows == 77 and args.decoders == ["http"]
    assert args.input_topic == "wirestream.packets" and sources["input_topic"] == "default"
    assert args.exit_when_idle is None
    # [probe] settings do not leak into run, and apply to probe.
    pargs, _ = _parse(["probe", "x.pcap"], env)
    assert pargs.partitions == 3 and pargs.pace is False
    pargs, _ = _parse(["probe", "x.pcap"], {**env, "WIRESTREAM_PACE": "yes"})
    assert pargs.pace is True


def test_bad_settings_are_rejected_with_their_origin(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WIRESTREAM_COMMIT_INTERVAL"):
        _parse(["run", *REQUIRED], {"WIRESTREAM_COMMIT_INTERVAL": "soon"})
    with pytest.raises(ConfigError, match="choose from"):
        _parse(["run", *REQUIRED], {"WIRESTREAM_PROCESSING_GUARANTEE": "maybe"})
    config = tmp_path / "typo.toml"
    config.write_text("bootstrap_server = 'x'\n")
    with pytest.raises(ConfigError, match="unknown setting 'bootstrap_server'"):
        _parse(["run", "--config", str(config)], {})


def test_cli_reports_missing_required_settings(capsys: pytest.CaptureFixture[str]) -> None:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("WIRESTREAM_")}
    try:
        code = runner.main(["run", "--bootstrap-servers", "127.0.0.1:1"])
    finally:
        os.environ.update(saved)
    assert code == 2
    assert "--application-id is required" in capsys.readouterr().err


# --------------------------------------------------------------------------- assignor


def test_assignor_prefers_local_state_within_a_balanced_quota() -> None:
    partitions = list(range(6))
    members = {"m-a": {0: 50, 1: 40, 2: 30}, "m-b": {3: 10, 4: 10}, "m-c": {}}
    out = plan(partitions, members)
    assert sorted(p for parts in out.values() for p in parts) == partitions
    assert all(len(parts) == 2 for parts in out.values())
    assert out["m-a"] == [0, 1]  # its freshest two; 2 goes elsewhere to keep balance
    assert out["m-b"] == [3, 4]
    # Fresher state wins a partition both members hold.
    out = plan([0, 1], {"x": {0: 5}, "y": {0: 9}})
    assert out == {"x": [1], "y": [0]}
    # Uneven counts: floor/ceil, deterministic.
    out = plan(list(range(5)), {"a": {}, "b": {}})
    assert sorted(len(v) for v in out.values()) == [2, 3]
    assert plan(list(range(5)), {"a": {}, "b": {}}) == out


def test_assignor_userdata_roundtrip_and_garbage() -> None:
    assert decode_userdata(encode_userdata({3: 17, 0: 2})) == {0: 2, 3: 17}
    assert decode_userdata(b"not msgpack \xff") == {}
    assert decode_userdata(None) == {}


# --------------------------------------------------------------------------- changelog


def test_checkpoint_roundtrip() -> None:
    cp = Checkpoint(123, 456)
    assert Checkpoint.decode(cp.encode()) == cp
    assert Checkpoint.decode(None) is None
    assert Checkpoint.decode(b"\x09" + bytes(16)) is None
    assert header_input_offset(offset_headers(77)) == 77
    assert header_input_offset([("other", b"x"), (INPUT_OFFSET_HEADER, b"short")]) is None


def test_restore_skips_changelog_records_of_uncommitted_input(tmp_path: Path) -> None:
    """A commit whose changelog landed but whose input offsets were not committed (crash in
    between) must not reach the store: its input is processed again."""
    with StateStore(str(tmp_path / "s")) as store:
        r = ChangelogRestorer(store, EMPTY, committed_input=100)
        r.feed(0, b"a", b"1", offset_headers(50))
        r.feed(1, b"meta", b"m50", offset_headers(50))
        r.feed(2, b"a", b"2", offset_headers(100))
        r.feed(3, b"b", b"1", offset_headers(100))
        r.feed(4, b"meta", b"m100", offset_headers(100))
        r.feed(5, b"a", None, offset_headers(130))  # uncommitted: skipped
        r.feed(6, b"meta", b"m130", offset_headers(130))  # uncommitted: skipped
        cp = r.finish(position=7)
        assert (r.applied, r.skipped) == (5, 2)
        assert cp == Checkpoint(7, 100)
        assert dict(store.items()) == {b"a": b"2", b"b": b"1", b"meta": b"m100"}
        assert Checkpoint.decode(store.checkpoint()) == cp
        # Restoring again from the checkpoint reads only the tail.
        tail = ChangelogRestorer(store, cp, committed_input=140)
        tail.feed(7, b"b", None, offset_headers(140))
        assert tail.finish(8) == Checkpoint(8, 140)
        assert dict(store.items()) == {b"a": b"2", b"meta": b"m100"}


# --------------------------------------------------------------------------- metrics


def test_metrics_endpoint_serves_prometheus_text() -> None:
    metrics = Metrics()
    metrics.inc("wirestream_input_records_total", 5, partition=1)
    metrics.inc("wirestream_input_records_total", 2, partition=1)
    metrics.set("wirestream_assigned_partitions", 3)
    metrics.inc("wirestream_deadletter_records_total", reason='we"ird')
    server = serve(metrics, 0, host="127.0.0.1")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
            assert resp.headers["Content-Type"].startswith("text/plain")
    finally:
        server.shutdown()
    assert 'wirestream_input_records_total{partition="1"} 7' in text
    assert "# TYPE wirestream_assigned_partitions gauge" in text
    assert "wirestream_assigned_partitions 3" in text
    assert 'reason="we\\"ird"' in text


# --------------------------------------------------------------------------- partitioner


def test_flow_partitioner_equals_kafka_python_default_partitioner() -> None:
    import random

    rng = random.Random(7)
    for _ in range(3000):
        key = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 48)))
        for n in (1, 2, 3, 8, 12):
            assert kafka_partition(key, n) == (kafka_python_murmur2(key) & 0x7FFFFFFF) % n


# --------------------------------------------------------------------------- flow statistics


def _run_with_stats(name: str, commit_every: int) -> tuple[Any, list[dict], list[dict]]:
    """Run a capture through a task, collecting the statistics table at every commit the
    way the Kafka slot does; returns (view, flow records, mid-run checks)."""
    from wirestream.decoders.registry import select
    from wirestream.probe.capture import open_capture
    from wirestream.probe.source import PacketSource
    from wirestream.streams.config import RuntimeConfig
    from wirestream.streams.flowstats import FlowStatsTable, FlowStatsView
    from wirestream.streams.task import Task

    table, view = FlowStatsTable(retention_seconds=1e10), FlowStatsView(0)
    flows: list[dict] = []

    def emit(record_type: str, _key: str, record: dict) -> None:
        if record_type == "flow":
            flows.append(record)
            table.flow_finished(record)

    task = Task(0, RuntimeConfig(), select(None), emit)
    seen: Counter[tuple] = Counter()  # packets per (direction-free) flow key, so far
    checks = []

    def commit() -> None:
        tracker = task.tracker
        delta = table.collect(
            [tracker.flows[k] for k in tracker.dirty if k in tracker.flows], tracker.stream_time
        )
        task.changes()
        view.apply(delta)

    packets = list(PacketSource().keyed(open_capture(PCAPS / name)))
    for i, kp in enumerate(packets, 1):
        task.process_record(kp.record())
        seen[kp.key] += 1
        if i % commit_every == 0:
            commit()
            for key, flow in task.tracker.flows.items():
                checks.append((flow.uid, seen[key], view.get(flow.uid)))
    task.close_all("end_of_input")
    commit()
    return view, flows, checks


def test_flow_stats_table_follows_the_flows_at_each_commit() -> None:
    from wirestream.streams.flowstats import C_PKTS, OPEN, S_PKTS, entry_json

    view, flows, checks = _run_with_stats("own_wrk_small.pcap", commit_every=37)
    # Mid-run: an open flow's entry counts every packet of its 5-tuple seen so far
    # (no port reuse in this capture), as of the last commit.
    assert len(checks) > 50
    for _uid, packets, entry in checks:
        assert entry is not None and entry[OPEN]
        assert entry[C_PKTS] + entry[S_PKTS] == packets
    # At the end: one closed entry per flow record, with the record's numbers.
    assert len(view) == len(flows) >= 5
    for record in flows:
        entry = view.get(record["uid"])
        got = entry_json(record["uid"], entry)
        assert not got["open"]
        for field in ("proto", "client", "server", "ts_start", "ts_end", "state", "service"):
            assert got[field] == record[field], field
        for direction in ("client_to_server", "server_to_client"):
            for field in ("packets", "bytes", "missed_bytes"):
                assert got[direction][field] == record[direction][field]


def _flow_record(uid: str, ts_end: float, client: tuple[str, int], server: tuple[str, int],
                 nbytes: int) -> dict:  # fmt: skip
    side = {"packets": 1, "bytes": nbytes, "missed_bytes": 0, "beyond_depth": 0}
    return {
        "uid": uid, "proto": "tcp", "ts_start": ts_end - 1, "ts_end": ts_end,
        "client": {"ip": client[0], "port": client[1]},
        "server": {"ip": server[0], "port": server[1]}, "state": "SF", "close_reason": "fin",
        "service": None, "client_to_server": side, "server_to_client": dict(side),
    }  # fmt: skip


def test_flow_stats_retention_and_cap_delete_closed_entries() -> None:
    from wirestream.streams.flowstats import (
        FlowStatsTable,
        FlowStatsView,
        decode_items,
        encode_delta,
        tuple_key,
    )

    table = FlowStatsTable(retention_seconds=100, max_closed=3)
    view = FlowStatsView(0)
    for i, ts in enumerate((1000, 1010, 1020, 1030)):
        table.flow_finished(_flow_record(f"C{i}", ts, ("10.0.0.1", 40000 + i), ("10.0.0.2", 80), i))
    delta = table.collect([], stream_time_ns=1030 * 10**9)
    assert delta["C0"] is None  # over the cap: the oldest goes
    assert all(delta[f"C{i}"] is not None for i in (1, 2, 3))
    view.apply(delta)
    assert {uid for uid, _ in view.items()} == {"C1", "C2", "C3"}
    delta = table.collect([], stream_time_ns=1115 * 10**9)  # cutoff 1015: C1 expires
    assert delta == {"C1": None}
    view.apply(delta)
    # The store form round-trips, tombstones included; a restore rebuilds the order.
    stored = encode_delta({"C2": view.get("C2"), "C1": None})
    assert stored[b"C1"] is None
    items = dict(
        decode_items([(b"C2", stored[b"C2"]), (b"C3", encode_delta({"C3": view.get("C3")})[b"C3"])])
    )
    restored = FlowStatsTable(retention_seconds=100, max_closed=3)
    restored.load(items.items())
    assert list(restored.closed) == ["C2", "C3"]
    # 5-tuple lookups are direction-free; top flows by bytes, largest first.
    key = tuple_key("tcp", ("10.0.0.2", 80), ("10.0.0.1", 40003))
    assert [uid for uid, _ in view.find(key)] == ["C3"]
    assert [uid for uid, _ in view.top("bytes", 1)] == ["C3"]


# --------------------------------------------------------------------------- queries


def test_query_routing_answers_locally_or_points_to_the_owner() -> None:
    from wirestream.probe.flowkey import flow_key
    from wirestream.probe.packet import Packet
    from wirestream.streams.flowstats import FlowStatsTable, FlowStatsView, ViewRegistry
    from wirestream.streams.kafka_queries import GroupMap, QueryService

    def partition(client: tuple[str, int], server: tuple[str, int]) -> int:
        import ipaddress

        a, b = ipaddress.ip_address(client[0]), ipaddress.ip_address(server[0])
        key, _ = flow_key(Packet(0, 4, 6, a.packed, b.packed, client[1], server[1], b""))
        return (kafka_python_murmur2(key) & 0x7FFFFFFF) % 4

    server = ("192.0.2.1", 443)
    clients = [(f"198.51.100.{i}", 50000 + i) for i in range(40)]
    local = {p: FlowStatsView(p) for p in (0, 1)}
    for i, client in enumerate(clients):
        p = partition(client, server)
        if p in local:
            table = FlowStatsTable()
            table.flow_finished(_flow_record(f"Cuid{i:012d}", 1000, client, server, 10 * i))
            local[p].apply(table.collect([], 0))
    views = ViewRegistry()
    for view in local.values():
        views.register(view)
    group = GroupMap("packets")
    group.update(7, [("m-a", "a:1", [("packets", [0, 1])]), ("m-b", "b:2", [("packets", [2, 3])])])
    svc = QueryService(views, group, lambda: 4, advertised="a:1")
    remote = 0
    for i, client in enumerate(clients):
        p = partition(client, server)
        q = f"src={server[0]}&sport={server[1]}&dst={client[0]}&dport={client[1]}&proto=tcp"
        reply = svc.handle(f"/flows?{q}")
        if p in local:
            assert reply.status == 200
            assert [f["uid"] for f in reply.body["flows"]] == [f"Cuid{i:012d}"]
        else:
            remote += 1
            assert reply.status == 307 and reply.location == f"http://b:2/flows?{q}"
            assert reply.body["owner"] == "b:2" and reply.body["partition"] == p
        owner = svc.handle(f"/owner?key=tcp,{client[0]},{client[1]},{server[0]},{server[1]}")
        assert owner.body["partition"] == p
        assert owner.body["owner"] == ("a:1" if p in local else "b:2")
        assert owner.body["member_id"] == ("m-a" if p in local else "m-b")
    assert 0 < remote < len(clients)
    top = svc.handle("/flows/top?by=bytes&n=3&scope=local")
    assert top.status == 200 and len(top.body["flows"]) == 3
    sizes = [f["client_to_server"]["bytes"] for f in top.body["flows"]]
    assert sizes == sorted(sizes, reverse=True)
    assert svc.handle("/flows?src=1.2.3.4&sport=x&dst=1.2.3.5&dport=80").status == 400
    assert svc.handle("/flows/top?by=colour").status == 400
    assert svc.handle("/nothing").status == 404
    svc.close()


def test_assignor_distributes_the_group_map_with_endpoints() -> None:
    from types import SimpleNamespace

    from wirestream.streams.kafka_assignor import StateAwareAssignor, decode_member

    maps: list = []
    a = StateAwareAssignor(lambda: {0: 9}, "host-a:1", lambda g, m: maps.append((g, m)))
    b = StateAwareAssignor(lambda: {}, "host-b:2", None)
    subs = {"m-a": a.metadata({"t"}), "m-b": b.metadata({"t"})}
    assert decode_member(subs["m-a"].user_data) == ({0: 9}, "host-a:1")
    cluster = SimpleNamespace(partitions_for_topic=lambda topic: {0, 1, 2, 3})
    members = [SimpleNamespace(member_id=m, metadata=s) for m, s in subs.items()]
    out = a.assign(cluster, members)
    a.on_assignment(out["m-a"], 5)
    generation, group = maps[-1]
    assert generation == 5
    by_member = {m: (e, dict(parts)) for m, e, parts in group}
    assert by_member["m-a"][0] == "host-a:1" and by_member["m-b"][0] == "host-b:2"
    assert 0 in by_member["m-a"][1]["t"]  # the member holding partition 0's state has it
    assert sorted(by_member["m-a"][1]["t"] + by_member["m-b"][1]["t"]) == [0, 1, 2, 3]
    # Old members (format 1, no endpoint) are still understood.
    import msgpack

    assert decode_member(msgpack.packb([1, [[2, 5]]])) == ({2: 5}, "")


# --------------------------------------------------------------------------- state cleanup


def test_state_cleaner_removes_idle_unowned_stores_only(tmp_path: Path) -> None:
    import time

    from wirestream.streams.kafka.cleanup import StateCleaner

    now = [time.time() + 1.0]  # a clock we move; files written now count as recent
    root = tmp_path / "app"
    for name in ("flows-0", "flowstats-0", "flows-1", "flowstats-1", "flows-2", "flows-3"):
        StateStore(str(root / name)).close()
    (root / "unrelated").mkdir()
    old = now[0] - 3600
    for path in root.rglob("*"):
        os.utime(path, (old, old))
    cleaner = StateCleaner(str(root), delay=600, clock=lambda: now[0])
    cleaner.started = old  # as if the process had been running for an hour
    cleaner.release(2)  # released just now: not idle yet
    held = StateStore(str(root / "flows-3"))  # open in this process: locked
    try:
        removed = cleaner.sweep(owned={0})
    finally:
        held.close()
    assert [p for p, _ in removed] == [1]
    left = sorted(p.name for p in root.iterdir())
    assert left == ["flows-0", "flows-2", "flows-3", "flowstats-0", "unrelated"]
    now[0] += 601
    assert [p for p, _ in cleaner.sweep(owned={0})] == [2, 3]
    assert sorted(p.name for p in root.iterdir()) == ["flows-0", "flowstats-0", "unrelated"]


def test_metrics_histograms_and_partition_gauges() -> None:
    metrics = Metrics()
    metrics.inc("wirestream_commit_seconds_total", 0.02)
    metrics.inc("wirestream_commit_seconds_total", 0.03)
    metrics.set("wirestream_open_flows", 12, partition=3)
    metrics.set("wirestream_consumer_lag_records", 40, partition=3)
    metrics.inc("wirestream_some_new_thing_total", 2, kind="x")  # undeclared: a counter
    text = metrics.render()
    assert "wirestream_commit_duration_seconds_count 2.0" in text
    assert abs(metrics.value("wirestream_commit_seconds_total") - 0.05) < 1e-9
    assert metrics.value("wirestream_some_new_thing_total", kind="x") == 2
    assert 'wirestream_open_flows{partition="3"} 12.0' in text
    metrics.forget_partition(3)
    text = metrics.render()
    assert "wirestream_open_flows{" not in text and "wirestream_consumer_lag_records{" not in text
