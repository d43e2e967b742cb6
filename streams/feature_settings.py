"""Settings of the state-store features of `wirestream run` (streams/kafka/features.py);
each field is an option of `run` (streams/options.py).

Kept apart from the features themselves so the CLI can build its options without
importing kafka-python: `wirestream replay` would otherwise pay ~90 ms at start.
"""

from __future__ import annotations

from dataclasses import dataclass

from wirestream.streams.argtypes import positive_int, positive_seconds
from wirestream.streams.flowstats import DEFAULT_MAX_CLOSED, DEFAULT_RETENTION_SECONDS
from wirestream.streams.kafka_settings import port_or_zero
from wirestream.streams.options import option

DEFAULT_CLEANUP_DELAY = 600.0  # Kafka Streams' state.cleanup.delay.ms default


@dataclass(frozen=True, kw_only=True)
class FeatureSettings:
    flow_stats: bool = option(
        False,
        help="keep per-flow packet/byte statistics as a table (store flowstats-<p>, changelog "
        "<application-id>-flowstats-changelog); implied by --query-port and --flow-stats-topic",
    )
    flow_stats_topic: bool = option(
        False,
        help="also produce the table's changes to <prefix>flowstats (upsert stream keyed by "
        "uid, tombstone when an entry expires)",
    )
    flow_stats_retention: float = option(
        DEFAULT_RETENTION_SECONDS,
        parse=positive_seconds,
        metavar="SECONDS",
        help="keep closed flows in the table this long in stream time (capture time)",
    )
    flow_stats_max_closed: int = option(
        DEFAULT_MAX_CLOSED,
        parse=positive_int,
        help="closed flows kept per partition at most, oldest go first",
    )
    substreams: bool = option(
        False,
        help="also copy each input record (same key and value) to <prefix>packets.tcp, "
        ".udp or .other by its IP protocol",
    )
    query_port: int | None = option(  # 0: any free port (logged)
        None,
        parse=port_or_zero,
        help="serve the read-only query API (flows by uid or 5-tuple, top flows, key owner) "
        "on this port; 0 = any free port (logged as query_server_started) (default: off)",
    )
    query_host: str | None = option(
        None,
        metavar="HOST",
        help="host name other members use to reach this member's query API (announced to "
        "the group, like Kafka Streams' application.server) (default: this host's name)",
    )
    query_bind: str = option("0.0.0.0", metavar="ADDR", help="address the query API listens on")
    state_cleanup_delay: float = option(
        DEFAULT_CLEANUP_DELAY,
        parse=positive_seconds,
        metavar="SECONDS",
        help="delete local state of partitions this member no longer owns after this long "
        "without activity (Kafka Streams' state.cleanup.delay.ms)",
    )

    @property
    def tables(self) -> bool:
        """The statistics table is kept if asked for, or needed by the topic or queries."""
        return self.flow_stats or self.flow_stats_topic or self.query_port is not None
