"""The state-store features of `wirestream run`, beside the core commit protocol:

- the flow statistics table (streams/flowstats.py): a store per partition
  (`<state-dir>/<application-id>/flowstats-<p>`) with its own compacted changelog
  `<application-id>-flowstats-changelog`, written and checkpointed at each commit with the
  flows store, restored with the partition; optionally also an upsert topic
  `<prefix>flowstats` keyed by uid (tombstones when entries expire);
- interactive queries over it (streams/kafka_queries.py), with the query endpoint in the
  group's join metadata (streams/kafka_assignor.py);
- per-protocol substreams: each input record also to `<prefix>packets.tcp|udp|other`;
- their metrics (entries per partition, restored records).

Removal of stale state directories is the store manager's (streams/kafka/stores.py).
The member calls a handful of hooks (start, assignor, restore, released, stop) and
slots read three attributes (substreams, stats_changelog, stats_topic); the per-record
and per-commit work is in streams/kafka/slot.py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wirestream.state.changelog import ChangelogRestorer
from wirestream.streams.feature_settings import FeatureSettings
from wirestream.streams.flowstats import (
    FlowStatsTable,
    FlowStatsView,
    ViewRegistry,
    decode_items,
)
from wirestream.streams.kafka.restore import RestoreJob, restore
from wirestream.streams.kafka.stores import StoreManager
from wirestream.streams.kafka_assignor import GroupMember, StateAwareAssignor
from wirestream.streams.kafka_errors import FatalError
from wirestream.streams.kafka_queries import GroupMap, QueryService
from wirestream.streams.kafka_queries import serve as serve_queries
from wirestream.streams.kafka_settings import MAX_REQUEST_BYTES, RunSettings
from wirestream.streams.kafka_topics import changelog_topic, ensure_topic, output_topic

if TYPE_CHECKING:
    from wirestream.streams.kafka.slot import PartitionSlot
    from wirestream.streams.kafka_metrics import Metrics

STATS_STORE = "flowstats"
SUBSTREAMS = {6: "tcp", 17: "udp"}  # IP protocol (flow key byte 2) -> topic suffix
OTHER = "other"


class Features:
    def __init__(
        self,
        run: RunSettings,
        settings: FeatureSettings,
        stores: StoreManager,
        metrics: Metrics,
        log: Any,
        vlan_in_key: bool = True,
    ) -> None:
        self.run = run
        self.s = settings
        self.stores = stores
        self.metrics = metrics
        self.log = log
        self.vlan_in_key = vlan_in_key
        app, prefix = run.application_id, run.topic_prefix
        self.stats_changelog = changelog_topic(app, STATS_STORE) if self.s.tables else None
        self.stats_topic: tuple[str, int] | None = None
        self._stats_topic_name = output_topic(prefix, "flowstats")
        # IP protocol -> (topic, partitions); None when substreams are off.
        self.substreams: dict[int | None, tuple[str, int]] | None = None
        self.views = ViewRegistry()
        self.group = GroupMap(run.input_topic)
        self.endpoint: str | None = None
        self.input_partitions = 0
        self._service: QueryService | None = None
        self._server: Any = None

    # ------------------------------------------------------------------ hooks
    def start(self, admin: Any, input_partitions: int) -> None:
        """After the input topic is known: topics, and the query server (its endpoint
        goes into the join metadata, so it must be up before the consumer joins)."""
        self.input_partitions = n = input_partitions
        rf = self.run.replication_factor
        compact = {"cleanup.policy": "compact", "max.message.bytes": str(MAX_REQUEST_BYTES)}
        if self.stats_changelog is not None:
            ensure_topic(admin, self.stats_changelog, n, rf, compact)
        if self.s.flow_stats_topic:
            name = self._stats_topic_name
            self.stats_topic = (name, ensure_topic(admin, name, n, rf, compact)[0])
        if self.s.substreams:
            base = output_topic(self.run.topic_prefix, "packets")
            topics = {}
            for proto, suffix in (*SUBSTREAMS.items(), (None, OTHER)):
                name = f"{base}.{suffix}"
                topics[proto] = (name, ensure_topic(admin, name, n, rf)[0])
            self.substreams = topics
        if self.s.query_port is not None:
            self._start_queries()

    def _start_queries(self) -> None:
        service = QueryService(
            self.views,
            self.group,
            lambda: self.input_partitions,
            advertised="",
            vlan_in_key=self.vlan_in_key,
        )
        assert self.s.query_port is not None
        try:
            self._server = serve_queries(service, self.s.query_port, self.s.query_bind)
        except OSError as exc:  # port taken, address not local
            service.close()
            raise FatalError(
                f"cannot serve queries on {self.s.query_bind}:{self.s.query_port}: "
                f"{exc.strerror or exc}; choose another --query-port"
            ) from None
        port = self._server.server_address[1]
        host = self.s.query_host or socket.gethostname()
        self.endpoint = service.advertised = f"{host}:{port}"
        self._service = service
        self.log.info("query_server_started", endpoint=self.endpoint, bind=self.s.query_bind)

    def assignor(self, local_state: Callable[[], dict[int, int]]) -> StateAwareAssignor:
        return StateAwareAssignor(local_state, self.endpoint, self._on_map)

    def _on_map(self, generation: int, members: list[GroupMember]) -> None:
        self.group.update(generation, members)

    def restore(
        self,
        slots: dict[int, PartitionSlot],
        committed: dict[int, int | None],
        restorer: Any,
        timeout: float,
    ) -> None:
        """Open and restore the statistics stores of newly assigned partitions (after the
        flows stores, before any input is processed), with the restore consumer."""
        if self.stats_changelog is None or not slots:
            return
        jobs = []
        for p, slot in slots.items():
            c = committed.get(p) or 0
            # As for the flows store: state ahead of the committed input is rebuilt.
            store, start = self.stores.open_checked(p, c, name=STATS_STORE, warn=False)
            slot.stats_store = store
            jobs.append(RestoreJob(p, ChangelogRestorer(store, start, c), start))
        restore(restorer, self.stats_changelog, jobs, timeout)
        for job in jobs:
            slot = slots[job.partition]
            assert slot.stats_store is not None
            started = time.perf_counter()
            items = dict(decode_items(slot.stats_store.items()))
            table = FlowStatsTable(self.s.flow_stats_retention, self.s.flow_stats_max_closed)
            table.load(items.items())
            view = FlowStatsView(job.partition)
            view.apply(items)  # type: ignore[arg-type]
            slot.stats, slot.stats_view = table, view
            slot.stats_changelog_next = job.restorer.checkpoint.changelog_offset
            self.views.register(view)
            self.metrics.inc(
                "wirestream_restored_records_total", job.restorer.applied, partition=job.partition
            )
            self.log.info(
                "flowstats_ready",
                partition=job.partition,
                restored_records=job.restorer.applied,
                skipped_records=job.restorer.skipped,
                changelog_from=job.start.changelog_offset,
                changelog_to=job.end,
                entries=len(items),
                seconds=round(job.seconds + time.perf_counter() - started, 3),
            )

    def released(self, partition: int) -> None:
        """A slot closed (revoked, lost, stopping): its view goes, its gauges too."""
        self.views.drop(partition)
        self.metrics.forget_partition(partition)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._service is not None:
            self._service.close()
