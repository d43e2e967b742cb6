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
    DEFAULT_INPUT_TOPIC,
    DEFAULT_PREFIX,
    DEFAULT_STATE_DIR,
    GUARANTEES,
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
    from streams.kafka_probe import Probe

    settings = ProbeSettings(
        bootstrap_servers=args.bootstrap_servers,
        topic=args.topic,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        pace=args.pace,
        linger_ms=args.linger_ms,
        batch_size=args.batch_size,
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
    from streams.kafka_runtime import KafkaRuntime

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
    )
    return KafkaRuntime(settings, runtime_config(args)).run()
