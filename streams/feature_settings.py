"""Settings of the state-store features of `wirestream run` (streams/kafka_features.py).

Kept apart from the features themselves so the CLI can build its options without
importing kafka-python: `wirestream replay` would otherwise pay ~90 ms at start.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.flowstats import DEFAULT_MAX_CLOSED, DEFAULT_RETENTION_SECONDS

DEFAULT_CLEANUP_DELAY = 600.0  # Kafka Streams' state.cleanup.delay.ms default


@dataclass(frozen=True, slots=True)
class FeatureSettings:
    flow_stats: bool = False
    flow_stats_topic: bool = False
    flow_stats_retention: float = DEFAULT_RETENTION_SECONDS
    flow_stats_max_closed: int = DEFAULT_MAX_CLOSED
    substreams: bool = False
    query_port: int | None = None  # 0: any free port (logged)
    query_host: str | None = None  # advertised to the group; default: this host's name
    query_bind: str = "0.0.0.0"
    state_cleanup_delay: float = DEFAULT_CLEANUP_DELAY

    @property
    def tables(self) -> bool:
        """The statistics table is kept if asked for, or needed by the topic or queries."""
        return self.flow_stats or self.flow_stats_topic or self.query_port is not None
