"""Broker-free parts of the Kafka mode: settings layering, the assignor, the changelog
restore rule, the metrics endpoint, the partitioner."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

import runner
from probe.flowkey import kafka_partition
from state.changelog import (
    EMPTY,
    INPUT_OFFSET_HEADER,
    ChangelogRestorer,
    Checkpoint,
    header_input_offset,
    offset_headers,
)
from state.store import StateStore
from streams import kafka_cli
from streams.kafka_assignor import decode_userdata, encode_userdata, plan
from streams.kafka_config import ConfigError, resolve
from streams.kafka_metrics import Metrics, serve

# --------------------------------------------------------------------------- settings


def _parse(argv: list[str], env: dict[str, str]) -> tuple[object, dict[str, str]]:
    """Parse like runner.main, then layer env/file over the defaults like the commands do."""
    args = runner.build_parser().parse_args(argv)
    commands = {name: set(opts) for name, opts in kafka_cli.OPTIONS.items()}
    sources = resolve(args, args.command, kafka_cli.OPTIONS[args.command], commands, env)
    return args, sources


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
        _parse(["run"], {"WIRESTREAM_COMMIT_INTERVAL": "soon"})
    with pytest.raises(ConfigError, match="choose from"):
        _parse(["run"], {"WIRESTREAM_PROCESSING_GUARANTEE": "maybe"})
    config = tmp_path / "typo.toml"
    config.write_text("bootstrap_server = 'x'\n")
    with pytest.raises(ConfigError, match="unknown setting 'bootstrap_server'"):
        _parse(["run", "--config", str(config)], {})


def test_cli_reports_missing_required_settings(capsys: pytest.CaptureFixture[str]) -> None:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("WIRESTREAM_")}
    try:
        with pytest.raises(SystemExit) as exc:
            runner.main(["run", "--bootstrap-servers", "127.0.0.1:1"])
    finally:
        os.environ.update(saved)
    assert exc.value.code == 2
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
