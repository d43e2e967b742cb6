"""Counters and gauges of the Kafka mode, and an optional Prometheus text endpoint.

No client library: the exposition format is a few lines of text, served by the standard
library's HTTP server on a daemon thread (`--metrics-port`). Updating a counter is a dict
operation, done per poll batch or per commit, never per packet.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Labels = tuple[tuple[str, str], ...]

HELP: dict[str, tuple[str, str]] = {
    "wirestream_input_records_total": ("counter", "Packet records consumed."),
    "wirestream_output_records_total": ("counter", "Decoded records produced, by type."),
    "wirestream_deadletter_records_total": ("counter", "Input records dead-lettered."),
    "wirestream_commits_total": ("counter", "Commits (outputs, changelog, offsets, checkpoint)."),
    "wirestream_commit_failures_total": ("counter", "Commits that failed (rebalance, fencing)."),
    "wirestream_commit_seconds_total": ("counter", "Time spent committing."),
    "wirestream_changelog_records_total": ("counter", "Changelog records produced."),
    "wirestream_restored_records_total": ("counter", "Changelog records applied while restoring."),
    "wirestream_restore_seconds_total": ("counter", "Time spent restoring stores."),
    "wirestream_punctuations_total": ("counter", "Wall-clock punctuations of idle partitions."),
    "wirestream_rebalances_total": ("counter", "Partition assignments received."),
    "wirestream_assigned_partitions": ("gauge", "Input partitions owned by this member."),
    "wirestream_open_flows": ("gauge", "Flows in the flow table, by partition."),
    "wirestream_stream_time_seconds": ("gauge", "Largest capture time seen, by partition."),
}


class Metrics:
    def __init__(self) -> None:
        self._values: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._lock = threading.Lock()

    def inc(self, name: str, amount: float = 1.0, **labels: Any) -> None:
        key = _labels(labels)
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: Any) -> None:
        with self._lock:
            self._values[name][_labels(labels)] = float(value)

    def remove(self, name: str, **labels: Any) -> None:
        with self._lock:
            self._values[name].pop(_labels(labels), None)

    def value(self, name: str, **labels: Any) -> float:
        with self._lock:
            return self._values.get(name, {}).get(_labels(labels), 0.0)

    def total(self, name: str) -> float:
        with self._lock:
            return sum(self._values.get(name, {}).values())

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        with self._lock:
            for name in sorted(self._values):
                kind, text = HELP.get(name, ("untyped", ""))
                lines.append(f"# HELP {name} {text}")
                lines.append(f"# TYPE {name} {kind}")
                for labels, value in sorted(self._values[name].items()):
                    lines.append(f"{name}{_format_labels(labels)} {_format_value(value)}")
        return "\n".join(lines) + "\n"


def _labels(labels: dict[str, Any]) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


def _format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    parts = []
    for k, v in labels:
        escaped = v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        parts.append(f'{k}="{escaped}"')
    return "{" + ",".join(parts) + "}"


def _format_value(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def serve(metrics: Metrics, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve /metrics on a daemon thread; returns the server (call .shutdown() to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
