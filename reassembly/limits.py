"""Reassembly limits and timeouts, with their documented defaults (docs/limits.md)."""

from __future__ import annotations

from dataclasses import dataclass

SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Limits:
    # Flow table, per task (partition): beyond it the least recently active flow is evicted.
    max_flows: int = 100_000
    # Out-of-order data parked per direction; beyond either cap the first hole is given up.
    max_parked_bytes: int = 1 << 20
    max_parked_segments: int = 256
    # Out-of-order bytes parked by all flows of a task (memcap, like Suricata's
    # stream.reassembly.memcap but per partition so replay and Kafka cut the same flows):
    # beyond it the flow that parks gives up its first hole.
    max_parked_bytes_task: int = 64 << 20
    # Safety cap over every task of the process (not deterministic across deployments:
    # which flow gives up depends on what else the process runs; it only guards memory).
    max_parked_bytes_process: int = 512 << 20
    # Per-direction reassembly depth (Suricata's stream depth): bytes after it are not
    # delivered (counted, flagged once). 0 = unlimited.
    max_depth: int = 0
    # Whose bytes win where out-of-order segments overlap with different data:
    # first (default, like tshark's follow), last, or a target OS: linux, bsd, windows,
    # solaris (Suricata's target-based policies; see halfstream.new_wins).
    overlap_policy: str = "bsd"
    # An ACK beyond the highest byte the peer was seen sending plus this is ignored
    # (anomaly ack_above_data): a real window is smaller; a forged ACK would declare a
    # huge gap.
    max_ack_ahead: int = 64 << 20
    # Timeouts in stream time (largest capture time seen on the partition), like Zeek's.
    syn_only_timeout_ns: int = 30 * SECOND  # a SYN never answered (Zeek S0 after attempts)
    tcp_idle_timeout_ns: int = 300 * SECOND  # Zeek tcp_inactivity_timeout
    closed_linger_ns: int = 5 * SECOND  # Zeek tcp_close_delay: late ACKs after FIN/RST
    udp_idle_timeout_ns: int = 60 * SECOND  # Zeek udp_inactivity_timeout
    # How often (in stream time) the table is scanned for expired flows.
    expiry_interval_ns: int = 1 * SECOND


# Ports on which the listener is likely the server (Zeek's likely_server_ports idea):
# a flow seen without its handshake is oriented so that such a port is the server's.
LIKELY_SERVER_PORTS = frozenset(
    {
        20, 21, 22, 23, 25, 53, 80, 88, 110, 111, 123, 135, 137, 138, 139, 143, 161, 389, 443,
        445, 465, 514, 587, 636, 993, 995, 1433, 1521, 1883, 2049, 3128, 3306, 3389, 5060,
        5353, 5432, 5672, 6379, 6443, 6667, 6669, 8000, 8008, 8080, 8443, 8888, 9092, 9200,
        11211, 27017,
    }
)  # fmt: skip


def likely_server(port: int) -> bool:
    return port in LIKELY_SERVER_PORTS or 0 < port < 1024
