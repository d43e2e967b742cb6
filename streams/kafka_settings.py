"""Settings of the Kafka mode (`probe` and `run`), after CLI/env/file layering."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class RunSettings:
    bootstrap_servers: str
    application_id: str
    state_dir: str = DEFAULT_STATE_DIR
    input_topic: str = DEFAULT_INPUT_TOPIC
    topic_prefix: str = DEFAULT_PREFIX
    processing_guarantee: str = AT_LEAST_ONCE
    commit_interval: float = 1.0
    exit_when_idle: float | None = None
    punctuate_idle: float = 30.0
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    replication_factor: int = -1
    metrics_port: int | None = None
    restore_timeout: float = 120.0
    max_poll_records: int = 2_000
    connect_timeout: float = CONNECT_TIMEOUT
    reconnect_timeout: float = RECONNECT_TIMEOUT

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == EXACTLY_ONCE


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    bootstrap_servers: str
    topic: str = DEFAULT_INPUT_TOPIC
    partitions: int = 8
    replication_factor: int = -1
    pace: bool = False
    linger_ms: int = 10
    batch_size: int = 256 << 10
    connect_timeout: float = CONNECT_TIMEOUT
    reconnect_timeout: float = RECONNECT_TIMEOUT
    # Packets topic layout (docs/wire-formats.md): "bundle" (many packet records per Kafka
    # record, per partition) or "packet" (one record per packet, the seed's layout).
    layout: str = "bundle"
    bundle_bytes: int = 256 << 10
    bundle_linger_ms: int = 100
    compression: str = "none"


LAYOUTS = ("bundle", "packet")
COMPRESSIONS = ("none", "lz4", "zstd", "gzip", "snappy")
