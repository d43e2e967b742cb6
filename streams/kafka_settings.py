"""Settings of the Kafka mode (`probe` and `run`): each field is an option of its command
(streams/options.py), with its default and help written here once; the layering
(command line > WIRESTREAM_* environment > TOML file > default) fills them.

Adding an option to `probe` or `run` is adding one field here (see docs/kafka-mode.md,
"Settings").
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass

from wirestream.streams.argtypes import non_negative_int, positive_int, positive_seconds
from wirestream.streams.options import option

AT_LEAST_ONCE = "at_least_once"
EXACTLY_ONCE = "exactly_once"
GUARANTEES = (AT_LEAST_ONCE, EXACTLY_ONCE)

DEFAULT_INPUT_TOPIC = "wirestream.packets"
DEFAULT_PREFIX = "wirestream."
DEFAULT_STATE_DIR = os.path.join(tempfile.gettempdir(), "wirestream")
# Records up to this size are accepted by our producers (flow snapshots in the changelog
# carry parked out-of-order data: up to max_parked_bytes per direction).
MAX_REQUEST_BYTES = 16 << 20
# Broker faults (streams/kafka_retry.py): how long to keep trying to reach the brokers at
# start, and how long a running command keeps retrying after losing them.
CONNECT_TIMEOUT = 30.0
RECONNECT_TIMEOUT = 300.0


def replication(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"expected -1 (broker default) or >= 1, got {value}")
    return value


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value}")
    return value


def port_or_zero(text: str) -> int:
    if text.strip() == "0":
        return 0
    return port(text)


@dataclass(frozen=True, kw_only=True)
class BrokerSettings:
    """What every command talking to Kafka needs (probe, run, enrich)."""

    bootstrap_servers: str = option(metavar="HOST:PORT[,...]", help="Kafka bootstrap servers")
    replication_factor: int = option(
        -1,
        parse=replication,
        help="replication factor of topics this command creates; -1 = the broker's default",
    )


@dataclass(frozen=True, kw_only=True)
class ReconnectSettings:
    """Broker faults of probe and run (streams/kafka_retry.py)."""

    connect_timeout: float = option(
        CONNECT_TIMEOUT,
        parse=positive_seconds,
        metavar="SECONDS",
        help="at start, keep trying to reach the brokers this long (with backoff), then "
        "exit 3 with an error",
    )
    reconnect_timeout: float = option(
        RECONNECT_TIMEOUT,
        parse=positive_seconds,
        metavar="SECONDS",
        help="after losing the brokers, keep retrying (with backoff) this long before "
        "giving up with exit 3",
    )


@dataclass(frozen=True, kw_only=True)
class GroupSettings:
    """Consumer group membership (run, enrich)."""

    session_timeout_ms: int = option(
        10_000, parse=positive_int, help="consumer group session timeout"
    )
    heartbeat_interval_ms: int = option(
        3_000, parse=positive_int, help="consumer group heartbeat interval"
    )


@dataclass(frozen=True, kw_only=True)
class RunSettings(GroupSettings, ReconnectSettings, BrokerSettings):
    """`wirestream run`: one member of the decoding consumer group."""

    application_id: str = option(
        metavar="ID",
        help="consumer group id; also names the changelog topic and the state directory",
    )
    state_dir: str = option(
        DEFAULT_STATE_DIR,
        metavar="DIR",
        help="RocksDB stores go to DIR/ID/flows-<partition>",
    )
    input_topic: str = option(DEFAULT_INPUT_TOPIC, help="packets topic")
    topic_prefix: str = option(
        DEFAULT_PREFIX, help=f"records go to <prefix><type>, e.g. {DEFAULT_PREFIX}http"
    )
    processing_guarantee: str = option(
        AT_LEAST_ONCE,
        choices=GUARANTEES,
        help="at_least_once: after a crash some records may be produced twice, identical "
        "(same id, same bytes); exactly_once: transactions, read outputs with read_committed",
    )
    commit_interval: float = option(
        1.0,
        parse=positive_seconds,
        metavar="SECONDS",
        help="commit (changelog, offsets, local checkpoint) this often",
    )
    exit_when_idle: float | None = option(
        None,
        parse=positive_seconds,
        metavar="SECONDS",
        help="after this long without input on any assigned partition, close every flow "
        "(end of input, as replay does), commit and exit 0",
    )
    punctuate_idle: float = option(
        30.0,
        parse=positive_seconds,
        metavar="SECONDS",
        help="a partition without input this long has its flow timeouts advanced by the "
        "wall clock (liveness; logged)",
    )
    metrics_port: int | None = option(
        None, parse=port, help="serve Prometheus metrics on this port at /metrics (default: off)"
    )
    restore_timeout: float = option(
        120.0,
        parse=positive_seconds,
        metavar="SECONDS",
        help="give up restoring a store after this long without progress",
    )
    max_poll_records: int = option(2_000, parse=positive_int, help="records per poll")
    max_partition_fetch_bytes: int = option(
        4 << 20,
        parse=positive_int,
        help="input bytes fetched per partition per request (Kafka's 1 MiB is four 256 KiB "
        "bundles: more round trips, more waiting; memory grows with it, docs/kafka-mode.md)",
    )
    fetch_max_bytes: int = option(
        16 << 20,
        parse=positive_int,
        help="input bytes per fetch response, all partitions together (bounds the fetch "
        "buffers however many partitions the member has)",
    )
    linger_ms: int = option(
        100,
        parse=non_negative_int,
        help="producer linger.ms of the output, changelog and substream records (Kafka "
        "Streams' default for its producers; a commit flushes whatever waits)",
    )
    socket_read_bytes: int = option(
        256 << 10,
        parse=positive_int,
        help="bytes per socket read of the Kafka clients (kafka-python's own is 4096: "
        "more calls, more CPU per fetched byte; streams/kafka_reads.py)",
    )

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == EXACTLY_ONCE


LAYOUTS = ("bundle", "packet")
COMPRESSIONS = ("none", "lz4", "zstd", "gzip", "snappy")


@dataclass(frozen=True, kw_only=True)
class ProbeSettings(ReconnectSettings, BrokerSettings):
    """`wirestream probe`: packet records from captures or an interface to Kafka."""

    interface: str | None = option(
        None,
        metavar="IFACE",
        help="capture live on this interface (AF_PACKET, needs root/CAP_NET_RAW) until "
        "SIGINT/SIGTERM, instead of reading files",
    )
    bpf: str | None = option(
        None,
        metavar="FILTER",
        help="with --interface: BPF filter in tcpdump syntax (compiled with libpcap)",
    )
    topic: str = option(DEFAULT_INPUT_TOPIC, help="packets topic")
    partitions: int = option(
        8,
        parse=positive_int,
        help="partitions of the topic when it is created; an existing topic keeps its own",
    )
    pace: bool = option(False, help="produce at capture pace instead of as fast as possible")
    linger_ms: int = option(
        10, parse=non_negative_int, help="producer linger.ms: wait this long to fill batches"
    )
    batch_size: int = option(256 << 10, parse=positive_int, help="producer batch.size in bytes")
    buffer_bytes: int = option(
        64 << 20,
        parse=positive_int,
        help="bytes handed to the producer and not yet acknowledged, at most (Kafka's "
        "buffer.memory, which kafka-python lacks): reading waits when the brokers fall "
        "behind, for --reconnect-timeout at most",
    )
    # Packets topic layout (docs/wire-formats.md): "bundle" (many packet records per Kafka
    # record, per partition) or "packet" (one record per packet, the seed's layout).
    layout: str = option(
        "bundle",
        choices=LAYOUTS,
        help="packets topic layout: 'bundle' = many packet records per Kafka record, per "
        "partition (fast); 'packet' = one record per packet",
    )
    bundle_bytes: int = option(
        256 << 10,
        parse=positive_int,
        help="with --layout bundle: a bundle is sent when it reaches this size; keep it "
        "under the broker's message.max.bytes (1 MiB by default)",
    )
    bundle_linger_ms: int = option(
        100,
        parse=non_negative_int,
        help="with --layout bundle: a bundle is sent at the latest this long after its first "
        "packet (live capture latency)",
    )
    compression: str = option(
        "none", choices=COMPRESSIONS, help="producer compression of the packets topic"
    )
