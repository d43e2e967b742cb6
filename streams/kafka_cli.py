"""The Kafka-mode commands, `probe` and `run`, added to runner.py's parser.

Settings come from the command line, the environment (WIRESTREAM_<OPTION>), a TOML file
(--config FILE or WIRESTREAM_CONFIG) and the defaults, in that order of precedence; see
streams/kafka_config.py and docs/kafka-mode.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from streams.argtypes import positive_int, positive_seconds
from streams.kafka_config import ConfigError, Option, layerable, resolve
from streams.kafka_settings import (
    AT_LEAST_ONCE,
    COMPRESSIONS,
    CONNECT_TIMEOUT,
    DEFAULT_INPUT_TOPIC,
    DEFAULT_PREFIX,
    DEFAULT_STATE_DIR,
    GUARANTEES,
    LAYOUTS,
    RECONNECT_TIMEOUT,
    ProbeSettings,
    RunSettings,
)

EXIT_USAGE = 2
_COMMON = {"log_format", "log_level", "config"}
# Layerable options per command, from the last parser built (the file loader also uses
# them to tell a setting of the other command from a typo).
OPTIONS: dict[str, dict[str, Option]] = {}


def _replication(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"expected -1 (broker default) or >= 1, got {value}")
    return value


def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value}")
    return value


def _port_or_zero(text: str) -> int:
    if text.strip() == "0":
        return 0
    return _port(text)


def _add_features(rp: argparse.ArgumentParser) -> None:
    """Options of streams/kafka_features.py: flow statistics, queries, substreams, cleanup."""
    from streams.feature_settings import DEFAULT_CLEANUP_DELAY, FeatureSettings

    d = FeatureSettings()
    rp.add_argument(
        "--flow-stats",
        action="store_true",
        default=False,
        help="keep per-flow packet/byte statistics as a table (store flowstats-<p>, changelog "
        "<application-id>-flowstats-changelog); implied by --query-port and --flow-stats-topic",
    )
    rp.add_argument(
        "--flow-stats-topic",
        action="store_true",
        default=False,
        help="also produce the table's changes to <prefix>flowstats (upsert stream keyed by "
        "uid, tombstone when an entry expires)",
    )
    rp.add_argument(
        "--flow-stats-retention",
        type=positive_seconds,
        default=d.flow_stats_retention,
        metavar="SECONDS",
        help="keep closed flows in the table this long in stream time (capture time) "
        f"(default: {d.flow_stats_retention:g})",
    )
    rp.add_argument(
        "--flow-stats-max-closed",
        type=positive_int,
        default=d.flow_stats_max_closed,
        help=f"closed flows kept per partition at most, oldest go first "
        f"(default: {d.flow_stats_max_closed})",
    )
    rp.add_argument(
        "--query-port",
        type=_port_or_zero,
        default=None,
        help="serve the read-only query API (flows by uid or 5-tuple, top flows, key owner) "
        "on this port; 0 = any free port (logged as query_server_started) (default: off)",
    )
    rp.add_argument(
        "--query-host",
        metavar="HOST",
        default=None,
        help="host name other members use to reach this member's query API (announced to "
        "the group, like Kafka Streams' application.server) (default: this host's name)",
    )
    rp.add_argument(
        "--query-bind",
        metavar="ADDR",
        default=d.query_bind,
        help=f"address the query API listens on (default: {d.query_bind})",
    )
    rp.add_argument(
        "--substreams",
        action="store_true",
        default=False,
        help="also copy each input record (same key and value) to <prefix>packets.tcp, "
        ".udp or .other by its IP protocol",
    )
    rp.add_argument(
        "--state-cleanup-delay",
        type=positive_seconds,
        default=DEFAULT_CLEANUP_DELAY,
        metavar="SECONDS",
        help="delete local state of partitions this member no longer owns after this long "
        f"without activity (Kafka Streams' state.cleanup.delay.ms) (default: "
        f"{DEFAULT_CLEANUP_DELAY:g})",
    )


def _features(args: argparse.Namespace) -> Any:
    from streams.feature_settings import FeatureSettings

    return FeatureSettings(
        flow_stats=args.flow_stats,
        flow_stats_topic=args.flow_stats_topic,
        flow_stats_retention=args.flow_stats_retention,
        flow_stats_max_closed=args.flow_stats_max_closed,
        substreams=args.substreams,
        query_port=args.query_port,
        query_host=args.query_host,
        query_bind=args.query_bind,
        state_cleanup_delay=args.state_cleanup_delay,
    )


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML file with settings (keys = long option names; [probe]/[run] tables); "
        "precedence: command line > WIRESTREAM_* environment > file > defaults",
    )


def _add_broker(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT[,...]",
        default=None,
        help="Kafka bootstrap servers (required; env WIRESTREAM_BOOTSTRAP_SERVERS)",
    )
    p.add_argument(
        "--replication-factor",
        type=_replication,
        default=-1,
        help="replication factor of topics this command creates (default: -1, the broker's)",
    )
    p.add_argument(
        "--connect-timeout",
        type=positive_seconds,
        default=CONNECT_TIMEOUT,
        metavar="SECONDS",
        help="at start, keep trying to reach the brokers this long (with backoff), then "
        f"exit 3 with an error (default: {CONNECT_TIMEOUT:.0f})",
    )
    p.add_argument(
        "--reconnect-timeout",
        type=positive_seconds,
        default=RECONNECT_TIMEOUT,
        metavar="SECONDS",
        help="after losing the brokers, keep retrying (with backoff) this long before "
        f"giving up with exit 3 (default: {RECONNECT_TIMEOUT:.0f})",
    )


def add_commands(
    sub: Any,
    add_runtime: Callable[[argparse.ArgumentParser], None],
    add_common: Callable[[argparse.ArgumentParser], None],
    runtime_config: Callable[[argparse.Namespace], Any],
) -> None:
    """Add `probe` and `run` to runner.py's subparsers."""
    pp = sub.add_parser(
        "probe",
        help="produce packet records from captures or an interface to Kafka",
        description="Read pcap/pcapng files (or capture live on an interface) and produce one "
        "record per packet to the packets topic: key = flow key, value = packet record, "
        "partitioned by flow. Creates the topic if missing.",
    )
    pp.add_argument("pcaps", nargs="*", metavar="PCAP", help="capture files (pcap or pcapng)")
    pp.add_argument(
        "--interface",
        metavar="IFACE",
        default=None,
        help="capture live on this interface (AF_PACKET, needs root/CAP_NET_RAW) until "
        "SIGINT/SIGTERM, instead of reading files",
    )
    pp.add_argument(
        "--bpf",
        metavar="FILTER",
        default=None,
        help="with --interface: BPF filter in tcpdump syntax (compiled with libpcap)",
    )
    _add_broker(pp)
    pp.add_argument(
        "--topic",
        default=DEFAULT_INPUT_TOPIC,
        help=f"packets topic (default: {DEFAULT_INPUT_TOPIC})",
    )
    pp.add_argument(
        "--partitions",
        type=positive_int,
        default=8,
        help="partitions of the topic when it is created; an existing topic keeps its own "
        "(default: 8)",
    )
    pp.add_argument(
        "--pace",
        action="store_true",
        default=False,
        help="produce at capture pace instead of as fast as possible",
    )
    pp.add_argument(
        "--linger-ms",
        type=int,
        default=10,
        help="producer linger.ms: wait this long to fill batches (default: 10)",
    )
    pp.add_argument(
        "--batch-size",
        type=positive_int,
        default=256 << 10,
        help=f"producer batch.size in bytes (default: {256 << 10})",
    )
    pp.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="bundle",
        help="packets topic layout: 'bundle' = many packet records per Kafka record, per "
        "partition (fast); 'packet' = one record per packet (default: bundle)",
    )
    pp.add_argument(
        "--bundle-bytes",
        type=positive_int,
        default=256 << 10,
        help=f"with --layout bundle: a bundle is sent when it reaches this size; keep it "
        f"under the broker's message.max.bytes (1 MiB by default) (default: {256 << 10})",
    )
    pp.add_argument(
        "--bundle-linger-ms",
        type=int,
        default=100,
        help="with --layout bundle: a bundle is sent at the latest this long after its first "
        "packet (live capture latency; default: 100)",
    )
    pp.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="none",
        help="producer compression of the packets topic (default: none)",
    )
    probe_options = layerable(pp, _COMMON)
    _add_config(pp)
    add_common(pp)
    OPTIONS["probe"] = probe_options
    pp.set_defaults(func=lambda args: cmd_probe(args, pp, probe_options))

    rp = sub.add_parser(
        "run",
        help="run one member of the decoding consumer group",
        description="Consume the packets topic as one member of consumer group "
        "--application-id: reassemble, decode, and produce records to <prefix><type> "
        "topics, with state in RocksDB stores backed by a compacted changelog topic.",
    )
    _add_broker(rp)
    rp.add_argument(
        "--application-id",
        metavar="ID",
        default=None,
        help="consumer group id; also names the changelog topic and the state directory "
        "(required; env WIRESTREAM_APPLICATION_ID)",
    )
    rp.add_argument(
        "--state-dir",
        metavar="DIR",
        default=DEFAULT_STATE_DIR,
        help=f"RocksDB stores go to DIR/ID/flows-<partition> (default: {DEFAULT_STATE_DIR})",
    )
    rp.add_argument(
        "--input-topic",
        default=DEFAULT_INPUT_TOPIC,
        help=f"packets topic (default: {DEFAULT_INPUT_TOPIC})",
    )
    rp.add_argument(
        "--topic-prefix",
        default=DEFAULT_PREFIX,
        help=f"records go to <prefix><type>, e.g. {DEFAULT_PREFIX}http (default: {DEFAULT_PREFIX})",
    )
    rp.add_argument(
        "--processing-guarantee",
        choices=GUARANTEES,
        default=AT_LEAST_ONCE,
        help="at_least_once: after a crash some records may be produced twice, identical "
        "(same id, same bytes); exactly_once: transactions, read outputs with "
        f"read_committed (default: {AT_LEAST_ONCE})",
    )
    rp.add_argument(
        "--commit-interval",
        type=positive_seconds,
        default=1.0,
        metavar="SECONDS",
        help="commit (changelog, offsets, local checkpoint) this often (default: 1)",
    )
    rp.add_argument(
        "--exit-when-idle",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="after this long without input on any assigned partition, close every flow "
        "(end of input, as replay does), commit and exit 0",
    )
    rp.add_argument(
        "--punctuate-idle",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="a partition without input this long has its flow timeouts advanced by the "
        "wall clock (liveness; logged) (default: 30)",
    )
    rp.add_argument(
        "--session-timeout-ms",
        type=positive_int,
        default=10_000,
        help="consumer group session timeout (default: 10000)",
    )
    rp.add_argument(
        "--heartbeat-interval-ms",
        type=positive_int,
        default=3_000,
        help="consumer group heartbeat interval (default: 3000)",
    )
    rp.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help="serve Prometheus metrics on this port at /metrics (default: off)",
    )
    rp.add_argument(
        "--restore-timeout",
        type=positive_seconds,
        default=120.0,
        metavar="SECONDS",
        help="give up restoring a store after this long without progress (default: 120)",
    )
    rp.add_argument(
        "--max-poll-records",
        type=positive_int,
        default=2_000,
        help="records per poll (default: 2000)",
    )
    _add_features(rp)
    add_runtime(rp)
    run_options = layerable(rp, _COMMON)
    _add_config(rp)
    add_common(rp)
    OPTIONS["run"] = run_options
    rp.set_defaults(func=lambda args: cmd_run(args, rp, runtime_config, run_options))


def _layer(args: argparse.Namespace, command: str, parser: argparse.ArgumentParser,
           options: dict[str, Option]) -> None:  # fmt: skip
    try:
        resolve(args, command, options, {name: set(opts) for name, opts in OPTIONS.items()})
    except ConfigError as exc:
        parser.error(str(exc))


def cmd_probe(
    args: argparse.Namespace, parser: argparse.ArgumentParser, options: dict[str, Option]
) -> int:
    _layer(args, "probe", parser, options)
    if not args.bootstrap_servers:
        parser.error("--bootstrap-servers is required (or WIRESTREAM_BOOTSTRAP_SERVERS)")
    if bool(args.pcaps) == bool(args.interface):
        parser.error("give capture files or --interface IFACE (one of them)")
    if args.bpf and not args.interface:
        parser.error("--bpf applies to --interface only")
    from streams.config import tune_gc
    from streams.kafka_probe import Probe

    tune_gc()  # as replay: the collector would rescan every packet's objects
    settings = ProbeSettings(
        bootstrap_servers=args.bootstrap_servers,
        topic=args.topic,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        pace=args.pace,
        linger_ms=args.linger_ms,
        batch_size=args.batch_size,
        layout=args.layout,
        bundle_bytes=args.bundle_bytes,
        bundle_linger_ms=args.bundle_linger_ms,
        compression=args.compression,
        connect_timeout=args.connect_timeout,
        reconnect_timeout=args.reconnect_timeout,
    )
    probe = Probe(settings)
    if args.interface:
        return probe.run_live(args.interface, args.bpf)
    return probe.run_files(args.pcaps)


def cmd_run(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    runtime_config: Callable[[argparse.Namespace], Any],
    options: dict[str, Option],
) -> int:
    _layer(args, "run", parser, options)
    if not args.bootstrap_servers:
        parser.error("--bootstrap-servers is required (or WIRESTREAM_BOOTSTRAP_SERVERS)")
    if not args.application_id:
        parser.error("--application-id is required (or WIRESTREAM_APPLICATION_ID)")
    from streams.config import tune_gc
    from streams.kafka_runtime import KafkaRuntime

    tune_gc()  # as replay: flow tables hold many small objects the collector would rescan
    settings = RunSettings(
        bootstrap_servers=args.bootstrap_servers,
        application_id=args.application_id,
        state_dir=args.state_dir,
        input_topic=args.input_topic,
        topic_prefix=args.topic_prefix,
        processing_guarantee=args.processing_guarantee,
        commit_interval=args.commit_interval,
        exit_when_idle=args.exit_when_idle,
        punctuate_idle=args.punctuate_idle,
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        replication_factor=args.replication_factor,
        metrics_port=args.metrics_port,
        restore_timeout=args.restore_timeout,
        max_poll_records=args.max_poll_records,
        connect_timeout=args.connect_timeout,
        reconnect_timeout=args.reconnect_timeout,
    )
    return KafkaRuntime(settings, runtime_config(args), features=_features(args)).run()
