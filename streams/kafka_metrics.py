"""Counters, gauges and histograms of the Kafka mode, on prometheus-client.

`Metrics` keeps the small name-based API the runtime uses (`inc`, `set`, `observe`,
`remove`, `value`, `total`) over a private prometheus-client registry; `serve()` exposes
it at /metrics (`--metrics-port`) with prometheus-client's own HTTP server, on a daemon
thread. Updates happen per poll batch or per commit, never per packet.

Metrics declared in SPEC get their help text and type; a name used without a declaration
becomes a counter if it ends in `_total`, else a gauge, with the label names of its first
use. The duration counters (`*_seconds_total`) also feed a histogram (SPEC's fourth
field): each increment is one commit or one partition's restore.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# `*_created` series double the output and say nothing a scraper needs here.
prometheus_client.disable_created_metrics()

# name: (type, help, label names, histogram fed by each increment or None)
SPEC: dict[str, tuple[str, str, tuple[str, ...], str | None]] = {
    "wirestream_input_records_total": (
        "counter", "Packet records consumed (rate() gives records/s).", ("partition",), None),
    "wirestream_output_records_total": (
        "counter", "Decoded records produced, by type.", ("type",), None),
    "wirestream_deadletter_records_total": (
        "counter", "Input records dead-lettered, by reason.", ("reason",), None),
    "wirestream_commits_total": (
        "counter", "Commits (outputs, changelog, offsets, checkpoint).", (), None),
    "wirestream_commit_failures_total": (
        "counter", "Commits that failed (rebalance, fencing).", (), None),
    "wirestream_commit_seconds_total": (
        "counter", "Time spent committing.", (), "wirestream_commit_duration_seconds"),
    "wirestream_changelog_records_total": (
        "counter", "Changelog records produced.", (), None),
    "wirestream_restored_records_total": (
        "counter", "Changelog records applied while restoring.", ("partition",), None),
    "wirestream_restore_seconds_total": (
        "counter", "Time spent restoring stores.", ("partition",),
        "wirestream_restore_duration_seconds"),
    "wirestream_punctuations_total": (
        "counter", "Wall-clock punctuations of idle partitions.", ("partition",), None),
    "wirestream_rebalances_total": ("counter", "Partition assignments received.", (), None),
    "wirestream_anomalies_total": ("counter", "Anomaly records emitted, by name.", ("name",), None),
    "wirestream_limit_hits_total": (
        "counter", "Limits hit (docs/limits.md), by limit.", ("limit",), None),
    "wirestream_substream_records_total": (
        "counter", "Input records copied to <prefix>packets.<proto>.", ("topic",), None),
    "wirestream_flowstats_records_total": (
        "counter", "Flow statistics entries written (changelog), deletions included.", (),
        None),
    "wirestream_state_dirs_removed_total": (
        "counter", "Local state directories of partitions no longer owned, removed.", (), None),
    "wirestream_assigned_partitions": ("gauge", "Input partitions owned by this member.", (), None),
    "wirestream_open_flows": ("gauge", "Flows in the flow table, by partition.", ("partition",),
                              None),
    "wirestream_stream_time_seconds": (
        "gauge", "Largest capture time seen, by partition.", ("partition",), None),
    "wirestream_consumer_lag_records": (
        "gauge", "Input records not yet consumed (high watermark - position), by partition.",
        ("partition",), None),
    "wirestream_parked_bytes": (
        "gauge", "Out-of-order bytes parked by the partition's flows.", ("partition",), None),
    "wirestream_flowstats_entries": (
        "gauge", "Entries in the flow statistics table, by partition.", ("partition",), None),
    "wirestream_commit_duration_seconds": ("histogram", "Duration of commits.", (), None),
    "wirestream_restore_duration_seconds": (
        "histogram", "Duration of one partition's restore.", (), None),
}  # fmt: skip
PARTITION_GAUGES = tuple(
    name for name, spec in SPEC.items() if spec[0] == "gauge" and spec[2] == ("partition",)
)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Anomaly names that mean a limit was hit, and the limit's name (docs/limits.md).
LIMIT_ANOMALIES = {
    "flow_evicted": "max_flows",
    "task_memcap": "max_parked_bytes_task",
    "process_memcap": "max_parked_bytes_process",
    "ack_above_data": "ack_above_data",
    "http_header_limit": "http_max_headers",
    "http_pending_limit": "http_max_pending",
}
_KINDS = {"counter": Counter, "gauge": Gauge}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Any] = {}
        self._labels: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        for name in SPEC:  # declared up front: a scraper sees them before the first event
            self._get(name, {})

    def _get(self, name: str, labels: Mapping[str, Any], kind: str | None = None) -> Any:
        metric = self._metrics.get(name)
        if metric is not None:
            return metric
        with self._lock:
            metric = self._metrics.get(name)
            if metric is not None:
                return metric
            spec = SPEC.get(name)
            if spec is None:
                kind = kind or ("counter" if name.endswith("_total") else "gauge")
                spec = (kind, name.replace("_", " "), tuple(sorted(labels)), None)
            kind_, text, label_names, _ = spec
            if kind_ == "histogram":
                metric = Histogram(
                    name, text, label_names, registry=self.registry, buckets=DURATION_BUCKETS
                )
            else:
                metric = _KINDS[kind_](name, text, label_names, registry=self.registry)
            self._labels[name] = label_names
            self._metrics[name] = metric
            return metric

    def _child(self, name: str, labels: Mapping[str, Any], kind: str | None = None) -> Any:
        metric = self._get(name, labels, kind)
        if not self._labels[name]:
            return metric
        return metric.labels(**{k: str(v) for k, v in labels.items()})

    def inc(self, name: str, amount: float = 1.0, /, **labels: Any) -> None:
        self._child(name, labels, "counter").inc(amount)
        spec = SPEC.get(name)
        if spec is not None and spec[3] is not None:
            self.observe(spec[3], amount)

    def set(self, name: str, value: float, /, **labels: Any) -> None:
        self._child(name, labels, "gauge").set(value)

    def observe(self, name: str, value: float, /, **labels: Any) -> None:
        self._child(name, labels, "histogram").observe(value)

    def remove(self, name: str, **labels: Any) -> None:
        metric = self._metrics.get(name)
        if metric is None or not self._labels[name]:
            return
        values = [str(labels[k]) for k in self._labels[name]]
        try:
            metric.remove(*values)
        except KeyError:
            pass

    def _samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        metric = self._metrics.get(name)
        if metric is None:
            return []
        out = []
        for family in metric.collect():
            for sample in family.samples:
                if sample.name in (name, name + "_total"):
                    out.append((sample.labels, sample.value))
        return out

    def value(self, name: str, **labels: Any) -> float:
        want = {k: str(v) for k, v in labels.items()}
        for sample_labels, value in self._samples(name):
            if sample_labels == want:
                return value
        return 0.0

    def total(self, name: str) -> float:
        return sum(value for _, value in self._samples(name))

    def render(self) -> str:
        """Prometheus text exposition format."""
        return generate_latest(self.registry).decode()

    # -- per-slot gauges and counters, at each commit --
    def observe_slot(self, slot: Any, consumer: Any) -> None:
        """Lag, open flows, parked bytes, stream time; anomalies and limits hit since the
        last call. On the main thread, after a commit. `slot` is a PartitionSlot
        (streams/kafka/slot.py; not imported: the slot module uses these metrics)."""
        p = slot.partition
        task = slot.task
        if task is not None:
            tracker = task.tracker
            self.set("wirestream_open_flows", len(tracker), partition=p)
            self.set("wirestream_stream_time_seconds", tracker.stream_time / 1e9, partition=p)
            self.set("wirestream_parked_bytes", tracker.budget.bytes, partition=p)
        if consumer is not None:
            try:
                high = consumer.highwater(slot.tp)
            except Exception:  # not assigned any more (revoked meanwhile)
                high = None
            if high is not None:
                self.set("wirestream_consumer_lag_records", max(0, high - slot.next_offset),
                         partition=p)  # fmt: skip
        if slot.stats_view is not None:
            self.set("wirestream_flowstats_entries", len(slot.stats_view), partition=p)
        for name, n in slot.anomalies.items():
            self.inc("wirestream_anomalies_total", n, name=name)
            limit = LIMIT_ANOMALIES.get(name)
            if limit is not None:
                self.inc("wirestream_limit_hits_total", n, limit=limit)
        slot.anomalies.clear()
        for limit, n in slot.limit_hits.items():
            self.inc("wirestream_limit_hits_total", n, limit=limit)
        slot.limit_hits.clear()
        for topic, n in slot.substream_counts.items():
            self.inc("wirestream_substream_records_total", n, topic=topic)
        slot.substream_counts.clear()

    def forget_partition(self, partition: int) -> None:
        """A partition left this member: its gauges go (they would lie otherwise)."""
        for name in PARTITION_GAUGES:
            self.remove(name, partition=partition)


def serve(metrics: Metrics, port: int, host: str = "0.0.0.0") -> Any:
    """Serve /metrics on a daemon thread (prometheus-client's server); returns the
    server (call .shutdown() to stop)."""
    server, _thread = prometheus_client.start_http_server(
        port, addr=host, registry=metrics.registry
    )
    return server
