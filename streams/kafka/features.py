"""The state-store features of `wirestream run`, beside the core commit protocol:

- the flow statistics table (streams/flowstats.py): a store per partition
  (`<state-dir>/<application-id>/flowstats-<p>`) with its own compacted changelog
  `<application-id>-flowstats-changelog`, written and checkpointed at each commit with the
  flows store, restored with the partition; optionally also an upsert topic
  `<prefix>flowstats` keyed by uid (tombstones when entries expire);
- interactive queries over it (streams/kafka_queries.py), with the query endpoint in the
  group's join metadata (streams/kafka_assignor.py);
- per-protocol substreams: each input record also to `<prefix>packets.tcp|udp|other`;
- removal of stale state directories (streams/kafka_cleanup.py).

The runtime calls a handful of hooks (start, assignor, restore, tick, stop); the
per-record and per-commit work is in streams/kafka_slot.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from kafka.structs import MemberState

from state.changelog import EMPTY, ChangelogRestorer, Checkpoint
from state.store import StateStore, StoreError
from streams.feature_settings import FeatureSettings
from streams.flowstats import (
    FlowStatsTable,
    FlowStatsView,
    ViewRegistry,
    decode_items,
)
from streams.kafka.cleanup import StateCleaner
from streams.kafka.restore import RestoreJob, restore
from streams.kafka_assignor import GroupMember, StateAwareAssignor
from streams.kafka_errors import FatalError
from streams.kafka_queries import GroupMap, QueryService
from streams.kafka_queries import serve as serve_queries
from streams.kafka_settings import MAX_REQUEST_BYTES
from streams.kafka_topics import changelog_topic, ensure_topic, output_topic

if TYPE_CHECKING:
    from streams.kafka.runtime import KafkaRuntime
    from streams.kafka.slot import PartitionSlot

log = structlog.get_logger("wirestream.kafka")

STATS_STORE = "flowstats"
SUBSTREAMS = {6: "tcp", 17: "udp"}  # IP protocol (flow key byte 2) -> topic suffix
OTHER = "other"
LOCK_WAIT_SECONDS = 30.0


class Features:
    def __init__(self, rt: KafkaRuntime, settings: FeatureSettings | None = None) -> None:
        self.rt = rt
        self.s = settings or FeatureSettings()
        app, prefix = rt.settings.application_id, rt.settings.topic_prefix
        self.stats_changelog = changelog_topic(app, STATS_STORE) if self.s.tables else None
        self.stats_topic: tuple[str, int] | None = None
        self._stats_topic_name = output_topic(prefix, "flowstats")
        # IP protocol -> (topic, partitions); None when substreams are off.
        self.substreams: dict[int | None, tuple[str, int]] | None = None
        self.views = ViewRegistry()
        self.group = GroupMap(rt.settings.input_topic)
        self.endpoint: str | None = None
        self.cleaner = StateCleaner(rt.state_root, self.s.state_cleanup_delay)
        self._sweep_every = max(1.0, min(self.s.state_cleanup_delay / 2, 30.0))
        self._next_sweep = time.monotonic() + self._sweep_every
        self._service: QueryService | None = None
        self._server: Any = None

    # ------------------------------------------------------------------ hooks
    def start(self) -> None:
        """After the input topic is known: topics, and the query server (its endpoint
        goes into the join metadata, so it must be up before the consumer joins)."""
        rt = self.rt
        n, rf = rt.input_partitions, rt.settings.replication_factor
        compact = {"cleanup.policy": "compact", "max.message.bytes": str(MAX_REQUEST_BYTES)}
        if self.stats_changelog is not None:
            ensure_topic(rt.admin, self.stats_changelog, n, rf, compact)
        if self.s.flow_stats_topic:
            name = self._stats_topic_name
            self.stats_topic = (name, ensure_topic(rt.admin, name, n, rf, compact)[0])
        if self.s.substreams:
            base = output_topic(rt.settings.topic_prefix, "packets")
            topics = {}
            for proto, suffix in (*SUBSTREAMS.items(), (None, OTHER)):
                name = f"{base}.{suffix}"
                topics[proto] = (name, ensure_topic(rt.admin, name, n, rf)[0])
            self.substreams = topics
        if self.s.query_port is not None:
            self._start_queries()

    def _start_queries(self) -> None:
        rt = self.rt
        service = QueryService(
            self.views,
            self.group,
            lambda: rt.input_partitions,
            advertised="",
            vlan_in_key=rt.config.vlan_in_flow_key,
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
        rt.log.info("query_server_started", endpoint=self.endpoint, bind=self.s.query_bind)

    def assignor(self, local_state: Callable[[], dict[int, int]]) -> StateAwareAssignor:
        return StateAwareAssignor(local_state, self.endpoint, self._on_map)

    def _on_map(self, generation: int, members: list[GroupMember]) -> None:
        self.group.update(generation, members)

    def restore(self, slots: dict[int, PartitionSlot], committed: dict[int, int | None]) -> None:
        """Open and restore the statistics stores of newly assigned partitions (after the
        flows stores, before any input is processed)."""
        if self.stats_changelog is None or not slots:
            return
        rt = self.rt
        jobs = []
        for p, slot in slots.items():
            c = committed.get(p) or 0
            store, start = self._open_checked(p, c)
            slot.stats_store = store
            jobs.append(RestoreJob(p, ChangelogRestorer(store, start, c), start))
        restore(rt._restorer(), self.stats_changelog, jobs, rt.settings.restore_timeout)
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
            rt.metrics.inc(
                "wirestream_restored_records_total", job.restorer.applied, partition=job.partition
            )
            rt.log.info(
                "flowstats_ready",
                partition=job.partition,
                restored_records=job.restorer.applied,
                skipped_records=job.restorer.skipped,
                changelog_from=job.start.changelog_offset,
                changelog_to=job.end,
                entries=len(items),
                seconds=round(job.seconds + time.perf_counter() - started, 3),
            )

    def tick(self, now: float) -> None:
        """Main loop: remove stale state directories now and then (only while the group
        is stable: mid-rebalance, partitions about to come back look unowned)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_every
        rt = self.rt
        consumer = rt.consumer
        if consumer is None or consumer.group_metadata().state != MemberState.STABLE:
            return
        owned = set(rt.slots) | set(rt._to_init)
        owned.update(tp.partition for tp in consumer.assignment())
        for partition, idle in self.cleaner.sweep(owned):
            rt._local_checkpoints.pop(partition, None)  # no longer announced to the leader
            rt.metrics.inc("wirestream_state_dirs_removed_total")
            rt.log.info("state_dir_removed", partition=partition, idle_seconds=round(idle, 1))

    def released(self, partition: int) -> None:
        """A slot closed (revoked, lost, stopping): its view goes, its gauges too."""
        self.views.drop(partition)
        self.cleaner.release(partition)
        self.rt.metrics.forget_partition(partition)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._service is not None:
            self._service.close()

    # ------------------------------------------------------------------ stores
    def _path(self, partition: int) -> str:
        return os.path.join(self.rt.state_root, f"{STATS_STORE}-{partition}")

    def _open(self, partition: int) -> StateStore:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                return StateStore(self._path(partition))
            except StoreError as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _open_checked(self, partition: int, committed: int) -> tuple[StateStore, Checkpoint]:
        """As for the flows store: state ahead of the committed input is rebuilt."""
        store = self._open(partition)
        start = Checkpoint.decode(store.checkpoint())
        if start is not None and start.input_offset <= committed:
            return store, start
        store.close()
        shutil.rmtree(self._path(partition), ignore_errors=True)
        return self._open(partition), EMPTY
